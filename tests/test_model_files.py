"""Model files are untrusted: nothing in them runs, and malformed ones are refused up front.

The hostile files come from ``benchmarks.faults.hostile_models`` (the model drill uses the same
set through the real command).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from benchmarks.faults import hostile_models
from benchmarks.faults.hostile_models import Canary
from benchmarks.faults.procs import peak_rss_mb, reset_peak_rss, rss_mb
from upscaler import ModelFileError, read_model
from upscaler.cli import main

HOSTILE_DIR_NAME = "hostile-models"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, hostile_models.Hostile]:
    folder = tmp_path_factory.mktemp(HOSTILE_DIR_NAME)
    rows = hostile_models.build(folder, folder / "canary")
    return {row.name: row for row in rows}


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pth"
    torch.save({"params": {"x": Canary(str(canary))}}, path)
    with pytest.raises(ModelFileError, match="would run code.*safetensors"):
        read_model(path)
    assert not canary.exists()


def test_legacy_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "legacy.pth"
    torch.save({"x": Canary(str(canary))}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelFileError, match="would run code"):
        read_model(path)
    assert not canary.exists()
    raw = tmp_path / "raw.pth"  # not even torch's format: a bare pickle
    raw.write_bytes(pickle.dumps(Canary(str(canary))))
    with pytest.raises(ModelFileError):
        read_model(raw)
    assert not canary.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torchscript_archive_is_refused(tmp_path: Path, suffix: str) -> None:
    module = torch.jit.trace(torch.nn.Conv2d(3, 12, 3, padding=1), torch.rand(1, 3, 8, 8))
    path = tmp_path / f"scripted{suffix}"
    torch.jit.save(module, str(path))
    with pytest.raises(ModelFileError, match="TorchScript"):
        read_model(path)


NAMES = [
    *(f"{name}.safetensors" for name in hostile_models.SAFETENSORS),
    "nan.safetensors",
    "inf.safetensors",
    "nan.pth",
    "canary.ckpt",
    "metadata-wide.safetensors",
    "metadata-deep.safetensors",
    "metadata-unknown-arch.safetensors",
    "rrdb-block-5000.safetensors",
    "rrdb-first-block-missing.safetensors",
    "esrgan-block-5000.pth",
    "esrgan-block-300.pth",
    "legacy-400GB-storage.pth",
    "truncated-zip.pth",
]


@pytest.mark.parametrize("name", NAMES)
def test_hostile_file_is_refused_before_allocation(
    hostile: dict[str, hostile_models.Hostile], name: str
) -> None:
    """One-line reason naming the fault; memory does not follow what the file claims (the
    absurd ones claim 0.8 to 400 GB)."""
    row = hostile[name]
    before = rss_mb()
    reset_peak_rss()
    with pytest.raises(ModelFileError, match=row.reason) as info:
        read_model(row.path)
    assert "\n" not in str(info.value) and row.name in str(info.value)
    assert peak_rss_mb() - before < 100
    assert not (row.path.parent / "canary").exists()


@pytest.mark.parametrize(
    "name", ["canary.pth", "canary-legacy.pth", "torchscript.pt", "torchscript.pth"]
)
def test_command_exits_3_and_says_how_to_convert(
    hostile: dict[str, hostile_models.Hostile], tmp_path: Path, name: str
) -> None:
    row = hostile[name]
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(
        main, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(row.path)]
    )
    assert result.exit_code == 3
    assert "model refused" in result.output and "safetensors" in result.output
    assert not (row.path.parent / "canary").exists() and not (tmp_path / "out").exists()


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        read_model(tmp_path / "nope.safetensors")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model file type"):
        read_model(tmp_path / "m.onnx")

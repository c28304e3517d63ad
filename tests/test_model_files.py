"""Model files are untrusted: nothing in them runs, and malformed ones are refused up front."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch

from upscaler import ModelFileError, read_model
from upscaler.models import Compact, CompactConfig


class _Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.path}",))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pth"
    torch.save({"params": {"x": _Canary(str(canary))}}, path)
    with pytest.raises(ModelFileError, match="would run code.*safetensors"):
        read_model(path)
    assert not canary.exists()


def test_legacy_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "legacy.pth"
    torch.save({"x": _Canary(str(canary))}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelFileError, match="would run code"):
        read_model(path)
    assert not canary.exists()
    raw = tmp_path / "raw.pth"  # not even torch's format: a bare pickle
    raw.write_bytes(pickle.dumps(_Canary(str(canary))))
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


def _safetensors(header: dict, data: bytes, header_len: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data


GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_safetensors(GOOD, b"\0" * 8, header_len=1 << 40), "header of"),
        (_safetensors(GOOD, b"\0" * 8)[:20], "truncated"),
        (struct.pack("<Q", 5) + b"{oops" + b"\0" * 8, "not JSON"),
        (
            _safetensors(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "overlaps",
        ),
        (
            _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
            "past the end",
        ),
        (_safetensors(GOOD, b"\0" * 8 + b"<html>polyglot</html>"), "trailing bytes"),
        (
            _safetensors(
                {"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 8]}},
                b"\0" * 8,
            ),
            "parameters",
        ),
        (
            _safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
            "disagrees with shape",
        ),
    ],
)
def test_malformed_safetensors_are_refused(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=reason) as info:
        read_model(path)
    assert "\n" not in str(info.value)


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = Compact(CompactConfig(num_features=4, num_blocks=1, scale=2)).state_dict()
    state["body.0.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelFileError, match="NaN or Inf"):
        read_model(path)


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        read_model(tmp_path / "nope.safetensors")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model file type"):
        read_model(tmp_path / "m.onnx")

"""The files beside a run: the resume state, review pages and the model caches are
untrusted input; none is read unless it is a regular file, none is written through a link or onto
a file the run reads, and each refusal is one line with exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import make_pixels, within
from PIL import Image

from benchmarks.faults.procs import file_hashes
from upscaler.cli import main
from upscaler.state import RunState, StateError, file_sha256, state_path


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_pixels(9, 7, 3, seed=seed)).save(path)
    return path


def _invoke(*args: object, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def _one_line_usage_error(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[-1], result.output


# -- the resume state ---------------------------------------------------------------------------


def test_a_fifo_as_the_state_file_neither_hangs_nor_is_used(tmp_path: Path, tiny_x2: Path) -> None:
    _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    fifo = state_path(out.resolve())
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    args = [tmp_path / "in", "-o", out, "--model", tiny_x2]
    dry = within(10, lambda: _invoke(*args, "--dry-run"), fifo)
    assert dry.exit_code == 0, dry.output
    run = within(20, lambda: _invoke(*args), fifo)
    assert run.exit_code == 0 and (out / "a.png").is_file(), run.output
    assert "resume state not saved" in run.output and "is a FIFO" in run.output


def test_a_symlinked_state_file_is_not_written_through(tmp_path: Path, tiny_x2: Path) -> None:
    _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    link = state_path(out.resolve())
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    result = _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2)
    assert result.exit_code == 0 and (out / "a.png").is_file(), result.output
    assert "resume state not saved" in result.output and "symbolic link" in result.output
    assert victim.read_text() == "the user's file\n" and link.is_symlink()


def test_state_records_are_validated(tmp_path: Path) -> None:
    """Only a well-formed record naming a file under the output folder counts."""
    out = tmp_path / "out"
    good = _png(out / "a.png")
    digest, size = file_sha256(good), good.stat().st_size
    record = {"target": "a.png", "bytes": size, "sha256": digest, "recipe": "r"}
    forged = [
        {**record, "target": str(good)},  # absolute
        {**record, "target": "../out/a.png"},
        {**record, "target": "sub/../a.png"},
        {**record, "target": "./a.png"},
        {**record, "target": ""},
        {**record, "target": 7},
        {**record, "bytes": str(size)},
        {**record, "bytes": -1},
        {**record, "bytes": True},
        {**record, "sha256": digest.upper()},
        {**record, "sha256": digest[:20]},
        {**record, "recipe": ["r"]},
        ["a.png", size, digest],
    ]
    state = tmp_path / "state.jsonl"
    lines = [json.dumps(f) for f in forged] + ["[" * 50_000, json.dumps(record)]
    state.write_text("\n".join(lines) + "\n")
    loaded = RunState(out.resolve(), state)
    assert set(loaded.records) == {"a.png"} and loaded.written_by_us(good)
    assert not loaded.written_by_us(tmp_path / "elsewhere.png")


def test_a_forged_record_cannot_claim_a_users_file_by_another_spelling(
    tmp_path: Path, tiny_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``upscale in -o in/sub`` from the folder above: the user's in/sub/a.png stays theirs
    whatever a record spelled as the output path given on the command line says."""
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "in" / "a.png", seed=1)
    user = _png(tmp_path / "in" / "sub" / "a.png", seed=2)
    record = {"bytes": user.stat().st_size, "sha256": file_sha256(user), "recipe": "r"}
    state = state_path((tmp_path / "in" / "sub").resolve())
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"target": "in/sub/a.png", **record}) + "\n")
    before = file_hashes(tmp_path / "in")
    result = _invoke("in", "-o", "in/sub", "--model", tiny_x2)
    _one_line_usage_error(result, "would overwrite a file inside the input folder")
    assert file_hashes(tmp_path / "in") == before


def test_a_state_folder_inside_the_output_tree_is_refused(tmp_path: Path, tiny_x2: Path) -> None:
    _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    for where in (out, out / "deep" / ".state"):
        env = {"UPSCALE_STATE_DIR": str(where)}
        result = _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, env=env)
        _one_line_usage_error(result, "inside the output folder", "UPSCALE_STATE_DIR")
        assert not out.exists()
    with pytest.raises(StateError):
        RunState(out.resolve(), out / "state.jsonl")


# -- the review page ----------------------------------------------------------------------------


def _hashes(*paths: Path) -> dict[Path, str]:
    return {p: file_sha256(p) for p in paths}


@pytest.mark.parametrize("onto", ["model", "rules", "report"])
def test_review_page_never_replaces_a_file_the_run_reads_or_writes(
    tmp_path: Path, tiny_x2: Path, onto: str
) -> None:
    _png(tmp_path / "in" / "a.png")
    model = tmp_path / "model.safetensors"
    model.write_bytes(tiny_x2.read_bytes())
    rules = tmp_path / "rules.toml"
    rules.write_text('["*.png"]\nmap = "color"\n')
    report = tmp_path / "report.json"
    page = {"model": model, "rules": rules, "report": report}[onto]
    before = _hashes(model, rules)
    args = [tmp_path / "in", "-o", tmp_path / "out", "--model", model, "--rules", rules]
    result = _invoke(*args, "--report", report, "--review", page)
    _one_line_usage_error(result, f"review page {page} would overwrite the")
    assert _hashes(model, rules) == before
    assert not (tmp_path / "out").exists() and not report.exists()
    assert not page.with_name(f"{page.stem}_files").exists()


def _special_files(tmp_path: Path) -> list[tuple[str, Path]]:
    """A FIFO, a socket and (where this user may make one) a character device, to write onto."""
    import socket
    import stat

    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock.html"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
    found = [("a FIFO", fifo), ("a socket", sock_path)]
    try:  # a private twin of /dev/null: replacing it would harm nothing
        os.mknod(tmp_path / "null.html", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        found.append(("a character device", tmp_path / "null.html"))
    except OSError:
        pass
    return found


def test_review_pages_are_never_written_onto_fifos_or_devices(
    tmp_path: Path, tiny_x2: Path
) -> None:
    from upscaler.review.command import main as review_main

    _png(tmp_path / "in" / "a.png")
    report = tmp_path / "report.json"
    run = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, "--report", report)
    assert run.exit_code == 0, run.output
    for kind, special in _special_files(tmp_path):
        mode = os.lstat(special).st_mode
        args = [tmp_path / "in", "-o", tmp_path / "o2", "--model", tiny_x2, "--review", special]
        result = within(10, lambda args=args: _invoke(*args), special)
        _one_line_usage_error(result, f"is {kind}; the page must be a new or regular file")
        assert not (tmp_path / "o2").exists()
        again = CliRunner().invoke(review_main, [str(report), "-o", str(special)])
        _one_line_usage_error(again, f"is {kind}")
        assert os.lstat(special).st_mode == mode  # still what it was, not a page


def test_upscale_review_never_writes_over_its_own_report(tmp_path: Path, tiny_x2: Path) -> None:
    from upscaler.review.command import main as review_main

    _png(tmp_path / "in" / "a.png")
    report = tmp_path / "report.json"
    run = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, "--report", report)
    assert run.exit_code == 0, run.output
    before = report.read_bytes()
    link = tmp_path / "link.json"
    link.symlink_to(report)
    for page in (report, link, tmp_path / "." / "report.json"):
        result = CliRunner().invoke(review_main, [str(report), "-o", str(page)])
        _one_line_usage_error(result, "would overwrite the report")
        assert report.read_bytes() == before
    assert not (tmp_path / "report_files").exists() and not (tmp_path / "link_files").exists()


# -- the model caches and registries ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "missing", "folder", "deep"])
def test_a_known_models_file_that_cannot_be_used_is_one_line(
    tmp_path: Path, tiny_x2: Path, kind: str
) -> None:
    _png(tmp_path / "in" / "a.png")
    registry = tmp_path / "team.toml"
    if kind == "fifo":
        os.mkfifo(registry)
    elif kind == "folder":
        registry.mkdir()
    elif kind == "deep":
        registry.write_text("model = " + "[" * 5000 + "]" * 5000)
    env = {"UPSCALE_KNOWN_MODELS": str(registry)}
    args = [tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2]
    for extra in (["--dry-run"], []):
        result = within(10, lambda extra=extra: _invoke(*args, *extra, env=env), registry)
        _one_line_usage_error(result, "UPSCALE_KNOWN_MODELS" if kind != "deep" else "team.toml")
        assert str(registry) in result.output and not (tmp_path / "out").exists()


def _measured(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "receptive_field": 12,
        "wrap_field": 8,
        "bytes_per_pixel": 900,
        "bf16_bytes_per_pixel": 450,
        "bf16_psnr": 55.0,
        "bf16_max_levels": 4,
        "fp16_psnr": 99.0,
        "fp16_max_levels": 0,
        "probed_field": True,
        "input_layer": "conv_first",
        "float32_block": "body.0",
        "output_layer": "conv_last",
    }
    return {**record, **changes}


@pytest.mark.parametrize(
    "stored",
    [
        _measured(receptive_field=-1),
        _measured(wrap_field="8"),
        _measured(bytes_per_pixel=900.5),
        _measured(bf16_bytes_per_pixel=True),
        _measured(bf16_psnr=120.0),
        _measured(fp16_psnr=float("nan")),
        _measured(bf16_psnr="55"),
        _measured(fp16_max_levels=256),
        _measured(bf16_max_levels=4.0),
        _measured(probed_field=1),
        _measured(input_layer=None),
        _measured(float32_block=["body.0"]),
        _measured(output_layer=3),
        _measured(extra=1),
        ["not", "a", "record"],
        "fifo",
    ],
)
def test_a_bad_contract_cache_entry_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: object
) -> None:
    """Wrong types, negative or out-of-range fields, a FIFO: measured again, never a traceback,
    a hang or a model refused on the cache's word."""
    from upscaler.models import measurement_cache
    from upscaler.models.measurement import Measured

    monkeypatch.setenv("UPSCALE_CACHE_DIR", str(tmp_path))
    key = "k" * 40
    path = tmp_path / f"contract-{key[:32]}.json"
    if stored == "fifo":
        os.mkfifo(path)
    else:
        record = {"version": measurement_cache.CACHE_VERSION, "key": key, "measured": stored}
        path.write_text(json.dumps(record))
    fresh = Measured(**_measured())  # type: ignore[arg-type]
    got = within(10, lambda: measurement_cache.cached(key, lambda: fresh), path)
    assert got == fresh
    again = measurement_cache.cached(key, lambda: pytest.fail("measured twice"))
    assert again == fresh  # stored again


def test_a_good_contract_cache_entry_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upscaler.models import measurement_cache
    from upscaler.models.measurement import Measured

    monkeypatch.setenv("UPSCALE_CACHE_DIR", str(tmp_path))
    key = "g" * 40
    record = {"version": measurement_cache.CACHE_VERSION, "key": key, "measured": _measured()}
    (tmp_path / f"contract-{key[:32]}.json").write_text(json.dumps(record))
    got = measurement_cache.cached(key, lambda: pytest.fail("a valid entry was measured again"))
    assert got == Measured(**_measured())  # type: ignore[arg-type]


def test_shipped_models_come_measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every shipped model's measurement ships with the package: its first use on a CPU measures
    nothing (the 3-14 s of probes), and an empty cache stays empty."""
    import torch

    from upscaler.models import measurement_cache
    from upscaler.models.known import file_sha256 as sha256
    from upscaler.models.loader import read_model
    from upscaler.models.sources import SHIPPED

    if torch.cuda.is_available():
        pytest.skip("with a GPU, fp16 is measured too: the shipped measurements are for CPUs")
    monkeypatch.setenv("UPSCALE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(measurement_cache, "cached", lambda *a: pytest.fail("measured"))
    shipped = measurement_cache.shipped_measurements()
    for model in SHIPPED.values():
        assert sha256(model.path) in shipped, f"{model.name}: python benchmarks/contracts.py"
        _module, info = read_model(model.name)
        assert info.receptive_field == shipped[sha256(model.path)].receptive_field
    assert not list(tmp_path.iterdir())


def test_a_bad_shipped_measurement_is_measured_on_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An entry of measured.json that is not a measurement (a field out of range, a missing one)
    is left out, and only that file is measured; an unreadable file leaves them all out."""
    from upscaler.models import measurement_cache

    good, bad = _measured(), _measured(bf16_max_levels=300)
    entries = [
        {"sha256": "a" * 64, "measured": good},
        {"sha256": "b" * 64, "measured": bad},
        {"sha256": "c" * 64},
    ]
    path = tmp_path / "measured.json"
    path.write_text(json.dumps({"models": entries}))
    monkeypatch.setattr(measurement_cache, "SHIPPED_MEASUREMENTS", path)
    measurement_cache.shipped_measurements.cache_clear()
    try:
        assert set(measurement_cache.shipped_measurements()) == {"a" * 64}
        path.write_text("{not json")
        measurement_cache.shipped_measurements.cache_clear()
        assert measurement_cache.shipped_measurements() == {}
    finally:
        measurement_cache.shipped_measurements.cache_clear()


@pytest.mark.slow
def test_shipped_measurements_match_a_fresh_measurement() -> None:
    """``benchmarks/contracts.py --check``: every shipped file measured again, on this CPU, has
    the same radius, memory and input layer, and its fidelity within 1 dB (or broken both times)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "benchmarks/contracts.py", "--check"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _records(out: Path) -> dict[str, dict[str, object]]:
    lines = state_path(out.resolve()).read_text().splitlines()
    return {r["target"]: r for r in map(json.loads, lines)}


def test_a_forged_record_with_real_hashes_skips_and_overwrites_nothing_outside(
    tmp_path: Path, tiny_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records carrying the real recipe of this run's inputs (their true SHA-256 inside) and
    the true bytes of files outside the output folder, claimed by a path that leaves it (``..``,
    absolute, a link to a file or a folder outside) or for an input not in this run: with
    ``--skip-existing`` every file is upscaled, every output lands inside the output folder and
    no file outside changes."""
    monkeypatch.setenv("UPSCALE_STATE_DIR", str(tmp_path / "state"))
    _png(tmp_path / "in" / "a.png", seed=1)
    _png(tmp_path / "in" / "sub" / "b.png", seed=2)
    _png(tmp_path / "other" / "c.png", seed=3)  # an input of another run
    first = _invoke(tmp_path / "in", tmp_path / "other", "-o", tmp_path / "first", "-m", tiny_x2)
    assert first.exit_code == 0, first.output
    real = _records(tmp_path / "first")  # the true recipes: model, options, input SHA-256
    victim = _png(tmp_path / "victim" / "a.png", seed=4)
    victims = tmp_path / "victim"
    _png(victims / "b.png", seed=5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").symlink_to(victim)  # an output name that is a link to a file outside
    (out / "sub").symlink_to(victims, target_is_directory=True)  # a folder outside
    user = _png(out / "d.png", seed=6)  # a file in the output folder no input maps to

    def forged(target: str, made_from: str, claims: Path) -> str:
        facts = {"bytes": claims.stat().st_size, "sha256": file_sha256(claims)}
        return json.dumps({**real[made_from], **facts, "target": target})

    lines = [
        forged("../victim/a.png", "a.png", victim),
        forged(str(victim), "a.png", victim),
        forged("a.png", "a.png", victim),
        forged("sub/b.png", "sub/b.png", victims / "b.png"),
        forged("d.png", "c.png", user),  # c.png's real recipe: an input not in this run
    ]
    state = state_path(out.resolve())
    state.write_text("\n".join(lines) + "\n")
    before, mine = file_hashes(victims), file_sha256(user)
    result = _invoke(tmp_path / "in", "-o", out, "-m", tiny_x2, "--skip-existing")
    assert file_hashes(victims) == before and file_sha256(user) == mine
    assert "0 skipped" in result.output, result.output
    # a.png: the link replaced by the output itself; sub/b.png: its folder leads outside, failed
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "b.png: output folder resolves outside the output root" in result.output
    assert not (out / "a.png").is_symlink()
    assert file_sha256(out / "a.png") == file_sha256(tmp_path / "first" / "a.png")
    loaded = RunState(out.resolve())  # the run's own record of a.png now wins over the forged
    assert loaded.written_by_us(out / "a.png") and not loaded.written_by_us(victim)

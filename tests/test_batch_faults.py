"""Killed batches, full disks and awkward trees: nothing lost, every failure said clearly."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.faults import drill_disk, drill_kill, drill_tree
from upscaler.atomic import is_abandoned, temp_path_for


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, tiny_x2: Path) -> None:
    """Drill 5 at CI size: a few kills of the real command, then a --skip-existing rerun."""
    figures = drill_kill.run(tmp_path, tiny_x2, kills=3, files=16, seed=3)
    assert figures["kills_landed"] >= 2
    assert figures["partial_outputs_at_final_paths"] == 0
    assert figures["inputs_modified"] == 0 and figures["inputs_modified_total"] == 0
    assert figures["kills_survived"] == figures["kills_landed"]
    assert figures["final_exit_code"] == 0 and figures["outputs_extra"] == 0
    assert figures["outputs_byte_identical"] == figures["outputs_expected"] == 16
    assert figures["temps_left_after_rerun"] == 0


def _check_disk_full(figures: dict[str, object]) -> None:
    assert figures["exit_code"] == 3 and figures["says_disk_full"] and not figures["aborted"]
    assert figures["outputs_written_before_full"] == figures["earlier_outputs_intact"]
    assert figures["temps_after_full_run"] == 0
    assert figures["rerun_exit_code"] == 0
    assert figures["outputs_byte_identical_after_rerun"] == figures["outputs_expected"]
    assert figures["temps_left_after_rerun"] == 0 and figures["inputs_modified"] == 0


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_disk_full_injected(tmp_path: Path, tiny_x2: Path) -> None:
    figures = drill_disk.run(tmp_path, tiny_x2, files=8, method="injected")
    _check_disk_full(figures)
    assert figures["outputs_written_before_full"] >= 1


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_disk_full_on_a_real_tmpfs(tmp_path: Path, tiny_x2: Path) -> None:
    if not drill_disk.can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    _check_disk_full(drill_disk.run(tmp_path, tiny_x2, files=8, method="tmpfs"))


@pytest.mark.parametrize("case", list(drill_tree.CASES))
def test_awkward_trees(tmp_path: Path, tiny_x2: Path, case: str) -> None:
    """Drill 7: each case is a clear startup or per-file error; nothing lands outside the root."""
    row = drill_tree.CASES[case](tmp_path, tiny_x2)
    if row["ok"] is None:
        pytest.skip(row["skipped"])
    escaped = drill_tree._files_outside(
        tmp_path, [tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"]
    )
    assert row["ok"], row
    assert not escaped


def test_a_killed_namesake_with_our_pid_leaves_no_temp_forever(tmp_path: Path) -> None:
    """A temporary carrying this process's id but older than it belongs to a dead run."""
    old = temp_path_for(tmp_path / "a.png")
    old.write_bytes(b"partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    fresh = temp_path_for(tmp_path / "b.png")
    fresh.write_bytes(b"being written")
    entries = {e.name: e for e in os.scandir(tmp_path)}
    assert is_abandoned(entries[old.name])
    assert not is_abandoned(entries[fresh.name])


def test_a_decoder_bug_fails_one_file_not_the_batch(
    tmp_path: Path, tiny_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception no decoder should raise (injected) still only fails its own file."""
    from upscaler import runner
    from upscaler.engine.load import load_model
    from upscaler.plan import RunOptions, make_plan
    from upscaler.worklist import build_worklist

    drill_kill.make_tree(tmp_path / "in", 5, 2)
    jobs = build_worklist([tmp_path / "in"], tmp_path / "out").jobs
    real_read = runner.read_image

    def flaky_read(path: Path) -> object:
        if Path(path) == jobs[1].source:
            raise KeyError("decoder bug")
        return real_read(path)

    monkeypatch.setattr(runner, "read_image", flaky_read)
    model = load_model(tiny_x2)
    results = runner.Runner(model, make_plan(jobs, model, RunOptions(tmp_path / "out"))).run()
    status = {Path(r.source): (r.status, r.reason) for r in results}
    assert status[jobs[1].source] == (
        "failed",
        "unexpected error decoding: KeyError: 'decoder bug'",
    )
    assert sum(s == "done" for s, _ in status.values()) == 4


def test_a_state_line_cut_by_a_kill_does_not_swallow_the_next(tmp_path: Path) -> None:
    from upscaler.state import RunState

    done = tmp_path / "out" / "a.png"
    done.parent.mkdir()
    done.write_bytes(b"x" * 10)
    state_file = tmp_path / "state.jsonl"
    state_file.write_bytes(b'{"target": "old.png", "by')  # the kill struck here
    RunState(tmp_path / "out", state_file).record(done, "recipe")
    again = RunState(tmp_path / "out", state_file)
    assert set(again.records) == {"a.png"} and again.complete(done, "recipe")

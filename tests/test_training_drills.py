"""Training survives a kill, at test size: the real ``upscale-train fit`` process killed
(SIGKILL) in the middle of a checkpoint save, its newest checkpoint truncated, then resumed in a
fresh process: exactly the uninterrupted run's state. The in-process versions of these checks are
in ``test_training_fit.py``; this adds the process boundary (RNG, data position and
deterministic settings restored by a new interpreter) and a kill timed inside a real save."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.faults import drill_training, train_runs


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_a_run_killed_mid_save_and_truncated_resumes_bit_identical(tmp_path: Path) -> None:
    data = train_runs.make_textures(tmp_path / "data", count=3)
    reference = train_runs.reference_run(tmp_path, data, kills=1)
    f = drill_training.kill_drill(
        tmp_path, data, reference, kills=1, truncate_every=1, seed=1, window=0.5
    )
    assert f["runs_failed"] == 0, f["first_failure"]
    assert f["kills_landed_in_save"] == f["kills_survived"] == 1
    assert f["unloadable_latest_checkpoints"] == f["fallback_needed_after_kill"] == 0
    assert f["checkpoints_after_kills_max_abs_diff_vs_reference"] == 0
    assert f["truncations"] == f["fallbacks_with_warning"] == 1
    assert f["final_exit_code"] == 0 and f["final_step"] == f["max_steps"]
    assert f["resumed_vs_uninterrupted_max_abs_weight_diff"] == 0
    assert f["resumed_vs_uninterrupted_full_state_identical"]
    assert f["unloadable_checkpoints_after_final_run"] == f["temps_left_after_final_run"] == 0

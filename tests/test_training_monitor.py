"""Watching a run: the progress line, metrics file and health warnings."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from training.monitor import HEALTH_PATIENCE, Health, MetricsLog, Progress


def test_progress_line_shows_rates_share_waiting_and_eta() -> None:
    stream = io.StringIO()
    progress = Progress(100, 10, 16, enabled=True, stream=stream)
    progress.start_time -= 10.0  # 10 s ago
    progress.data_wait = 2.5
    progress.update(30, {"pixel": 0.0123}, force=True)
    line = stream.getvalue()
    assert line.startswith("\r30/100 ")
    assert "2.00 it/s" in line and "32.0 img/s" in line and "data 25%" in line
    assert "ETA 0:35" in line and "pixel=0.0123" in line
    progress.newline()
    progress.newline()  # only one line break per drawn status line
    assert stream.getvalue().endswith(" \n") and not stream.getvalue().endswith("\n\n")
    quiet = io.StringIO()
    Progress(100, 0, 16, enabled=False, stream=quiet).update(5, {}, force=True)
    assert quiet.getvalue() == ""


def test_metrics_are_json_lines(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "run", enabled=True)
    log.write("train", 5, {"loss_pixel": 0.5})
    log.write("val", 5, {"psnr_y": 30.0})
    log.close()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", 5), ("val", 5)]
    assert records[1]["psnr_y"] == 30.0


def test_health_warns_once_when_d_wins_outright_for_a_while() -> None:
    health = Health("nonsaturating")
    winning = {"d_real": 8.0, "d_fake": -8.0}
    warnings = [health.check(winning) for _ in range(HEALTH_PATIENCE + 2)]
    assert [len(w) for w in warnings] == [0] * (HEALTH_PATIENCE - 1) + [1, 0, 0]
    check, message = warnings[HEALTH_PATIENCE - 1][0]
    assert check == "d_wins" and "discriminator wins outright" in message
    assert health.check({"d_real": 0.5, "d_fake": -0.5}) == []


@pytest.mark.parametrize(
    ("kind", "values", "fires"),
    [
        # The same logits mean different things for different losses.
        ("lsgan", {"d_real": 0.98, "d_fake": 0.03}, "d_wins"),  # targets 1 and 0 reached
        ("nonsaturating", {"d_real": 0.98, "d_fake": 0.03}, None),  # sigmoid 0.73 vs 0.51
        ("hinge", {"d_real": 3.0, "d_fake": -3.0}, "d_wins"),  # both margins met twice over
        ("ragan", {"d_real": 3.0, "d_fake": -3.0}, None),
        ("nonsaturating", {"d_real": 0.0, "d_fake": 30.0}, "g_fools_d"),  # a frozen D exploited
        ("wgan-gp", {"d_real": 0.0, "d_fake": 30.0}, None),  # a critic's scale is its own
        ("wgan-gp", {"d_real": 2e3, "d_fake": 1e3}, "logits"),
        ("wgan", {"d_real": 40.0, "d_fake": -40.0}, None),
        ("", {"out_of_range": 0.3}, "out_of_range"),
        ("", {"grad_norm_g": 1e-18}, "g_gradient"),
        ("", {"grad_adv": 1e-18}, "adversarial_gradient"),
        ("", {"grad_norm_g": 0.3, "grad_adv": 0.01, "out_of_range": 0.001}, None),
    ],
)
def test_health_thresholds_follow_the_loss(kind: str, values: dict, fires: str | None) -> None:
    health = Health(kind)
    found = [health.check(values) for _ in range(HEALTH_PATIENCE)][-1]
    assert {check for check, _ in found} == ({fires} if fires else set())


def test_health_warns_when_outputs_lose_diversity() -> None:
    health = Health()
    out = [health.check({"diversity": 0.05}) for _ in range(HEALTH_PATIENCE)]
    assert "mode collapse" in out[-1][0][1]
    assert Health().check({"diversity": 0.9}) == []

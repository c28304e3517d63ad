"""FID and KID: TF-GAN's formulas checked against independent computations, the hub-cache error,
and the plumbing through validation and eval on a *random* Inception (never reported as FID)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from training_helpers import tiny_overrides, write_texture_tree

import training.trainer as trainer_module
from training.cli import main
from training.distances import (
    INCEPTION_FILE,
    InceptionFeatures,
    frechet_distance,
    kernel_distance,
)
from training.evaluate import evaluate


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    fixed = torch.Generator().manual_seed(99)  # one distribution: correlated dimensions
    mix = torch.randn(d, d, generator=fixed, dtype=torch.float64) / math.sqrt(d)
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix) * scale + shift


def test_frechet_distance_matches_the_matrix_square_root_formula() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    real, fake = _gaussian(300, 12, 0), _gaussian(250, 12, 1, shift=0.3, scale=1.4)
    mu_r, mu_f = real.mean(0).numpy(), fake.mean(0).numpy()
    cov_r, cov_f = np.cov(real.numpy().T), np.cov(fake.numpy().T)
    root = linalg.sqrtm(cov_r @ cov_f).real  # as pytorch-fid and TF-GAN's docs write it
    expected = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * root)
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-8)
    shifted = _gaussian(300, 12, 0, shift=0.5)  # the same points moved: the mean term only
    assert frechet_distance(real, shifted) == pytest.approx(12 * 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="need two"):
        frechet_distance(real, fake[:, :5])


def test_kernel_distance_is_the_unbiased_mmd_of_the_cubic_kernel_over_blocks() -> None:
    real, fake = _gaussian(40, 6, 2), _gaussian(30, 6, 3, shift=0.2)

    def kernel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a @ b / 6 + 1) ** 3)

    def mmd(r: torch.Tensor, f: torch.Tensor) -> float:  # the textbook double sums
        m, n = len(r), len(f)
        rr = sum(kernel(r[i], r[j]) for i in range(m) for j in range(m) if i != j)
        ff = sum(kernel(f[i], f[j]) for i in range(n) for j in range(n) if i != j)
        rf = sum(kernel(r[i], f[j]) for i in range(m) for j in range(n))
        return rr / (m * (m - 1)) + ff / (n * (n - 1)) - 2 * rf / (m * n)

    value, std = kernel_distance(real, fake)
    assert value == pytest.approx(mmd(real, fake), rel=1e-9) and math.isnan(std)  # one block
    same = kernel_distance(_gaussian(2500, 6, 4), _gaussian(2400, 6, 5))  # 3 blocks of <= 1024
    moved = kernel_distance(_gaussian(2500, 6, 4), _gaussian(2400, 6, 5, shift=0.5))
    assert abs(same[0]) < 3 * same[1] and moved[0] > 10 * moved[1] > 0


def test_missing_inception_weights_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = str(tmp_path / "hub" / "checkpoints" / INCEPTION_FILE)
    with pytest.raises(FileNotFoundError, match=f"FID/KID needs .* {expected} is missing"):
        InceptionFeatures()
    val = write_texture_tree(tmp_path / "val", size=32, count=2)
    from helpers import write_compact

    model = write_compact(tmp_path / "m.safetensors")
    result = CliRunner().invoke(main, ["eval", str(model), str(val), "--fid"])
    assert result.exit_code == 2 and expected in result.output
    fit = CliRunner().invoke(
        main,
        ["fit", "compact-x4-psnr", "-q"]
        + [
            a
            for v in [*tiny_overrides("compact-x4-psnr", tmp_path, val, val), "val.fid=true"]
            for a in ("--set", v)
        ],  # fmt: skip
    )
    assert fit.exit_code == 2 and expected in fit.output


@pytest.fixture(scope="module")
def random_inception() -> InceptionFeatures:
    features = InceptionFeatures(pretrained=False, size=80)
    assert features.pretrained is False
    return features


def test_eval_reports_distances_under_names_that_say_the_backbone_is_random(
    tmp_path: Path, random_inception: InceptionFeatures
) -> None:
    from helpers import write_compact

    val = write_texture_tree(tmp_path / "val", size=32, count=3)
    model = write_compact(tmp_path / "m.safetensors")
    metrics = evaluate(model, val, inception=random_inception)
    assert "fid" not in metrics and "kid" not in metrics
    assert metrics["fid_random"] > 0 and math.isfinite(metrics["kid_random"])
    for values in metrics["baselines"].values():
        assert "fid" not in values and values["fid_random"] > 0
    assert metrics["fid_random"] != metrics["baselines"]["bicubic"]["fid_random"]


def test_validation_logs_distances_with_a_random_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_inception: InceptionFeatures
) -> None:
    monkeypatch.setattr(trainer_module, "InceptionFeatures", lambda: random_inception)
    folders = write_texture_tree(tmp_path / "train"), write_texture_tree(tmp_path / "val", 32, 3)
    values = [*tiny_overrides("compact-x4-psnr", tmp_path, *folders), "val.fid=true"]
    args = ["fit", "compact-x4-psnr", "-q"] + [a for v in values for a in ("--set", v)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "runs" / "compact-x4-psnr" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    val = [r for r in records if r["kind"] == "val"]
    baseline = next(r for r in records if r["kind"] == "baseline")
    assert all("fid_random" in r and "fid" not in r for r in val)
    assert baseline["bicubic_fid_random"] > 0
    with pytest.raises(Exception, match="run.best_metric fid needs val.fid = true"):
        from training.config import load_config

        load_config("compact-x4-psnr", ["run.best_metric=fid"])

"""The batched degradation pass (kornia filters, counter-based noise, colour) that runs on the
training device, and its split with the loader's workers (codec samples stay there)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from training_helpers import write_texture_tree

from training.config import DataConfig, DegradeConfig
from training.data import TrainSet, make_loader
from training.degradations import blur, blur_kernels, colour_jitter, hashed_normal
from training.recipe import finish_batch, jitter_colours, needs_cpu, sample_params, stack_params

DATA = DataConfig(crop_size=16, batch_size=4, num_workers=0)
# Every kind of step: codecs for some samples, and blur (turned too), noise and colour for all.
FULL = DegradeConfig(
    blur_prob=0.7,
    blur_aniso_prob=0.5,
    noise_prob=0.5,
    jpeg_prob=0.2,
    bc_prob=0.3,
    palette_prob=0.1,
    colour_prob=0.6,
)


def _batches(root: Path, in_loader: bool, count: int = 4) -> list[dict]:
    dataset = TrainSet((str(root),), DATA, FULL, scale=4, seed=3, degrade_in_loader=in_loader)
    loader = make_loader(
        dataset, 4, seed=3, start=0, rank=0, world=1, num_workers=0, pin_memory=False
    )
    return list(itertools.islice(iter(loader), count))


def test_trainer_side_batches_equal_loader_side_ones(tmp_path: Path) -> None:
    root = write_texture_tree(tmp_path / "train")
    device = torch.device("cpu")
    loader_side, trainer_side = _batches(root, True), _batches(root, False)
    left_for_trainer = 0
    for whole, split in zip(loader_side, trainer_side, strict=True):
        assert bool(whole["ready"].all())
        codec = needs_cpu(split["params"], split["normal"])
        assert torch.equal(split["ready"], codec)  # only codec samples are made in workers
        left_for_trainer += int((~codec).sum())
        lq_a, gt_a = finish_batch(whole, 4, device)
        lq_b, gt_b = finish_batch(split, 4, device)
        assert torch.equal(gt_a, gt_b) and torch.equal(lq_a, lq_b)
    assert left_for_trainer >= 4  # the batched pass had work to do


def test_hashed_noise_is_a_seeded_standard_normal_field() -> None:
    a = hashed_normal(12345, (3, 64, 64), torch.device("cpu"))
    assert torch.equal(a, hashed_normal(12345, (3, 64, 64), torch.device("cpu")))
    b = hashed_normal(12346, (3, 64, 64), torch.device("cpu"))
    assert abs(float(a.mean())) < 0.03 and abs(float(a.std()) - 1) < 0.03
    assert abs(float((a * b).mean())) < 0.03  # neighbouring seeds are unrelated
    big = hashed_normal(2**61 + 7, (4096,), torch.device("cpu"))
    assert torch.isfinite(big).all() and abs(float(big.std()) - 1) < 0.05
    shifted = a.flatten()[1:], a.flatten()[:-1]
    assert abs(float((shifted[0] * shifted[1]).mean())) < 0.03  # no pattern between texels


@pytest.mark.parametrize("angle", [0.0, math.pi / 2, math.pi / 4])
def test_blur_kernels_are_normalised_and_elongated_along_their_angle(angle: float) -> None:
    kernel = blur_kernels(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([angle]), 8)[0]
    assert kernel.shape == (17, 17) and float(kernel.sum()) == pytest.approx(1.0)
    taps = torch.arange(-8, 9, dtype=torch.float32)
    y, x = torch.meshgrid(taps, taps, indexing="ij")
    along = math.cos(angle) * x + math.sin(angle) * y
    across = -math.sin(angle) * x + math.cos(angle) * y
    assert float((kernel * along**2).sum()) == pytest.approx(4.0, rel=0.02)  # sigma_x^2
    assert float((kernel * across**2).sum()) == pytest.approx(1.0, rel=0.02)


def test_isotropic_blur_is_the_separable_gaussian() -> None:
    impulse = torch.zeros(1, 1, 15, 13)
    impulse[0, 0, 7, 6] = 1
    out = blur(impulse, torch.tensor([1.2]))[0, 0]
    taps = torch.exp(-0.5 * (torch.arange(-4, 5, dtype=torch.float32) / 1.2) ** 2)
    taps = taps / taps.sum()
    assert torch.allclose(out[3:12, 2:11], taps[:, None] * taps[None, :], atol=1e-6)


def test_colour_jitter_changes_colour_and_leaves_normals_alone() -> None:
    x = torch.rand(3, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    one, zero = torch.ones(3), torch.zeros(3)
    brighter = colour_jitter(x * 0.5, zero + 0.1, one, one, zero)
    assert torch.allclose(brighter, x * 0.5 + 0.1, atol=1e-6)
    gray = colour_jitter(x, zero, one, zero, zero)
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-5)  # saturation 0: no colour left
    turned = colour_jitter(x, zero, one, one, zero + 1 / 3)  # a third of the circle: R->G->B
    assert torch.allclose(turned[:, 1], x[:, 0], atol=2e-2)
    params = stack_params(
        [
            sample_params(DegradeConfig(colour_prob=1.0), torch.Generator().manual_seed(s), 4)
            for s in range(3)
        ]  # fmt: skip
    )
    normal = torch.tensor([False, True, False])
    out = jitter_colours(x, params, normal)
    assert torch.equal(out[1], x[1]) and not torch.equal(out[0], x[0])
    assert torch.equal(out[0], (out[0] * 255).round() / 255)  # the 8-bit grid of a GT file

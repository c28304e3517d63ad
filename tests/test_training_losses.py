"""Every loss: known values on tiny inputs, finite gradients, and shape checks.

Perceptual losses run on randomly initialised backbones here (no ImageNet weights in CI): the
tests check the plumbing (shapes, gradients, the missing-weights error), not perceptual quality.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training import losses, perceptual
from training.config import GAN_TYPES
from training.discriminator import PatchDiscriminator, UNetDiscriminator


def _images(
    seed: int = 0, shape: tuple[int, ...] = (2, 3, 17, 11)
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def _grad_is_finite_and_nonzero(loss: torch.Tensor, x: torch.Tensor) -> None:
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_l1_and_charbonnier_known_values() -> None:
    a = torch.zeros(1, 3, 5, 7)
    b = torch.full((1, 3, 5, 7), 0.5)
    assert losses.l1_loss(a, b).item() == pytest.approx(0.5)
    assert losses.charbonnier_loss(a, a, eps=1e-3).item() == pytest.approx(1e-3)
    assert losses.charbonnier_loss(a, b, eps=0).item() == pytest.approx(0.5)
    assert losses.CharbonnierLoss(eps=0.1)(a, a).item() == pytest.approx(0.1)
    assert losses.L1Loss()(a, b).item() == pytest.approx(0.5)


@pytest.mark.parametrize("fn", [losses.l1_loss, losses.charbonnier_loss])
def test_pixel_losses_have_finite_gradients_even_at_zero_difference(fn) -> None:  # noqa: ANN001
    pred, target = _images()
    pred.requires_grad_(True)
    _grad_is_finite_and_nonzero(fn(pred, target), pred)
    same = target.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(losses.charbonnier_loss(same, target), same)
    assert torch.isfinite(grad).all()  # Charbonnier is smooth where L1 has a kink


def test_shape_mismatch_is_refused_with_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\) vs \(1, 3, 4, 5\)"):
        losses.l1_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_colour_consistency_is_zero_for_an_exact_upscale_and_sees_a_colour_shift() -> None:
    lq, _ = _images(shape=(2, 3, 9, 7))
    sr = torch.nn.functional.interpolate(lq, scale_factor=4, mode="nearest")
    assert losses.colour_consistency_loss(sr, lq, 4).item() == pytest.approx(0, abs=1e-6)
    shifted = sr.clone()
    shifted[:, 0] += 0.1  # a red cast
    assert losses.colour_consistency_loss(shifted, lq, 4).item() == pytest.approx(0.1 / 3, rel=1e-4)
    sr.requires_grad_(True)
    _grad_is_finite_and_nonzero(losses.ColourConsistencyLoss(4)(sr * 0.9, lq), sr)
    with pytest.raises(ValueError, match="x4"):
        losses.colour_consistency_loss(sr[..., :-1], lq, 4)


def test_feature_matching_is_mean_l1_over_layers_and_real_is_constant() -> None:
    fake = [
        torch.zeros(1, 2, 3, 3, requires_grad=True),
        torch.zeros(1, 4, 2, 2, requires_grad=True),
    ]
    real = [
        torch.ones(1, 2, 3, 3, requires_grad=True),
        torch.full((1, 4, 2, 2), 3.0, requires_grad=True),
    ]
    loss = losses.FeatureMatchingLoss()(fake, real)
    assert loss.item() == pytest.approx((1 + 3) / 2)
    loss.backward()
    assert fake[0].grad is not None and real[0].grad is None


LOGITS_ZERO = torch.zeros(4, 1, 3, 3)
LN2 = math.log(2)


@pytest.mark.parametrize(
    ("kind", "d_value", "g_value"),
    [
        ("minimax", 2 * LN2, -LN2),
        ("nonsaturating", 2 * LN2, LN2),
        ("wgan", 0.0, 0.0),
        ("wgan-gp", 0.0, 0.0),
        ("hinge", 2.0, 0.0),
        ("ragan", 2 * LN2, 2 * LN2),
        ("lsgan", 0.5, 0.5),
    ],
)
def test_gan_losses_at_zero_logits(kind: str, d_value: float, g_value: float) -> None:
    assert losses.discriminator_loss(kind, LOGITS_ZERO, LOGITS_ZERO).item() == pytest.approx(
        d_value
    )
    assert losses.generator_loss(kind, LOGITS_ZERO, LOGITS_ZERO).item() == pytest.approx(g_value)


def test_gan_losses_known_values_away_from_zero() -> None:
    real, fake = torch.full((2, 1), 2.0), torch.full((2, 1), -1.0)
    assert losses.discriminator_loss("hinge", real, fake).item() == pytest.approx(0.0)
    assert losses.discriminator_loss("wgan", real, fake).item() == pytest.approx(-3.0)
    sp = torch.nn.functional.softplus
    assert losses.discriminator_loss("nonsaturating", real, fake).item() == pytest.approx(
        (sp(torch.tensor(-2.0)) + sp(torch.tensor(-1.0))).item()
    )
    # RaGAN compares against the other side's mean: equal logits mean "cannot tell".
    assert losses.generator_loss("ragan", fake, fake).item() == pytest.approx(2 * LN2)


@pytest.mark.parametrize("kind", GAN_TYPES)
def test_every_gan_loss_gives_finite_gradients_to_both_sides(kind: str) -> None:
    real, fake = _images(shape=(3, 1, 4, 4))
    real.requires_grad_(True)
    fake.requires_grad_(True)
    _grad_is_finite_and_nonzero(losses.GANLoss(kind)(real, fake, for_discriminator=True), fake)
    _grad_is_finite_and_nonzero(losses.GANLoss(kind)(real, fake, for_discriminator=False), fake)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        losses.GANLoss("relativistic")


def test_gradient_penalty_is_zero_for_a_unit_slope_critic_and_trains_d() -> None:
    real, fake = _images(shape=(2, 1, 1, 1))
    mixed = losses.mix_real_fake(real, fake, torch.Generator().manual_seed(0))
    weight = torch.ones(1, requires_grad=True)
    logits = (mixed * weight).sum(dim=(1, 2, 3))  # gradient wrt the input has norm |weight| = 1
    assert losses.gradient_penalty(logits, mixed).item() == pytest.approx(0.0)
    d = PatchDiscriminator(3, 4, 2)
    real, fake = _images(shape=(2, 3, 32, 32))
    mixed = losses.mix_real_fake(real, fake)
    penalty = losses.gradient_penalty(d(mixed)[0], mixed)
    penalty.backward()
    weights = [p for p in d.parameters() if p.ndim > 1]  # biases do not change dD/dx
    assert penalty.item() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in weights)


@pytest.mark.parametrize("arch", ["patchgan", "unet"])
def test_weight_clipping_bounds_the_weights_d_computes_with(arch: str) -> None:
    """Under spectral norm the forward uses original / sigma: clamping ``original`` (as before)
    left those effective weights about 7x above the clip; now every one is within it."""
    from torch.nn.utils import parametrize

    from training.config import DiscriminatorConfig
    from training.discriminator import build_discriminator

    config = DiscriminatorConfig(arch=arch, num_features=8)
    d = build_discriminator(config, clip_value=0.01)
    optimiser = torch.optim.Adam(d.parameters(), lr=0.05)
    for _ in range(3):  # D steps push weights out; each is followed by the clip
        real, fake = _images(shape=(2, 3, 32, 32))
        optimiser.zero_grad()
        losses.discriminator_loss("wgan", d(real)[0], d(fake)[0]).backward()
        optimiser.step()
        losses.clip_weights_(d, 0.01)
    effective = []
    for module in d.modules():
        if isinstance(module, torch.nn.Conv2d):
            effective.append(module.weight.detach())  # what the forward uses
            if module.bias is not None:
                effective.append(module.bias.detach())
    assert max(w.abs().max().item() for w in effective) <= 0.01 + 1e-7
    sn = [m for m in d.modules() if parametrize.is_parametrized(m, "weight")]
    assert sn and all(len(m.parametrizations.weight) == 2 for m in sn)  # SN, then the clamp
    assert any(m.parametrizations.weight.original.abs().max() > 0.01 for m in sn)
    plain = build_discriminator(config)  # the state dicts stay interchangeable
    assert d.state_dict().keys() == plain.state_dict().keys()


def test_gradient_penalty_does_not_grow_with_the_number_of_patches() -> None:
    """Patch logits that each repeat one linear critic: one image score, however many patches."""
    real, fake = _images(shape=(3, 3, 8, 8))
    weight = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    values = []
    for patches in (1, 16):
        mixed = losses.mix_real_fake(real, fake, torch.Generator().manual_seed(0))
        score = (mixed * weight).sum(dim=(1, 2, 3))
        logits = score[:, None, None, None].expand(-1, 1, patches, 1)
        values.append(losses.gradient_penalty(logits, mixed).item())
        values.append(losses.r1_penalty(logits, mixed).item())
    assert values[0] > 0 and values[:2] == pytest.approx(values[2:])
    assert values[1] == pytest.approx(weight.pow(2).sum().item(), rel=1e-5)  # ||grad c||^2


def test_r1_trains_d_towards_a_flat_data_surface() -> None:
    d = PatchDiscriminator(3, 4, 2)
    real = _images(shape=(2, 3, 32, 32))[0].requires_grad_(True)
    penalty = losses.r1_penalty(d(real)[0], real)
    penalty.backward()
    assert penalty.item() > 0
    assert all(p.grad is not None for p in d.parameters() if p.ndim > 1)


def test_contracts_refuse_an_unconstrained_critic_and_warn_about_odd_mixes() -> None:
    from training.config import ConfigError, load_config
    from training.contracts import CONTRACTS, cautions

    gan = ["loss.gan_weight=0.1", "discriminator.spectral_norm=false"]
    with pytest.raises(ConfigError, match="wgan needs a Lipschitz constraint on D"):
        load_config("compact-x4-gan", [*gan, "loss.gan_type=wgan"])
    with pytest.raises(ConfigError, match="wgan-gp needs loss.gp_weight > 0"):
        load_config("compact-x4-gan", [*gan, "loss.gan_type='wgan-gp'", "loss.gp_weight=0"])
    for ok in ("loss.clip_value=0.01", "discriminator.spectral_norm=true"):
        assert load_config("compact-x4-gan", [*gan, "loss.gan_type=wgan", ok])
    assert set(CONTRACTS) == set(GAN_TYPES) and CONTRACTS["wgan-gp"].penalty == "gp"
    quiet = {"clip_value": 0.0, "spectral_norm": True, "r1_weight": 0.0}
    assert cautions("nonsaturating", **quiet) == []
    assert "nothing constrains D" in cautions("hinge", **{**quiet, "spectral_norm": False})[0]
    assert cautions("hinge", **{**quiet, "spectral_norm": False, "r1_weight": 10.0}) == []
    assert "does not need" in cautions("lsgan", **{**quiet, "clip_value": 0.01})[0]
    assert "vanishes" in cautions("minimax", **quiet)[0]


@pytest.mark.parametrize(
    "make", [lambda: PatchDiscriminator(3, 8, 2), lambda: UNetDiscriminator(3, 8)]
)
def test_discriminators_expose_features_and_take_odd_sizes(make) -> None:  # noqa: ANN001
    d = make()
    logits, features = d(torch.rand(2, 3, 33, 27))
    assert logits.shape[0] == 2 and logits.shape[1] == 1 and len(features) >= 3
    assert all(f.shape[0] == 2 for f in features)
    fake = torch.rand(2, 3, 33, 27, requires_grad=True)
    real = torch.rand(2, 3, 33, 27)
    fm = losses.feature_matching_loss(d(fake)[1], d(real)[1])
    _grad_is_finite_and_nonzero(fm, fake)


def test_vgg_perceptual_on_random_backbone_has_finite_gradients() -> None:
    loss = perceptual.VGGPerceptualLoss(pretrained=False)  # random weights: plumbing only
    assert loss.features.pretrained is False
    pred, target = _images(shape=(1, 3, 32, 32))
    pred.requires_grad_(True)
    value = loss(pred, target)
    assert value.item() > 0
    _grad_is_finite_and_nonzero(value, pred)
    assert loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    # The kept maps are pre-activation: they have negative values a ReLU output never has.
    assert min(f.min().item() for f in loss.features(target).values()) < 0


def test_lpips_on_random_trunk_has_finite_gradients() -> None:
    loss = perceptual.LPIPSLoss(
        pretrained=False
    )  # linear heads from the lpips package, trunk random
    assert loss.model.pretrained is False
    pred, target = _images(shape=(2, 3, 32, 32))
    pred.requires_grad_(True)
    value = loss(pred, target)
    assert value.item() > 0
    _grad_is_finite_and_nonzero(value, pred)
    assert loss(target, target).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: perceptual.VGGFeatures(), perceptual.VGG19_FILE),
        (lambda: perceptual.build_lpips(), perceptual.ALEXNET_FILE),
    ],
)
def test_missing_pretrained_weights_name_the_file_and_folder(
    build,
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(perceptual.PretrainedWeightsMissingError) as info:
        build()
    message = str(info.value)
    assert name in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "download.pytorch.org" in message


def test_pretrained_vgg_loads_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.manual_seed(3)
    reference = make_layers(cfgs["E"])  # torchvision's VGG19 ``features``, as in the real file
    state = {f"features.{k}": v for k, v in reference.state_dict().items()}
    torch.save(state, tmp_path / "checkpoints" / perceptual.VGG19_FILE)
    features = perceptual.VGGFeatures()
    assert features.pretrained is True
    assert torch.equal(features.layers[34].weight, reference[34].weight)


def test_step_loss_sees_a_texel_grid_but_not_where_detail_falls() -> None:
    from training.losses import step_loss

    torch.manual_seed(0)
    gt = torch.rand(2, 3, 64, 64)
    blocky = F.interpolate(F.avg_pool2d(gt, 4), scale_factor=4, mode="nearest")  # a texel grid
    shifted = torch.roll(gt, shifts=(5, 7), dims=(2, 3))  # same texture, detail elsewhere
    assert float(step_loss(gt, gt, 16, 32)) == 0.0
    assert float(step_loss(shifted, gt, 16, 32)) < 0.2 * float(step_loss(blocky, gt, 16, 32))
    pred = blocky.clone().requires_grad_(True)
    step_loss(pred, gt, 16, 32).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="blocks of 24"):
        step_loss(gt, gt, 16, 24)


def test_checker_loss_sees_an_added_screen_door_but_not_blur() -> None:
    """One-sided: a pixel checker above the truth's costs, a smoother output does not."""
    torch.manual_seed(0)
    truth = F.interpolate(torch.rand(2, 3, 8, 8), size=(32, 32), mode="bicubic").clamp(0, 1)
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    screen = ((y + x) % 2).float().mul(2).sub(1) * 0.02
    assert float(losses.checker_loss(truth, truth, 16)) == 0
    assert float(losses.checker_loss(truth + screen, truth, 16)) > 0.01
    blurred = F.avg_pool2d(F.pad(truth, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert float(losses.checker_loss(blurred, truth, 16)) == 0
    with pytest.raises(ValueError, match="blocks of 16"):
        losses.checker_loss(truth[..., :30, :30], truth[..., :30, :30], 16)


def test_sr_features_of_a_span_file_are_frozen_and_give_gradients(tmp_path: Path) -> None:
    """The SR-network perceptual term reads a SPAN file (here a random one), stays frozen and in
    eval mode when the trainer calls ``train()``, and passes gradients to the prediction."""
    from safetensors.torch import save_file

    from training.archs import settle
    from upscaler.models import SpanConfig, build_generator

    path = tmp_path / "span.safetensors"
    torch.manual_seed(0)
    save_file(settle(build_generator("span", SpanConfig())).state_dict(), str(path))
    features = perceptual.SRFeatures(path, blocks=2)
    features.train()
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    target = torch.rand(2, 3, 24, 24)
    pred = (target + 0.05 * torch.randn_like(target)).requires_grad_(True)
    loss = perceptual.sr_feature_loss(pred, target, features)
    loss.backward()
    assert loss.item() > 0 and pred.grad is not None and torch.isfinite(pred.grad).all()
    assert perceptual.sr_feature_loss(target, target, features).item() == 0
    with pytest.raises(ValueError, match="1..6"):
        perceptual.SRFeatures(path, blocks=7)


def test_lattice_loss_sees_a_diagonal_hatch_but_not_blur() -> None:
    """A hatch at the same phase of every 4x4 texel (lines along x + y, period 4) costs in the
    lattice loss and multiplies the lattice energy; blur and the truth cost nothing."""
    from training.metrics import lattice_energy

    torch.manual_seed(0)
    truth = F.interpolate(torch.rand(2, 3, 8, 8), size=(32, 32), mode="bicubic").clamp(0, 1)
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    hatch = torch.cos((y + x).float() * torch.pi / 2) * 0.02  # 1, 0, -1, 0 along the diagonal
    assert float(losses.lattice_loss(truth, truth, 4, 16)) == 0
    assert float(losses.lattice_loss(truth + hatch, truth, 4, 16)) > 0.005
    blurred = F.avg_pool2d(F.pad(truth, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert float(losses.lattice_loss(blurred, truth, 4, 16)) == 0
    energy = lattice_energy(truth + hatch, 4, 16) / lattice_energy(truth, 4, 16)
    assert bool((energy > 10).all())
    with pytest.raises(ValueError, match="blocks of 16"):
        losses.lattice_loss(truth[..., :30, :30], truth[..., :30, :30], 4, 16)


def test_low_pass_loss_sees_colour_not_detail_that_averages_out() -> None:
    """Detail that averages to zero over each input texel costs nothing at the input's
    resolution; a colour shift does."""
    torch.manual_seed(1)
    truth = torch.rand(2, 3, 20, 28)
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(10, 14) * 0.1
    assert losses.low_pass_loss(truth + checker, truth, 4).item() < 1e-6
    assert losses.low_pass_loss(truth + 0.05, truth, 4).item() == pytest.approx(0.05, abs=1e-5)
    assert losses.l1_loss(truth + checker, truth).item() == pytest.approx(0.1, abs=1e-5)
    with pytest.raises(ValueError, match="cells of 4"):
        losses.low_pass_loss(truth[..., :18, :], truth[..., :18, :], 4)


def test_detail_loss_copies_a_teachers_detail_not_its_colours() -> None:
    torch.manual_seed(2)
    base = torch.rand(1, 3, 16, 24)
    detail = 0.1 * torch.randn(1, 3, 16, 24)
    teacher = base + detail
    assert losses.detail_loss(base + detail + 0.2, teacher, 4).item() < 1e-6  # colour not taught
    assert losses.detail_loss(base, teacher, 4).item() > 0.03


def test_a_teacher_model_is_frozen_checked_for_scale_and_teaches(tmp_path: Path) -> None:
    """A SPAN file as the teacher of ``loss.detail_weight``: frozen, in eval mode when the trainer
    calls ``train()``, refused at another scale; its detail loss passes gradients."""
    from safetensors.torch import save_file

    from training.archs import settle
    from upscaler.models import SpanConfig, build_generator

    path = tmp_path / "teacher.safetensors"
    torch.manual_seed(0)
    save_file(settle(build_generator("span", SpanConfig(scale=2))).state_dict(), str(path))
    teacher = perceptual.Teacher(path, 2)
    teacher.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    lq = torch.rand(2, 3, 12, 12)
    taught = teacher(lq)
    assert taught.shape == (2, 3, 24, 24) and not taught.requires_grad
    pred = torch.rand(2, 3, 24, 24, requires_grad=True)
    losses.detail_loss(pred, taught, 2).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="x2, the run x4"):
        perceptual.Teacher(path, 4)
    halved = perceptual.Teacher(path, 1)(lq)  # a x2 teacher of a x1 run: its output box-averaged
    assert halved.shape == (2, 3, 12, 12)
    assert torch.allclose(halved, torch.nn.functional.avg_pool2d(taught, 2), atol=1e-6)


def test_hostile_inputs_are_full_contrast_and_the_range_loss_sees_only_what_leaves_0_1():
    g = torch.Generator().manual_seed(1)
    x = losses.hostile_inputs(16, 24, g)
    assert x.shape == (16, 3, 24, 24)
    assert set(x.unique().tolist()) <= {0.0, 1.0}  # two colours of 0 and 1 per channel
    again = losses.hostile_inputs(16, 24, torch.Generator().manual_seed(1))
    assert torch.equal(x, again)
    steps = (x[..., :, 1:] != x[..., :, :-1]).float().mean()
    assert float(steps) > 0.2  # one-pixel patterns, not flat fields
    inside = torch.rand(2, 3, 8, 8)
    assert float(losses.range_loss(inside)) == 0
    beyond = inside.clone()
    beyond[0, 0, 0, 0] = 3.0
    beyond[1, 2, 7, 7] = -1.0
    assert math.isclose(float(losses.range_loss(beyond)), 3.0 / beyond.numel(), rel_tol=1e-5)

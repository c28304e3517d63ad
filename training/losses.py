"""Losses, each a pure function plus a thin ``nn.Module`` (as kornia pairs them).

Images are ``(B, C, H, W)`` in ``[0, 1]``. Discriminator outputs (``logits``) are any shape; GAN
losses average over every element. Perceptual losses that need pretrained networks live in
``training.perceptual``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .contracts import GAN_TYPES
from .degradations import gaussian_blur


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    _check_pair(pred, target)
    return (pred - target).abs().mean()


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((pred - target)^2 + eps^2)``: L1 with a smooth minimum (no kink at 0)."""
    _check_pair(pred, target)
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def low_pass(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` box-averaged over ``scale x scale`` cells: what the output says at
    the input's resolution. H and W must be multiples of ``scale``."""
    if x.shape[-2] % scale or x.shape[-1] % scale:
        raise ValueError(f"{tuple(x.shape)} is not in cells of {scale}")
    return F.avg_pool2d(x, scale) if scale > 1 else x


def colour_consistency_loss(
    sr: torch.Tensor, lq: torch.Tensor, scale: int, sigma: float = 1.0
) -> torch.Tensor:
    """How far the output's low frequencies drift from the low-res input's colours.

    ``sr`` ``(B, C, H*scale, W*scale)`` is box-averaged down to ``lq``'s size, then both are
    blurred with a Gaussian of ``sigma`` low-res pixels (so noise, JPEG and block artefacts in the
    input do not count) and compared with L1. Guards the colour drift of long GAN runs.
    """
    if (
        sr.shape[-2:] != (lq.shape[-2] * scale, lq.shape[-1] * scale)
        or sr.shape[:2] != lq.shape[:2]
    ):
        raise ValueError(f"sr {tuple(sr.shape)} is not lq {tuple(lq.shape)} x{scale}")
    down = low_pass(sr, scale)
    sigmas = torch.full((sr.shape[0],), float(sigma), device=sr.device)
    return (gaussian_blur(down, sigmas) - gaussian_blur(lq.to(down.dtype), sigmas)).abs().mean()


def high_pass(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``x`` less its ``low_pass`` brought back up bilinearly: the detail finer than the input's
    texels, the part an upscaler has to invent."""
    low = low_pass(x, scale)
    return x - F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)


def low_pass_loss(pred: torch.Tensor, target: torch.Tensor, scale: int) -> torch.Tensor:
    """L1 between the ``low_pass`` of ``pred`` and ``target``: fidelity to the truth at the input's
    resolution that leaves the finer detail free.

    Why: a full-resolution L1 pulls invented detail towards the blurred average of what could be
    there, so a GAN model trained with it goes soft (issue 22: 4xSPANkendata's detail fell from
    0.72 to 0.29 of the truth's). Measured at the input's scale, colours, shading and edges are
    still held to the truth."""
    _check_pair(pred, target)
    return (low_pass(pred, scale) - low_pass(target, scale)).abs().mean()


def detail_loss(pred: torch.Tensor, teacher: torch.Tensor, scale: int) -> torch.Tensor:
    """L1 between the ``high_pass`` of ``pred`` and of a ``teacher``'s output for the same input:
    distillation of the teacher's fine detail only (its colours and shading are not copied)."""
    _check_pair(pred, teacher)
    return (high_pass(pred, scale) - high_pass(teacher, scale)).abs().mean()


def step_statistics(x: torch.Tensor, period: int, window: int) -> torch.Tensor:
    """Local mean |step| between neighbouring pixels at each phase of a ``period``-pixel grid:
    ``(B, 2 * period, H / window, W / window)``, steps across columns then across rows, averaged
    over channels and over ``window x window`` blocks (``window`` a multiple of ``period``; H and
    W multiples of ``window``)."""
    if window % period or x.shape[-2] % window or x.shape[-1] % window:
        raise ValueError(f"{tuple(x.shape)} is not in blocks of {window} (a multiple of {period})")
    dx = F.pad((x[..., :, 1:] - x[..., :, :-1]).abs(), (0, 1)).mean(dim=1, keepdim=True)
    dy = F.pad((x[..., 1:, :] - x[..., :-1, :]).abs(), (0, 0, 0, 1)).mean(dim=1, keepdim=True)
    cols = [F.avg_pool2d(dx[..., p::period], (window, window // period)) for p in range(period)]
    rows = [F.avg_pool2d(dy[..., p::period, :], (window // period, window)) for p in range(period)]
    return torch.cat(cols + rows, dim=1)


def step_loss(pred: torch.Tensor, target: torch.Tensor, period: int, window: int) -> torch.Tensor:
    """L1 between the local step statistics (``step_statistics``) of ``pred`` and ``target``.

    A model trained on L1 alone outputs the average of the plausible images: smooth inside each
    low-res texel with its steps bunched at texel borders, a faint grid of the input's pixels (and
    of 4x4 compression blocks, with ``period`` = 4 x scale). Asking for the truth's step sizes at
    every phase of that grid, block by block, asks for steps inside texels where the truth has
    detail and for no extra step at their borders, without asking where each step falls.
    Measured (x4, 1,200 steps from realesr-animevideov3, 69 validation textures): texel grid
    1.37 -> 1.06, BC1 blocks 1.47 -> 1.10, GMSD 0.0856 -> 0.0871, for 0.65 dB of PSNR-Y.
    """
    _check_pair(pred, target)
    ours, theirs = step_statistics(pred, period, window), step_statistics(target, period, window)
    return (ours - theirs).abs().mean()


def checker_statistics(x: torch.Tensor, window: int) -> torch.Tensor:
    """Local mean |2x2 checker response| (``[[1, -1], [-1, 1]] / 4`` on each channel, averaged
    over channels and ``window x window`` blocks): ``(B, 1, H / window, W / window)``. The
    one-pixel "screen door" a sub-pixel upsampler can lay over a texture, and a colour checker
    on gray, are what it sees; smooth gradients and edges give it nothing."""
    if x.shape[-2] % window or x.shape[-1] % window:
        raise ValueError(f"{tuple(x.shape)} is not in blocks of {window}")
    from .metrics import checker_response

    response = F.pad(checker_response(x).abs(), (0, 1, 0, 1)).mean(dim=1, keepdim=True)
    return F.avg_pool2d(response, window)


def checker_loss(pred: torch.Tensor, target: torch.Tensor, window: int) -> torch.Tensor:
    """How far the local checker energy of ``pred`` exceeds the truth's (one-sided: a model is
    not asked to invent the truth's checker content, only never to add its own), block by block.

    Why: an L1-trained x4 model that cannot place fine detail can still lower its loss with a
    faint pixel checker, and a person sees it at 100% long before a PSNR does (issue 22:
    texture-x4 v2 carried 1.7x the truth's checker energy on validation textures)."""
    _check_pair(pred, target)
    ours, theirs = checker_statistics(pred, window), checker_statistics(target, window)
    return (ours - theirs).clamp(min=0).mean()


def lattice_loss(
    pred: torch.Tensor, target: torch.Tensor, period: int, window: int
) -> torch.Tensor:
    """How far the fine pattern locked to the output's ``period``-pixel lattice
    (``metrics.lattice_pattern``: what stays of the high-passed luma when every cell of a
    window is averaged phase by phase) exceeds the truth's, window by window (one-sided).

    Why: the checker loss sees only the 2x2 "screen door". A SPAN fine-tuned with L1, the step
    loss and the checker loss laid a faint diagonal hatch at the same phase of every input texel
    instead (issue 22: 3.4x the truth's lattice energy, median over validation textures; the
    official SPAN 0.14x), which a person sees on grass and rock at 100%."""
    _check_pair(pred, target)
    if pred.shape[-2] % window or pred.shape[-1] % window or window % period:
        raise ValueError(f"{tuple(pred.shape)} is not in blocks of {window} in cells of {period}")
    from .metrics import lattice_pattern

    ours = lattice_pattern(pred, period, window).abs().mean(dim=(3, 4))
    theirs = lattice_pattern(target, period, window).abs().mean(dim=(3, 4))
    return (ours - theirs).clamp(min=0).mean()


def feature_matching_loss(
    fake_features: list[torch.Tensor], real_features: list[torch.Tensor]
) -> torch.Tensor:
    """Mean over layers of L1 between the discriminator's features of fake and real images.

    Real features are treated as constants. Needs no pretrained network: the discriminator
    learns the features.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError("need the same, non-zero number of fake and real feature maps")
    terms = [
        (f - r.detach()).abs().mean() for f, r in zip(fake_features, real_features, strict=True)
    ]
    return torch.stack(terms).mean()


def _softplus_mean(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x).mean()


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The loss D minimises, from its logits on real and generated images.

    ``minimax``/``nonsaturating``: binary cross-entropy, ``-log D(x) - log(1 - D(G(z)))``;
    ``wgan``/``wgan-gp``: ``E[D(fake)] - E[D(real)]`` (add ``gradient_penalty`` or clip weights);
    ``hinge``: ``E[relu(1 - D(real))] + E[relu(1 + D(fake))]``;
    ``ragan``: relativistic average, each side judged against the other's mean (ESRGAN);
    ``lsgan``: least squares (Mao et al. 2017), ``E[(D(real) - 1)^2]/2 + E[D(fake)^2]/2``.
    What each needs from D (a Lipschitz constraint, a penalty) is in ``training.contracts``.
    """
    if kind in ("minimax", "nonsaturating"):
        return _softplus_mean(-real) + _softplus_mean(fake)
    if kind == "lsgan":
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()
    if kind in ("wgan", "wgan-gp"):
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "ragan":
        return _softplus_mean(-(real - fake.mean())) + _softplus_mean(fake - real.mean())
    raise ValueError(f"unknown GAN loss {kind!r}; known: {', '.join(GAN_TYPES)}")


def generator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The adversarial loss G minimises. ``real`` logits are used by ``ragan`` only.

    ``minimax`` is the original ``log(1 - D(G(z)))``, whose gradient vanishes while D is winning;
    ``nonsaturating`` is the usual fix, ``-log D(G(z))``.
    """
    if kind == "minimax":
        return -_softplus_mean(fake)
    if kind == "nonsaturating":
        return _softplus_mean(-fake)
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake.mean()
    if kind == "lsgan":
        return 0.5 * ((fake - 1) ** 2).mean()
    if kind == "ragan":
        real = real.detach()
        return _softplus_mean(real - fake.mean()) + _softplus_mean(-(fake - real.mean()))
    raise ValueError(f"unknown GAN loss {kind!r}; known: {', '.join(GAN_TYPES)}")


def mix_real_fake(
    real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random per-image blends of real and fake images for ``gradient_penalty``, requiring grad.

    The weights are drawn on CPU from ``generator``, so every device mixes alike."""
    _check_pair(real, fake)
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device, real.dtype)
    return (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)


def critic(logits: torch.Tensor) -> torch.Tensor:
    """One score per image ``(B,)``: the mean of its patch (or pixel) logits, which is what the
    GAN losses average. Penalties on D's input gradient use it, so they do not grow with the
    number of patches: the gradient of the *sum* of a U-Net's H*W pixel logits is about H*W
    times that of one image's score."""
    return logits.reshape(len(logits), -1).mean(dim=1)


def gradient_penalty(logits: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: ``E[(||grad_x c(x)|| - 1)^2]`` at the blends ``mixed`` (from ``mix_real_fake``),
    given D's ``logits`` on them, with ``c`` the per-image ``critic`` score (the mean of the
    patch logits). Keeps the graph, so the penalty trains D."""
    (grad,) = torch.autograd.grad(critic(logits).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ``E[||grad_x c(x)||^2]`` on real images ``real`` (which must
    require grad), ``c`` the per-image ``critic`` score. D's loss adds ``gamma / 2`` times it:
    it keeps D flat on the data, so neither side overshoots near equilibrium."""
    (grad,) = torch.autograd.grad(critic(logits).sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, value: float) -> None:
    """The original WGAN's Lipschitz constraint: every weight D computes with in ``[-c, c]``.

    Plain parameters are clamped in place. A spectrally normalised weight is computed as
    ``original / sigma`` on every forward, so clamping ``original`` leaves the weight D uses
    unbounded (the normalisation undoes it); ``clip_effective_weights`` bounds those inside
    the forward instead, and they are left alone here.
    """
    for name, parameter in module.named_parameters():
        if ".parametrizations." not in f".{name}":
            parameter.clamp_(-value, value)


class ClampWeight(nn.Module):
    """A parametrisation: the weight, clamped to ``[-value, value]``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.clamp(-self.value, self.value)


def clip_effective_weights(module: nn.Module, value: float) -> int:
    """Clamp every parametrised (spectrally normalised) weight of ``module`` after its
    normalisation, so the weight the forward uses stays in ``[-value, value]``; returns how many.
    The state dict is unchanged (the clamp has no state)."""
    from torch.nn.utils import parametrize

    count = 0
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.register_parametrization(child, "weight", ClampWeight(value))
            count += 1
    return count


class L1Loss(nn.Module):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l1_loss(pred, target)


class CharbonnierLoss(nn.Module):
    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return charbonnier_loss(pred, target, self.eps)


class ColourConsistencyLoss(nn.Module):
    def __init__(self, scale: int, sigma: float = 1.0) -> None:
        super().__init__()
        self.scale, self.sigma = scale, sigma

    def forward(self, sr: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        return colour_consistency_loss(sr, lq, self.scale, self.sigma)


class FeatureMatchingLoss(nn.Module):
    def forward(self, fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
        return feature_matching_loss(fake, real)


class GANLoss(nn.Module):
    """``GANLoss(kind)(real_logits, fake_logits, for_discriminator)``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in GAN_TYPES:
            raise ValueError(f"unknown GAN loss {kind!r}; known: {', '.join(GAN_TYPES)}")
        self.kind = kind

    def forward(
        self, real: torch.Tensor, fake: torch.Tensor, for_discriminator: bool
    ) -> torch.Tensor:
        if for_discriminator:
            return discriminator_loss(self.kind, real, fake)
        return generator_loss(self.kind, real, fake)


def pixel_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "l1":
        return l1_loss(pred, target)
    if kind == "charbonnier":
        return charbonnier_loss(pred, target)
    raise ValueError(f"unknown pixel loss {kind!r}; known: l1, charbonnier")


def hostile_inputs(count: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """``(count, 3, side, side)`` low-res inputs no training crop holds but game textures do:
    full-contrast one-pixel checkers and stripes and binary noise in two random colours, inside
    a blob on a flat colour for half of them (what SPAN x2 amplified into noise: values to
    +-3,000 on a checker, -18 to 23 on a Warzone 2100 tile of dark shapes on white)."""
    i = torch.arange(side)
    out = []
    for _ in range(count):
        kind = int(torch.randint(0, 4, (), generator=generator))
        if kind == 0:
            pattern = ((i[:, None] + i[None, :]) % 2).float()
        elif kind == 1:
            pattern = (i[None, :] % 2).float().expand(side, side)
        elif kind == 2:
            pattern = (i[:, None] % 2).float().expand(side, side)
        else:
            pattern = (torch.rand(side, side, generator=generator) < 0.5).float()
        low, high = (torch.rand(2, 3, 1, 1, generator=generator) < 0.5).float()
        image = low + (high - low) * pattern
        if float(torch.rand((), generator=generator)) < 0.5:
            noise = torch.rand(1, 1, 4, 4, generator=generator)
            blob = F.interpolate(noise, size=(side, side), mode="bicubic", align_corners=False)
            ground = (torch.rand(3, 1, 1, generator=generator) < 0.5).float()
            image = torch.where(blob[0] > 0.5, image, ground)
        out.append(image)
    return torch.stack(out)


def range_loss(sr: torch.Tensor) -> torch.Tensor:
    """How far ``sr`` leaves [0, 1], on average (0 inside)."""
    return (sr - sr.clamp(0, 1)).abs().mean()

"""Distribution distances between generated and real images: FID and KID, as TF-GAN defines them.

TF-GAN's evaluation metrics (``tfgan.eval``): the Fréchet distance between Gaussians fitted to
two sets of classifier activations (``frechet_classifier_distance_from_activations``; Heusel et
al. 2017, FID), and the kernel distance, an unbiased MMD^2 with the cubic polynomial kernel
``(x.y / d + 1)^3`` computed over blocks of at most 1024 rows, with its standard error
(``kernel_classifier_distance_and_std_from_activations``; Bińkowski et al. 2018, KID). The
formulas are re-written here in torch, float64, from those definitions.

The activations are Inception-v3's 2048 pooled features (torchvision's ``Inception3``). Its
ImageNet weights are read from the torch hub cache exactly as LPIPS's are
(``training.perceptual.load_hub_weights``): nothing is downloaded, and a missing file is an error
that names it. The weights are torchvision's port, not TF's 2015 graph that published FID tables
use, so the numbers compare runs of this project, not papers. ``pretrained=False`` builds a
random backbone for tests, and results from it carry other names (``fid_random``) so they can
never pass for FID.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .perceptual import load_hub_weights

INCEPTION_FILE = (
    "inception_v3_google-0cc3c7bd.pth"  # torchvision Inception_V3_Weights.IMAGENET1K_V1
)
KID_BLOCK = 1024  # TF-GAN's max_block_size


class InceptionFeatures(nn.Module):
    """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 2048)`` pooled Inception-v3 features (float64).

    Images are resized to ``size`` (299 for the trained network) with bilinear filtering and
    scaled to ``[-1, 1]``, as Inception expects. Frozen, eval mode.
    """

    def __init__(self, *, pretrained: bool = True, size: int = 299) -> None:
        super().__init__()
        from torchvision.models.inception import Inception3

        if size < 75:
            raise ValueError(f"Inception needs inputs of at least 75 px, got {size}")
        state = (
            load_hub_weights(INCEPTION_FILE, "FID/KID", "turn val.fid (eval --fid) off")
            if pretrained
            else None
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the random init (tests) is drawn from the global generator
            net = Inception3(aux_logits=True, transform_input=False, init_weights=not pretrained)
        if state is not None:
            net.load_state_dict(state)
        net.fc = nn.Identity()  # type: ignore[assignment]
        self.net, self.size, self.pretrained = net, size, pretrained
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", antialias=True)
        return self.net(x * 2 - 1).double()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """``||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r^1/2 S_f S_r^1/2)^1/2)`` between Gaussians
    fitted to activations ``(N, D)`` (sample covariances, N - 1)."""
    real, fake = real.double(), fake.double()
    if (
        real.ndim != 2
        or fake.ndim != 2
        or real.shape[1] != fake.shape[1]
        or min(len(real), len(fake)) < 2
    ):
        raise ValueError(
            f"need two (N >= 2, D) activation sets, got {tuple(real.shape)}, {tuple(fake.shape)}"
        )
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = torch.cov(real.T), torch.cov(fake.T)
    values, vectors = torch.linalg.eigh(cov_r)
    root_r = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_r @ cov_f @ root_r).clamp(min=0).sqrt().sum()
    distance = (mu_r - mu_f).pow(2).sum() + cov_r.trace() + cov_f.trace() - 2 * cross
    return float(distance.clamp(min=0))


def kernel_distance(real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """Unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``, the mean over blocks of at most 1024
    rows, and its standard error (NaN for a single block), as TF-GAN computes KID."""
    real, fake = real.double(), fake.double()
    n_r, n_f, dim = len(real), len(fake), real.shape[1]
    if min(n_r, n_f) < 2 * math.ceil(max(n_r, n_f) / KID_BLOCK):
        raise ValueError(f"need at least 2 activations per block, got {n_r} and {n_f}")
    blocks = math.ceil(max(n_r, n_f) / KID_BLOCK)

    def bounds(n: int) -> list[int]:
        size, extra = divmod(n, blocks)  # the last ``extra`` blocks get one more, as TF-GAN
        sizes = [size] * (blocks - extra) + [size + 1] * extra
        return [sum(sizes[:i]) for i in range(blocks + 1)]

    ends_r, ends_f = bounds(n_r), bounds(n_f)
    estimates = []
    for i in range(blocks):
        r, f = real[ends_r[i] : ends_r[i + 1]], fake[ends_f[i] : ends_f[i + 1]]
        k_rr, k_ff, k_rf = ((a @ b.T / dim + 1) ** 3 for a, b in ((r, r), (f, f), (r, f)))
        m, n = len(r), len(f)
        estimates.append(
            (k_rr.sum() - k_rr.trace()) / (m * (m - 1))
            + (k_ff.sum() - k_ff.trace()) / (n * (n - 1))
            - 2 * k_rf.mean()
        )
    values = torch.stack(estimates)
    mean = float(values.mean())
    if blocks == 1:
        return mean, math.nan
    variance = float(((values - values.mean()) ** 2).sum()) / (blocks - 1)
    return mean, math.sqrt(variance / blocks)


@torch.no_grad()
def activations(
    features: InceptionFeatures, images: list[torch.Tensor], device: torch.device
) -> torch.Tensor:
    """``(N, 2048)`` activations of ``(1, 3, H, W)`` images (any sizes), one at a time."""
    return torch.cat([features(image.to(device)).cpu() for image in images])


def distances(real: torch.Tensor, fake: torch.Tensor, *, pretrained: bool) -> dict[str, float]:
    """``fid``, ``kid`` (and ``kid_std`` with several blocks) for activation sets; named
    ``fid_random``/``kid_random`` when the backbone was not trained (tests)."""
    suffix = "" if pretrained else "_random"
    kid, kid_std = kernel_distance(real, fake)
    out = {f"fid{suffix}": frechet_distance(real, fake), f"kid{suffix}": kid}
    if math.isfinite(kid_std):
        out[f"kid_std{suffix}"] = kid_std
    return out

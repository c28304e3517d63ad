"""Image quality metrics for validation: PSNR and SSIM on the Y channel, normal angular error.

PSNR/SSIM follow BasicSR's convention (ITU-R BT.601 luma of RGB in ``[0, 1]``, ``border`` pixels
cropped, SSIM with an 11-tap Gaussian window of sigma 1.5, no padding), so numbers compare with
published tables. Inputs are ``(B, 3, H, W)`` in ``[0, 1]``; results are per image ``(B,)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 studio-range luma ``(B, 1, H, W)`` in ``[16/255, 235/255]`` from RGB in ``[0, 1]``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W), got {tuple(x.shape)}")
    weights = torch.tensor([65.481, 128.553, 24.966], device=x.device, dtype=x.dtype) / 255
    return (x * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True) + 16 / 255


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border : x.shape[-2] - border, border : x.shape[-1] - border] if border else x


def psnr_y(pred: torch.Tensor, target: torch.Tensor, border: int = 0) -> torch.Tensor:
    """PSNR in dB on luma, per image; identical images give ``inf``."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    a, b = _crop(rgb_to_y(pred.double()), border), _crop(rgb_to_y(target.double()), border)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return (10 * torch.log10(1 / mse)).float()


def _window(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> torch.Tensor:
    taps = torch.arange(size, dtype=torch.float64, device=device) - size // 2
    g = torch.exp(-(taps**2) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_y(pred: torch.Tensor, target: torch.Tensor, border: int = 0) -> torch.Tensor:
    """Structural similarity on luma, per image, in ``[-1, 1]`` (1: identical)."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    a, b = _crop(rgb_to_y(pred.double()), border), _crop(rgb_to_y(target.double()), border)
    if min(a.shape[-2:]) < 11:
        raise ValueError(
            f"SSIM needs at least 11x11 pixels after the border, got {tuple(a.shape[-2:])}"
        )
    window = _window(device=a.device)
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return ssim.flatten(1).mean(dim=1).float()


def normal_angular_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean angle in degrees between the normals encoded in ``pred`` and ``target``, per image."""
    if pred.shape != target.shape or pred.shape[1] < 3:
        raise ValueError(f"need two (B, 3+, H, W) normal maps, got {tuple(pred.shape)}")
    a = F.normalize(pred[:, :3].double() * 2 - 1, dim=1, eps=1e-8)
    b = F.normalize(target[:, :3].double() * 2 - 1, dim=1, eps=1e-8)
    cosine = (a * b).sum(dim=1).clamp(-1, 1)
    return (torch.acos(cosine) * (180 / math.pi)).flatten(1).mean(dim=1).float()


def gmsd(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude similarity deviation (Xue et al. 2014), per image; 0 for identical
    images, larger for worse edges. As in the paper and piq: luma averaged 2x2, Prewitt gradients,
    c = 170 / 255^2 on ``[0, 1]`` values, the standard deviation of the similarity map."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    prewitt = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=torch.float64, device=pred.device) / 3
    kernels = torch.stack([prewitt, prewitt.t()])[:, None]

    def magnitude(x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(rgb_to_y(x.double()), 2)
        return F.conv2d(y, kernels).pow(2).sum(dim=1).sqrt()

    a, b = magnitude(pred), magnitude(target)
    c = 170 / 255**2
    similarity = (2 * a * b + c) / (a * a + b * b + c)
    return similarity.flatten(1).std(dim=1).float()


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean square of the luma's high frequencies (luma minus its Gaussian blur, sigma 1), per
    image: the fine detail an image carries (blur lowers it; noise, ringing and blocks raise it)."""
    from .degradations import gaussian_blur

    y = rgb_to_y(x.float())
    sigma = torch.ones(x.shape[0], device=x.device)
    return (y - gaussian_blur(y, sigma)).pow(2).flatten(1).mean(dim=1)


def checker_response(x: torch.Tensor) -> torch.Tensor:
    """The 2x2 checker filter ``[[1, -1], [-1, 1]] / 4`` on each channel, ``(B, C, H-1, W-1)``."""
    a, b = x[..., :-1, :-1].float(), x[..., :-1, 1:].float()
    c, d = x[..., 1:, :-1].float(), x[..., 1:, 1:].float()
    return (a - b - c + d) / 4


def checker_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean square of the 2x2 checker filter ``[[1, -1], [-1, 1]] / 4`` on each channel, per
    image: the one-pixel "screen door" pattern (and a colour checker on gray). Smooth content
    and straight edges give it next to nothing; it is the part of the detail that a 4-pixel
    grid measure (``grid_ratio``) cannot see."""
    return checker_response(x).pow(2).flatten(1).mean(dim=1)


def lattice_pattern(x: torch.Tensor, period: int, window: int) -> torch.Tensor:
    """The fine luma pattern locked to the output's ``period``-pixel lattice, window by window:
    ``(B, H / window, W / window, period, period)``. The high-passed luma (minus a 3x3 box
    blur) is averaged over every ``period`` x ``period`` cell of each window at each phase, and
    the mean taken off. Content that does not know the lattice averages out; what a sub-pixel
    upsampler lays at the same phase of every input texel (a checker, a diagonal hatch, a
    texel grid) stays."""
    y = rgb_to_y(x.float())
    high = y - F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    b, _, h, w = high.shape
    rows, cols, repeat = h // window, w // window, window // period
    cells = high[:, 0, : rows * window, : cols * window].reshape(
        b, rows, repeat, period, cols, repeat, period
    )
    pattern = cells.mean(dim=(2, 5)).permute(0, 1, 3, 2, 4)  # (B, rows, cols, period, period)
    return pattern - pattern.mean(dim=(3, 4), keepdim=True)


def lattice_energy(x: torch.Tensor, period: int, window: int = 32) -> torch.Tensor:
    """Mean square of ``lattice_pattern`` per image: the "screen door" or hatch a model lays on
    its output grid. Measured x4 on grass and rock (window 32): the truth and bicubic hold next
    to none of it, a model whose output shows a hatch at 100% many times more."""
    return lattice_pattern(x, period, window).pow(2).flatten(1).mean(dim=1)


def grid_ratio(x: torch.Tensor, period: int) -> torch.Tensor:
    """Mean |step| of luma across every ``period``-th pixel boundary (both axes) over the mean
    |step| across the others, per image. 1 for content that does not know the grid; above 1
    when a low-res grid shows through: ``period`` = scale for the input's texels, 4 x scale for
    the 4x4 blocks of block compression."""
    y = rgb_to_y(x.float())[:, 0]
    dx = (y[:, :, 1:] - y[:, :, :-1]).abs()
    dy = (y[:, 1:, :] - y[:, :-1, :]).abs()
    on_x = (torch.arange(dx.shape[2], device=x.device) % period) == period - 1
    on_y = (torch.arange(dy.shape[1], device=x.device) % period) == period - 1
    on = torch.cat([dx[:, :, on_x].flatten(1), dy[:, on_y, :].flatten(1)], dim=1).mean(dim=1)
    off = torch.cat([dx[:, :, ~on_x].flatten(1), dy[:, ~on_y, :].flatten(1)], dim=1).mean(dim=1)
    return on / off.clamp(min=1e-12)


def diversity(sr: torch.Tensor, gt: torch.Tensor) -> float:
    """How much the outputs ``(B, C, H, W)`` differ across the batch, as a share of how much
    the ground truths do (mean absolute deviation from the batch mean): about 1 for a generator
    that follows its inputs, 0 for one that makes the same picture whatever it is given (mode
    collapse). 1.0 for a batch of one."""
    if len(gt) < 2:
        return 1.0
    sr, gt = sr.detach(), gt.detach()
    spread = (gt - gt.mean(0)).abs().mean().clamp(min=1e-6)
    return float((sr - sr.mean(0)).abs().mean() / spread)


def out_of_range(x: torch.Tensor, margin: float = 0.02) -> float:
    """Share of the values of ``x`` outside ``[-margin, 1 + margin]``."""
    return float(((x < -margin) | (x > 1 + margin)).float().mean())

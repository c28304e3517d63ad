"""Discriminators, spectrally normalised by default: a PatchGAN and a U-Net (Real-ESRGAN's design).

Both map ``(B, C, H, W)`` images in ``[0, 1]`` to ``(logits, features)``: logits per patch
(PatchGAN, ``(B, 1, ~H/2^n, ~W/2^n)``) or per pixel (U-Net, ``(B, 1, H, W)``), and the list of
intermediate activations that the feature-matching loss compares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .config import DiscriminatorConfig
from .losses import clip_effective_weights


def _sn_conv(
    cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True, *, sn: bool = True
) -> nn.Module:
    conv = nn.Conv2d(cin, cout, kernel, stride, 1, bias=bias)
    return spectral_norm(conv) if sn else conv


class PatchDiscriminator(nn.Module):
    """pix2pix's N-layer PatchGAN with spectral norm in place of batch norm.

    Each logit judges one receptive-field patch (70 px for 3 layers), so it scores texture, not
    layout, and works at any input size >= 16.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_features: int = 64,
        num_layers: int = 3,
        *,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        sn = spectral_norm
        widths = [num_features * min(2**i, 8) for i in range(num_layers + 1)]
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1)]
        for i in range(1, num_layers):
            blocks.append(_sn_conv(widths[i - 1], widths[i], 4, 2, sn=sn))
        blocks.append(_sn_conv(widths[num_layers - 1], widths[num_layers], 4, 1, sn=sn))
        self.blocks = nn.ModuleList(blocks)
        self.head = _sn_conv(widths[num_layers], 1, 4, 1, sn=sn)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for block in self.blocks:
            x = F.leaky_relu(block(x), 0.2)
            features.append(x)
        return self.head(x), features


class UNetDiscriminator(nn.Module):
    """U-Net discriminator with spectral norm (Real-ESRGAN's ``UNetDiscriminatorSN`` layout):
    three stride-2 stages down, three up with skips, per-pixel logits.

    Per-pixel judgement gives the generator detailed feedback; the skips let it judge both
    global structure and local texture.
    """

    def __init__(
        self, in_channels: int = 3, num_features: int = 64, *, spectral_norm: bool = True
    ) -> None:
        super().__init__()
        nf, sn = num_features, spectral_norm
        self.conv0 = nn.Conv2d(in_channels, nf, 3, 1, 1)
        self.down = nn.ModuleList(
            [
                _sn_conv(nf, nf * 2, 4, 2, False, sn=sn),
                _sn_conv(nf * 2, nf * 4, 4, 2, False, sn=sn),
                _sn_conv(nf * 4, nf * 8, 4, 2, False, sn=sn),
            ]
        )
        self.up = nn.ModuleList(
            [
                _sn_conv(nf * 8, nf * 4, 3, bias=False, sn=sn),
                _sn_conv(nf * 4, nf * 2, 3, bias=False, sn=sn),
                _sn_conv(nf * 2, nf, 3, bias=False, sn=sn),
            ]
        )
        self.refine = nn.ModuleList(
            [_sn_conv(nf, nf, 3, bias=False, sn=sn), _sn_conv(nf, nf, 3, bias=False, sn=sn)]
        )
        self.head = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = [F.leaky_relu(self.conv0(x), 0.2)]
        for conv in self.down:
            skips.append(F.leaky_relu(conv(skips[-1]), 0.2))
        features = list(skips)
        y = skips.pop()
        for conv in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = F.leaky_relu(conv(y), 0.2) + skip
            features.append(y)
        for conv in self.refine:
            y = F.leaky_relu(conv(y), 0.2)
        features.append(y)
        return self.head(y), features


def build_discriminator(
    config: DiscriminatorConfig, in_channels: int = 3, *, clip_value: float = 0.0
) -> nn.Module:
    """The discriminator of ``config``; with ``clip_value``, its spectrally normalised weights
    are clamped after normalisation (``losses.clip_effective_weights``), the rest after each
    step (``losses.clip_weights_``)."""
    sn = config.spectral_norm
    module: nn.Module
    if config.arch == "patchgan":
        module = PatchDiscriminator(
            in_channels, config.num_features, config.num_layers, spectral_norm=sn
        )
    else:
        module = UNetDiscriminator(in_channels, config.num_features, spectral_norm=sn)
    if clip_value > 0:
        clip_effective_weights(module, clip_value)
    return module

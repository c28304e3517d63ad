"""RRDB generator (ESRGAN / Real-ESRGAN), state-dict compatible with BasicSR's ``RRDBNet``.

Residual-in-residual dense blocks at low resolution, then nearest-neighbour x2 upsampling + conv
twice. For x2 and x1 the input is pixel-unshuffled first (as in Real-ESRGAN), so the trunk always
works at a quarter of the output resolution per axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from upscaler.models.padding import wrap_pad


@dataclass(frozen=True)
class RRDBConfig:
    in_channels: int = 3
    out_channels: int = 3
    num_features: int = 64
    num_blocks: int = 23
    growth_channels: int = 32
    scale: int = 4

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 4):
            raise ValueError(f"RRDB supports scale 1, 2 or 4, got {self.scale}")

    @property
    def size_multiple(self) -> int:
        """The trunk runs at a quarter of the output: x2 and x1 pixel-unshuffle their input."""
        return {4: 1, 2: 2, 1: 4}[self.scale]

    @property
    def receptive_field(self) -> int:
        """Theoretical radius in input pixels (every 3x3 conv of the trunk adds one trunk pixel)."""
        trunk = 1 + self.num_blocks * 15 + 1
        return trunk * self.size_multiple + 2


class ResidualDenseBlock(nn.Module):
    # Circular padding (``engine.pipeline.circular_padding``) wraps this block as a whole: the
    # input padded once by 5 (one pixel per conv), then unpadded convolutions whose dense inputs
    # are cropped to match. Padding each conv's concatenated input instead copies 64-192 channels
    # twice per conv.
    wraps_itself = True

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        self.wrap = False  # set by circular_padding while active
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            if conv.weight.is_meta:  # built to be loaded: shapes only (meta init is slow Python)
                continue
            # ESRGAN's initialisation: Kaiming scaled by 0.1 keeps the deep residual stack stable.
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)  # type: ignore[arg-type]  # conv2d has a bias here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wrap:
            return self._forward_wrapped(x)
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x

    def _forward_wrapped(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` for an image that tiles endlessly: the same sums, on the periodic
        extension, with each convolution unpadded."""
        feats = [wrap_pad(x, 5, 5)]  # feature j keeps a margin of 5 - j pixels
        for k, conv in enumerate((self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)):
            parts = [_crop(f, k - j) for j, f in enumerate(feats)]  # all at margin 5 - k
            out = F.conv2d(parts[0] if k == 0 else torch.cat(parts, 1), conv.weight, conv.bias)
            feats.append(self.lrelu(out) if k < 4 else out)  # margin 4 - k
        return feats[-1] * 0.2 + x


def _crop(x: torch.Tensor, c: int) -> torch.Tensor:
    return x[..., c:-c, c:-c] if c else x


class RRDB(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """Maps ``(B, in_channels, H, W)`` in ``[0, 1]`` to ``(B, out_channels, H*scale, W*scale)``.

    For scale 2 (1), H and W must be multiples of 2 (4): see ``RRDBConfig.size_multiple``.
    """

    def __init__(self, config: RRDBConfig) -> None:
        super().__init__()
        self.config = config
        nf, gc = config.num_features, config.growth_channels
        unshuffle = config.size_multiple
        self.conv_first = nn.Conv2d(config.in_channels * unshuffle * unshuffle, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, gc) for _ in range(config.num_blocks)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, config.out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.size_multiple > 1:
            x = F.pixel_unshuffle(x, self.config.size_multiple)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def infer_rrdb_config(state_dict: dict[str, torch.Tensor]) -> RRDBConfig | None:
    """Recognise a BasicSR-style RRDBNet state dict and recover its hyper-parameters, else None."""
    needed = ("conv_first.weight", "conv_body.weight", "conv_up1.weight", "conv_last.weight")
    if not all(k in state_dict for k in needed) or "conv_up3.weight" in state_dict:
        return None
    nf = state_dict["conv_first.weight"].shape[0]
    first_in = state_dict["conv_first.weight"].shape[1]
    out_channels = state_dict["conv_last.weight"].shape[0]
    num_blocks = 1 + max(
        (int(k.split(".")[1]) for k in state_dict if k.startswith("body.")), default=-1
    )
    gc = state_dict["body.0.rdb1.conv1.weight"].shape[0] if num_blocks else 32
    in_channels, scale = first_in, 4
    for candidate_scale, unshuffle in ((4, 1), (2, 2), (1, 4)):
        if first_in == out_channels * unshuffle * unshuffle:
            in_channels, scale = out_channels, candidate_scale
            break
    return RRDBConfig(
        in_channels=in_channels,
        out_channels=out_channels,
        num_features=nf,
        num_blocks=num_blocks,
        growth_channels=gc,
        scale=scale,
    )

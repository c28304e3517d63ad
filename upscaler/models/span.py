"""SPAN (Wan et al., NTIRE 2024 efficient SR winner): the architecture code is spandrel's.

spandrel ships SPAN as a plain ``nn.Module`` class; this file maps our hyper-parameter names
(``scale``, ``in_channels``, ``num_features``) onto it and back from the hyper-parameters spandrel
records when it builds a SPAN from a file. A SPAN is saved as a plain safetensors state dict with
spandrel's key names, which spandrel (and so ``upscale --model``) detects and loads by itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class SpanConfig:
    """Six fixed SPAB blocks; ``norm``: subtract the DIV2K mean and scale to 0..255 first, as
    released models do."""

    scale: int = 4
    in_channels: int = 3
    num_features: int = 48  # the paper's and spandrel's default
    num_blocks: int = 6  # fixed by the design (spandrel's class has exactly six)
    norm: bool = True

    def __post_init__(self) -> None:
        if self.num_blocks != 6:
            raise ValueError(f"SPAN has 6 blocks by design; got num_blocks={self.num_blocks}")
        if not 1 <= self.scale <= 8 or self.num_features < 1 or self.in_channels not in (1, 3):
            raise ValueError(f"invalid span config: {self}")

    @property
    def out_channels(self) -> int:
        return self.in_channels

    @property
    def size_multiple(self) -> int:
        return 1

    @property
    def receptive_field(self) -> int:
        """In input pixels: conv_1, 6 blocks x 3 convs, conv_2 and the upsampler conv, 3x3 each."""
        return 21


def build_span(config: SpanConfig) -> nn.Module:
    from spandrel.architectures.SPAN import SPAN

    module = SPAN(
        num_in_ch=config.in_channels,
        num_out_ch=config.in_channels,
        feature_channels=config.num_features,
        upscale=config.scale,
        norm=config.norm,
    )
    # The 3x3 "eval_conv" of every Conv3XC is the re-parameterised sum of its training branches,
    # recomputed on each forward in eval mode: it is state, not something to learn.
    for child in module.modules():
        if hasattr(child, "eval_conv"):
            child.eval_conv.requires_grad_(False)
    module.config = config  # as our own modules carry theirs
    return module


def span_config(hyper: dict[str, Any]) -> SpanConfig:
    """The config of a SPAN spandrel built from a file, from the hyper-parameters it records."""
    return SpanConfig(
        scale=int(hyper["upscale"]),
        in_channels=int(hyper["num_in_ch"]),
        num_features=int(hyper["feature_channels"]),
        norm=bool(hyper.get("norm", True)),
    )


class FusedConv3XC(nn.Module):
    """A SPAN ``Conv3XC`` as inference runs it: its training branches summed into one 3x3
    convolution once. spandrel's class sums them again on every forward in eval mode (20 times
    per SPAN pass): a third of a pass's time on a 64 px tile, a sixth at 128 px. The sum is the
    one spandrel computes, so the output is the same bit for bit. The convolution keeps the name
    ``eval_conv``, so a layer path such as ``conv_1.eval_conv`` still names it."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        block.update_params()  # type: ignore[operator]
        self.eval_conv = copy.deepcopy(block.get_submodule("eval_conv"))
        self.has_relu = bool(block.has_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.eval_conv(x)
        return F.leaky_relu(out, negative_slope=0.05) if self.has_relu else out


def _reparameterised(module: nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("update_params", "eval_conv", "has_relu"))


def fused_for_inference(module: nn.Module) -> nn.Module:
    """``module`` with every SPAN ``Conv3XC`` fused (``FusedConv3XC``): a copy, so a model in
    training keeps its branches; ``module`` itself where there is nothing to fuse."""
    if not any(_reparameterised(child) for child in module.modules()):
        return module
    fused = copy.deepcopy(module)
    parents = [m for m in fused.modules() if not _reparameterised(m)]
    for parent in parents:
        for name, child in list(parent.named_children()):
            if _reparameterised(child):
                setattr(parent, name, FusedConv3XC(child))
    return fused

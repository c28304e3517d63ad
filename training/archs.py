"""What training does to generator weights beyond building them: SPAN's weight surgery, the
config of a model spandrel built from a file, and settling re-parameterised weights.

The architectures a recipe can name, and their traits, are ``upscaler.models.ARCHITECTURES``:
one registry for inference and training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from upscaler.models import ARCHITECTURES

SPAN_MEAN = (0.4488, 0.4371, 0.4040)  # spandrel's SPAN: (x - mean) * 255 before conv_1
SPAN_RANGE = 255.0


def span_without_norm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A normalising SPAN's state dict rewritten for ``norm=False`` (the image in ``[0, 1]`` goes
    straight into ``conv_1``), same output away from the 1-pixel border of ``conv_1``'s padding.

    ``conv_1`` is linear in its input: scaling its branches by 255 and taking
    ``255 * conv(mean)`` off the last bias is the same map. Why: a file whose normalisation was
    folded into a tiny ``conv_1`` (4xSPANkendata's weights are 24x smaller than the official
    SPAN's) cannot be fine-tuned with Adam, whose first steps move every weight by about the
    learning rate: its first conv is wrecked within ten steps."""
    out = dict(weights)
    fused = weights["conv_1.eval_conv.weight"].double()
    mean = torch.tensor(SPAN_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    shift = (fused * mean).sum(dim=(1, 2, 3)) * SPAN_RANGE
    # The 3x3 branch takes the factor (its weights are the ones folding made tiny); the 1x1
    # before it keeps its weights, its bias divided so that the branch's map stays the same.
    scaled = {"conv_1.conv.1.weight": SPAN_RANGE, "conv_1.conv.0.bias": 1 / SPAN_RANGE}
    scaled |= {"conv_1.sk.weight": SPAN_RANGE, "conv_1.eval_conv.weight": SPAN_RANGE}
    for key, factor in scaled.items():
        out[key] = (weights[key].double() * factor).to(weights[key].dtype)
    for key in ("conv_1.conv.2.bias", "conv_1.eval_conv.bias"):
        out[key] = (weights[key].double() - shift).to(weights[key].dtype)
    out["no_norm"] = torch.zeros(1)
    return out


def collapse_subpixels(
    weights: dict[str, torch.Tensor], own: dict[str, torch.Tensor], high: int, low: int
) -> dict[str, torch.Tensor]:
    """``weights`` of an x``high`` generator with each sub-pixel conv (the conv before a pixel
    shuffle) made that of an x``low`` one, for a run whose state dict is ``own``: the output
    phases that fall in one pixel at the lower scale are averaged.

    A pixel shuffle of factor ``r`` puts channel ``c * r * r + i * r + j`` at phase ``(i, j)``, so
    averaging the weights and biases of the phases one low-scale pixel covers is the same map as
    a box shrink of the high-scale output by ``high / low`` (a nearest-neighbour base added
    after the shuffle, as in the compact model, shrinks to the lower scale's nearest-neighbour
    base). The trunk is untouched. A tensor is taken for such a conv where only its first
    dimension differs from this run's, as ``c * high ** 2`` against ``c * low ** 2``."""
    if high % low:
        raise ValueError(f"x{high} cannot be collapsed to x{low}: not a multiple")
    ratio = high // low
    out = dict(weights)
    for key, value in weights.items():
        mine = own.get(key)
        if mine is None or mine.dim() not in (1, 4) or value.shape[1:] != mine.shape[1:]:
            continue
        channels = mine.shape[0] // (low * low)
        if channels * low * low != mine.shape[0] or value.shape[0] != channels * high * high:
            continue
        grouped = value.double().reshape(channels, low, ratio, low, ratio, *value.shape[1:])
        out[key] = grouped.mean(dim=(2, 4)).reshape(mine.shape).to(value.dtype)
    return out


def span_from_fused(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` with every Conv3XC's training branches rebuilt from its fused 3x3 conv
    (``eval_conv``): the first 1x1 an identity into the first channels, the 3x3 holding the
    fused conv, the last 1x1 an identity back, the shortcut zero. The same function in both
    modes; what a network interpolation in the fused convs (the ones inference runs) needs to
    be a consistent file."""
    out = dict(weights)
    for key in [k for k in weights if k.endswith(".eval_conv.weight")]:
        base = key.removesuffix("eval_conv.weight")
        fused, bias = weights[key], weights[base + "eval_conv.bias"]
        c_out, c_in = fused.shape[:2]
        first, middle = weights[base + "conv.0.weight"], weights[base + "conv.1.weight"]
        gain_in, gain_out = first.shape[0], middle.shape[0]
        w0 = torch.zeros_like(first)
        w0[:c_in, :, 0, 0] = torch.eye(c_in, dtype=first.dtype)
        w1 = torch.zeros_like(middle)
        w1[:c_out, :c_in] = fused
        b1 = torch.zeros(gain_out, dtype=bias.dtype)
        b1[:c_out] = bias
        w2 = torch.zeros_like(weights[base + "conv.2.weight"])
        w2[:, :c_out, 0, 0] = torch.eye(c_out, dtype=w2.dtype)
        out |= {
            base + "conv.0.weight": w0,
            base + "conv.0.bias": torch.zeros(gain_in, dtype=bias.dtype),
            base + "conv.1.weight": w1,
            base + "conv.1.bias": b1,
            base + "conv.2.weight": w2,
            base + "conv.2.bias": torch.zeros_like(weights[base + "conv.2.bias"]),
            base + "sk.weight": torch.zeros_like(weights[base + "sk.weight"]),
            base + "sk.bias": torch.zeros_like(weights[base + "sk.bias"]),
        }
    return out


def from_spandrel(spandrel_id: str, module: nn.Module) -> tuple[str, dict[str, Any]]:
    """Our ``(arch, arch_config)`` for a model spandrel built from a file; architectures we do
    not train keep spandrel's name (``spandrel:ESRGAN``) and no config."""
    for entry in ARCHITECTURES.values():
        if entry.from_spandrel is not None and entry.spandrel_id == spandrel_id:
            hyper = dict(getattr(module, "hyperparameters", {}) or {})
            return entry.name, dataclasses.asdict(entry.from_spandrel(hyper))
    return f"spandrel:{spandrel_id}", {}


def settle(module: nn.Module) -> nn.Module:
    """Make the stored weights of a re-parameterised model (SPAN's ``eval_conv``) match its
    training branches, so the state dict is complete for any loader."""
    for child in module.modules():
        update = getattr(child, "update_params", None)
        if callable(update) and hasattr(child, "eval_conv"):
            update()
    return module

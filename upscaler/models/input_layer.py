"""The layer that sees the image stays float32 when the rest of a model runs in bf16 or fp16.

bf16 rounds 8-bit levels above 0.5 by up to half a level, and every layer after the first
amplifies that (RealESRGAN_x4plus: 95.1% of pixels within one level of fp32 with the input
rounded, 98.7% without, and no slower). Which convolution that is, and whether the network runs
with it kept float32, is measured once per model file (``measurement.input_layer``); the engine
applies it to the copy it runs (``keep_input_layer``), the measurement to the copies it compares.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def reduced_copy(module: nn.Module, dtype: torch.dtype, layer: str = "") -> nn.Module:
    """A copy of ``module`` cast to ``dtype``, its convolution ``layer`` (if any) kept float32."""
    copied = copy.deepcopy(module).to(dtype)
    if layer:
        keep_input_layer(copied, layer)
    return copied


def keep_input_layer(module: nn.Module, name: str) -> None:
    """Keep convolution ``name`` of ``module`` (cast to bf16 or fp16) in float32. Hooks give it
    its input at its own weights' dtype and the network its output at the dtype of the rest, both
    read at call time, so the module stays consistent under later casts."""
    conv = module.get_submodule(name)
    conv.float()
    if getattr(conv, "_upscaler_keeps_float32", False):
        return
    rest = next((n for n, _ in module.named_parameters() if not n.startswith(f"{name}.")), "")

    def cast_in(c: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0].to(c.weight.dtype), *args[1:])

    def cast_out(_c: nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
        return out.to(module.get_parameter(rest).dtype) if rest else out

    conv.register_forward_pre_hook(cast_in)
    conv.register_forward_hook(cast_out)
    conv._upscaler_keeps_float32 = True  # type: ignore[assignment]

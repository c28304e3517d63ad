"""The layers at a model's ends stay float32 when the rest of it runs in bf16 or fp16.

bf16 rounds 8-bit levels above 0.5 by up to half a level, and every layer after the first
amplifies that (RealESRGAN_x4plus: 95.1% of pixels within one level of fp32 with the input
rounded, 98.7% without, and no slower). So the convolution that sees the image (the input layer)
takes the float32 image and stays float32. Where that is not enough, two more parts may stay
float32 (``Float32Layers``): the last convolution, whose output is the image (bf16 holds values
near 1 to a level: keeping it float32 drops that rounding), and the part the network runs right
after the input layer (a block: what amplifies the first roundings most). texture-x4 v4, measured
on the probe samples: 51.1 dB and 19 levels from fp32 with the input layer alone, 53.3 dB and 9
with SPAN's first block and its upsampler too, at about 1.9x the speed of fp32 on an AMX Xeon
(plain bf16 2.4x). Which layers those are, and whether the network runs with them kept float32,
is measured once per model file (``measurement.float32_layers``); the engine applies them to the
copy it runs (``Float32Layers.apply``), the measurement to the copies it compares.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Float32Layers:
    """Submodule names kept float32 under bf16 or fp16 ("": none). ``input``: the convolution
    that sees the image (it then takes the float32 image); ``block``: a part run after it, its
    inputs and outputs cast; ``output``: the last convolution, whose output (and the model's)
    stays float32."""

    input: str = ""
    block: str = ""
    output: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.input, self.block, self.output) if n)

    def apply(self, module: nn.Module) -> None:
        """Keep these layers of ``module`` (cast to bf16 or fp16) float32. Hooks give each its
        input at its own dtype and the network its output at the dtype of the rest (the output
        layer's stays float32), both read at call time, so the module stays consistent under
        later casts."""
        rest = next((n for n, _ in module.named_parameters() if not _under(n, self.names)), "")
        for name in self.names:
            _keep_float32(module, name, rest, cast_out=name != self.output)


def _under(parameter: str, names: tuple[str, ...]) -> bool:
    return any(parameter.startswith(f"{name}.") for name in names)


def _keep_float32(module: nn.Module, name: str, rest: str, *, cast_out: bool) -> None:
    part = module.get_submodule(name)
    part.float()
    if getattr(part, "_upscaler_keeps_float32", False):
        return
    own = next(part.parameters())

    def cast_in(_p: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return _cast(args, own.dtype)

    def cast_back(_p: nn.Module, _args: Any, out: Any) -> Any:
        return _cast(out, module.get_parameter(rest).dtype) if rest else out

    part.register_forward_pre_hook(cast_in)
    if cast_out:
        part.register_forward_hook(cast_back)
    part._upscaler_keeps_float32 = True  # type: ignore[assignment]


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with its floating tensors (also inside tuples and lists) at ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple | list):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def reduced_copy(
    module: nn.Module, dtype: torch.dtype, layers: Float32Layers = Float32Layers()
) -> nn.Module:
    """A copy of ``module`` cast to ``dtype``, ``layers`` kept float32."""
    copied = copy.deepcopy(module).to(dtype)
    layers.apply(copied)
    return copied

"""What a generator promises the engine, for our architectures and community ones alike.

A ``ModelInfo`` is spandrel's descriptor reduced to what tiling, padding, memory planning and the
choice of precision need: scale, channels, size multiple and minimum, the supported precisions,
the receptive field, the activation memory per pixel and the fidelity of bf16 and fp16 to fp32.
``upscaler.models.loader`` makes it: the static part from the architecture, the rest measured
(``upscaler.models.measurement``) once per model file and cached
(``upscaler.models.measurement_cache``).

One rule, the same for both reduced formats and every device, decides whether
``--precision auto`` may use a format (``Fidelity.meets_rule``): PSNR >= ``MIN_PSNR`` (50 dB:
an RMS error of 0.8 level) and no value more than ``MAX_LEVELS`` (12) levels off: the largest
difference of a model that passes by PSNR was 8 (RealESRGAN_x4plus in bf16), a limit at that
would flip on one rounding, and a broken format moves values by far more (SPAN: 255).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from upscaler.models.input_layer import Float32Layers

MIN_PSNR = 50.0  # dB against fp32's 8-bit output, for auto to choose bf16 or fp16
MAX_LEVELS = 12  # ... and no 8-bit value further than this from fp32's (see the README)
PSNR_CAP = 99.0  # identical outputs (no error at all) are recorded as this


@dataclass(frozen=True)
class Fidelity:
    """How far a model's 8-bit output at a reduced precision is from fp32's on the probe."""

    psnr: float = 0.0  # dB, capped at PSNR_CAP (0: not measured, or NaN/Inf output)
    max_levels: int = 255  # the largest difference of one 8-bit value (255: not measured)

    def meets_rule(self) -> bool:
        """The precision rule: close enough to fp32 for ``--precision auto`` to use it."""
        return self.psnr >= MIN_PSNR and self.max_levels <= MAX_LEVELS

    def __str__(self) -> str:
        return f"{self.psnr:.1f} dB from fp32, values up to {self.max_levels} levels off"


RULE = f"PSNR >= {MIN_PSNR:.0f} dB and no value more than {MAX_LEVELS} levels off"


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a generator (spandrel's descriptor, reduced)."""

    name: str
    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    receptive_field: int = 16  # tile overlap radius in input pixels (see ``measurement``)
    wrap_field: int = 0  # effective radius: the wrap padding of a tileable texture (0: as above)
    size_multiple: int = 1
    min_size: int = 1
    supports_bf16: bool = True
    supports_fp16: bool = True
    bytes_per_pixel: int = 2048  # fp32 activation bytes per input pixel per item
    bf16_bytes_per_pixel: int = 0  # the same in bf16 (0: half the fp32 figure)
    bf16_fidelity: Fidelity = Fidelity()  # bf16 output against fp32's (default: unknown)
    fp16_fidelity: Fidelity = Fidelity()  # the same in fp16
    float_input: bool = False  # takes float32 input at any weight dtype (keeps the base exact)
    input_layer: str = ""  # community models: the conv kept float32 under bf16/fp16
    float32_block: str = ""  # ... and the part run after it, where the rule needs it
    output_layer: str = ""  # ... and the last conv, its output float32, where the rule needs it
    circular: bool = False  # only convolutions see neighbours: circular padding wraps it exactly
    num_params: int = 0
    source: str = ""
    metadata: tuple[tuple[str, str], ...] = ()

    def activation_bytes(self, dtype: torch.dtype) -> float:
        """Activation bytes per input pixel per item at ``dtype``."""
        if dtype == torch.float32:
            return float(self.bytes_per_pixel)
        return float(self.bf16_bytes_per_pixel or self.bytes_per_pixel / 2)

    @property
    def float32_layers(self) -> Float32Layers:
        """The layers kept float32 under bf16 or fp16 (``upscaler.models.input_layer``)."""
        return Float32Layers(self.input_layer, self.float32_block, self.output_layer)

    def fidelity(self, dtype: torch.dtype) -> Fidelity:
        """Its output at ``dtype`` against fp32's (fp32 itself: identical)."""
        if dtype == torch.float32:
            return Fidelity(PSNR_CAP, 0)
        if dtype == torch.bfloat16:
            return self.bf16_fidelity
        if dtype == torch.float16:
            return self.fp16_fidelity
        return Fidelity()

"""The measured part of a model's descriptor (``upscaler.models.descriptor.ModelInfo``): what is
*measured*, not guessed, once per model file (``measure``; cached by the file's SHA-256 in
``upscaler.models.measurement_cache``), on the probe image (the bundled samples, ``probe.png``):

* **effective receptive field**: the radius, in input pixels, beyond which changing one input
  pixel moves no output value by 1/255 or more (probed on a real texture). It sets the wrap
  padding of tileable textures, and the tile overlap of deep architectures (RRDB's theoretical
  radius is hundreds of pixels). Shallow ones whose theoretical radius is small (compact: one
  pixel per conv) overlap tiles by that exact radius instead, so tiles stay bit-exact.
* **activation bytes per input pixel**, fp32 and bf16: the peak of live tensor bytes during a
  forward pass, tracked op by op at two sizes (the slope, so weights and fixed buffers drop out).
* **fidelity in bf16 and fp16**: how far the 8-bit output of a bf16 (and an fp16) forward is
  from fp32's on the bundled probe textures, every channel: its PSNR and its largest difference
  in levels, which the precision rule judges (``Fidelity.meets_rule``). The formats are
  measured on CPU once per file (fp16 only where a GPU is present: only a GPU runs it fast);
  the convolutions of both CPU (oneDNN) and GPU (cuDNN) accumulate bf16 and fp16 products in
  float32, so the rounding measured is the format's.
* **float32 layers**: the convolution a forward pass runs first, the one that sees the image
  (the input layer), stays float32 in bf16 or fp16; where the format breaks the precision rule
  with that alone, the last convolution, then also the part run right after the input layer,
  are kept float32 too, the first of these that meets the rule (``float32_layers``; see
  ``upscaler.models.input_layer``).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from upscaler.models.descriptor import PSNR_CAP, Fidelity
from upscaler.models.input_layer import Float32Layers, reduced_copy
from upscaler.models.span import fused_for_inference

PROBE_FILE = Path(__file__).parent / "probe.png"
EXACT_FIELD_LIMIT = 32  # theoretical radii up to this are used as they are (bit-exact tiles)
PROBE_RADIUS = 48  # input pixels probed around the changed pixel (deeper influence is capped)
MEMORY_SIDES = (24, 40)  # input sides of the two memory-tracking passes


@dataclass(frozen=True)
class Measured:
    """The measured part of a descriptor, as cached per model file."""

    receptive_field: int
    wrap_field: int
    bytes_per_pixel: int
    bf16_bytes_per_pixel: int
    bf16_psnr: float
    bf16_max_levels: int
    fp16_psnr: float
    fp16_max_levels: int
    probed_field: bool = field(default=False)  # True: the radius was probed, not derived
    input_layer: str = ""  # "": none found, or the network does not run with it in float32
    float32_block: str = ""  # also kept float32 (``Float32Layers.block``), "" none
    output_layer: str = ""  # also kept float32, its output float32 (``Float32Layers.output``)

    @property
    def float32_layers(self) -> Float32Layers:
        return Float32Layers(self.input_layer, self.float32_block, self.output_layer)

    def fidelity(self, dtype: torch.dtype) -> Fidelity:
        if dtype == torch.bfloat16:
            return Fidelity(float(self.bf16_psnr), self.bf16_max_levels)
        return Fidelity(float(self.fp16_psnr), self.fp16_max_levels)


def measure(
    module: nn.Module,
    *,
    in_channels: int,
    scale: int,
    size_multiple: int = 1,
    theoretical_field: int | None = None,
    bf16: bool = True,
    fp16: bool = True,
    float_input: bool = False,
) -> Measured:
    """Measure ``module`` (on CPU, fp32; left unchanged) as the module docstring says; ``bf16``
    and ``fp16``: whether the model supports them (unsupported ones stay unmeasured)."""
    module = fused_for_inference(module.eval())  # what the engine runs
    effective = probe_receptive_field(module, in_channels, scale, size_multiple)
    exact = theoretical_field is not None and theoretical_field <= EXACT_FIELD_LIMIT
    field_ = theoretical_field if exact else effective
    fp32 = activation_bytes(module, in_channels, size_multiple, torch.float32)
    dtypes = [d for d, ok in ((torch.bfloat16, bf16), (torch.float16, fp16)) if ok]
    layers, errors = float32_layers(module, dtypes, in_channels, size_multiple, float_input)
    bf16_bytes = 0
    if bf16:
        half = reduced_copy(module, torch.bfloat16, layers)
        bf16_bytes = activation_bytes(half, in_channels, size_multiple, torch.bfloat16)
    found = {d: errors.get(d, Fidelity()) for d in (torch.bfloat16, torch.float16)}
    return Measured(
        int(field_ or 0),
        effective,
        fp32,
        bf16_bytes,
        found[torch.bfloat16].psnr,
        found[torch.bfloat16].max_levels,
        found[torch.float16].psnr,
        found[torch.float16].max_levels,
        not exact,
        layers.input,
        layers.block,
        layers.output,
    )


def float32_layers(
    module: nn.Module,
    dtypes: list[torch.dtype],
    in_channels: int,
    multiple: int,
    float_input: bool,
) -> tuple[Float32Layers, dict[torch.dtype, Fidelity]]:
    """The layers of ``module`` kept float32 in the reduced formats ``dtypes``, and the fidelity
    of each format with them. Tried in order, each with the layers before: the input layer; the
    output layer; the block run after the input layer (at most a quarter of the weights: more
    would leave little of the speed). The first set whose first format (bf16 where measured)
    meets the precision rule is taken, else the input layer alone; a set with which the network
    does not run on float32 input (a network that feeds the image to another layer too would mix
    dtypes there) is skipped. ``float_input``: the architecture keeps its own (``compact``)."""
    if not dtypes:
        return Float32Layers(), {}
    convs, children = ([], []) if float_input else _call_order(module, in_channels, multiple)
    first, last = (convs[0], convs[-1]) if convs else ("", "")
    parent = first.split(".")[0]
    after = children[children.index(parent) + 1 :] if parent in children else []
    block = after[0] if after and after[0] != last.split(".")[0] else ""
    weights = sum(p.numel() for p in module.parameters())
    if block and 4 * sum(p.numel() for p in module.get_submodule(block).parameters()) > weights:
        block = ""
    trials = [Float32Layers()]
    if first:
        trials = [Float32Layers(first)]
        if last and last != first:
            trials.append(Float32Layers(first, output=last))
            if block:
                trials.append(Float32Layers(first, block, last))
    chosen: tuple[Float32Layers, dict[torch.dtype, Fidelity]] | None = None
    for layers in trials:
        if layers.names and not _runs_with(module, dtypes[0], layers, in_channels, multiple):
            continue
        reduced = {d: reduced_copy(module, d, layers) for d in dtypes}
        errors = fidelity(module, reduced, in_channels, multiple, float_input or bool(layers.input))
        chosen = chosen or (layers, errors)  # the first that runs, should none meet the rule
        if errors[dtypes[0]].meets_rule():
            return layers, errors
    if chosen is None:  # the input layer alone cannot run float32: plain casting
        reduced = {d: reduced_copy(module, d) for d in dtypes}
        return Float32Layers(), fidelity(module, reduced, in_channels, multiple, float_input)
    return chosen


def _call_order(module: nn.Module, in_channels: int, multiple: int) -> tuple[list[str], list[str]]:
    """The convolutions, and the direct children, of ``module`` in the order a forward pass
    first calls them; empty lists where it cannot run on the probe."""
    names: dict[nn.Module, str] = {
        m: n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)
    }
    tops: dict[nn.Module, str] = {m: n for n, m in module.named_children()}
    convs: list[str] = []
    children: list[str] = []

    def seen(part: nn.Module, _args: Any) -> None:
        for found, known in ((convs, names), (children, tops)):
            if part in known and known[part] not in found:
                found.append(known[part])

    hooks = [m.register_forward_pre_hook(seen) for m in {*names, *tops}]
    try:
        _forward(module, probe_texture(in_channels, 16, multiple))
    except Exception:  # a module that cannot run on the probe keeps plain casting
        return [], []
    finally:
        for hook in hooks:
            hook.remove()
    return convs, children


def _runs_with(
    module: nn.Module, dtype: torch.dtype, layers: Float32Layers, in_channels: int, multiple: int
) -> bool:
    """Whether a ``dtype`` copy of ``module`` with ``layers`` kept float32 runs on float32 input
    to a finite output."""
    try:
        half = reduced_copy(module, dtype, layers)
        return bool(_forward(half, probe_texture(in_channels, 16, multiple)).isfinite().all())
    except Exception:
        return False


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return module(x.contiguous(memory_format=torch.channels_last)).float()


def _probe_rgb() -> np.ndarray:
    """The bundled samples side by side, ``(128, 5 * 128, 3)`` float in ``[0, 1]``: the tileable
    rock, wood, a duct, a normal map and a cutout grate (as RGB), 128 px each."""
    from PIL import Image

    with Image.open(PROBE_FILE) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255


def _as_channels(rgb: np.ndarray, in_channels: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    if in_channels == 1:
        return x.mean(dim=1, keepdim=True)
    if in_channels == 4:
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    return x


def probe_texture(in_channels: int, side: int, multiple: int = 1) -> torch.Tensor:
    """``(1, C, side', side')``: the first sample (a tileable rock texture) tiled to ``side'``
    (``side`` rounded up to ``multiple``); gray or RGBA models get gray or opaque alpha."""
    side = -(-side // multiple) * multiple
    rock = _probe_rgb()[:, :128]
    reps = (-(-side // rock.shape[0]), -(-side // rock.shape[1]), 1)
    return _as_channels(np.tile(rock, reps)[:side, :side], in_channels)


def probe_samples(in_channels: int, side: int, multiple: int = 1) -> list[torch.Tensor]:
    """Centre crops of ``side'`` px (``side`` rounded up to ``multiple``) of every bundled
    sample, ``(1, C, side', side')`` each."""
    side = min(128, -(-side // multiple) * multiple)
    strip, crops = _probe_rgb(), []
    first = (128 - side) // 2
    for left in range(0, strip.shape[1], 128):
        crop = strip[first : first + side, left + first : left + first + side]
        crops.append(_as_channels(crop, in_channels))
    return crops


def probe_receptive_field(
    module: nn.Module, in_channels: int, scale: int, multiple: int = 1
) -> int:
    """The effective radius: the farthest input pixel (Chebyshev distance, in input pixels) from
    which a change of one pixel moves an output value by at least 1/255, probed at two spots of a
    real texture by flipping the pixel (``v -> 1 - v``). Capped at ``PROBE_RADIUS``."""
    base = probe_texture(in_channels, 2 * PROBE_RADIUS + 1, multiple)
    out = _forward(module, base)
    radius = 0
    for cy, cx in ((PROBE_RADIUS, PROBE_RADIUS), (PROBE_RADIUS - 7, PROBE_RADIUS + 5)):
        changed = base.clone()
        changed[:, :, cy, cx] = 1 - changed[:, :, cy, cx]
        delta = (_forward(module, changed) - out).abs().amax(dim=(0, 1))
        ys, xs = torch.nonzero(delta >= 1 / 255, as_tuple=True)
        if len(ys):
            dist = torch.maximum((ys // scale - cy).abs(), (xs // scale - cx).abs())
            radius = max(radius, int(dist.max()))
    return min(radius, PROBE_RADIUS)


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of tensors created by ops while active (views share their storage's bytes;
    storages held by ``external`` tensors, the input and the weights, are not counted)."""

    def __init__(self, external: list[torch.Tensor]) -> None:
        super().__init__()
        self.external = {t.untyped_storage().data_ptr() for t in external}
        self.refs: dict[int, int] = {}  # storage -> live tracked tensors
        self.sizes: dict[int, int] = {}
        self.tracked: set[int] = set()  # ids of live tracked tensor objects
        self.now = self.peak = 0

    def _release(self, ident: int, key: int) -> None:
        self.tracked.discard(ident)
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.now -= self.sizes.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or id(t) in self.tracked:
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if key in self.external or not size:
                continue
            if key not in self.refs:
                self.refs[key], self.sizes[key] = 0, size
                self.now += size
                self.peak = max(self.peak, self.now)
            self.refs[key] += 1
            self.tracked.add(id(t))
            weakref.finalize(t, self._release, id(t), key)
        return out


def _peak_bytes(module: nn.Module, x: torch.Tensor) -> int:
    x = x.contiguous(memory_format=torch.channels_last)
    tracker = _LiveBytes([x, *module.parameters(), *module.buffers()])
    with torch.inference_mode(), tracker:
        y = module(x)
    del y
    return tracker.peak


def activation_bytes(module: nn.Module, in_channels: int, multiple: int, dtype: torch.dtype) -> int:
    """Peak activation bytes per input pixel of one item at ``dtype`` (the module's dtype)."""
    module = module.to(memory_format=torch.channels_last)
    sides = [-(-s // multiple) * multiple for s in MEMORY_SIDES]
    peaks = [_peak_bytes(module, probe_texture(in_channels, s, multiple).to(dtype)) for s in sides]
    slope = (peaks[1] - peaks[0]) / (sides[1] ** 2 - sides[0] ** 2)
    return max(1, round(max(slope, peaks[1] / sides[1] ** 2)))


def fidelity(
    module: nn.Module,
    reduced: dict[torch.dtype, nn.Module],
    in_channels: int,
    multiple: int,
    float_input: bool = False,
    *,
    stop_early: bool = True,
) -> dict[torch.dtype, Fidelity]:
    """The 8-bit output of each of ``reduced`` (copies of ``module`` in bf16 or fp16, by dtype)
    against ``module``'s (fp32), every channel, on the five bundled samples (128 px each): the
    PSNR and the largest difference in levels. NaN or Inf anywhere (fp16 overflow): ``(0, 255)``.

    With ``stop_early``, a format stops being measured as soon as the samples seen already break
    the rule, and its figures are those the whole would have were the rest identical (a higher
    PSNR and a smaller difference than the truth, still outside the rule); the fp32 passes stop
    when no format is left."""
    module = module.to(memory_format=torch.channels_last)
    samples = probe_samples(in_channels, 128, multiple)
    squared = dict.fromkeys(reduced, 0.0)
    worst = dict.fromkeys(reduced, 0)
    found: dict[torch.dtype, Fidelity] = {}
    for i, x in enumerate(samples):
        left = [d for d in reduced if d not in found]
        if not left:
            break
        ours = _levels(_forward(module, x))
        total = ours.numel() * len(samples)  # every sample has the same size
        for dtype in left:
            half = reduced[dtype].to(memory_format=torch.channels_last)
            out = _forward(half, x if float_input else x.to(dtype))
            if not bool(out.isfinite().all()):
                found[dtype] = Fidelity()
                continue
            diff = (_levels(out) - ours).abs()
            squared[dtype] += float(diff.double().square().sum())
            worst[dtype] = max(worst[dtype], int(diff.max()))
            seen = Fidelity(_psnr(squared[dtype], total), worst[dtype])
            if (stop_early and not seen.meets_rule()) or i == len(samples) - 1:
                found[dtype] = seen
    return found


def _levels(y: torch.Tensor) -> torch.Tensor:
    return (y.clamp(0, 1) * 255).round()


def _psnr(squared: float, count: int) -> float:
    """PSNR in dB of 8-bit values from the sum of squared level differences over ``count``."""
    if squared == 0:
        return PSNR_CAP
    return min(PSNR_CAP, 10 * math.log10(255**2 * count / squared))

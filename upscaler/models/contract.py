"""What a generator promises the engine, for our architectures and community ones alike.

A ``ModelInfo`` is spandrel's descriptor reduced to what tiling, padding, memory planning and the
choice of precision need: scale, channels, size multiple and minimum, the supported precisions,
the receptive field and the activation memory per pixel. The last two are *measured*, not
guessed, once per model file (``measure``) and cached by the file's SHA-256:

* **effective receptive field**: the radius, in input pixels, beyond which changing one input
  pixel moves no output value by 1/255 or more (probed on a real texture). It sets the wrap
  padding of tileable textures, and the tile overlap of deep architectures (RRDB's theoretical
  radius is hundreds of pixels). Shallow ones whose theoretical radius is small (compact: one
  pixel per conv) overlap tiles by that exact radius instead, so tiles stay bit-exact.
* **activation bytes per input pixel**, fp32 and bf16: the peak of live tensor bytes during a
  forward pass, tracked op by op at two sizes (the slope, so weights and fixed buffers drop out).
* **fidelity in bf16 and fp16**: how far the 8-bit output of a bf16 (and an fp16) forward is
  from fp32's on the bundled probe textures, every channel: its PSNR and its largest difference
  in levels. One rule, the same for both formats and every device, decides whether
  ``--precision auto`` may use a format (``Fidelity.meets_rule``): PSNR >= ``MIN_PSNR`` (50 dB:
  an RMS error of 0.8 level) and no value more than ``MAX_LEVELS`` (12) levels off: the largest
  difference of a model that passes by PSNR was 8 (RealESRGAN_x4plus in bf16), a limit at that
  would flip on one rounding, and a broken format moves values by far more (SPAN: 255). The
  formats are measured on CPU once per file (fp16 only where a GPU is present: only a GPU runs
  it fast); the convolutions of both CPU (oneDNN) and GPU (cuDNN) accumulate bf16 and fp16
  products in float32, so the rounding measured is the format's.
* **input layer**: the convolution a forward pass runs first, the one that sees the image. In
  bf16 or fp16 it stays float32 (``keep_input_layer``): bf16 rounds 8-bit levels above 0.5 by
  up to half a level, and every layer after it amplifies that (RealESRGAN_x4plus: 95.1% of
  pixels within one level of fp32 with the input rounded, 98.7% without, and no slower).
"""

from __future__ import annotations

import copy
import json
import math
import os
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from upscaler.atomic import read_regular, write_bytes_atomic
from upscaler.models.known import file_sha256

# Architectures (ours, and spandrel's ids) in which only convolutions look at neighbouring
# pixels (no attention windows, no image-wide statistics), so circular padding wraps them.
CONV_ONLY = frozenset({"compact", "rrdb", "Compact", "ESRGAN", "SPAN"})
EXACT_FIELD_LIMIT = 32  # theoretical radii up to this are used as they are (bit-exact tiles)
PROBE_RADIUS = 48  # input pixels probed around the changed pixel (deeper influence is capped)
MEMORY_SIDES = (24, 40)  # input sides of the two memory-tracking passes
MIN_PSNR = 50.0  # dB against fp32's 8-bit output, for auto to choose bf16 or fp16
MAX_LEVELS = 12  # ... and no 8-bit value further than this from fp32's (see the README)
PSNR_CAP = 99.0  # identical outputs (no error at all) are recorded as this
CACHE_VERSION = 7  # bump whenever what is measured, or how, changes
MAX_CACHE_BYTES = 1 << 16  # a cached measurement is a few hundred bytes
PROBE_FILE = Path(__file__).parent / "probe.png"


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
    receptive_field: int = 16  # tile overlap radius in input pixels (see the module docstring)
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
    input_layer: str = ""  # community models: the conv kept float32 under bf16/fp16 (see above)
    circular: bool = False  # only convolutions see neighbours: circular padding wraps it exactly
    num_params: int = 0
    source: str = ""
    metadata: tuple[tuple[str, str], ...] = ()

    def activation_bytes(self, dtype: torch.dtype) -> float:
        """Activation bytes per input pixel per item at ``dtype``."""
        if dtype == torch.float32:
            return float(self.bytes_per_pixel)
        return float(self.bf16_bytes_per_pixel or self.bytes_per_pixel / 2)

    def fidelity(self, dtype: torch.dtype) -> Fidelity:
        """Its output at ``dtype`` against fp32's (fp32 itself: identical)."""
        if dtype == torch.float32:
            return Fidelity(PSNR_CAP, 0)
        if dtype == torch.bfloat16:
            return self.bf16_fidelity
        if dtype == torch.float16:
            return self.fp16_fidelity
        return Fidelity()


@dataclass(frozen=True)
class Measured:
    """The measured part of a contract, as cached per model file."""

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

    @classmethod
    def from_record(cls, record: object) -> Measured:
        """The measurement a cache file holds; ``ValueError`` unless every field is there with
        its type and range (counts >= 0, PSNR in [0, PSNR_CAP], levels in [0, 255]): a cache is
        untrusted input."""
        if not isinstance(record, dict) or set(record) != {f.name for f in fields(cls)}:
            raise ValueError("not a measurement")
        counts = ("receptive_field", "wrap_field", "bytes_per_pixel", "bf16_bytes_per_pixel")
        for name in (*counts, "bf16_max_levels", "fp16_max_levels"):
            value = record[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a count, not {value!r}")
            if name.endswith("_levels") and value > 255:
                raise ValueError(f"{name} must be at most 255, not {value}")
        for name in ("bf16_psnr", "fp16_psnr"):
            value = record[name]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{name} must be a number")
            if not 0 <= value <= PSNR_CAP:  # also refuses NaN
                raise ValueError(f"{name} must be in [0, {PSNR_CAP}]")
        if not isinstance(record["probed_field"], bool):
            raise ValueError("probed_field must be true or false")
        if not isinstance(record["input_layer"], str):
            raise ValueError("input_layer must be a string")
        return cls(**record)

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
    module = module.eval()
    effective = probe_receptive_field(module, in_channels, scale, size_multiple)
    exact = theoretical_field is not None and theoretical_field <= EXACT_FIELD_LIMIT
    field_ = theoretical_field if exact else effective
    fp32 = activation_bytes(module, in_channels, size_multiple, torch.float32)
    dtypes = [d for d, ok in ((torch.bfloat16, bf16), (torch.float16, fp16)) if ok]
    layer = ""
    if dtypes and not float_input:  # our architectures keep their own input layer (compact._apply)
        layer = input_layer(module, in_channels, size_multiple)
        trial = copy.deepcopy(module).to(dtypes[0])
        if layer and not _runs_with_input_layer(trial, layer, in_channels, size_multiple):
            layer = ""
    reduced = {d: reduced_copy(module, d, layer) for d in dtypes}
    errors = fidelity(module, reduced, in_channels, size_multiple, float_input or bool(layer))
    bf16_bytes = 0
    if bf16:
        half = reduced[torch.bfloat16]
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
        layer,
    )


def reduced_copy(module: nn.Module, dtype: torch.dtype, layer: str = "") -> nn.Module:
    """A copy of ``module`` cast to ``dtype``, its convolution ``layer`` (if any) kept float32."""
    copied = copy.deepcopy(module).to(dtype)
    if layer:
        keep_input_layer(copied, layer)
    return copied


def input_layer(module: nn.Module, in_channels: int, multiple: int = 1) -> str:
    """The name of the convolution that a forward pass of ``module`` runs first, "" if none."""
    names = {m: n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    seen: list[str] = []
    hooks = [c.register_forward_pre_hook(lambda c, _a: seen.append(names[c])) for c in names]
    try:
        _forward(module, probe_texture(in_channels, 16, multiple))
    except Exception:  # a module that cannot run on the probe keeps plain casting
        return ""
    finally:
        for hook in hooks:
            hook.remove()
    return seen[0] if seen else ""


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


def _runs_with_input_layer(half: nn.Module, layer: str, in_channels: int, multiple: int) -> bool:
    """Apply ``keep_input_layer`` to ``half`` and check that it runs on float32 input: a network
    that feeds the image to another layer too would mix dtypes there."""
    try:
        keep_input_layer(half, layer)
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


# -- the cache ------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where measured contracts are kept: ``$UPSCALE_CACHE_DIR``, else the user's cache dir."""
    explicit = os.environ.get("UPSCALE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "texture-upscaler"


def cached(key: str, compute: Callable[[], Measured]) -> Measured:
    """The measurement stored under ``key`` (a file hash and the torch version), or ``compute``
    it and store it. An unreadable or unwritable cache only costs the measurement; so does one
    that is not a regular file (a FIFO is never opened) or whose fields are not as ``measure``
    writes them (``Measured.from_record``)."""
    path = cache_dir() / f"contract-{key[:32]}.json"
    try:
        stored = json.loads(read_regular(path, MAX_CACHE_BYTES))
        if stored.get("version") == CACHE_VERSION and stored.get("key") == key:
            return Measured.from_record(stored["measured"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        pass
    measured = compute()
    record = {"version": CACHE_VERSION, "key": key, "measured": asdict(measured)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(record).encode(), fsync=False)
    except OSError:
        pass
    return measured


def contract_key(path: Path) -> str:
    return f"{file_sha256(path)}-torch{torch.__version__}"

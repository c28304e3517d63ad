"""Tensor in, tensor out: a loaded generator plus channels, padding, tiling, precision and OOM care.

``Upscaler`` takes ``(B, C, H, W)`` images (float in ``[0, 1]``, or uint8/uint16 integers) with
C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) and returns ``(B, C, H*s, W*s)`` float32. Alpha
and gray images ride in the same model pass as the colour (as extra batch items), never a second
pass. Each call is planned first (``plan``: a frozen ``UpscalePlan``, see ``engine.plan``), then
carried out (``run_plan``): large images are tiled with blended overlaps and output rows are
released band by band, so the full-size float output need not exist at once (``upscale_bands``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Unpack

import torch
from torch import nn
from torch.nn import functional as F

from upscaler.engine.budget import MIN_TILE, is_out_of_memory, memory_budget
from upscaler.engine.plan import Group, PlanOptions, UpscalePlan, plan_upscale, wrap_width
from upscaler.engine.tiling import BandMerger, Tile, split_tile, tile_weights
from upscaler.models.descriptor import ModelInfo
from upscaler.models.padding import wrap_pad
from upscaler.models.span import fused_for_inference
from upscaler.texture.seamless import wrap_index

__all__ = [
    "ModelInfo",
    "NonFiniteOutputError",
    "NotEnoughMemoryError",
    "Upscaler",
    "is_out_of_memory",
    "memory_budget",
]


class NotEnoughMemoryError(RuntimeError):
    """The image could not be processed within memory, even at the smallest tile allowed."""


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN or Inf: its weights (or the precision) are broken for every
    input, so the run stops rather than write black or white images."""


class Upscaler:
    """A generator ready for inference on one device and precision. Call it like a function.

    It holds no state of a call: each call plans, then runs the plan. ``for_blocks``: the
    upscaler that ``upscale_images`` uses instead on textures that were block-compressed
    (``upscaler.texture.blocks``), when the model comes with one (a shipped model's ``blocks``).
    """

    def __init__(
        self,
        module: nn.Module,
        info: ModelInfo,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_memory: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.info = info
        # SPAN's re-parameterised convolutions are summed once here, not on every forward.
        module = fused_for_inference(module.eval())
        self.module = module.eval().requires_grad_(False).to(device=self.device, dtype=dtype)
        if dtype in (torch.bfloat16, torch.float16):
            info.float32_layers.apply(self.module)  # the input layer then takes float32 input
        # Channels-last convolutions run ~1.4x faster with oneDNN on CPU and on tensor cores.
        self.module = self.module.to(memory_format=torch.channels_last)
        # ``max_memory`` (bytes) caps everything the upscaling holds on the device, weights,
        # tiles, activations and the merged band included (see ``budget``).
        self.budget = max_memory or memory_budget(self.device)
        self.weight_bytes = sum(
            t.numel() * t.element_size()
            for t in (*self.module.parameters(), *self.module.buffers())
        )
        self.for_blocks: Upscaler | None = None
        self.wild_pixels = 0  # output pixels where the model blew up, filled bicubic (steadied)

    @property
    def scale(self) -> int:
        return self.info.scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.upscale(x)

    # -- public API -------------------------------------------------------------------------------

    def upscale(
        self,
        x: torch.Tensor,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        wrap: tuple[bool, bool] = (False, False),
        context: int = 0,
    ) -> torch.Tensor:
        """Upscale ``(B, C, H, W)`` to ``(B, C, H*s, W*s)`` float32 in ``[0, 1]`` on ``x``'s device.

        ``tile``: core size in input pixels (None: chosen from memory; a given size is never
        changed). ``wrap``: pad circularly along (rows, columns) so a tileable texture still tiles.
        ``context``: the outer texels on each side of ``x`` are surroundings the caller gave (a
        cube face's neighbours, see ``wrap_width``): seen by the model, cropped from the output.
        """
        plan = self.plan(x, tile=tile, overlap=overlap, wrap=wrap, context=context)
        _, height, _, width = plan.window
        out = torch.empty(x.shape[0], x.shape[1], height, width, device=x.device)
        for y, band in self.run_plan(x, plan):
            out[:, :, y : y + band.shape[2]] = band.to(x.device)
        return out

    def upscale_bands(
        self,
        x: torch.Tensor,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        wrap: tuple[bool, bool] = (False, False),
        context: int = 0,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(y, rows)``: finished output rows ``(B, C, n, W*s)`` starting at row ``y``.

        Rows come in order, on the model's device, float32, clamped to ``[0, 1]``; each chunk is
        a new tensor the caller may keep. Chunks are of bounded size when the image takes more
        than one row of tiles; otherwise the whole output comes as one. ``context``: as in
        ``upscale`` (``W`` is then the width inside it).
        """
        yield from self.run_plan(
            x, self.plan(x, tile=tile, overlap=overlap, wrap=wrap, context=context)
        )

    def plan(self, x: torch.Tensor, **options: Unpack[PlanOptions]) -> UpscalePlan:
        """How ``upscale(x, **options)`` runs: padding, tiles, items per pass (no model runs)."""
        return plan_upscale(
            _check_image(x),
            self.info,
            dtype=self.dtype,
            budget=self.budget,
            weight_bytes=self.weight_bytes,
            **options,
        )

    def run_plan(self, x: torch.Tensor, plan: UpscalePlan) -> Iterator[tuple[int, torch.Tensor]]:
        """Carry out ``plan`` (made for ``x``'s shape): yield rows as ``upscale_bands`` does."""
        if _check_image(x) != plan.image:
            raise ValueError(f"a plan for {plan.image} cannot run on {tuple(x.shape)}")
        b, c = plan.image[:2]
        source = _ModelInput(x, plan, self.info.in_channels)
        s, out_channels = self.scale, self.info.out_channels
        merger = BandMerger(plan.items, out_channels, plan.size[1] * s, s, self.device)
        emit = _Cropper(plan.window, lambda t: _from_model(t, plan.groups, b, c), plan.chunk)
        if plan.one_pass:
            # One tile, one pass: its output is the whole image; no band to merge it into.
            try:
                whole = self._forward(source.crop(plan.rows[0][0], 0, plan.items), plan.circular)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            else:
                yield from emit(0, whole)
                return
        per_pass = plan.items_per_pass
        for row in plan.rows:
            finished = merger.release(row[0].in_y0)
            if finished is not None:
                yield from emit(*finished)
                del finished  # the band's rows are reused by ``reserve``
            merger.reserve(row[0].in_y1)
            for shape_tiles in _by_shape(row):
                per_pass = self._run_tiles(source, shape_tiles, merger, plan, per_pass)
        finished = merger.finish()
        if finished is not None:
            yield from emit(*finished)

    def wrap_width(self, size: int) -> int:
        """Texels of surroundings a side of ``size`` texels is padded with when it wraps (see
        ``engine.plan.wrap_width``). Cube faces get their neighbours' edges this wide."""
        return wrap_width(self.info, size)

    # -- internals --------------------------------------------------------------------------------

    def _run_tiles(
        self,
        source: _ModelInput,
        tiles: tuple[Tile, ...],
        merger: BandMerger,
        plan: UpscalePlan,
        per_pass: int,
    ) -> int:
        """Run same-shaped tiles, at most ``per_pass`` items per forward pass, merging each pass
        as it finishes; return the items per pass that still fit. Out of memory halves the pass,
        then splits the tile (not a circular pass: it needs the whole image)."""
        hp, wp = plan.size
        queue = deque((t, 0, plan.items) for t in tiles)  # (tile, first item, end item)
        while queue:
            units, count = [], 0
            while queue and count < per_pass:
                t, first, end = queue.popleft()
                take = min(end - first, per_pass - count)
                units.append((t, first, first + take))
                if first + take < end:
                    queue.appendleft((t, first + take, end))
                count += take
            try:
                batch = torch.cat([source.crop(t, a, z) for t, a, z in units])
                result = self._forward(batch, plan.circular)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                queue.extendleft(reversed(units))
                if count > 1:
                    per_pass = max(1, count // 2)
                    continue
                t, first, end = queue.popleft()
                if plan.circular:
                    raise NotEnoughMemoryError(
                        f"out of memory on the whole {hp}x{wp} texture in one wrapped pass; "
                        "set --tile to tile it"
                    ) from None
                for sub in reversed(self._split(t, plan)):
                    queue.appendleft((sub, first, end))
                continue
            offset = 0
            with torch.inference_mode():
                for t, first, end in units:
                    weights = tile_weights(
                        t, hp, wp, plan.overlap, plan.margin, self.scale, self.device
                    )
                    merger.add(t, result[offset : offset + end - first], weights, first)
                    offset += end - first
            del result
        return per_pass

    def _split(self, t: Tile, plan: UpscalePlan) -> list[Tile]:
        th, tw = t.y1 - t.y0, t.x1 - t.x0
        if plan.fixed_tile:
            raise NotEnoughMemoryError(
                f"out of memory at the tile size you set ({th}x{tw} px); "
                "try a smaller --tile or leave it unset"
            ) from None
        hp, wp = plan.size
        subs = split_tile(t, hp, wp, plan.overlap, self.info.size_multiple, MIN_TILE)
        if len(subs) == 1:
            raise NotEnoughMemoryError(
                f"out of memory even at {th}x{tw} px tiles (the smallest allowed)"
            ) from None
        return subs

    def _forward(self, batch: torch.Tensor, circular: bool = False) -> torch.Tensor:
        """The model on ``(N, Cm, h, w)`` model items: float32 ``(N, Cm, h*s, w*s)``."""
        data = batch.to(self.device, non_blocking=True)
        if not data.is_floating_point():  # integers are scaled on the device: 4x less to copy
            data = data.float().div_(_max_value(batch))
        if not (self.info.float_input or self.info.input_layer):  # else the model casts
            data = data.to(self.dtype)
        data = data.contiguous(memory_format=torch.channels_last)
        exact = self.dtype == torch.float32
        with torch.inference_mode(), circular_padding(self.module, circular), no_tf32(exact):
            out = self.module(data)
        expected = (batch.shape[2] * self.scale, batch.shape[3] * self.scale)
        if tuple(out.shape[2:]) != expected:
            raise RuntimeError(
                f"model returned {tuple(out.shape[2:])} for input {tuple(batch.shape[2:])}; "
                f"expected x{self.scale}"
            )
        # A sum is NaN or Inf if any term is (a 256^2 x4 output: 1 ms, the elementwise test 30);
        # the elementwise test then tells a real one from a sum that overflowed.
        if not bool(torch.isfinite(out.sum())) and not bool(torch.isfinite(out).all()):
            dtype = str(self.dtype).removeprefix("torch.")
            raise NonFiniteOutputError(
                f"model {self.info.name} produced NaN or Inf values ({dtype}, a "
                f"{batch.shape[2]}x{batch.shape[3]} px tile); its outputs would be solid "
                "black or white"
            )
        out, wild = steadied(out.float(), data, self.scale)
        self.wild_pixels += wild
        return out


WILD = 1.0  # an output value this far outside [0, 1] is a blow-up, not an overshoot (steadied)
REACH = 4  # input texels around a blown-up pixel that take the bicubic upscale too


def steadied(out: torch.Tensor, data: torch.Tensor, scale: int) -> tuple[torch.Tensor, int]:
    """``out`` (float32, the model's output for ``data``) with the places where the model blew
    up filled from a bicubic upscale of ``data``, and how many output pixels had blown up.

    A network can amplify what its training never showed it into noise far outside [0, 1]:
    the official SPAN x2 and SPAN x4, and models fine-tuned from them, on full-contrast
    one-pixel checkers and stripes (values to +-3,000) and on some real low-res tiles with flat
    white ground (Warzone 2100: -18 to 23, a third of the pixels). Clamping leaves that as
    colour noise. Where a value leaves [-WILD, 1 + WILD] (sharp edges overshoot by a few
    tenths; blow-ups by far more), the pixel and everything within four input texels of it take
    the bicubic upscale instead, feathered over one more texel so no seam shows. A model that
    never blows up pays one comparison per output value."""
    channels = data.shape[1]
    if out.shape[1] != channels:  # e.g. a model that adds or drops alpha: nothing to fill from
        return out, 0
    wild = ((out < -WILD) | (out > 1 + WILD)).any(dim=1, keepdim=True)
    count = int(wild.sum())
    if not count:
        return out, 0
    radius = REACH * scale
    region = F.max_pool2d(wild.float(), 2 * radius + 1, stride=1, padding=radius)
    weight = F.avg_pool2d(region, 2 * scale + 1, stride=1, padding=scale, count_include_pad=False)
    weight = torch.maximum(weight, wild.float())  # a blown-up pixel itself is always replaced
    fallback = F.interpolate(
        data.float(), scale_factor=scale, mode="bicubic", align_corners=False
    ).clamp(0, 1)
    return torch.lerp(out, fallback, weight), count


@contextmanager
def no_tf32(on: bool = True) -> Iterator[None]:
    """cuDNN convolutions in true fp32 while active: its default, TF32 on Ampere and later,
    rounds products to 10 mantissa bits, and ``--precision fp32`` promises fp32's output (CPUs
    never use TF32)."""
    if not on:
        yield
        return
    cudnn = torch.backends.cudnn
    before, cudnn.allow_tf32 = cudnn.allow_tf32, False
    try:
        yield
    finally:
        cudnn.allow_tf32 = before


@contextmanager
def circular_padding(module: nn.Module, on: bool = True) -> Iterator[None]:
    """Make every padded convolution of ``module`` pad circularly (wrap around the image) while
    active: for a network of convolutions and per-pixel or upsampling layers, the output is then
    that of the image tiled endlessly."""
    # Blocks that wrap themselves (``wraps_itself``: pad once, then unpadded convolutions; see
    # models.rrdb) do it for the convolutions inside them; the hooks take the rest.
    own = [m for m in module.modules() if getattr(m, "wraps_itself", False)] if on else []
    inside = {id(c) for m in own for c in m.modules()}
    convs = [
        c
        for c in module.modules()
        if isinstance(c, nn.Conv2d)
        and id(c) not in inside
        and isinstance(c.padding, tuple)
        and any(c.padding)
    ]
    if not on or not (convs or own):
        yield
        return
    pads = [(int(c.padding[0]), int(c.padding[-1])) for c in convs]
    hooks = []
    for conv, (ph, pw) in zip(convs, pads, strict=True):
        conv.padding = (0, 0)
        hooks.append(
            conv.register_forward_pre_hook(
                lambda _m, args, ph=ph, pw=pw: (wrap_pad(args[0], ph, pw), *args[1:])
            )
        )
    try:
        for block in own:
            setattr(block, "wrap", True)  # noqa: B010  (a plain attribute of those blocks)
        yield
    finally:
        for conv, pad, hook in zip(convs, pads, hooks, strict=True):
            conv.padding = pad
            hook.remove()
        for block in own:
            setattr(block, "wrap", False)  # noqa: B010


class _ModelInput:
    """The image as the model sees it (``plan``'s channel groups as batch items, wrap padding,
    then size padding), cut into tiles on demand. The padded, model-layout copy of the whole
    image never exists: each tile is gathered from the input directly."""

    def __init__(self, x: torch.Tensor, plan: UpscalePlan, model_channels: int) -> None:
        self.x, self.groups, self.model_channels = x, plan.groups, model_channels
        self.rows = _source_index(x.shape[2], plan.pad[0], plan.size[0], x.device)
        self.cols = _source_index(x.shape[3], plan.pad[1], plan.size[1], x.device)

    def crop(self, t: Tile, first: int, end: int) -> torch.Tensor:
        """Items ``first..end`` of tile ``t`` (its context included), in the input's dtype."""
        part = _take(self.x, 2, self.rows[t.in_y0 : t.in_y1])
        part = _take(part, 3, self.cols[t.in_x0 : t.in_x1])
        b = self.x.shape[0]
        pieces = []
        for i, g in enumerate(self.groups):  # only the groups that hold the wanted items
            lo, hi = max(first, i * b), min(end, (i + 1) * b)
            if lo < hi:
                pieces.append(self._to_model(part[lo - i * b : hi - i * b], g))
        return torch.cat(pieces, dim=0)

    def _to_model(self, part: torch.Tensor, g: Group) -> torch.Tensor:
        """Image channels of group ``g`` as ``(n, Cm, h, w)`` model input (dtype kept)."""
        cm = self.model_channels
        chosen = part[:, list(g.channels)]
        if g.replicate:
            return chosen.expand(-1, cm, -1, -1)
        if chosen.shape[1] < cm:  # RGB into an RGBA model: opaque alpha
            opaque = torch.full_like(chosen[:, :1], _max_value(part))
            return torch.cat((chosen, opaque), dim=1)
        return chosen


def _source_index(size: int, pad: int, length: int, device: torch.device) -> torch.Tensor:
    """Source positions along one axis: wrap-padded by ``pad``, then replicate-padded at the end
    to ``length`` (see ``plan.padded_length``)."""
    index = wrap_index(size, pad, device) if pad else torch.arange(size, device=device)
    n = len(index)
    if length != n:
        index = index[torch.arange(length, device=device).clamp_(max=n - 1)]
    return index


def _from_model(y: torch.Tensor, groups: tuple[Group, ...], b: int, c: int) -> torch.Tensor:
    """Model items ``(len(groups) * b, Cm, h, w)`` back as ``(b, c, h, w)`` image channels."""
    if len(groups) == 1 and not groups[0].replicate and groups[0].channels == tuple(range(c)):
        return y[:, :c].clamp(0, 1)  # one group, channels in order: no index_put (28 ms)
    out = torch.empty(b, c, y.shape[2], y.shape[3], device=y.device)
    for i, g in enumerate(groups):
        part = y[i * b : (i + 1) * b]
        if g.replicate:
            out[:, g.channels[0]] = part.mean(dim=1)
        else:
            out[:, list(g.channels)] = part[:, : len(g.channels)]
    return out.clamp_(0, 1)


def _take(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``x`` at ``index`` along ``dim``: a view for a plain range, else a gathered copy."""
    start = int(index[0])
    if int(index[-1]) - start == len(index) - 1 and bool((index.diff() == 1).all()):
        return x.narrow(dim, start, len(index))
    return x.index_select(dim, index)


class _Cropper:
    """Crops released bands to the output window and converts them back to image channels, in
    chunks of at most ``chunk`` rows (so conversion temporaries stay small)."""

    def __init__(
        self,
        window: tuple[int, int, int, int],
        convert: Callable[[torch.Tensor], torch.Tensor],
        chunk: int,
    ) -> None:
        y0, height, x0, width = window
        self.y0, self.y1, self.x0, self.x1 = y0, y0 + height, x0, x0 + width
        self.convert, self.chunk = convert, chunk

    def __call__(self, y: int, band: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        top, bottom = max(y, self.y0), min(y + band.shape[2], self.y1)
        for start in range(top, bottom, self.chunk):
            stop = min(bottom, start + self.chunk)
            rows = band[:, :, start - y : stop - y, self.x0 : self.x1]
            yield start - self.y0, self.convert(rows)


def _by_shape(tiles: tuple[Tile, ...]) -> list[tuple[Tile, ...]]:
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault(t.shape, []).append(t)
    return [tuple(g) for g in groups.values()]


def _max_value(x: torch.Tensor) -> float:
    if x.is_floating_point():
        return 1.0
    return 255.0 if x.dtype == torch.uint8 else 65535.0


def _check_image(x: torch.Tensor) -> tuple[int, int, int, int]:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(
            f"expected a (B, C, H, W) tensor, got shape {tuple(getattr(x, 'shape', ()))}"
        )
    b, c, h, w = x.shape
    if c not in (1, 2, 3, 4):
        raise ValueError(f"expected 1-4 channels (gray, gray+alpha, RGB, RGBA), got {c}")
    if x.dtype not in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
        torch.uint8,
        torch.uint16,
    ):
        raise ValueError(f"unsupported dtype {x.dtype}; use float in [0, 1], uint8 or uint16")
    if h < 1 or w < 1 or b < 1:
        raise ValueError(f"empty image {tuple(x.shape)}")
    return b, c, h, w

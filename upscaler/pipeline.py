"""Tensor in, tensor out: a loaded generator plus channels, padding, tiling, precision and OOM care.

``Upscaler`` takes ``(B, C, H, W)`` images (float in ``[0, 1]``, or uint8/uint16 integers) with
C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) and returns ``(B, C, H*s, W*s)`` float32. Alpha
and gray images ride in the same model pass as the colour (as extra batch items), never a second
pass. Large images are tiled with blended overlaps; output rows are released band by band, so the
full-size float output need not exist at once (``upscale_bands``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .seamless import wrap_pad
from .tiling import BandMerger, Tile, plan_tiles, split_tile, tile_weights

MIN_TILE = 32
DEFAULT_BLEND = 4  # input pixels of cross-fade beyond the receptive field at tile seams
MAX_BLEND = MIN_TILE // 4  # the blend band must fit in half of the thinnest core
MAX_OVERLAP = 32  # deep models (RRDB) have huge theoretical fields; blend instead of exact tiles
CPU_BUDGET_CAP = 4 << 30


class NotEnoughMemoryError(RuntimeError):
    """The image could not be processed within memory, even at the smallest tile allowed."""


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a generator (spandrel's descriptor, reduced)."""

    name: str
    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    receptive_field: int = 16  # radius in input pixels
    size_multiple: int = 1
    min_size: int = 1
    supports_bf16: bool = True
    supports_fp16: bool = True
    bytes_per_pixel: int = 2048  # fp32 activation bytes per input pixel per item, estimated
    num_params: int = 0
    source: str = ""
    metadata: tuple[tuple[str, str], ...] = ()


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "DefaultCPUAllocator" in text
    )


def memory_budget(device: torch.device) -> int:
    """Bytes of activations the tiler plans for. Derived from total (not free) memory, so that the
    tile grid, and with it every output bit, is the same from run to run on one machine."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return int(total * 0.5)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(total // 4, CPU_BUDGET_CAP))


@dataclass(frozen=True)
class _Group:
    """Image channels fed to the model together; ``replicate`` feeds one channel as all inputs."""

    channels: tuple[int, ...]
    replicate: bool


def _channel_groups(image_channels: int, model_channels: int) -> list[_Group]:
    if image_channels == model_channels:
        return [_Group(tuple(range(image_channels)), False)]
    if model_channels == 3 and image_channels == 4:
        return [_Group((0, 1, 2), False), _Group((3,), True)]
    if model_channels == 4 and image_channels == 3:
        return [_Group((0, 1, 2), False)]  # padded with opaque alpha in _to_model
    return [_Group((c,), True) for c in range(image_channels)]


class Upscaler:
    """A generator ready for inference on one device and precision. Call it like a function."""

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
        self.module = module.eval().requires_grad_(False).to(device=self.device, dtype=dtype)
        # Channels-last convolutions run ~1.4x faster with oneDNN on CPU and on tensor cores.
        self.module = self.module.to(memory_format=torch.channels_last)
        # ``max_memory`` (bytes) caps what the tiler plans for; weights come on top.
        self.budget = max_memory or memory_budget(self.device)
        self.tiles_run = 0  # for reports and tests

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
    ) -> torch.Tensor:
        """Upscale ``(B, C, H, W)`` to ``(B, C, H*s, W*s)`` float32 in ``[0, 1]`` on ``x``'s device.

        ``tile``: core size in input pixels (None: chosen from memory; a given size is never
        changed). ``wrap``: pad circularly along (rows, columns) so a tileable texture still tiles.
        """
        b, c, h, w = _check_image(x)
        s = self.scale
        out = torch.empty(b, c, h * s, w * s, device=x.device)
        for y, band in self.upscale_bands(x, tile=tile, overlap=overlap, wrap=wrap):
            out[:, :, y : y + band.shape[2]] = band.to(x.device)
        return out

    def upscale_bands(
        self,
        x: torch.Tensor,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        wrap: tuple[bool, bool] = (False, False),
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(y, rows)``: finished output rows ``(B, C, n, W*s)`` starting at row ``y``.

        Rows come in order, on the model's device, float32, clamped to ``[0, 1]``.
        """
        b, c, h, w = _check_image(x)
        info, s = self.info, self.scale
        groups = _channel_groups(c, info.in_channels)
        rf = info.receptive_field
        overlap = min(rf + DEFAULT_BLEND, MAX_OVERLAP) if overlap is None else overlap
        overlap = -(-overlap // info.size_multiple) * info.size_multiple
        user_tile = tile is not None

        # Wrap padding covers the receptive field so the result tiles; size padding meets the
        # model's multiple and minimum. Both are cropped away from the output.
        pad_y = -(-rf // info.size_multiple) * info.size_multiple if wrap[0] else 0
        pad_x = -(-rf // info.size_multiple) * info.size_multiple if wrap[1] else 0
        xm = self._to_model(x, groups)
        xm = wrap_pad(xm, pad_y, pad_x)
        xm, (hp, wp) = _pad_to(xm, info.size_multiple, info.min_size)
        items = xm.shape[0]

        if tile is None:
            tile = self._auto_tile(hp, wp, overlap)
        tile = max(info.size_multiple, tile // info.size_multiple * info.size_multiple)
        # Pixels within ``margin`` of a tile's cut edge are discarded; past it they are exact when
        # margin >= receptive field, and the rest of the overlap is cross-faded.
        margin = max(min(rf, overlap), overlap - min(MAX_BLEND, tile // 4))
        tile_pixels = min(hp, tile + 2 * overlap) * min(wp, tile + 2 * overlap)
        self._max_items = max(
            1, min(items, int(self.budget // (tile_pixels * self._bytes_per_pixel())))
        )

        crop_y0, crop_x0 = pad_y * s, pad_x * s
        out_h, out_w = h * s, w * s
        merger = BandMerger(items, info.out_channels, wp * s, s, self.device)
        rows = plan_tiles(hp, wp, tile, overlap, info.size_multiple)
        emit = _Cropper(crop_y0, out_h, crop_x0, out_w, lambda t: self._from_model(t, groups, b, c))
        for row in rows:
            for y, band in merger.start_row(row[0].in_y0, row[0].in_y1):
                yield from emit(y, band)
            for shape_tiles in _by_shape(row):
                self._run_tiles(xm, shape_tiles, merger, (hp, wp), overlap, margin, user_tile)
        for y, band in merger.finish():
            yield from emit(y, band)

    # -- internals --------------------------------------------------------------------------------

    def _bytes_per_pixel(self) -> float:
        """Planned bytes per input pixel of one item: activations plus the float output side."""
        activations = self.info.bytes_per_pixel * (1.0 if self.dtype == torch.float32 else 0.5)
        return activations + 4 * self.info.out_channels * self.scale**2 * 3

    def _auto_tile(self, h: int, w: int, overlap: int) -> int:
        per_pixel = self._bytes_per_pixel()
        if h * w * per_pixel <= self.budget:
            return max(h, w)  # one item fits whole; items are then batched as memory allows
        side = int((self.budget / per_pixel) ** 0.5) - 2 * overlap
        side = side // 64 * 64 if side >= 128 else side  # regular sizes run faster
        return max(MIN_TILE, side)

    def _to_model(self, x: torch.Tensor, groups: list[_Group]) -> torch.Tensor:
        """``(B, C, H, W)`` image to ``(G*B, Cm, H, W)`` model items (dtype kept)."""
        cm = self.info.in_channels
        parts = []
        for g in groups:
            part = x[:, list(g.channels)]
            if g.replicate:
                part = part.expand(-1, cm, -1, -1)
            elif part.shape[1] < cm:  # RGB into an RGBA model: opaque alpha
                full = _max_value(x)
                part = torch.cat((part, torch.full_like(part[:, :1], full)), dim=1)
            parts.append(part)
        return torch.cat(parts, dim=0)

    def _from_model(self, y: torch.Tensor, groups: list[_Group], b: int, c: int) -> torch.Tensor:
        out = torch.empty(b, c, y.shape[2], y.shape[3], device=y.device)
        for i, g in enumerate(groups):
            part = y[i * b : (i + 1) * b]
            if g.replicate:
                out[:, g.channels[0]] = part.mean(dim=1)
            else:
                out[:, list(g.channels)] = part[:, : len(g.channels)]
        return out.clamp_(0, 1)

    def _run_tiles(
        self,
        xm: torch.Tensor,
        tiles: list[Tile],
        merger: BandMerger,
        size: tuple[int, int],
        overlap: int,
        margin: int,
        user_tile: bool,
    ) -> None:
        """Run same-shaped tiles in as few forward passes as memory allows; split on OOM."""
        hp, wp = size
        s = self.scale
        try:
            batch = torch.cat([_crop(xm, t) for t in tiles], dim=0)
            result = self._forward(batch)
        except _ItemOutOfMemoryError:
            if len(tiles) > 1:
                for t in tiles:
                    self._run_tiles(xm, [t], merger, size, overlap, margin, user_tile)
                return
            t = tiles[0]
            th, tw = t.y1 - t.y0, t.x1 - t.x0
            if user_tile:
                raise NotEnoughMemoryError(
                    f"out of memory at the tile size you set ({th}x{tw} px); "
                    "try a smaller --tile or leave it unset"
                ) from None
            subs = split_tile(t, hp, wp, overlap, self.info.size_multiple, MIN_TILE)
            if len(subs) == 1:
                raise NotEnoughMemoryError(
                    f"out of memory even at {th}x{tw} px tiles (the smallest allowed)"
                ) from None
            for sub in subs:
                self._run_tiles(xm, [sub], merger, size, overlap, margin, user_tile)
            return
        n = xm.shape[0]
        for i, t in enumerate(tiles):
            weights = tile_weights(t, hp, wp, overlap, margin, s, self.device)
            merger.add(t, result[i * n : (i + 1) * n], weights)
            self.tiles_run += 1

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Model on ``(N, Cm, h, w)`` in chunks of at most ``_max_items``; halves chunks on OOM."""
        outputs = []
        start = 0
        while start < batch.shape[0]:
            chunk = batch[start : start + self._max_items]
            try:
                outputs.append(self._forward_chunk(chunk))
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if chunk.shape[0] == 1:
                    raise _ItemOutOfMemoryError() from None
                self._max_items = max(1, chunk.shape[0] // 2)
                continue
            start += chunk.shape[0]
        return torch.cat(outputs, dim=0)

    def _forward_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        data = chunk.to(self.device, non_blocking=True)
        if not data.is_floating_point():  # integers are scaled on the device: 4x less to copy
            data = data.float().div_(_max_value(chunk))
        data = data.to(self.dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.module(data)
        expected = (chunk.shape[2] * self.scale, chunk.shape[3] * self.scale)
        if tuple(out.shape[2:]) != expected:
            raise RuntimeError(
                f"model returned {tuple(out.shape[2:])} for input {tuple(chunk.shape[2:])}; "
                f"expected x{self.scale}"
            )
        return out.float()


class _ItemOutOfMemoryError(Exception):
    """A single item did not fit; the caller may split the tile."""


class _Cropper:
    """Crops released bands to the output window and converts them back to image channels."""

    def __init__(
        self,
        y0: int,
        height: int,
        x0: int,
        width: int,
        convert: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.y0, self.y1, self.x0, self.x1 = y0, y0 + height, x0, x0 + width
        self.convert = convert

    def __call__(self, y: int, band: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        top, bottom = max(y, self.y0), min(y + band.shape[2], self.y1)
        if bottom > top:
            rows = band[:, :, top - y : bottom - y, self.x0 : self.x1]
            yield top - self.y0, self.convert(rows)


def _by_shape(tiles: list[Tile]) -> list[list[Tile]]:
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault(t.shape, []).append(t)
    return list(groups.values())


def _crop(x: torch.Tensor, t: Tile) -> torch.Tensor:
    return x[:, :, t.in_y0 : t.in_y1, t.in_x0 : t.in_x1]


def _max_value(x: torch.Tensor) -> float:
    if x.is_floating_point():
        return 1.0
    return 255.0 if x.dtype == torch.uint8 else 65535.0


def _pad_to(x: torch.Tensor, multiple: int, minimum: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad bottom/right so both sides are multiples of ``multiple`` and >= ``minimum``."""
    h, w = x.shape[-2:]
    hp = max(-(-h // multiple) * multiple, -(-minimum // multiple) * multiple)
    wp = max(-(-w // multiple) * multiple, -(-minimum // multiple) * multiple)
    if (hp, wp) != (h, w):
        rows = torch.arange(hp, device=x.device).clamp_(max=h - 1)
        cols = torch.arange(wp, device=x.device).clamp_(max=w - 1)
        x = x.index_select(2, rows).index_select(3, cols)
    return x, (hp, wp)


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

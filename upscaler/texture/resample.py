"""Separable resampling with anti-aliasing, edge clamping or wrap-around.

When shrinking by a factor f the filter is stretched by f (as Pillow and ImageMagick do), so every
input pixel contributes and nothing aliases. The default is Lanczos-3: for the "upscale, then
filter back down" of native mode it keeps the detail the model added while cutting everything
above the new Nyquist limit; its small overshoot is clamped by the caller's conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch


def _lanczos3(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 3, torch.sinc(x) * torch.sinc(x / 3), torch.zeros_like(x))


def _cubic(a: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def kernel(x: torch.Tensor) -> torch.Tensor:
        x = x.abs()
        inner = ((a + 2) * x - (a + 3)) * x * x + 1
        outer = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return torch.where(x <= 1, inner, torch.where(x < 2, outer, torch.zeros_like(x)))

    return kernel


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(x.dtype)


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


KERNELS: dict[
    str, tuple[Callable[[torch.Tensor], torch.Tensor], float]
] = {  # options.FILTER_KERNELS
    "lanczos3": (_lanczos3, 3.0),
    "bicubic": (_cubic(-0.5), 2.0),  # Keys a = -0.5, as Pillow and torch
    "catmull-rom": (_cubic(-0.5), 2.0),
    "bilinear": (_triangle, 1.0),
    "box": (_box, 0.5),
}


def filter_taps(
    in_size: int,
    out_size: int,
    kernel: str = "lanczos3",
    *,
    wrap: bool = False,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights ``(out_size, taps)`` for resampling one axis."""
    if kernel == "nearest":
        src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * in_size / out_size).floor()
        return src.long().clamp(max=in_size - 1)[:, None].to(device), torch.ones(
            out_size, 1, device=device
        )
    fn, support = KERNELS[kernel]
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centers = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    taps = 2 * math.ceil(support * stretch) + 1
    first = (centers - support * stretch).floor().long()
    index = first[:, None] + torch.arange(taps)[None, :]
    weights = fn((index.double() + 0.5 - centers[:, None]) / stretch)
    # Pillow's window: taps from round(center - support) up to round(center + support).
    low = (centers - support * stretch + 0.5).floor().long()[:, None]
    high = (centers + support * stretch + 0.5).floor().long()[:, None]
    weights = torch.where((index >= low) & (index < high), weights, torch.zeros_like(weights))
    if not wrap:  # taps beyond the image are dropped and the rest renormalised, as Pillow does
        weights = torch.where((index >= 0) & (index < in_size), weights, torch.zeros_like(weights))
        index = index.clamp(0, in_size - 1)
    else:
        index = index % in_size
    weights = weights / weights.sum(dim=1, keepdim=True)
    return index.to(device), weights.float().to(device)


def _gather(x: torch.Tensor, dim: int, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of ``x`` gathered along ``dim``: one pass per tap."""
    shape = [1] * x.ndim
    shape[dim] = index.shape[0]
    out = torch.zeros(*x.shape[:dim], index.shape[0], *x.shape[dim + 1 :], dtype=x.dtype,
                      device=x.device)  # fmt: skip
    for k in range(index.shape[1]):
        w = weights[:, k]
        if bool((w == 0).all()):
            continue
        out += x.index_select(dim, index[:, k]) * w.view(shape).to(x.dtype)
    return out


def _shrink_kernel(length: int, size: int, kernel: str) -> tuple[torch.Tensor, int]:
    """The one kernel (float64, ``taps`` long) every output of an integer-factor shrink shares,
    and ``lead``: the offset of output 0's first tap."""
    factor = length // size
    fn, support = KERNELS[kernel]
    taps = 2 * math.ceil(support * factor) + 1
    lead = math.floor(0.5 * factor - support * factor)
    offsets = torch.arange(taps, dtype=torch.float64) + lead + 0.5 - 0.5 * factor
    weights = fn(offsets / factor)
    low = math.floor(0.5 * factor - support * factor + 0.5) - lead  # Pillow's window, as above
    high = math.floor(0.5 * factor + support * factor + 0.5) - lead
    weights[:low] = 0
    weights[high:] = 0
    return weights / weights.sum(), lead


def _apply_windows(
    rows: torch.Tensor, windows: torch.Tensor, kernel_1d: torch.Tensor
) -> torch.Tensor:
    """``windows`` ``(N, size, taps)`` (of ``rows``) times the kernel: ``(N, size)``, in steps
    that bound the matmul's temporary to ~128 MB."""
    size, taps = windows.shape[1], windows.shape[2]
    flat = torch.empty(rows.shape[0], size, dtype=rows.dtype, device=rows.device)
    step = max(1, (1 << 25) // max(1, size * taps))
    for start in range(0, rows.shape[0], step):
        flat[start : start + step] = windows[start : start + step] @ kernel_1d
    return flat


def _strided(x: torch.Tensor, dim: int, size: int, kernel: str, wrap: bool) -> torch.Tensor:
    """Integer-factor shrink: every output shares one kernel, applied to strided windows.

    Gives the same numbers as ``filter_taps``; the few border outputs whose taps fall off the
    image (clamped and renormalised there) are recomputed exactly.
    """
    length = x.shape[dim]
    factor = length // size
    weights, lead = _shrink_kernel(length, size, kernel)
    taps = len(weights)
    kernel_1d = weights.to(x.dtype).to(x.device)
    pad_right = max(0, (size - 1) * factor + lead + taps - length)
    if wrap and max(-lead, pad_right) > length:  # the pad wraps more than once: no shortcut
        index, w = filter_taps(length, size, kernel, wrap=True, device=x.device)
        return _gather(x, dim, index, w)
    positions = torch.arange(lead, length + pad_right, device=x.device)
    positions = positions % length if wrap else positions.clamp(0, length - 1)
    # Rows along the last axis, contiguous: the unfolded windows then multiply fast.
    rows = x.movedim(dim, -1).reshape(-1, length).index_select(1, positions)
    windows = rows.unfold(1, taps, factor)[:, :size]  # (rows, size, taps), a view
    flat = _apply_windows(rows, windows, kernel_1d)
    out = flat.reshape(*x.movedim(dim, -1).shape[:-1], size).movedim(-1, dim)
    if not wrap:
        starts = torch.arange(size) * factor + lead
        edge = ((starts < 0) | (starts + taps > length)).nonzero().flatten().to(x.device)
        if len(edge):
            index, w = filter_taps(length, size, kernel, device=x.device)
            out.index_copy_(dim, edge, _gather(x, dim, index[edge], w[edge]))
    return out


def resize_axis(
    x: torch.Tensor, size: int, dim: int, kernel: str = "lanczos3", *, wrap: bool = False
) -> torch.Tensor:
    """Resample ``x`` along ``dim`` to ``size`` samples."""
    if x.shape[dim] == size:
        return x
    if kernel in KERNELS and x.shape[dim] % size == 0 and x.is_floating_point():
        return _strided(x, dim, size, kernel, wrap)
    index, weights = filter_taps(x.shape[dim], size, kernel, wrap=wrap, device=x.device)
    return _gather(x, dim, index, weights)


def resize(
    x: torch.Tensor,
    size: tuple[int, int],
    kernel: str = "lanczos3",
    *,
    wrap: tuple[bool, bool] = (False, False),
) -> torch.Tensor:
    """Resample ``(..., H, W)`` to ``size`` = (height, width). Values are not clamped."""
    x = resize_axis(x, size[1], x.ndim - 1, kernel, wrap=wrap[1])
    return resize_axis(x, size[0], x.ndim - 2, kernel, wrap=wrap[0])


class RowResampler:
    """Resamples along rows (``dim -2``) as row bands arrive in order, holding only the input
    rows that some output row still needs, so the full-height input never exists at once.

    ``push(y, rows)`` takes input rows ``[y, y + n)`` of ``(..., n, W)`` and yields ``(j, out)``:
    output rows ``[j, j + m)`` that became complete. ``finish()`` yields the rest (with ``wrap``,
    the first and last output rows, which need input rows from both ends). Every output row is
    computed as ``resize_axis`` computes it on the whole input (the strided kernel for integer
    shrinks, the tap-by-tap sum otherwise), so the result is the same to the bit.
    """

    def __init__(
        self, in_size: int, out_size: int, kernel: str = "lanczos3", *, wrap: bool = False
    ) -> None:
        self.in_size, self.wrap = in_size, wrap
        index, self.weights = filter_taps(in_size, out_size, kernel, wrap=wrap)
        need = torch.where(self.weights != 0, index, -1)  # input rows each output needs
        self.gather_index = need  # unused taps: no row at all
        self.kernel_1d: torch.Tensor | None = None  # integer shrinks: the shared kernel
        self.first = torch.zeros(out_size, dtype=torch.long)  # and each output's first tap
        self.factor = 1
        self.strided = torch.zeros(out_size, dtype=torch.bool)
        if kernel in KERNELS and in_size % out_size == 0 and in_size != out_size:
            weights, lead = _shrink_kernel(in_size, out_size, kernel)
            factor, taps = in_size // out_size, len(weights)
            pad_right = max(0, (out_size - 1) * factor + lead + taps - in_size)
            if not (wrap and max(-lead, pad_right) > in_size):  # as ``_strided`` decides
                self.first = torch.arange(out_size) * factor + lead
                self.factor = factor
                # Border outputs whose taps fall off the image are recomputed tap by tap.
                self.strided = (self.first >= 0) & (self.first + taps <= in_size) | wrap
                self.kernel_1d = weights.float()
                need = self.wrap_or_clamp(self.first[:, None] + torch.arange(taps))
        # Output j can be computed once input row ready[j] has arrived; input row r can be
        # dropped once every output that uses it has been computed, i.e. after row free[r].
        used = need >= 0
        self.ready = need.max(dim=1).values
        self.free = torch.full((in_size,), -1, dtype=torch.long)
        self.free.scatter_reduce_(0, need[used], self.ready[:, None].expand_as(need)[used], "amax")
        self.done = torch.zeros(out_size, dtype=torch.bool)
        self.arrived = 0
        self.held: torch.Tensor | None = None  # the rows still needed, in input order
        self.held_rows = torch.empty(0, dtype=torch.long)

    def wrap_or_clamp(self, index: torch.Tensor) -> torch.Tensor:
        return index % self.in_size if self.wrap else index.clamp(0, self.in_size - 1)

    def push(self, y: int, rows: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        if y != self.arrived:
            raise ValueError(f"rows must arrive in order: got row {y}, expected {self.arrived}")
        n = rows.shape[-2]
        self.arrived = y + n
        local = rows if self.held is None else torch.cat((self.held, rows), dim=-2)
        present = torch.cat((self.held_rows, torch.arange(y, y + n)))
        ready = (~self.done & (self.ready < self.arrived)).nonzero().flatten()
        yield from self._compute(local, present, ready)
        keep = (self.free[present] >= self.arrived).nonzero().flatten()
        self.held_rows = present[keep]
        self.held = local.index_select(-2, keep.to(local.device)) if len(keep) else None

    def finish(self) -> Iterator[tuple[int, torch.Tensor]]:
        if self.arrived != self.in_size:
            raise ValueError(f"only {self.arrived} of {self.in_size} rows arrived")
        rest = (~self.done).nonzero().flatten()
        if len(rest) and self.held is not None:
            yield from self._compute(self.held, self.held_rows, rest)
        self.held, self.held_rows = None, self.held_rows[:0]

    def _compute(
        self, local: torch.Tensor, present: torch.Tensor, outputs: torch.Tensor
    ) -> Iterator[tuple[int, torch.Tensor]]:
        if not len(outputs):
            return
        self.done[outputs] = True
        # Consecutive runs of output rows (with wrap, the deferred ones come apart).
        breaks = ((outputs.diff() != 1).nonzero().flatten() + 1).tolist()
        runs = [outputs[a:b] for a, b in zip([0, *breaks], [*breaks, len(outputs)], strict=True)]
        # Rows not held (only ever read by no output) map anywhere; so do unused taps.
        position = torch.zeros(self.in_size + 1, dtype=torch.long)
        position[present] = torch.arange(len(present))
        dim = local.ndim - 2
        if self.kernel_1d is not None:
            result = torch.cat([self._strided_run(local, position, run) for run in runs], dim=dim)
            gathered = (~self.strided[outputs]).nonzero().flatten()
        else:
            result = torch.empty(
                *local.shape[:dim], len(outputs), local.shape[-1], dtype=local.dtype,
                device=local.device,
            )  # fmt: skip
            gathered = torch.arange(len(outputs))
        if len(gathered):
            picked = outputs[gathered]
            index = position[self.gather_index[picked]].to(local.device)
            part = _gather(local, dim, index, self.weights[picked].to(local.device))
            result.index_copy_(dim, gathered.to(local.device), part)
        offset = 0
        for run in runs:
            yield int(run[0]), result.narrow(dim, offset, len(run))
            offset += len(run)

    def _strided_run(
        self, local: torch.Tensor, position: torch.Tensor, run: torch.Tensor
    ) -> torch.Tensor:
        """Consecutive outputs ``run`` through the shared kernel, windows laid out exactly as
        ``_strided`` lays them out (given all rows at once, the same computation to the bit)."""
        assert self.kernel_1d is not None
        dim, factor, taps = local.ndim - 2, self.factor, len(self.kernel_1d)
        start = int(self.first[run[0]])
        end = int(self.first[run[-1]]) + taps
        if int(run[-1]) == len(self.first) - 1:
            end = max(end, self.in_size)  # ``_strided``'s padded length
        positions = self.wrap_or_clamp(torch.arange(start, end))
        rows = local.movedim(dim, -1).reshape(-1, local.shape[dim])
        rows = rows.index_select(1, position[positions].to(local.device))
        windows = rows.unfold(1, taps, factor)[:, : len(run)]
        flat = _apply_windows(rows, windows, self.kernel_1d.to(local.device, local.dtype))
        return flat.reshape(*local.movedim(dim, -1).shape[:-1], len(run)).movedim(-1, dim)

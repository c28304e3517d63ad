"""Cube maps: which face meets which along every edge, padding each face with its neighbours'
edges (the cube's own wrap), and the seam metric across face edges.

Faces are in DDS (Direct3D) order, +X, -X, +Y, -Y, +Z, -Z, each seen from the cube's centre with
rows going down and columns going right, as the graphics APIs sample them. Which face lies across
each edge, and how it is turned, is worked out from that geometry once, not written as a table.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

FACES = 6
_EDGES = ("top", "bottom", "left", "right")


def _direction(face: int, sc: np.ndarray, tc: np.ndarray) -> np.ndarray:
    """Directions ``(..., 3)`` of points ``sc`` (across, -1..1 left to right) and ``tc`` (down,
    -1..1 top to bottom) on ``face``'s plane, extended past its edges as needed."""
    one = np.ones_like(sc)
    x, y, z = {
        0: (one, -tc, -sc),
        1: (-one, -tc, sc),
        2: (sc, one, tc),
        3: (sc, -one, -tc),
        4: (sc, -tc, one),
        5: (-sc, -tc, -one),
    }[face]
    return np.stack([x, y, z], axis=-1)


def face_directions(face: int, size: int) -> np.ndarray:
    """Unit directions ``(N, N, 3)`` of the texel centres of ``face`` (0..5, DDS order)."""
    centre = (np.arange(size) + 0.5) / size * 2 - 1
    sc, tc = np.meshgrid(centre, centre)
    d = _direction(face, sc, tc)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _project(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face, u, v) of directions ``(..., 3)``: u across and v down, in 0..1."""
    axis = np.abs(d).argmax(axis=-1)
    major = np.take_along_axis(d, axis[..., None], axis=-1)[..., 0]
    face = 2 * axis + (major < 0)
    ma = np.abs(major)
    x, y, z = d[..., 0] / ma, d[..., 1] / ma, d[..., 2] / ma
    sc = np.select([face == 0, face == 1, face == 5], [-z, z, -x], x)
    tc = np.select([face == 2, face == 3], [z, -z], -y)
    return face, (sc + 1) / 2, (tc + 1) / 2


@lru_cache(maxsize=8)
def _across(size: int) -> dict[tuple[int, str], tuple[int, np.ndarray, np.ndarray]]:
    """For every (face, edge): the face across it, and the (row, column) of the texels there,
    ``(depth, size)`` each: ``depth`` texels in from the shared edge (0 first), for each texel
    along this face's edge (left to right, or top to bottom)."""
    centre = (np.arange(size) + 0.5) / size * 2 - 1
    step = 1e-6  # a point just past the edge: it lies on the neighbour
    past = {
        "top": (centre, np.full(size, -1 - step)),
        "bottom": (centre, np.full(size, 1 + step)),
        "left": (np.full(size, -1 - step), centre),
        "right": (np.full(size, 1 + step), centre),
    }
    depth = np.arange(size)[:, None]
    table: dict[tuple[int, str], tuple[int, np.ndarray, np.ndarray]] = {}
    for face in range(FACES):
        for edge in _EDGES:
            other, u, v = _project(_direction(face, *past[edge]))
            if not (other == other[0]).all():
                raise AssertionError(f"face {face}'s {edge} edge meets more than one face")
            # The coordinate that stays at 0 or 1 along the whole edge is the depth axis there.
            across_u = abs(u[-1] - u[0]) < abs(v[-1] - v[0])
            at, along = (u, v) if across_u else (v, u)
            index = np.clip(np.floor(along * size), 0, size - 1).astype(np.int64)[None, :]
            inward = depth if at.mean() < 0.5 else size - 1 - depth
            rows, cols = (index, inward) if across_u else (inward, index)
            rows, cols = np.broadcast_arrays(rows, cols)
            table[face, edge] = (int(other[0]), rows, cols)
    return table


@lru_cache(maxsize=8)
def _pad_index(size: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two gather indices ``(6, size + 2 pad, size + 2 pad)`` (``pad`` >= 1) into the flattened
    faces: equal except in the corners, where the faces across the corner's two edges meet."""
    table = _across(size)
    n, p = size, pad
    first = np.zeros((FACES, n + 2 * p, n + 2 * p), np.int64)
    for face in range(FACES):
        own = face * n * n + np.arange(n * n).reshape(n, n)
        first[face, p : p + n, p : p + n] = own
        flat = {}
        for edge in _EDGES:
            other, rows, cols = table[face, edge]
            flat[edge] = other * n * n + rows[:p] * n + cols[:p]  # (depth, along)
        first[face, p - 1 :: -1, p : p + n] = flat["top"]  # depth 0 next to the face
        first[face, p + n :, p : p + n] = flat["bottom"]
        first[face, p : p + n, p - 1 :: -1] = flat["left"].T
        first[face, p : p + n, p + n :] = flat["right"].T
    second = first.copy()
    # Corners: one neighbour's strip carried on across the corner, and the other's.
    for face in range(FACES):
        f = first[face]
        s = second[face]
        top, bottom, left, right = slice(0, p), slice(p + n, None), slice(0, p), slice(p + n, None)
        for ys, xs, row_edge, col_edge in (
            (top, left, p, p),
            (top, right, p, p + n - 1),
            (bottom, left, p + n - 1, p),
            (bottom, right, p + n - 1, p + n - 1),
        ):
            f[ys, xs] = f[ys, col_edge][:, None]  # the top/bottom strip, held sideways
            s[ys, xs] = s[row_edge, xs][None, :]  # the left/right strip, held up/down
    return torch.from_numpy(first), torch.from_numpy(second)


def pad_faces(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Cube faces ``(6k, C, N, N)`` (k cube maps, faces in DDS order; any dtype) padded by
    ``pad`` <= N texels on each side with the faces across each edge, turned to line up; the
    corners get the mean of the two neighbours' strips (three faces meet there: no flat
    unfolding exists). Integer texels are averaged with rounding."""
    b, c, h, w = x.shape
    if b % FACES or h != w:
        raise ValueError(f"cube faces must be (6k, C, N, N), got {tuple(x.shape)}")
    if not 0 <= pad <= h:
        raise ValueError(f"cube padding must be 0..{h} texels, got {pad}")
    if pad == 0:
        return x
    first, second = (i.to(x.device).flatten() for i in _pad_index(h, pad))
    size = h + 2 * pad
    out = []
    for start in range(0, b, FACES):
        flat = x[start : start + FACES].transpose(0, 1).reshape(c, -1)
        a, s = flat[:, first], flat[:, second]
        if x.dtype.is_floating_point:
            both = (a + s) / 2
        else:
            both = ((a.to(torch.int64) + s.to(torch.int64) + 1) // 2).to(x.dtype)
        out.append(both.reshape(c, FACES, size, size).transpose(0, 1))
    return torch.cat(out).contiguous()


def seam_error(faces: torch.Tensor) -> float:
    """Mean absolute difference between the texels on the two sides of every edge of a cube map
    ``(6, C, N, N)`` (the outermost texel row or column of each face against the one of the
    face across), in the input's units: near the step between neighbouring texels inside a
    face for a continuous cube, larger where a seam shows."""
    n = faces.shape[-1]
    if faces.shape[0] != FACES or faces.shape[-2] != n:
        raise ValueError(f"a cube map is (6, C, N, N), got {tuple(faces.shape)}")
    x = faces.double()
    table = _across(n)
    edge_texels = {
        "top": lambda f: x[f, :, 0, :],
        "bottom": lambda f: x[f, :, n - 1, :],
        "left": lambda f: x[f, :, :, 0],
        "right": lambda f: x[f, :, :, n - 1],
    }
    total = 0.0
    for face in range(FACES):
        for edge in _EDGES:
            other, rows, cols = table[face, edge]
            there = x[other][:, torch.from_numpy(rows[0]), torch.from_numpy(cols[0])]
            total += float((edge_texels[edge](face) - there).abs().mean())
    return total / (FACES * len(_EDGES))

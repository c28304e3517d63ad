"""Cube maps: faces padded with their neighbours' edges, the seam metric across face edges, and
the engine's caller-given context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from upscaler.engine.load import load_model
from upscaler.texture import cube


def sphere_faces(size: int, channels: int = 3) -> np.ndarray:
    """A cube map ``(6, N, N, C)`` uint8 of a smooth function of the direction, so every face
    edge is continuous: colour that turns with the direction, and a band of detail."""
    faces = []
    for face in range(cube.FACES):
        d = cube.face_directions(face, size)
        wave = 0.15 * np.sin(6 * d[..., 0] + 4 * d[..., 1] - 5 * d[..., 2])
        rgb = [0.5 + 0.3 * d[..., i] + wave for i in range(3)]
        alpha = [0.6 + 0.3 * d[..., 1]] if channels == 4 else []
        faces.append(np.stack([*rgb, *alpha][:channels], axis=-1))
    return (np.clip(np.stack(faces), 0, 1) * 255).round().astype(np.uint8)


def test_cube_faces_line_up_across_every_edge() -> None:
    faces = torch.from_numpy(sphere_faces(16)).permute(0, 3, 1, 2).float()
    inner = float((faces[..., 1:] - faces[..., :-1]).abs().mean())
    continuous = cube.seam_error(faces)
    assert continuous < inner  # texels across an edge are as close as neighbours inside
    turned = faces.clone()
    turned[2] = faces[2].transpose(1, 2)  # +Y stored turned: four edges break
    assert cube.seam_error(turned) > 3 * continuous
    padded = cube.pad_faces(faces.to(torch.uint8), 5)
    assert padded.shape == (6, 3, 26, 26) and padded.dtype == torch.uint8
    assert torch.equal(padded[:, :, 5:21, 5:21], faces.to(torch.uint8))
    rows = padded.float()[:, :, 4:22, 4:22]  # one ring of neighbours around each face
    jump = (rows[:, :, :, 1:] - rows[:, :, :, :-1]).abs()
    assert float(jump[:, :, 1:-1, [0, -1]].mean()) < inner * 1.2  # no jump into the padding


def test_context_is_seen_by_the_model_and_cropped(tiny_x2: Path) -> None:
    upscaler = load_model(tiny_x2)
    x = torch.rand(2, 3, 19, 13, generator=torch.Generator().manual_seed(0))
    whole = upscaler.upscale(x)
    inner = upscaler.upscale(x, context=3)
    assert inner.shape == (2, 3, 26, 14)
    torch.testing.assert_close(inner, whole[:, :, 6:-6, 6:-6])
    with pytest.raises(ValueError, match="context"):
        upscaler.upscale(x, context=7)

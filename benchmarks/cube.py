"""Seams across cube-map face edges: each face upscaled with its neighbours' edges around it
(what ``upscale`` does with a DDS cube map) against each face upscaled alone as a 2D texture.

    PYTHONPATH=. python benchmarks/cube.py [--model texture-x4] [--size 24 32]

The cube is synthetic and continuous across every edge: a smooth function of the direction
(colour turning with it, plus a wave of detail), sampled at the texel centres of each face.
The seam error (``upscaler.texture.cube.seam_error``) is the mean absolute difference, in 8-bit
levels, between the outermost texels of each face and those of the face across each edge; the
input's own is shown for scale (an x4 output of a smooth input should have about a quarter).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from upscaler.engine.load import load_model
from upscaler.formats.ddsheader import DdsFormat, DdsInfo
from upscaler.formats.image import ImageFile
from upscaler.process import TextureOptions, upscale_images
from upscaler.texture import cube


def sphere_faces(size: int) -> np.ndarray:
    """``(6, N, N, 3)`` uint8 faces of a function continuous over the sphere."""
    faces = []
    for face in range(cube.FACES):
        d = cube.face_directions(face, size)
        wave = 0.15 * np.sin(6 * d[..., 0] + 4 * d[..., 1] - 5 * d[..., 2])
        faces.append(np.stack([0.5 + 0.3 * d[..., i] + wave for i in range(3)], axis=-1))
    return (np.clip(np.stack(faces), 0, 1) * 255).round().astype(np.uint8)


def seam_levels(faces: list[np.ndarray] | np.ndarray) -> float:
    return cube.seam_error(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float())


def measure(model: str, size: int) -> dict[str, float]:
    upscaler = load_model(model)
    faces = sphere_faces(size)
    fmt = DdsFormat("X8B8G8R8", bitcount=32, masks=(0xFF, 0xFF00, 0xFF0000, 0))
    source = DdsInfo(size, size, 1, fmt, 128, layers=cube.FACES, cube=True)
    image = ImageFile(faces[0], "DDS", info={"dds": source}, layers=tuple(faces))
    options = TextureOptions()
    padded = upscale_images(upscaler, [image], options)[0].layers
    alone = [
        upscale_images(upscaler, [image.with_pixels(f)], options, wrap=(False, False))[0].pixels
        for f in faces
    ]
    return {
        "input": seam_levels(faces),
        "with neighbours": seam_levels(list(padded)),
        "one by one": seam_levels(alone),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="texture-x4")
    parser.add_argument("--size", type=int, nargs="+", default=[24, 32], help="face sides")
    args = parser.parse_args()
    for size in args.size:
        found = measure(args.model, size)
        print(
            f"{args.model}, {size}px faces: " + ", ".join(f"{k} {v:.2f}" for k, v in found.items())
        )


if __name__ == "__main__":
    main()

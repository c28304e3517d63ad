"""PNG encoding of upscaled textures: time and size per encoder setting, in one run.

    python benchmarks/png.py                 # 24 validation textures x4 (bicubic) + the samples
    python benchmarks/png.py --count 8 --side 256

The images are what ``upscale`` writes: real textures (``../shared`` validation set, else the
bundled samples), a crop of ``side`` px upscaled x4 (bicubic stands in for the model: the output
is as smooth), 8-bit, gray to RGBA. Each setting encodes every image with imagecodecs (libpng);
Pillow at level 3 is the encoder ``upscale`` used before. Printed: ms per image and total MB,
and both as ratios to zlib level 3 with adaptive filters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VAL = ROOT.parent / "shared" / "data" / "textures" / "val"
SETTINGS: dict[str, dict[str, int]] = {
    "level 3 (adaptive filters)": {"level": 3},
    "level 9 (adaptive filters)": {"level": 9},
    "level 1 (adaptive filters)": {"level": 1},
    "run-length, adaptive filters": {"level": 1, "strategy": 3},
    "run-length, Paeth (default)": {"level": 1, "strategy": 3, "filter": 128},
}


def upscaled_images(count: int, side: int) -> list[np.ndarray]:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    paths = sorted(VAL.glob("*/*.png"))[:count] or sorted((ROOT / "samples").glob("*/*.png"))
    images = []
    for path in paths:
        with Image.open(path) as im:
            a = np.asarray(im)
        a = (a[:, :, None] if a.ndim == 2 else a)[:side, :side]
        x = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
        y = F.interpolate(x, scale_factor=4, mode="bicubic").clamp(0, 255).round().byte()
        out = y[0].permute(1, 2, 0).numpy()
        images.append(np.ascontiguousarray(out[:, :, 0] if out.shape[2] == 1 else out))
    return images


def main() -> None:
    import imagecodecs
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--side", type=int, default=128, help="input crop, px (output: 4x)")
    parser.add_argument("--out", default="benchmarks/results/png.json")
    args = parser.parse_args()
    images = upscaled_images(args.count, args.side)

    def pillow(a: np.ndarray) -> int:
        import io

        buffer = io.BytesIO()
        Image.fromarray(a).save(buffer, format="PNG", compress_level=3)
        return buffer.tell()

    def libpng(kw: dict[str, int]) -> Callable[[np.ndarray], int]:
        return lambda a: len(imagecodecs.png_encode(a, **kw))

    encoders: dict[str, Callable[[np.ndarray], int]] = {"Pillow level 3 (before)": pillow}
    encoders.update({name: libpng(kw) for name, kw in SETTINGS.items()})
    measured: dict[str, tuple[float, float]] = {}  # ms per image, MB
    for name, encode in encoders.items():
        start, size = time.perf_counter(), 0
        for a in images:
            size += encode(a)
        measured[name] = ((time.perf_counter() - start) * 1e3 / len(images), size / 1e6)
    base_ms, base_mb = measured["level 3 (adaptive filters)"]
    print(f"{len(images)} images, {args.side * 4} px")
    print(f"{'setting':32s} {'ms/image':>9s} {'MB':>7s} {'time/L3':>8s} {'size/L3':>8s}")
    rows = []
    for name, (ms, mb) in measured.items():
        rows.append({"setting": name, "ms_per_image": ms, "mb": mb,
                     "time_ratio": ms / base_ms, "size_ratio": mb / base_mb})  # fmt: skip
        print(f"{name:32s} {ms:9.2f} {mb:7.2f} {ms / base_ms:8.2f} {mb / base_mb:8.2f}")
    Path(args.out).write_text(json.dumps({"images": len(images), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

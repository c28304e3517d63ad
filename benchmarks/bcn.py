"""Block-compression encoders compared on validation textures: PSNR and time per format.

    PYTHONPATH=. python benchmarks/bcn.py [--data ../shared/data/textures/val] [--limit 8]

Candidates are the maintained encoders installed here: Pillow (BC1, BC2, BC3, BC5) and etcpak
(BC1, BC3, BC4, BC5, BC7). Decoding is bcdec for all, so only the encoders differ. PSNR is over
the channels each format stores (BC1/BC3/BC7: RGB(A); BC4: R; BC5: R, G), on colour, normal and
alpha textures; ``upscaler.formats.bcn`` uses the better one per format (BC1 stays with
Pillow: etcpak's BC1 has no 1-bit alpha).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from upscaler.formats import bcn

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = {1: 4, 2: 4, 3: 4, 4: 1, 5: 2, 7: 4}


def _pillow(rgba: np.ndarray, block: int) -> bytes | None:
    name = {1: "DXT1", 2: "DXT3", 3: "DXT5", 5: "BC5"}.get(block)
    if name is None:
        return None
    image = Image.fromarray(rgba[:, :, :3] if block == 5 else rgba, "RGB" if block == 5 else "RGBA")
    buffer = io.BytesIO()
    image.save(buffer, "DDS", pixel_format=name)
    data = buffer.getvalue()
    return data[148 if data[84:88] == b"DX10" else 128 :]


def _etcpak(rgba: np.ndarray, block: int) -> bytes | None:
    import etcpak

    h, w = rgba.shape[:2]
    if block == 7:
        return bytes(etcpak.compress_bc7(rgba.tobytes(), w, h, None))
    function = getattr(etcpak, f"compress_bc{block}", None)
    return None if function is None else bytes(function(rgba.tobytes(), w, h))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/textures/val")
    parser.add_argument("--limit", type=int, default=8, help="files per kind")
    args = parser.parse_args()
    files = [
        p
        for kind in ("color", "normal", "alpha")
        for p in sorted((args.data / kind).glob("*.png"))[: args.limit]
    ]
    results: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for path in files:
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"))
        h, w = rgba.shape[0] // 4 * 4, rgba.shape[1] // 4 * 4
        rgba = np.ascontiguousarray(rgba[:h, :w])
        for block in (1, 3, 4, 5, 7):
            c = CHANNELS[block]
            for name, encode in (("pillow", _pillow), ("etcpak", _etcpak)):
                start = time.perf_counter()
                data = encode(rgba, block)
                seconds = time.perf_counter() - start
                if data is None:
                    continue
                decoded = bcn.decode(data, block, h, w)
                reference = rgba[:, :, :c] if c < 4 or rgba[:, :, 3].min() < 255 else rgba[:, :, :3]
                score = _psnr(decoded[:, :, : reference.shape[2]], reference)
                results.setdefault((block, name), []).append((score, seconds * 1e6 / (h * w)))
    print(f"{len(files)} textures from {args.data}")
    print(f"{'format':<8}{'encoder':<9}{'PSNR dB':>9}{'us/px':>8}")
    for (block, name), rows in sorted(results.items()):
        psnr = np.mean([r[0] for r in rows])
        speed = np.mean([r[1] for r in rows])
        print(f"BC{block:<6}{name:<9}{psnr:9.2f}{speed:8.3f}")


if __name__ == "__main__":
    main()

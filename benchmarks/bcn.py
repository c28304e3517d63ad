"""Block-compression encoders measured per DDS format and map type; and encoding's share of a run.

    PYTHONPATH=. python benchmarks/bcn.py [--model texture-x4|none] [--per-kind 4] [--share]

Files: ``--per-kind`` textures of each kind (colour, normal, alpha) from the validation set,
spread over the sorted names, cut to their central ``--crop`` square; with ``--model`` (default
``texture-x4``) they are then upscaled by ``upscale`` (PNG), so the encoders see what we
write. Every encoder in ``upscaler.formats.blockencoders`` is run through ``bcn.encode`` (so
BC1's Pillow blocks for transparent texels and BC2's built alpha are included) and decoded by
bcdec. Quality, per map type:

* colour: RGB PSNR, and Y PSNR (BT.709 luma: what perceptual weighting aims at);
* normal: mean angle in degrees after decoding and renormalising (BC5: Z rebuilt from X, Y);
* alpha textures (BC1 with 1-bit alpha, BC2, BC3, BC7): RGB PSNR over texels an alpha test at
  half keeps, the share of texels whose alpha test flips, the change in coverage (share of
  texels kept, percentage points), and alpha PSNR;
* BC4: PSNR of a gray data map (the luma of the colour textures).

Speed is CPU seconds per megapixel (``time.process_time``: the machine is shared). ``--share``
runs ``upscale`` x4 on ``samples/textures`` to DDS at each ``--dds-quality`` (auto format, then
BC1), each in a fresh interpreter, and reports the CPU time spent in block encoding against the
whole command's CPU time (start, imports and model load included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import require_data
from upscaler.formats import bcn
from upscaler.formats.blockencoders import Encoder, installed, registry
from upscaler.formats.image import read_image
from upscaler.texture import normals
from upscaler.texture.levels import to_tensor

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("color", "normal", "alpha")
# (row label, block, kinds measured, signed)
FORMATS = [
    ("BC1", 1, ("color", "normal"), False),
    ("BC1 1-bit alpha", 1, ("alpha",), False),
    ("BC2", 2, ("alpha",), False),
    ("BC3", 3, ("color", "normal", "alpha"), False),
    ("BC4", 4, ("gray",), False),
    ("BC5", 5, ("normal",), False),
    ("BC5 signed", 5, ("normal",), True),
    ("BC7", 7, ("color", "normal", "alpha"), False),
]


def pick(data: Path, per_kind: int) -> list[Path]:
    """``per_kind`` files of each kind, spread over the sorted names."""
    chosen = []
    for kind in KINDS:
        found = sorted((data / kind).glob("*.png"))
        step = max(1, len(found) // max(1, per_kind))
        chosen += found[::step][:per_kind]
    return chosen


def prepare(files: list[Path], crop: int, model: str, work: Path) -> list[Path]:
    """The files cut to their central ``crop`` square (at most) and, unless ``model`` is
    "none", upscaled by the ``upscale`` command (the real pipeline: normals renormalised,
    cutout coverage kept), in the same kind folders."""
    from upscaler.formats.image import write_image

    cut = []
    for path in files:
        image = read_image(path)
        h, w = image.size
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        target = work / "in" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.ascontiguousarray(image.pixels[top : top + crop, left : left + crop])
        write_image(target, image.with_pixels(pixels))
        cut.append(target)
    if model == "none":
        return cut
    _upscale([str(work / "in"), "-o", str(work / "out"), "--model", model, "-q"])
    return [work / "out" / p.parent.name / p.name for p in files]


def _upscale(args: list[str]) -> None:
    """The ``upscale`` command in this process (it ends with ``sys.exit``)."""
    from upscaler.cli import main

    try:
        main(args, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return min(99.0, 10 * np.log10(255**2 / max(mse, 1e-12)))  # 99: lossless


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def _angle(decoded: np.ndarray, reference: np.ndarray, two_channel: bool) -> float:
    def vectors(pixels: np.ndarray) -> torch.Tensor:
        rgb = np.zeros(pixels.shape[:2] + (3,), np.uint8)
        rgb[:, :, : min(3, pixels.shape[2])] = pixels[:, :, :3]
        v = normals.decode(to_tensor(rgb, 8))
        return normals.rebuild_z(v) if two_channel else v

    return normals.angular_error(vectors(decoded), vectors(reference))


def _signed_round_trip(rg: np.ndarray, encoder: Encoder) -> tuple[np.ndarray, float]:
    from upscaler.formats.dds import _from_signed, _to_signed

    start = time.process_time()
    data = bcn.encode(_to_signed(rg), 5, signed=True, encoder=encoder)
    seconds = time.process_time() - start
    h, w = rg.shape[:2]
    return _from_signed(bcn.decode(data, 5, h, w, signed=True)), seconds


def measure(label: str, block: int, kind: str, signed: bool, rgba: np.ndarray, encoder: Encoder):
    """{metric: value} for one texture through one encoder, and CPU seconds."""
    h, w = rgba.shape[:2]
    pixels = rgba
    if kind == "gray":
        pixels = np.round(_luma(rgba))[:, :, None].astype(np.uint8)
    elif block == 5:
        pixels = np.ascontiguousarray(rgba[:, :, :2])
    elif kind != "alpha":
        pixels = np.ascontiguousarray(rgba[:, :, :3])
    elif block == 1:  # 1-bit alpha, as dds writes it
        pixels = rgba.copy()
        pixels[:, :, 3] = np.where(rgba[:, :, 3] >= 128, 255, 0)
    if signed:
        decoded, seconds = _signed_round_trip(pixels, encoder)
    else:
        start = time.process_time()
        data = bcn.encode(pixels, block, encoder=encoder)
        seconds = time.process_time() - start
        decoded = bcn.decode(data, block, h, w)
    if kind == "gray":
        return {"gray dB": _psnr(decoded[:, :, 0], pixels[:, :, 0])}, seconds
    if kind == "normal":
        return {"normal deg": _angle(decoded, pixels, block == 5)}, seconds
    if kind == "color":
        return {
            "colour dB": _psnr(decoded[:, :, :3], pixels),
            "colour Y dB": _psnr(_luma(decoded), _luma(pixels)),
        }, seconds
    keep = pixels[:, :, 3] >= 128
    visible = {}
    if keep.any():  # some alpha textures keep no texel at half alpha
        visible["cutout dB"] = _psnr(decoded[:, :, :3][keep], pixels[:, :, :3][keep])
    return visible | {
        "flips %": 100 * float(np.mean((decoded[:, :, 3] >= 128) != keep)),
        "coverage pts": 100 * abs(float(np.mean(decoded[:, :, 3] >= 128)) - float(np.mean(keep))),
        "alpha dB": _psnr(decoded[:, :, 3], pixels[:, :, 3]),
    }, seconds


def chosen_at(block: int, name: str) -> str:
    """Which qualities pick this encoder (for colour maps / for normal and data maps)."""
    found = []
    for quality in bcn.QUALITIES:
        for colour in (True, False):
            if bcn.choices(block, quality, colour=colour)[0].name == name:
                tag = quality if block != 7 else f"{quality} ({'colour' if colour else 'other'})"
                found.append(tag)
    return ", ".join(dict.fromkeys(found))


def _etcpak_bc7_before(rgba: np.ndarray) -> bytes:
    """etcpak's BC7 as it was called before the choice (its default: perceptual, alpha 32)."""
    import etcpak

    h, w = rgba.shape[:2]
    return bytes(etcpak.compress_bc7(rgba.tobytes(), w, h, None))


BASELINES = {
    (7, "etcpak default (before)"): Encoder(
        "etcpak default (before)", "etcpak", "etcpak", 7, _etcpak_bc7_before
    )
}


def table(files: list[Path], only: list[str]) -> list[dict]:
    images = {p: np.array(read_image(p).pixels) for p in files}
    rows = []
    for label, block, kinds, signed in FORMATS:
        if only and label not in only and label.split()[0] not in only:
            continue
        source_block = 3 if block == 2 else block
        for (b, name), encoder in (registry() | BASELINES).items():
            if b != source_block or not installed(encoder.module):
                continue
            bcn.encode(np.zeros((4, 4, 4), np.uint8), block, encoder=encoder)  # imports, tables
            scores: dict[str, list[float]] = {}
            seconds, pixels = 0.0, 0
            for path, image in images.items():
                kind = "gray" if kinds == ("gray",) and path.parent.name == "color" else None
                kind = kind or (path.parent.name if path.parent.name in kinds else None)
                if kind is None:
                    continue
                rgba = _rgba(image)
                found, spent = measure(label, block, kind, signed, rgba, encoder)
                for key, value in found.items():
                    scores.setdefault(key, []).append(value)
                seconds += spent
                pixels += rgba.shape[0] * rgba.shape[1]
            if not pixels:
                continue
            row = {"format": label, "encoder": name, "s/Mpx": seconds * 1e6 / max(pixels, 1)}
            row |= {k: float(np.mean(v)) for k, v in scores.items()}
            row["chosen"] = chosen_at(block, name)
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _rgba(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
    image = image[:h, :w]
    if image.shape[2] == 3:
        image = np.concatenate([image, np.full_like(image[:, :, :1], 255)], axis=2)
    return np.ascontiguousarray(image)


COLUMNS = (
    "colour dB",
    "colour Y dB",
    "normal deg",
    "cutout dB",
    "flips %",
    "coverage pts",
    "alpha dB",
    "gray dB",
)


def _line(row: dict) -> str:
    cells = [f"{row[c]:.2f}" if c in row else "" for c in COLUMNS]
    return (
        "| "
        + " | ".join([row["format"], row["encoder"], *cells, f"{row['s/Mpx']:.3f}", row["chosen"]])
        + " |"
    )


# One ``upscale`` command in a fresh interpreter, with block encoding's CPU time counted: the
# whole run is everything the command costs (start, imports, model, upscaling, writing).
_RUN = """
import json, resource, sys, threading, time
from upscaler.formats import bcn
spent, lock, original = [0.0], threading.Lock(), bcn.encode
def timed(*args, **kwargs):
    start = time.thread_time()
    try:
        return original(*args, **kwargs)
    finally:
        with lock:
            spent[0] += time.thread_time() - start
bcn.encode = timed
from upscaler.cli import main
wall = time.perf_counter()
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"cpu": cpu, "encode": spent[0], "wall": time.perf_counter() - wall}))
"""


def share(model: str) -> list[dict]:
    """Encoding's share of an ``upscale`` run's CPU time, per quality and DDS format."""
    rows = []
    for fmt in ("auto", "bc1"):
        for quality in bcn.QUALITIES:
            with tempfile.TemporaryDirectory() as out:
                args = [str(ROOT / "samples/textures"), "-o", out, "--model", model, "-q"]
                args += ["--format", "dds", "--dds-format", fmt, "--dds-quality", quality]
                proc = subprocess.run(
                    [sys.executable, "-c", _RUN, *args], capture_output=True, text=True, check=True
                )
            found = json.loads(proc.stdout.strip().splitlines()[-1])
            row = {"dds format": fmt, "quality": quality, "run cpu s": found["cpu"]}
            percent = 100 * found["encode"] / found["cpu"]
            row |= {"encode cpu s": found["encode"], "share %": percent}
            print(
                f"| {fmt} | {quality} | {found['cpu']:.1f} | {found['encode']:.2f} "
                f"| {row['share %']:.0f}% |",
                flush=True,
            )
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/textures/val")
    parser.add_argument("--model", default="texture-x4", help="upscale first ('none': as is)")
    parser.add_argument("--per-kind", type=int, default=4, help="textures per kind (0: none)")
    parser.add_argument("--crop", type=int, default=256, help="central square of larger inputs")
    parser.add_argument("--formats", nargs="*", default=[], help="only these, e.g. BC1 BC7")
    parser.add_argument("--share", action="store_true", help="also measure encoding's share")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    result: dict = {"model": args.model, "crop": args.crop}
    if args.per_kind:
        require_data("bcn.py", args.data)
        files = pick(args.data, args.per_kind)
        result["files"] = [str(p) for p in files]
        with tempfile.TemporaryDirectory() as work:
            files = prepare(files, args.crop, args.model, Path(work))
            mpx = sum(np.prod(read_image(p).size) for p in files) / 1e6
            print(f"{len(files)} textures ({mpx:.1f} Mpx) from {args.data}, model {args.model}")
            print("| format | encoder | " + " | ".join(COLUMNS) + " | CPU s/Mpx | chosen for |")
            print("|" + " --- |" * (len(COLUMNS) + 4))
            result["rows"] = table(files, args.formats)
    if args.share:
        print("| DDS format | quality | run CPU s | encoding CPU s | share |")
        print("| --- | --- | --- | --- | --- |")
        result["share"] = share(args.model if args.model != "none" else "texture-x4")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Measurements kept on disk, one small JSON file per model file, so that a model is measured
once (``upscaler.models.measurement``), not on every run.

The shipped models, and the peers' files measured with them, come measured: ``measured.json``
beside this module holds their measurements by the file's SHA-256 (``benchmarks/contracts.py``
writes it), which saves their first use the 3-14 s of probes. It stands for CPU runs only: where
a GPU is present, fp16 is measured too and the model is measured as any other.

The cache is ``$UPSCALE_CACHE_DIR``, else ``$XDG_CACHE_HOME/texture-upscaler`` (by default
``~/.cache/texture-upscaler``). Its files are untrusted input: an entry that is not a regular file,
or whose fields have the wrong type or range, is measured again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, fields
from functools import cache
from pathlib import Path

import torch

from upscaler.atomic import read_regular, write_bytes_atomic
from upscaler.models.descriptor import PSNR_CAP
from upscaler.models.known import file_sha256
from upscaler.models.measurement import Measured

CACHE_VERSION = 9  # bump whenever what is measured, or how, changes
MAX_CACHE_BYTES = 1 << 16  # a cached measurement is a few hundred bytes


def cache_dir() -> Path:
    """Where measurements are kept: ``$UPSCALE_CACHE_DIR``, else the user's cache dir."""
    explicit = os.environ.get("UPSCALE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "texture-upscaler"


def cached(key: str, compute: Callable[[], Measured]) -> Measured:
    """The measurement stored under ``key`` (a file hash and the torch version), or ``compute``
    it and store it. An unreadable or unwritable cache only costs the measurement; so does one
    that is not a regular file (a FIFO is never opened) or whose fields are not as ``measure``
    writes them."""
    path = cache_dir() / f"contract-{key[:32]}.json"
    try:
        stored = json.loads(read_regular(path, MAX_CACHE_BYTES))
        if stored.get("version") == CACHE_VERSION and stored.get("key") == key:
            return _from_record(stored["measured"])
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


SHIPPED_MEASUREMENTS = Path(__file__).with_name("measured.json")


def cache_key(sha256: str, fp16: bool) -> str:
    """A model file's measurements are kept by its SHA-256 and the torch version (and whether
    fp16 was measured: only where a GPU is present)."""
    return f"{sha256}-torch{torch.__version__}{'-fp16' if fp16 else ''}"


def measured_file(path: Path, fp16: bool, compute: Callable[[], Measured]) -> Measured:
    """The measurement of the model file ``path``: shipped with the package (CPU only, see the
    module docstring), else cached, else ``compute``d and cached."""
    sha256 = file_sha256(path)
    shipped = None if fp16 else shipped_measurements().get(sha256)
    return shipped or cached(cache_key(sha256, fp16), compute)


@cache
def shipped_measurements() -> dict[str, Measured]:
    """``measured.json``'s measurements by SHA-256; an entry that does not read as a measurement
    is left out (that file is then measured on first use, as any other)."""
    try:
        entries = json.loads(SHIPPED_MEASUREMENTS.read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    found: dict[str, Measured] = {}
    for entry in entries if isinstance(entries, list) else []:
        try:
            found[entry["sha256"]] = _from_record(entry["measured"])
        except (ValueError, TypeError, KeyError):
            continue
    return found


def _from_record(record: object) -> Measured:
    """The measurement a cache file holds; ``ValueError`` unless every field is there with its
    type and range (counts >= 0, PSNR in [0, PSNR_CAP], levels in [0, 255]): a cache is untrusted
    input."""
    if not isinstance(record, dict) or set(record) != {f.name for f in fields(Measured)}:
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
    for name in ("input_layer", "float32_block", "output_layer"):
        if not isinstance(record[name], str):
            raise ValueError(f"{name} must be a string")
    return Measured(**record)

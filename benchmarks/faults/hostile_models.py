"""Hostile and malformed model files: each must be refused with a one-line reason, before any
code from it runs and before memory is allocated for what it claims.

``build(folder, canary)`` writes them all and returns ``(name, path, reason regex)`` rows.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from upscaler.models import Compact, CompactConfig, RRDBConfig, RRDBNet

CONVERT = "safetensors"


class Canary:
    """Pickles to a call of ``os.system`` that creates the file ``path``: the canonical payload
    that proves code from a model file ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.path}",))


def safetensors_bytes(header: dict, data: bytes, header_len: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data


def _f32(shape: list[int], begin: int, end: int, dtype: str = "F32") -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@dataclass(frozen=True)
class Hostile:
    name: str
    path: Path
    reason: str  # regular expression the refusal must match
    runs_code: bool = False  # carries a payload that would create the canary


def _compact_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Compact(CompactConfig(num_features=4, num_blocks=1, scale=2)).state_dict()


def _rrdb_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    config = RRDBConfig(num_features=8, num_blocks=1, growth_channels=4, scale=2)
    return RRDBNet(config).state_dict()


def _save_st(path: Path, state: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)


def _poisoned(value: float) -> dict[str, torch.Tensor]:
    state = _compact_state()
    state["body.0.weight"][0, 0, 0, 0] = value
    return state


def _legacy_bomb(path: Path) -> None:
    """A legacy torch file whose pickle declares a 400 GB storage for a 4-element tensor."""
    torch.save({"w": torch.zeros(4)}, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    at = raw.index(b"cpu") + len(b"cpu") + 2  # BINPUT n after the location string
    assert raw[at : at + 2] == b"K\x04", "unexpected legacy layout"
    path.write_bytes(raw[:at] + b"\x8a\x05" + (10**11).to_bytes(5, "little") + raw[at + 2 :])


def _esrgan_block(block: int) -> Callable[[Path], None]:
    """An old-style ESRGAN state dict (spandrel's domain) with one tiny key claiming ``block``:
    built as named, block 5000 would need ~14 GB, block 300 ~0.8 GB."""

    def make(path: Path) -> None:
        from spandrel.architectures.ESRGAN import ESRGAN

        net = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=1, scale=4)
        state = dict(net.state_dict())
        state[f"model.1.sub.{block}.RDB1.conv1.0.weight"] = torch.zeros(1)
        torch.save(state, path)

    return make


def _truncated_zip(path: Path) -> None:
    torch.save(_compact_state(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _torchscript(path: Path) -> None:
    module = torch.jit.trace(torch.nn.Conv2d(3, 12, 3, padding=1), torch.rand(1, 3, 8, 8))
    torch.jit.save(module, str(path))


GOOD = {"w": _f32([2], 0, 8)}
SAFETENSORS: dict[str, tuple[bytes, str]] = {
    "header-too-large": (safetensors_bytes(GOOD, b"\0" * 8, header_len=1 << 40), "header of"),
    "header-truncated": (safetensors_bytes(GOOD, b"\0" * 8)[:20], "truncated"),
    "too-short": (b"\x10\0\0", "too short"),
    "not-json": (struct.pack("<Q", 5) + b"{oops" + b"\0" * 8, "not JSON"),
    "not-utf8": (struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc" + b"\0" * 8, "not JSON"),
    "header-array": (safetensors_bytes([1, 2], b""), "not a JSON object"),  # type: ignore[arg-type]
    "overlapping-offsets": (
        safetensors_bytes({"a": _f32([2], 0, 8), "b": _f32([2], 4, 12)}, b"\0" * 12),
        "overlaps",
    ),
    "offsets-past-end": (safetensors_bytes(GOOD, b"\0" * 4), "past the end"),
    "offsets-with-gap": (safetensors_bytes({"w": _f32([2], 8, 16)}, b"\0" * 16), "gap"),
    "negative-offset": (safetensors_bytes({"w": _f32([2], -8, 0)}, b"\0" * 8), "disagrees|gap"),
    "trailing-bytes": (safetensors_bytes(GOOD, b"\0" * 8 + b"<html>polyglot</html>"), "trailing"),
    "size-disagrees": (safetensors_bytes({"w": _f32([3], 0, 8)}, b"\0" * 8), "disagrees"),
    "unknown-dtype": (safetensors_bytes({"w": _f32([2], 0, 8, "F128")}, b"\0" * 8), "dtype"),
    "absurd-shape": (
        safetensors_bytes({"w": _f32([100000, 100000], 0, 8)}, b"\0" * 8),
        "parameters",
    ),
    "metadata-not-strings": (
        safetensors_bytes({"__metadata__": {"a": 1}, **GOOD}, b"\0" * 8),
        "metadata",
    ),
}


def build(folder: Path, canary: Path) -> list[Hostile]:
    """Write every hostile model file into ``folder``; the code payloads target ``canary``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[Hostile] = []

    def add(name: str, reason: str, make: Callable[[Path], None], runs_code: bool = False) -> None:
        path = folder / name
        make(path)
        rows.append(Hostile(name, path, reason, runs_code))

    payload = {"params": {"x": Canary(str(canary))}}
    hint = f"would run code.*{CONVERT}"
    add("canary.pth", hint, lambda p: torch.save(payload, p), True)
    add("canary.ckpt", hint, lambda p: torch.save(payload, p), True)
    add(
        "canary-legacy.pth",
        hint,
        lambda p: torch.save(payload, p, _use_new_zipfile_serialization=False),
        True,
    )
    add("canary-bare-pickle.pth", "would run code|unreadable", _bare_pickle(canary), True)
    add("torchscript.pt", f"TorchScript.*{CONVERT}", _torchscript)
    add("torchscript.pth", f"TorchScript.*{CONVERT}", _torchscript)
    for name, (content, reason) in SAFETENSORS.items():
        add(f"{name}.safetensors", reason, lambda p, c=content: p.write_bytes(c))
    add("nan.safetensors", "NaN or Inf", lambda p: _save_st(p, _poisoned(float("nan"))))
    add("inf.safetensors", "NaN or Inf", lambda p: _save_st(p, _poisoned(float("inf"))))
    add("nan.pth", "NaN or Inf", lambda p: torch.save(_poisoned(float("nan")), p))
    add("metadata-wide.safetensors", "do not fit", lambda p: _save_st(p, *_wide()))
    add("metadata-deep.safetensors", "blocks", lambda p: _save_st(p, *_deep()))
    add("metadata-unknown-arch.safetensors", "unknown architecture", _unknown_arch)
    add("rrdb-block-5000.safetensors", "blocks", _rrdb_block_5000)
    add("rrdb-first-block-missing.safetensors", "inconsistent", _rrdb_first_block_missing)
    add("esrgan-block-5000.pth", "names layer", _esrgan_block(5000))
    add("esrgan-block-300.pth", "could not build", _esrgan_block(300))
    add("legacy-400GB-storage.pth", "declares", _legacy_bomb)
    add("truncated-zip.pth", "truncated or corrupt", _truncated_zip)
    return rows


def _bare_pickle(canary: Path) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(pickle.dumps(Canary(str(canary))))


def _metadata(config: dict) -> dict[str, str]:
    return {"upscaler.arch": "compact", "upscaler.config": json.dumps(config)}


def _wide() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Small weights whose metadata claims 20,000 features: ~14 GB if built as claimed."""
    config = {"num_features": 20000, "num_blocks": 1, "scale": 2}
    return _compact_state(), _metadata(config)


def _deep() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    return _compact_state(), _metadata({"num_features": 4, "num_blocks": 10**7, "scale": 2})


def _unknown_arch(path: Path) -> None:
    _save_st(path, _compact_state(), {"upscaler.arch": "evil", "upscaler.config": "{}"})


def _rrdb_block_5000(path: Path) -> None:
    """BasicSR RRDB weights plus one tiny key naming block 5000: the block count is inferred
    from key names, so building first would allocate 5001 blocks."""
    state = dict(_rrdb_state())
    state["body.5000.rdb1.conv1.weight"] = torch.zeros(1)
    _save_st(path, state)


def _rrdb_first_block_missing(path: Path) -> None:
    state = {k: v for k, v in _rrdb_state().items() if not k.startswith("body.0.rdb1.conv1.")}
    _save_st(path, state)

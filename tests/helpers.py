"""Plain helpers the tests share: the bundled test files and tiny real models written to disk.

A module of its own (not ``conftest``, which pytest loads as a plugin): test modules import these
names, including for module-level ``parametrize`` lists, which fixtures cannot feed. The fixtures
built on them (``tiny_x2``, ``tiny_x4``, ...) are in ``conftest.py``.

What the tests share with the reliability drills (the real command as a subprocess, hostile files,
injected out-of-memory, folder checks) is public in ``benchmarks.faults`` and imported from there,
never a drill's private helper: one copy, which the drill and its test both run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch

from upscaler import save_weights
from upscaler.models import Compact, CompactConfig, RRDBConfig, RRDBNet

DATA = Path(__file__).parent / "data"
T = TypeVar("T")


def within(seconds: float, call: Callable[[], T], fifo: Path) -> T:
    """``call()``, which must return or raise within ``seconds``: a reader blocked on ``fifo`` is
    released (a writer opens and closes it) and the test fails, instead of hanging."""
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the test
            outcome.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"blocked for over {seconds} s reading {fifo}")
    returned, value = outcome[0]
    if not returned:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


def make_pixels(h: int = 17, w: int = 11, c: int = 3, seed: int = 0, bits: int = 8) -> np.ndarray:
    """Smooth-ish random texture ``(H, W, C)``: odd and non-square by default (H/W swaps show)."""
    rng = np.random.default_rng(seed)
    base = rng.random((h, w, c))
    smooth = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1)) / 3
    top = 65535 if bits == 16 else 255
    return (smooth * top).round().astype(np.uint16 if bits == 16 else np.uint8)


def write_compact(
    path: Path,
    scale: int = 4,
    num_features: int = 8,
    num_blocks: int = 2,
    seed: int = 0,
    **kwargs: object,
) -> Path:
    torch.manual_seed(seed)
    config = CompactConfig(num_features=num_features, num_blocks=num_blocks, scale=scale, **kwargs)
    save_weights(path, Compact(config), arch="compact", config=config)
    return path


def write_rrdb(path: Path, scale: int = 4, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = RRDBConfig(num_features=8, num_blocks=1, growth_channels=4, scale=scale)
    save_weights(path, RRDBNet(config), arch="rrdb", config=config)
    return path


def write_blur(path: Path, scale: int = 2) -> Path:
    """A real model file whose network is a fixed 3x3 box blur, then nearest upscaling: it mixes
    neighbours like any SR model does, but predictably (fringes, seams and vector shortening
    show up deterministically)."""
    config = CompactConfig(num_features=3, num_blocks=0, scale=scale)
    model = Compact(config)
    with torch.no_grad():
        first, act, last = model.body
        first.weight.zero_()
        first.bias.zero_()
        for c in range(3):
            first.weight[c, c] = 1 / 9
            first.weight[c, c, 1, 1] -= 1  # blur minus identity: the residual adds x back
        act.weight.fill_(1.0)  # PReLU slope 1: identity
        last.weight.zero_()
        last.bias.zero_()
        for c in range(3):
            last.weight[c * scale * scale : (c + 1) * scale * scale, c, 1, 1] = 1
    save_weights(path, model, arch="compact", config=config)
    return path

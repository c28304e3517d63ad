"""Out-of-memory at random tiles is recovered exactly; a user's tile is never changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_pixels

from benchmarks.faults import drill_oom
from benchmarks.faults.corpus import load_patches, source_textures
from benchmarks.faults.oom import InjectedOOM, max_lsb_difference, repeat_to, upscale_under_budget
from upscaler.engine.pipeline import NotEnoughMemoryError
from upscaler.formats.image import ImageFile
from upscaler.models.loader import read_model


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_injected_out_of_memory_at_random_tiles(tiny_x2: Path) -> None:
    figures = drill_oom.run(tiny_x2, injections=8, images=4, seed=5)
    assert figures["injections"] >= 4 and figures["files_failed"] == 0
    assert figures["extra_forward_calls"] >= figures["injections"]  # each one recomputed
    assert figures["max_lsb_diff_vs_clean"] <= 1
    assert figures["max_lsb_diff_vs_clean_half_tile"] <= 1
    assert figures["user_tile_overridden"] == 0
    assert figures["user_tile_clear_errors"] == figures["user_tile_failures"]
    assert "smallest allowed" in figures["floor_error"]
    assert figures["next_file_back_at_normal_tile"]


class _StaleTile(InjectedOOM):
    """What Real-ESRGAN does after an error inside a tile: paste the previous tile's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls not in self.fail_at:
            self.previous = super().forward(x)
            return self.previous
        self.calls += 1
        stale = torch.zeros(x.shape[0], 3, x.shape[2] * 2, x.shape[3] * 2)
        h, w = (
            min(stale.shape[2], self.previous.shape[2]),
            min(stale.shape[3], self.previous.shape[3]),
        )
        stale[:, :, :h, :w] = self.previous[: x.shape[0], :, :h, :w]
        return stale


def test_the_comparison_would_catch_a_stale_tile(tiny_x2: Path) -> None:
    """The drill's check can fail: a pasted stale tile differs from the clean run by far more
    than 1 LSB."""
    module, info = read_model(tiny_x2)
    rng = np.random.default_rng(0)
    patch = load_patches(source_textures(), rng, 1, sides=(240, 241))[0]
    image = ImageFile(repeat_to(patch[:, :, :3], 240), "PNG")
    clean = upscale_under_budget(InjectedOOM(module), info, image, None)
    stale = upscale_under_budget(_StaleTile(module, {3}), info, image, None)
    assert max_lsb_difference(stale, clean) > 8


def test_user_tile_with_out_of_memory_fails_the_file_clearly(tiny_x2: Path) -> None:
    module, info = read_model(tiny_x2)
    image = ImageFile(make_pixels(130, 90, 3), "PNG")
    clean = InjectedOOM(module)
    upscale_under_budget(clean, info, image, 48)
    faulty = InjectedOOM(module, set(range(1, 1000)))  # memory stays short
    try:
        upscale_under_budget(faulty, info, image, 48)
        raise AssertionError("a tile set by the user was silently changed")
    except NotEnoughMemoryError as exc:
        assert "tile size you set" in str(exc)
    planned = {s[-2:] for s in clean.shapes}
    assert {s[-2:] for s in faulty.shapes} <= planned  # no smaller tile was ever tried

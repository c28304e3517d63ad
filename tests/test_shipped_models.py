"""The models shipped in the package: present, loadable, documented, and better than bicubic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from training.metrics import psnr_y
from upscaler import load_model
from upscaler.models.zoo import SHIPPED, default_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "textures"
COLOUR_SAMPLES = ("redrock01", "duct", "wood_planks1")
# dB over bicubic, at least (measured when shipped: +0.30, +1.08, +0.08, +0.83); a GAN model may
# trade a little PSNR for detail, never more than 0.5 dB.
MARGIN = {
    "texture-x4-fidelity": 0.15,
    "texture-x2-fidelity": 0.5,
    "texture-x4": -0.5,
    "texture-x2": -0.5,
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_and_has_a_card(name: str) -> None:
    shipped = SHIPPED[name]
    assert shipped.installed, f"{shipped.path} is missing"
    model = load_model(name, device="cpu")
    assert model.scale == shipped.scale
    with safe_open(str(shipped.path), "pt") as f:
        training = json.loads((f.metadata() or {})["upscaler.training"])
    assert training["steps"] > 0 and training["weights"] == "ema"
    card = shipped.card.read_text()
    assert card.startswith(f"# {name}\n") and f"**{name}**" in card and "bicubic" in card


def test_default_models_follow_the_scale() -> None:
    assert default_model(4) == "texture-x4" and default_model(2) == "texture-x2"


def _tensor(image: Image.Image) -> torch.Tensor:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


@pytest.mark.parametrize("name", sorted(MARGIN))
def test_shipped_models_against_bicubic_on_the_samples(name: str) -> None:
    model = load_model(name, device="cpu")
    s = model.scale
    ours, bicubic = [], []
    for stem in COLOUR_SAMPLES:
        hr = Image.open(SAMPLES / f"{stem}.png").convert("RGB")
        lr = hr.resize((hr.width // s, hr.height // s), Image.Resampling.BICUBIC)
        with torch.no_grad():
            sr = (model.upscale(_tensor(lr)).clamp(0, 1) * 255).round() / 255
        up = _tensor(lr.resize(hr.size, Image.Resampling.BICUBIC))
        ours.append(float(psnr_y(sr, _tensor(hr), s)[0]))
        bicubic.append(float(psnr_y(up, _tensor(hr), s)[0]))
    assert np.mean(ours) > np.mean(bicubic) + MARGIN[name], (ours, bicubic)


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_quick_start_command_on_the_bundled_samples(tmp_path: Path) -> None:
    """The README's first command, as a user runs it, with the shipped default model."""
    command = [sys.executable, "-m", "upscaler", str(SAMPLES), "-o", str(tmp_path), "--scale", "4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    for source in sorted(SAMPLES.glob("*.png")):
        with Image.open(source) as before, Image.open(tmp_path / source.name) as after:
            assert after.size == (before.width * 4, before.height * 4)
            assert after.mode == before.mode

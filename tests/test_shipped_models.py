"""The models shipped in the package: present, loadable, documented, and better than bicubic."""

from __future__ import annotations

import json
import os
import shutil
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
from upscaler.engine.pipeline import Upscaler
from upscaler.models.sources import SHIPPED, default_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "textures"
COLOUR_SAMPLES = ("redrock01", "duct", "wood_planks1")
VAL = ROOT.parent / "shared" / "data" / "textures" / "val" / "color"
PEERS = ROOT.parent / "shared" / "peers"
# Guard against broken weights on the bundled samples, in dB against bicubic. These are whole
# textures already Lanczos-downscaled 4-8x to 128 px (dense detail), shrunk 4x again here: the
# v2 models (measured when shipped: texture-x4 -0.83, texture-x4-fidelity -0.66) lose there,
# while on such dense whole textures of the validation set they gain 1.05 dB on average (39 of
# 69 above bicubic; README). A broken model loses many dB. The GAN model invents detail, which
# costs PSNR: texture-x4-sharp measured -1.66 (its first release -1.67; 4xSPANkendata -2.54).
SAMPLE_MARGIN = {"texture-x4-sharp": -2.0}
# dB over bicubic on the first 16 validation textures at their own resolution (128 px centre
# crops), the use the models are made for. Measured when shipped: texture-x4 (v4, SPAN) +2.67
# (v3 +2.06), texture-x4-bc (on these clean inputs, not its use) +1.84, texture-x4-fidelity
# +0.94, texture-x2 (v4, SPAN) +2.57 (v3 +2.47), texture-x2-bc +1.81, texture-x2-fidelity +0.28,
# texture-x4-sharp (a GAN: invented detail costs PSNR) -0.62 (its first release -0.57).
VAL_MARGIN = {
    "texture-x4": 2.3,
    "texture-x4-bc": 1.5,
    "texture-x4-fidelity": 0.3,
    "texture-x4-sharp": -0.9,
    "texture-x2": 2.2,
    "texture-x2-bc": 1.5,
    "texture-x2-fidelity": 0.1,
}
# (ours - peer) dB over bicubic on the same 16 validation crops. Measured for texture-x4 v4:
# +2.67 against the official SPAN x4's +3.04 and 4xSPANkendata's -2.15 (v3 +2.06, v2 +0.54); for
# texture-x2 v4 +2.57 against the official SPAN x2's +2.90 (v3 +2.47, v2 +0.04); for
# texture-x4-sharp -0.62 against 4xSPANkendata's -2.15 (issue 22 asks 0.5 dB above it). The
# fidelity bar issue 22 sets (at least SPAN's) is not met yet: README, Shipped models. A
# regression of a few tenths fails; a model that reaches SPAN raises the bar.
PEER_BARS = {
    ("texture-x4", "spanx4_ch48.safetensors"): -0.7,
    ("texture-x4", "4xSPANkendata.safetensors"): 4.5,
    ("texture-x4-fidelity", "spanx4_ch48.safetensors"): -2.4,
    ("texture-x4-sharp", "4xSPANkendata.safetensors"): 1.2,
    ("texture-x2", "spanx2_ch48.safetensors"): -0.6,
}
# No fine pattern locked to the texel lattice, and no 2x2 checker, above these multiples of the
# truth's on the bundled samples (texture-x4 v2 laid 16-26x the truth's lattice energy on rock,
# duct and a normal map, and texture-x2 v2 13-61x on rock, duct and the normal map). Measured
# when shipped, lattice / checker: texture-x4 0.01-0.14x / 0.01-0.70x, texture-x2 0.01-0.07x /
# 0.05-0.22x. texture-x4-sharp keeps part of its start's pattern on rock and duct: 0.09-3.20x /
# 0.02-1.41x (4xSPANkendata 0.13-4.39x / 0.03-1.74x; README, Shipped models).
# BC1 inputs: texture-x4 (through texture-x4-bc) over the official SPAN x4, in dB over bicubic.
BC1_LEAD = 1.2
PATTERN_BARS = {
    "texture-x4": 1.0,
    "texture-x4-bc": 1.0,
    "texture-x2": 1.0,
    "texture-x2-bc": 1.0,
    "texture-x4-sharp": 3.5,
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_and_has_a_card(name: str) -> None:
    shipped = SHIPPED[name]
    assert shipped.installed, f"{shipped.path} is missing"
    model = load_model(name, device="cpu")
    assert model.scale == shipped.scale
    with safe_open(str(shipped.path), "pt") as f:
        training = json.loads((f.metadata() or {})["upscaler.training"])
    assert training["steps"] > 0 and training["weights"] in ("ema", "live")
    card = shipped.card.read_text()
    assert f"--weights {training['weights']}" in card  # the card says which weights ship
    assert card.startswith(f"# {name}\n") and f"**{name}**" in card and "bicubic" in card


def test_default_models_follow_the_scale() -> None:
    assert default_model(4) == "texture-x4" and default_model(2) == "texture-x2"
    assert default_model(4, sharp=True) == "texture-x4-sharp"


def _tensor(image: Image.Image) -> torch.Tensor:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def _shrunk_and_upscaled(model: Upscaler, hr: Image.Image) -> tuple[Image.Image, torch.Tensor]:
    """``hr`` shrunk by the model's scale (bicubic), and the model's 8-bit output from it."""
    s = model.scale
    lr = hr.resize((hr.width // s, hr.height // s), Image.Resampling.BICUBIC)
    with torch.no_grad():
        return lr, (model.upscale(_tensor(lr)).clamp(0, 1) * 255).round() / 255


def _gain_over_bicubic(name: str, pictures: list[Image.Image]) -> float:
    model = load_model(name, device="cpu")
    s = model.scale
    ours, bicubic = [], []
    for hr in pictures:
        lr, sr = _shrunk_and_upscaled(model, hr)
        up = _tensor(lr.resize(hr.size, Image.Resampling.BICUBIC))
        ours.append(float(psnr_y(sr, _tensor(hr), s)[0]))
        bicubic.append(float(psnr_y(up, _tensor(hr), s)[0]))
    keep = [i for i, b in enumerate(bicubic) if np.isfinite(b)]  # a flat crop: no score
    return float(np.mean([ours[i] - bicubic[i] for i in keep]))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_models_are_not_broken_on_the_bundled_samples(name: str) -> None:
    pictures = [Image.open(SAMPLES / f"{stem}.png").convert("RGB") for stem in COLOUR_SAMPLES]
    assert _gain_over_bicubic(name, pictures) > SAMPLE_MARGIN.get(name, -1.2)


def _val_crops() -> list[Image.Image]:
    pictures = []
    for path in sorted(VAL.glob("*.png"))[:16]:
        with Image.open(path) as im:
            w, h = im.size
            side = min(128, w, h)
            box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
            pictures.append(im.convert("RGB").crop(box))
    return pictures


@pytest.mark.skipif(not VAL.is_dir(), reason="needs ../shared/data/textures/val beside the repo")
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_models_beat_bicubic_on_validation_textures(name: str) -> None:
    assert _gain_over_bicubic(name, _val_crops()) > VAL_MARGIN[name]


@pytest.mark.skipif(
    not (VAL.is_dir() and PEERS.is_dir()), reason="needs ../shared (validation textures, peers)"
)
@pytest.mark.parametrize(("name", "peer"), PEER_BARS)
def test_shipped_models_against_the_peers(name: str, peer: str) -> None:
    """Regressions are judged against the pretrained peers, not only bicubic: each shipped x4
    model keeps its measured place next to the SPAN peers on the same validation crops."""
    pictures = _val_crops()
    ours, theirs = _gain_over_bicubic(name, pictures), _gain_over_bicubic(PEERS / peer, pictures)
    assert ours - theirs > PEER_BARS[(name, peer)]


def _bc1_gain_over_bicubic(name: str | Path, pictures: list[Image.Image]) -> float:
    """As ``_gain_over_bicubic``, on inputs that went through BC1 after the shrink, upscaled as
    ``upscale`` does it (a shipped model hands them to its weights for block-compressed inputs)."""
    from upscaler.formats import bcn
    from upscaler.formats.image import ImageFile
    from upscaler.process import TextureOptions, upscale_images

    model = load_model(name, device="cpu", dtype="fp32")
    s, gains = model.scale, []
    for hr in pictures:
        lr = np.asarray(hr.resize((hr.width // s, hr.height // s), Image.Resampling.BICUBIC))
        lq = bcn.round_trip(lr, 1)
        sr = upscale_images(model, [ImageFile(lq, "PNG")], TextureOptions())[0].pixels
        up = Image.fromarray(lq).resize(hr.size, Image.Resampling.BICUBIC)
        truth = _tensor(hr)
        ours = float(psnr_y(_tensor(Image.fromarray(sr)), truth, s)[0])
        bicubic = float(psnr_y(_tensor(up), truth, s)[0])
        if np.isfinite(bicubic):
            gains.append(ours - bicubic)
    return float(np.mean(gains))


@pytest.mark.skipif(
    not (VAL.is_dir() and PEERS.is_dir()), reason="needs ../shared (validation textures, peers)"
)
def test_the_default_beats_the_official_span_on_block_compressed_inputs() -> None:
    """BC1-damaged inputs (what DDS textures hold): the default, through its weights for them,
    keeps its lead over the official SPAN x4. Measured when shipped on the 16 validation crops:
    +1.10 dB over bicubic against SPAN's -0.44 (the clean weights alone: +0.11)."""
    pictures = _val_crops()
    ours = _bc1_gain_over_bicubic("texture-x4", pictures)
    theirs = _bc1_gain_over_bicubic(PEERS / "spanx4_ch48.safetensors", pictures)
    assert ours - theirs > BC1_LEAD


@pytest.mark.parametrize("name", ["texture-x4", "texture-x4-bc", "texture-x4-sharp", "texture-x2"])
def test_gray_stays_gray(name: str) -> None:
    """Gray stored as RGB comes out gray (the issue saw 59 levels of invented colour)."""
    from upscaler.formats.image import ImageFile
    from upscaler.process import TextureOptions, upscale_images

    gray = np.asarray(Image.open(SAMPLES / "duct.png").convert("L"))[:64, :64]
    image = ImageFile(np.ascontiguousarray(np.stack([gray] * 3, axis=2)), "PNG")
    out = upscale_images(load_model(name, device="cpu"), [image], TextureOptions())
    pixels = out[0].pixels.astype(int)
    assert (pixels.max(axis=2) - pixels.min(axis=2)).max() <= 2


def test_quick_start_output_folder_is_ignored_by_git() -> None:
    """The README's first command writes ``upscaled/`` into the clone: never a change to commit."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "upscale samples/textures/ -o upscaled/ --scale 4" in readme
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    command = ["git", "check-ignore", "-q", "--no-index", "upscaled/rock.png"]
    assert subprocess.run(command, cwd=ROOT, timeout=60).returncode == 0


def test_quick_start_shows_a_cpu_only_install_before_the_project() -> None:
    quick = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quick start")[1]
    quick = quick.split("\n## ")[0]
    index = "--index-url https://download.pytorch.org/whl/cpu"
    cpu = f"pip install torch torchvision {index}\npip install -e ."
    assert cpu in quick and "not measured" in quick


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


@pytest.mark.parametrize("name", sorted(PATTERN_BARS))
@pytest.mark.parametrize("stem", ["redrock01", "duct", "wood_planks1", "grass01_n", "grate01_skin"])
def test_models_lay_no_screen_door_or_hatch(name: str, stem: str) -> None:
    """No fine pattern locked to the texel lattice, and no 2x2 checker, above ``PATTERN_BARS``
    times the truth's."""
    from training.metrics import checker_energy, lattice_energy

    hr = Image.open(SAMPLES / f"{stem}.png").convert("RGB")
    model = load_model(name, device="cpu")
    _, sr = _shrunk_and_upscaled(model, hr)
    truth = _tensor(hr)
    s = model.scale
    assert float(lattice_energy(sr, s)[0] / lattice_energy(truth, s)[0]) < PATTERN_BARS[name]
    assert float(checker_energy(sr)[0] / checker_energy(truth)[0]) < PATTERN_BARS[name]


def test_the_sharp_model_puts_back_detail_without_inventing_it_on_flat_ground() -> None:
    """texture-x4-sharp is there for detail: on the bundled colour samples, shrunk 4x, it puts
    back at least 0.6 of the truth's fine-detail energy (median; measured 0.99; texture-x4 0.05),
    and on the flat gray duct no more than 1.2 of it (measured 0.99: no invented structure)."""
    from training.metrics import high_frequency_energy

    model = load_model("texture-x4-sharp", device="cpu")
    ratios = {}
    for stem in COLOUR_SAMPLES:
        hr = Image.open(SAMPLES / f"{stem}.png").convert("RGB")
        _, sr = _shrunk_and_upscaled(model, hr)
        ratios[stem] = float(high_frequency_energy(sr)) / float(high_frequency_energy(_tensor(hr)))
    assert float(np.median(list(ratios.values()))) > 0.6
    assert ratios["duct"] < 1.2


BLOW_UP_INPUTS = (
    SAMPLES / "grate01_skin.png",  # black holes with small saturated dots (its colour, as stored)
    ROOT / "tests/data/warzone/tertilesc1hw-32-tile-49.png",  # dark shapes on flat white
    ROOT / "tests/data/warzone/tertilesc1hw-32-tile-52.png",
)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_no_shipped_model_fills_flat_ground_with_noise(name: str) -> None:
    """On textures with flat white or black ground, what ``upscale`` writes stays close to a
    bicubic upscale (mean difference < 0.04; measured 0.003-0.031 for every shipped model).
    texture-x2 v4 and the official SPAN x2 amplify their features there into noise blobs (the
    network's own output on the first Warzone tile: a third of the values beyond [-0.25, 1.25],
    from -18 to 23; mean difference 0.21 once clamped): the engine fills what blew up from the
    bicubic upscale (``pipeline.steadied``)."""
    model = load_model(name, device="cpu", dtype="fp32")
    for path in BLOW_UP_INPUTS:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
        reference = torch.nn.functional.interpolate(
            x, scale_factor=model.scale, mode="bicubic", align_corners=False
        ).clamp(0, 1)
        assert float((model.upscale(x) - reference).abs().mean()) < 0.04, path.name

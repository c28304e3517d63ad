"""Export -> ``upscale --model`` round trip, ``eval``, ICNR and the metrics, on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image
from training_helpers import tiny_overrides, write_texture_tree

from training.cli import main
from training.config import ModelConfig
from training.export import load_generator
from training.generator import apply_icnr, build
from training.metrics import normal_angular_error, psnr_y, ssim_y
from upscaler import load_model
from upscaler.cli import main as upscale_main

ROOT = Path(__file__).parents[1]
SAMPLES = ROOT / "samples" / "textures"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    train = write_texture_tree(tmp / "train")
    args = ["fit", "compact-x4-psnr", "-q"]
    for value in [*tiny_overrides("compact-x4-psnr", tmp, train), "optim.warmup_steps=0"]:
        args += ["--set", value]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp / "runs" / "compact-x4-psnr"


def test_export_then_upscale_cli_gives_the_ema_generator_output(
    trained_run: Path, tmp_path: Path
) -> None:
    model = tmp_path / "mine.safetensors"
    result = CliRunner().invoke(main, ["export", str(trained_run), str(model)])
    assert result.exit_code == 0, result.output
    assert "compact x4, step 2" in result.output
    (tmp_path / "in").mkdir()
    pixels = make_pixels(9, 7, 3, seed=4)
    Image.fromarray(pixels).save(tmp_path / "in" / "rock.png")
    run = CliRunner().invoke(
        upscale_main,
        [
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(model),
            "-q",
            "--seamless",
            "off",
            "--precision",
            "fp32",  # the generator's own precision: the comparison is of weights
        ],
    )
    assert run.exit_code == 0, run.output
    with Image.open(tmp_path / "out" / "rock.png") as im:
        upscaled = np.asarray(im)
    assert upscaled.shape == (36, 28, 3)
    module, info = load_generator(trained_run)
    assert info["step"] == 2
    with torch.no_grad():
        direct = module(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)
    expected = (direct[0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(upscaled.astype(int) - expected.astype(int)).max() <= 1
    meta = load_model(model).info.metadata
    training = json.loads(dict(meta)["upscaler.training"])
    assert training["steps"] == 2 and training["weights"] == "ema"


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_export_and_upscale_as_real_subprocesses_with_fp16(
    trained_run: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    model = tmp_path / "half.safetensors"
    checkpoint = sorted((trained_run / "checkpoints").glob("*.pt"))[-1]
    subprocess.run(
        [sys.executable, "-m", "training.cli", "export", str(checkpoint), str(model), "--fp16"],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    full = tmp_path / "full.safetensors"
    CliRunner().invoke(main, ["export", str(checkpoint), str(full)], catch_exceptions=False)
    assert model.stat().st_size < 0.7 * full.stat().st_size
    Image.fromarray(make_pixels(8, 6, 4, seed=2), "RGBA").save(tmp_path / "leaf.png")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "upscaler",
            str(tmp_path / "leaf.png"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(model),
            "-q",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out" / "leaf.png") as im:
        assert im.size == (24, 32) and im.mode == "RGBA"


def test_export_refuses_other_suffixes_and_missing_runs(trained_run: Path, tmp_path: Path) -> None:
    bad = CliRunner().invoke(main, ["export", str(trained_run), str(tmp_path / "model.pth")])
    assert bad.exit_code == 2 and "must end in .safetensors" in bad.output
    (tmp_path / "empty").mkdir()
    missing = CliRunner().invoke(
        main, ["export", str(tmp_path / "empty"), str(tmp_path / "m.safetensors")]
    )
    assert missing.exit_code == 2 and "no checkpoints" in missing.output


def test_onnx_export_computes_what_the_generator_computes(
    trained_run: Path, tmp_path: Path
) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    result = CliRunner().invoke(
        main,
        [
            "export",
            str(trained_run),
            str(tmp_path / "m.safetensors"),
            "--onnx",
            str(tmp_path / "m.onnx"),
        ],
    )
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    x = torch.rand(2, 3, 9, 7)  # not the 32x32 used for tracing: the axes are dynamic
    (got,) = ReferenceEvaluator(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = load_generator(trained_run)[0](x).numpy()
    assert got.shape == (2, 3, 36, 28) and np.allclose(got, expected, atol=1e-4)


def test_eval_reports_quality_metrics(trained_run: Path, tmp_path: Path) -> None:
    val = write_texture_tree(tmp_path / "val", size=32, count=2)
    result = CliRunner().invoke(main, ["eval", str(trained_run), str(val), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["images"] == 4 and metrics["seam_images"] >= 1  # noise tiles, too
    assert 5 < metrics["psnr_y"] < 60 and -1 <= metrics["ssim_y"] <= 1
    assert metrics["normal_angle_deg"] >= 0
    assert metrics["lpips"] is None  # no pretrained AlexNet here: not measured, not faked
    model = tmp_path / "m.safetensors"
    CliRunner().invoke(main, ["export", str(trained_run), str(model)], catch_exceptions=False)
    from_file = json.loads(
        CliRunner().invoke(main, ["eval", str(model), str(val), "--json"]).output
    )
    assert from_file == metrics  # the file carries its recipe's degradations: same inputs


def test_icnr_makes_the_first_output_free_of_checkerboard() -> None:
    model, _ = build(ModelConfig(num_features=8, num_blocks=2, icnr=False), seed=0)
    assert apply_icnr(model) == 1
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        y = model(x)
    blocks = y.unfold(2, 4, 4).unfold(3, 4, 4)  # (1, 3, 9, 7, 4, 4) sub-pixel groups
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks), atol=1e-6)
    plain, _ = build(ModelConfig(num_features=8, num_blocks=2, icnr=False), seed=0)
    with torch.no_grad():
        z = plain(x).unfold(2, 4, 4).unfold(3, 4, 4)
    assert not torch.allclose(z, z[..., :1, :1].expand_as(z), atol=1e-3)


def test_psnr_ssim_and_angle_known_values() -> None:
    a = torch.full((1, 3, 16, 16), 0.5)
    b = a + 0.1
    # Y of a uniform +0.1 shift in RGB is (65.481 + 128.553 + 24.966) / 255 * 0.1
    dy = 219 / 255 * 0.1
    assert psnr_y(a, b).item() == pytest.approx(-20 * np.log10(dy), rel=1e-5)
    assert psnr_y(a, a).item() == float("inf")
    assert ssim_y(a, a).item() == pytest.approx(1.0)
    noisy = (a + 0.2 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))).clamp(
        0, 1
    )
    assert ssim_y(a + 0.05 * (noisy - a), a).item() > ssim_y(noisy, a).item()
    flat = torch.tensor([0.5, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    tilted = torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2)  # +X
    assert normal_angular_error(flat, tilted).item() == pytest.approx(90.0, abs=1e-4)
    assert normal_angular_error(flat, flat).item() == pytest.approx(0.0, abs=1e-4)


def test_compact_init_keeps_the_signal_through_every_layer() -> None:
    model, _ = build(ModelConfig(num_features=32, num_blocks=16, icnr=True), seed=0)
    x = torch.rand(2, 3, 32, 32)
    out = x
    with torch.no_grad():
        for layer in model.body[:-1]:  # type: ignore[index]
            out = layer(out)
    # the last hidden features still carry the input (PyTorch's default init leaves ~6%)
    assert 0.2 < float(out.std()) / float(x.std()) < 5


@pytest.mark.parametrize("scale", [2, 4])
def test_interp_init_starts_as_a_bicubic_upscaler(scale: int) -> None:
    model, _ = build(ModelConfig(num_features=16, num_blocks=3, scale=scale, interp_init=True), 0)
    texture = Image.open(SAMPLES / "redrock01.png").convert("RGB").crop((0, 0, 32, 32))
    x = torch.from_numpy(np.asarray(texture).copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ours = model(x)[0].permute(1, 2, 0).numpy() * 255
    pil = np.asarray(texture.resize((32 * scale, 32 * scale), Image.Resampling.BICUBIC))
    inner = np.abs(ours - pil)[2 * scale : -2 * scale, 2 * scale : -2 * scale]
    assert inner.mean() < 1.0  # Keys cubic minus its far fourth tap: within 1/255 on average
    assert inner.max() < 8


def test_export_never_writes_over_the_checkpoint_it_reads(
    trained_run: Path, tmp_path: Path
) -> None:
    checkpoint = sorted((trained_run / "checkpoints").glob("*.pt"))[-1]
    before = checkpoint.read_bytes()
    model = tmp_path / "m.safetensors"
    for source in (checkpoint, trained_run):  # named, or found in the run folder
        result = CliRunner().invoke(
            main, ["export", str(source), str(model), "--onnx", str(checkpoint)]
        )
        assert result.exit_code == 2 and "would overwrite the checkpoint" in result.output
        assert checkpoint.read_bytes() == before
    same = CliRunner().invoke(main, ["export", str(checkpoint), str(model), "--onnx", str(model)])
    assert same.exit_code == 2 and "would overwrite the model file" in same.output
    (tmp_path / "ckpt.safetensors").symlink_to(checkpoint)
    link = CliRunner().invoke(main, ["export", str(checkpoint), str(tmp_path / "ckpt.safetensors")])
    assert link.exit_code == 2 and checkpoint.read_bytes() == before


def test_blend_interpolates_two_span_files_of_either_normalisation(tmp_path: Path) -> None:
    """``upscale-train blend``: alpha 0 and 1 give the two models back (a normalising SPAN meets
    a non-normalising one in the latter's form), 0.5 lies between them, and the file loads in
    spandrel and ``upscale``; a model is never written over one it reads."""
    import spandrel
    from safetensors.torch import save_file

    from training.archs import settle
    from upscaler.models import SpanConfig, build_generator
    from upscaler.models.loader import read_model

    torch.manual_seed(0)
    paths = []
    for name, norm in (("faithful", True), ("sharp", False)):
        module = settle(build_generator("span", SpanConfig(norm=norm)))
        paths.append(tmp_path / f"{name}.safetensors")
        save_file(module.state_dict(), str(paths[-1]))
    x = torch.rand(1, 3, 48, 48)
    outputs = []
    for alpha in (0.0, 0.5, 1.0):
        out = tmp_path / f"blend{alpha}.safetensors"
        result = CliRunner().invoke(
            main, ["blend", *map(str, paths), str(out), "--alpha", str(alpha)]
        )
        assert result.exit_code == 0, result.output
        with torch.no_grad():
            outputs.append(spandrel.ModelLoader().load_from_file(str(out)).model.eval()(x))
        assert read_model(out)[1].scale == 4  # upscale's loader takes it
    with torch.no_grad():
        ends = [spandrel.ModelLoader().load_from_file(str(p)).model.eval()(x) for p in paths]
    inner = (slice(None), slice(None), slice(96, -96), slice(96, -96))  # conv_1's padding aside
    assert torch.allclose(outputs[0][inner], ends[0][inner], atol=1e-4)
    assert torch.allclose(outputs[2], ends[1], atol=1e-4)
    assert 0 < (outputs[1] - ends[0]).abs().mean() < (ends[1] - ends[0]).abs().mean()
    # the fused convs inference runs are the blend of the two models' fused convs
    mixed = spandrel.ModelLoader().load_from_file(str(tmp_path / "blend0.5.safetensors")).model
    first = spandrel.ModelLoader().load_from_file(str(paths[0])).model
    second = spandrel.ModelLoader().load_from_file(str(paths[1])).model
    fused = (first.block_3.c2_r.eval_conv.weight + second.block_3.c2_r.eval_conv.weight) / 2
    assert torch.allclose(mixed.block_3.c2_r.eval_conv.weight, fused, atol=1e-5)
    clash = CliRunner().invoke(main, ["blend", *map(str, paths), str(paths[0]), "--alpha", "0.5"])
    assert clash.exit_code != 0 and "overwrite" in clash.output

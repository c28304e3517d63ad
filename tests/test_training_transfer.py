"""Starting from other weights (community generators, .pth state dicts, discriminators) and
training spandrel's SPAN: real files (Real-ESRGAN's own weights in ../shared/peers), real runs,
real exports loaded by spandrel and by ``upscale``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from training_helpers import tiny_overrides, write_texture_tree

from training import checkpoint as ckpt
from training.cli import main
from training.config import ConfigError, load_config
from training.export import load_generator
from training.trainer import Trainer
from upscaler.cli import main as upscale_main
from upscaler.engine.pipeline import steadied
from upscaler.models import make_config

PEERS = Path(__file__).parents[2] / "shared" / "peers"
if not PEERS.is_dir():
    PEERS = Path("/work/shared/peers")
ANIME = PEERS / "realesr-animevideov3-x4.safetensors"
X4PLUS = PEERS / "RealESRGAN_x4plus.safetensors"
needs_peers = pytest.mark.skipif(not ANIME.is_file(), reason="Real-ESRGAN's weights not here")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("textures")
    return write_texture_tree(root / "train"), write_texture_tree(root / "val", size=32, count=2)


def _config(recipe: str, tmp_path: Path, folders: tuple[Path, Path], *extra: str):  # noqa: ANN202
    return load_config(recipe, [*tiny_overrides(recipe, tmp_path, *folders), *extra])


def _fit(recipe: str, tmp_path: Path, folders: tuple[Path, Path], *extra: str) -> object:
    args = ["fit", recipe, "-q"]
    for value in [*tiny_overrides(recipe, tmp_path, *folders), *extra]:
        args += ["--set", value]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _quiet(_message: str) -> None:
    pass


@needs_peers
def test_realesrgan_compact_weights_start_a_compact_run_exactly(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    """realesr-animevideov3 is an SRVGGNetCompact 64x16: our compact, tensor for tensor."""
    full = ["model.num_features=64", "model.num_blocks=16", f"model.init_from={str(ANIME)!r}"]
    messages: list[str] = []
    trainer = Trainer(_config("compact-x4-psnr", tmp_path, folders, *full), log=messages.append)
    theirs = load_file(str(ANIME))
    for name, value in trainer.state.g.state_dict().items():
        assert torch.equal(value, theirs[name].float()), name
    ema = trainer.state.ema.module.state_dict()
    assert all(torch.equal(ema[k], v) for k, v in trainer.state.g.state_dict().items())
    assert any("generator initialised from" in m and "compact" in m for m in messages)
    # x2 from x4: the trunk is taken and the sub-pixel conv's phases averaged, so the x2 run
    # starts as the x4 model's output box-shrunk by 2 (its nearest base shrinks to x2's).
    x2 = Trainer(
        _config("compact-x2-psnr", tmp_path / "x2", folders, *full, "model.interp_init=false"),
        log=messages.append,
    )
    own = x2.state.g.state_dict()
    assert torch.equal(own["body.2.weight"], theirs["body.2.weight"].float())
    assert own["body.34.weight"].shape[0] == 12 and "made x2 by averaging" in messages[-1]
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        shrunk = F.avg_pool2d(trainer.state.g.eval()(x), 2)
        assert torch.allclose(x2.state.g.eval()(x), shrunk, atol=1e-5)


@needs_peers
def test_strict_refuses_and_partial_loads_what_fits_with_a_report(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    """Real-ESRGAN x4plus (ESRGAN's RRDBNet, 23 blocks) into a 1-block rrdb of the same width."""
    rrdb = [
        "model.num_features=64",
        "model.growth_channels=32",
        f"model.init_from={str(X4PLUS)!r}",
    ]
    with pytest.raises(ckpt.CheckpointError, match="does not fit.*unexpected.*init_strict=false"):
        Trainer(_config("rrdb-x4-psnr", tmp_path / "a", folders, *rrdb), log=_quiet)
    messages: list[str] = []
    trainer = Trainer(
        _config("rrdb-x4-psnr", tmp_path / "b", folders, *rrdb, "model.init_strict=false"),
        log=messages.append,
    )
    theirs = load_file(str(X4PLUS))
    own = trainer.state.g.state_dict()
    assert set(own) < set(theirs)  # every tensor of the small model comes from the file
    assert all(torch.equal(v, theirs[k].float()) for k, v in own.items())
    report = messages[-1]
    assert "partially" in report and f"{len(own)} tensors loaded" in report
    assert f"{len(theirs) - len(own)} unexpected (ignored): body.1." in report
    # A generator of another architecture cannot start a strict run, and says how to proceed.
    wrong = _config("compact-x4-psnr", tmp_path / "c", folders, f"model.init_from={str(X4PLUS)!r}")
    with pytest.raises(ckpt.CheckpointError, match="rrdb .* cannot start a compact .*model.arch"):
        Trainer(wrong, log=_quiet)


def test_a_pth_state_dict_starts_a_run_through_the_safe_reader(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    donor = Trainer(_config("compact-x4-psnr", tmp_path / "donor", folders), log=_quiet)
    weights = {k: v.clone() + 0.01 for k, v in donor.state.g.state_dict().items()}
    pth = tmp_path / "net_g_5000.pth"
    torch.save({"params_ema": weights, "iter": 5000}, pth)  # BasicSR's layout
    trainer = Trainer(
        _config("compact-x4-psnr", tmp_path / "run", folders, f"model.init_from={str(pth)!r}"),
        log=_quiet,
    )
    assert all(torch.equal(v, weights[k]) for k, v in trainer.state.g.state_dict().items())
    evil = tmp_path / "evil.pth"
    torch.save({"params": weights, "hook": Path("x")}, evil)  # a pickle that builds an object
    with pytest.raises(ckpt.CheckpointError, match="evil.pth: refused: loading it would run code"):
        Trainer(
            _config("compact-x4-psnr", tmp_path / "e", folders, f"model.init_from={str(evil)!r}"),
            log=_quiet,
        )


class RealESRGANUNetD(nn.Module):
    """Real-ESRGAN's ``UNetDiscriminatorSN`` as BasicSR defines it (``basicsr/archs/
    discriminator_arch.py``, copied here: BasicSR no longer imports with current torchvision),
    with the old ``torch.nn.utils.spectral_norm``."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64) -> None:
        super().__init__()
        norm = nn.utils.spectral_norm
        self.conv0 = nn.Conv2d(num_in_ch, num_feat, kernel_size=3, stride=1, padding=1)
        self.conv1 = norm(nn.Conv2d(num_feat, num_feat * 2, 4, 2, 1, bias=False))
        self.conv2 = norm(nn.Conv2d(num_feat * 2, num_feat * 4, 4, 2, 1, bias=False))
        self.conv3 = norm(nn.Conv2d(num_feat * 4, num_feat * 8, 4, 2, 1, bias=False))
        self.conv4 = norm(nn.Conv2d(num_feat * 8, num_feat * 4, 3, 1, 1, bias=False))
        self.conv5 = norm(nn.Conv2d(num_feat * 4, num_feat * 2, 3, 1, 1, bias=False))
        self.conv6 = norm(nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1, bias=False))
        self.conv7 = norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv8 = norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(num_feat, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def act(y: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(y, negative_slope=0.2)

        def up(y: torch.Tensor) -> torch.Tensor:
            return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3))) + x2
        x5 = act(self.conv5(up(x4))) + x1
        x6 = act(self.conv6(up(x5))) + x0
        return self.conv9(act(self.conv8(act(self.conv7(x6)))))


def test_discriminator_starts_from_realesrgan_netd_and_from_a_run(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    torch.manual_seed(3)
    theirs = RealESRGANUNetD(num_feat=8)
    theirs(torch.rand(2, 3, 32, 32))  # a few power iterations, as a trained file has
    netd = tmp_path / "RealESRGAN_x4plus_netD.pth"
    torch.save({"params": theirs.state_dict()}, netd)
    trainer = Trainer(
        _config(
            "compact-x4-gan", tmp_path / "a", folders, f"discriminator.init_from={str(netd)!r}"
        ),
        log=_quiet,
    )
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = trainer.state.d.eval()(x)[0]
        expected = theirs.eval()(x)
    assert torch.allclose(ours, expected, atol=1e-5)  # the same network, renamed
    # From a GAN run's discriminator; strict against another layout, partial reports.
    assert _fit("compact-x4-gan", tmp_path / "gan", folders).exit_code == 0
    run = tmp_path / "gan" / "runs" / "compact-x4-gan"
    again = Trainer(
        _config("compact-x4-gan", tmp_path / "b", folders, f"discriminator.init_from={str(run)!r}"),
        log=_quiet,
    )
    saved = ckpt.latest_checkpoint(run / "checkpoints")["discriminator"]
    assert all(torch.equal(v, saved[k]) for k, v in again.state.d.state_dict().items())
    patch = ["discriminator.arch=patchgan", f"discriminator.init_from={str(run)!r}"]
    with pytest.raises(ckpt.CheckpointError, match="does not fit this run's patchgan"):
        Trainer(_config("compact-x4-gan", tmp_path / "c", folders, *patch), log=_quiet)


SPAN_TINY = ["model.num_blocks=6", "model.num_features=8", "data.crop_size=32", "val.crop_size=32"]


def test_span_trains_exports_and_loads_in_spandrel_and_upscale(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    result = _fit("span-x4-psnr", tmp_path, folders, *SPAN_TINY)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "span-x4-psnr"
    model = tmp_path / "span.safetensors"
    exported = CliRunner().invoke(main, ["export", str(run), str(model)])
    assert exported.exit_code == 0 and "span x4, step 2" in exported.output, exported.output
    descriptor = spandrel.ModelLoader().load_from_file(str(model))
    assert descriptor.architecture.id == "SPAN" and descriptor.scale == 4
    x = torch.rand(1, 3, 13, 9)
    with torch.no_grad():
        ours = load_generator(run)[0](x)
        theirs = descriptor.model.eval()(x)
    assert torch.allclose(ours, theirs, atol=1e-5)
    (tmp_path / "in").mkdir()
    pixels = make_pixels(13, 9, 3, seed=5)
    Image.fromarray(pixels).save(tmp_path / "in" / "wall.png")
    out = tmp_path / "out"
    upscaled = CliRunner().invoke(
        upscale_main,
        # fp32: this checks the export, not the precision rule (which may pick bf16 for it)
        [str(tmp_path / "in"), "-o", str(out), "--model", str(model), "-q", "--seamless", "off"]
        + ["--precision", "fp32"],
    )
    assert upscaled.exit_code == 0, upscaled.output
    got = np.asarray(Image.open(out / "wall.png"))
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        expected = descriptor.model(image)
    # A SPAN two steps from random weights blows up: upscale fills that from bicubic, and says so.
    expected, _ = steadied(expected, image, 4)
    expected = (expected.clamp(0, 1)[0].permute(1, 2, 0) * 255).round().numpy()
    assert got.shape == (52, 36, 3) and np.abs(got.astype(float) - expected).max() <= 1
    # The exported file starts a new span run (spandrel reads it; strict fit).
    again = Trainer(
        _config(
            "span-x4-psnr",
            tmp_path / "again",
            folders,
            *SPAN_TINY,
            f"model.init_from={str(model)!r}",
        ),
        log=_quiet,
    )
    assert all(
        torch.equal(v, ours_v)
        for v, ours_v in zip(
            again.state.g.state_dict().values(),
            load_generator(run)[0].state_dict().values(),
            strict=True,
        )
    )


def test_a_frozen_first_conv_stays_as_loaded_while_a_teacher_trains_the_rest(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    """``model.frozen`` keeps ``conv_1`` bit for bit through a real fit that uses the teacher's
    detail and the low-pass fidelity term (the teacher: a SPAN file); the rest moves. A prefix
    that names no parameter is refused."""
    assert _fit("span-x4-psnr", tmp_path / "a", folders, *SPAN_TINY).exit_code == 0
    start = tmp_path / "start.safetensors"
    run = tmp_path / "a" / "runs" / "span-x4-psnr"
    assert CliRunner().invoke(main, ["export", str(run), str(start)]).exit_code == 0
    extra = [
        *SPAN_TINY,
        f"model.init_from={str(start)!r}",
        'model.frozen=["conv_1."]',
        "loss.low_pass_weight=1.0",
        "loss.detail_weight=1.0",
        f"loss.detail_teacher={str(start)!r}",
        "run.name='frozen'",
    ]
    result = _fit("span-x4-psnr", tmp_path / "b", folders, *extra)
    assert result.exit_code == 0, result.output
    before = load_generator(run)[0].state_dict()
    after = load_generator(tmp_path / "b" / "runs" / "frozen")[0].state_dict()
    first = [k for k in before if k.startswith("conv_1.")]
    assert first and all(torch.equal(before[k], after[k]) for k in first)
    assert not all(torch.equal(before[k], after[k]) for k in before if k not in first)
    with pytest.raises(ConfigError, match="no parameter starts with 'conv_9.'"):
        Trainer(
            _config("span-x4-psnr", tmp_path / "c", folders, *SPAN_TINY, 'model.frozen=["conv_9."]')
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_features": 8.0}, "span.num_features must be int, got 8.0"),
        ({"scale": True}, "span.scale must be int, got True"),
        ({"norm": 1}, "span.norm must be bool, got 1"),
    ],
)
def test_span_config_values_are_type_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config("span", values)


def test_span_hyper_parameters_come_from_the_recipe(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    config = _config("span-x4-psnr", tmp_path, folders, *SPAN_TINY, "model.options={norm=false}")
    trainer = Trainer(config, log=_quiet)
    assert not trainer.state.g.is_norm and trainer.state.g.conv_1.sk.out_channels == 8
    assert trainer.state.arch_config.norm is False
    with pytest.raises(ValueError, match=r"unknown span config keys \['depth'\]; valid keys"):
        Trainer(_config("span-x4-psnr", tmp_path, folders, *SPAN_TINY, "model.options={depth=3}"))
    with pytest.raises(ValueError, match="SPAN has 6 blocks by design"):
        Trainer(_config("span-x4-psnr", tmp_path, folders, "model.num_blocks=1"))
    with pytest.raises(ConfigError, match="model.arch must be one of compact, rrdb, span"):
        load_config("span-x4-psnr", ["model.arch=dat"])


def test_a_spandrel_architecture_we_do_not_train_is_named_and_still_evaluates(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    from safetensors.torch import save_file
    from spandrel.architectures.SAFMN import SAFMN

    from training.evaluate import evaluate

    torch.manual_seed(0)
    path = tmp_path / "safmn-x2.safetensors"
    save_file(
        {
            k: v.contiguous()
            for k, v in SAFMN(dim=8, n_blocks=1, upscaling_factor=2).state_dict().items()
        },
        str(path),
    )
    config = _config("compact-x2-psnr", tmp_path, folders, f"model.init_from={str(path)!r}")
    with pytest.raises(ckpt.CheckpointError, match="a spandrel:SAFMN .* cannot start a compact"):
        Trainer(config, log=_quiet)
    metrics = evaluate(path, folders[1])
    assert metrics["images"] == 4 and 0 < metrics["psnr_y"] < 60


def test_a_span_without_input_normalisation_computes_the_same_map() -> None:
    """span_without_norm moves SPAN's (x - mean) * 255 into conv_1 and keeps its weights at the
    usual size (4xSPANkendata's folded first conv is 24x smaller and breaks under Adam): the same
    output away from the border, in eval mode (fused convs) and in training mode (branches)."""
    from training.archs import settle, span_without_norm
    from upscaler.models import SpanConfig, build_generator

    torch.manual_seed(0)
    source = settle(build_generator("span", SpanConfig()))
    with torch.no_grad():  # a folded first conv: tiny weights, as in 4xSPANkendata's file
        source.conv_1.conv[1].weight.mul_(1 / 255)
    settle(source)
    target = build_generator("span", SpanConfig(norm=False))
    target.load_state_dict(span_without_norm(source.state_dict()), strict=True)
    assert (
        target.conv_1.conv[1].weight.abs().mean() > 100 * source.conv_1.conv[1].weight.abs().mean()
    )
    x = torch.rand(1, 3, 56, 56)
    for train in (False, True):
        source.train(train)
        target.train(train)
        with torch.no_grad():
            a, b = source(x), target(x)
        inner = (a - b)[..., 88:-88, 88:-88].abs().max()
        assert float(inner) < 1e-4, (train, float(inner))


def test_span_branches_rebuilt_from_the_fused_convs_compute_the_same_map() -> None:
    from training.archs import settle, span_from_fused
    from upscaler.models import SpanConfig, build_generator

    torch.manual_seed(0)
    source = settle(build_generator("span", SpanConfig()))
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    settle(source)
    rebuilt = build_generator("span", SpanConfig())
    rebuilt.load_state_dict(span_from_fused(source.state_dict()), strict=True)
    x = torch.rand(1, 3, 20, 20)
    for train in (False, True):  # eval: the fused convs; training: the rebuilt branches
        source.eval()
        rebuilt.train(train)
        with torch.no_grad():
            assert torch.allclose(source(x), rebuilt(x), atol=1e-4)


def test_a_span_run_with_the_range_term_logs_it(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    import json

    result = _fit("span-x4-psnr", tmp_path, folders, *SPAN_TINY, "loss.range_weight=1.0")
    assert result.exit_code == 0, result.output
    log = tmp_path / "runs" / "span-x4-psnr" / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    ranges = [r["loss_range"] for r in rows if r.get("kind") == "train" and "loss_range" in r]
    assert ranges and all(math.isfinite(v) and v >= 0 for v in ranges)


def test_span_x4_weights_collapsed_to_x2_compute_the_x4_output_box_shrunk() -> None:
    """An x2 SPAN from x4 weights starts as the x4 model with its output shrunk by a 2x2 box
    (in training mode too: the upsampler is a plain conv), the trunk tensor for tensor."""
    from training.archs import collapse_subpixels, settle
    from upscaler.models import SpanConfig, build_generator

    torch.manual_seed(0)
    x4 = settle(build_generator("span", SpanConfig(scale=4)))
    x2 = build_generator("span", SpanConfig(scale=2))
    own = x2.state_dict()
    weights = collapse_subpixels(x4.state_dict(), own, 4, 2)
    x2.load_state_dict(weights, strict=True)
    trunk = "block_1.c1_r.eval_conv.weight"
    assert torch.equal(weights[trunk], x4.state_dict()[trunk])
    x = torch.rand(1, 3, 20, 20)
    for train in (False, True):
        x4.train(train)
        x2.train(train)
        with torch.no_grad():
            assert torch.allclose(x2(x), F.avg_pool2d(x4(x), 2), atol=1e-5)
    with pytest.raises(ValueError, match="x4 cannot be collapsed to x3"):
        collapse_subpixels(x4.state_dict(), own, 4, 3)

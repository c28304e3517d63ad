"""The default precision is decided by measurement, by one rule for bf16 and fp16 on every device:
PSNR >= 50 dB against fp32's 8-bit output on the probe, and no value more than 12 levels off."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from upscaler.engine import load
from upscaler.engine.load import pick_dtype
from upscaler.engine.pipeline import Upscaler
from upscaler.models import measurement
from upscaler.models.compact import Compact, CompactConfig
from upscaler.models.descriptor import MAX_LEVELS, MIN_PSNR, Fidelity, ModelInfo
from upscaler.models.input_layer import Float32Layers, reduced_copy
from upscaler.models.loader import read_model
from upscaler.models.measurement import fidelity
from upscaler.models.span import fused_for_inference

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
ANIME = "realesr-animevideov3-x4.safetensors"
CPU = torch.device("cpu")


PASSES, FAILS = Fidelity(MIN_PSNR, MAX_LEVELS), Fidelity(MIN_PSNR - 0.1, 1)
CUDA = torch.device("cuda")  # only a name: pick_dtype asks native_bf16, patched below


def _info(bf16: Fidelity, fp16: Fidelity = FAILS, **kw: object) -> ModelInfo:
    info = ModelInfo("m", "compact", 4)
    return replace(info, bf16_fidelity=bf16, fp16_fidelity=fp16, **kw)  # type: ignore[arg-type]


def test_the_rule_is_psnr_and_the_largest_level_difference():
    assert PASSES.meets_rule()
    assert not Fidelity(MIN_PSNR - 0.1, 0).meets_rule()
    assert not Fidelity(80.0, MAX_LEVELS + 1).meets_rule()
    assert not Fidelity().meets_rule()  # not measured: never assumed


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_a_cpu_is_bf16_only_where_native_and_within_the_rule(monkeypatch, native):
    monkeypatch.setattr(load, "native_bf16", lambda device: native)
    passes, fails = _info(PASSES, PASSES), _info(FAILS, PASSES)
    assert pick_dtype("auto", CPU, passes) == (torch.bfloat16 if native else torch.float32)
    assert pick_dtype("auto", CPU, fails) == torch.float32  # fp16 on a CPU: emulated, slower
    assert pick_dtype("auto", CPU, _info(Fidelity())) == torch.float32  # unknown: never guessed
    # --precision overrides the measurement, both ways
    assert pick_dtype("bf16", CPU, fails) == torch.bfloat16
    assert pick_dtype("fp32", CPU, passes) == torch.float32
    with pytest.raises(ValueError, match="does not support bf16"):
        pick_dtype("bf16", CPU, _info(PASSES, supports_bf16=False))


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_a_gpu_takes_fp16_by_the_same_rule_where_bf16_is_not_native(monkeypatch, native):
    """Compute capability < 8.0 (GTX 10xx, RTX 20xx): fp16, not fp32, when it meets the rule."""
    monkeypatch.setattr(load, "native_bf16", lambda device: native)
    both = _info(PASSES, PASSES)
    assert pick_dtype("auto", CUDA, both) == (torch.bfloat16 if native else torch.float16)
    assert pick_dtype("auto", CUDA, _info(FAILS, PASSES)) == torch.float16
    assert pick_dtype("auto", CUDA, _info(PASSES, FAILS)) == (
        torch.bfloat16 if native else torch.float32
    )
    assert pick_dtype("auto", CUDA, _info(FAILS, FAILS)) == torch.float32
    no_fp16 = _info(PASSES, PASSES, supports_fp16=False)
    assert pick_dtype("auto", CUDA, no_fp16) == (torch.bfloat16 if native else torch.float32)


class _Identity(nn.Module):
    """``x`` itself (scale 1), plus ``error`` (a function of the output) when given one."""

    def __init__(self, error=None) -> None:  # noqa: ANN001
        super().__init__()
        self.error = error
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.error(x) if self.error is not None else x


def _flip_one_value(x: torch.Tensor) -> torch.Tensor:
    error = torch.zeros_like(x)
    value = x[0, 0, 5, 7]
    error[0, 0, 5, 7] = (0.0 if value > 0.5 else 1.0) - value  # at least 128 levels
    return error


@pytest.mark.parametrize(
    ("error", "passes"),
    [
        (lambda x: torch.zeros_like(x), True),  # identical
        (lambda x: (x > 0.9).float() / 255, True),  # one level, on a few percent of the values
        (lambda x: torch.full_like(x, 2 / 255), False),  # two levels everywhere: ~42 dB
        (_flip_one_value, False),  # one value of ~500,000 off by over 128 levels: PSNR > 50
    ],
)
def test_the_measured_fidelity_fails_by_psnr_or_by_a_single_large_error(error, passes):
    ref, reduced = _Identity(), _Identity(error)
    found = fidelity(ref, {torch.bfloat16: reduced}, 3, 1, float_input=True, stop_early=False)
    measured = found[torch.bfloat16]
    assert measured.meets_rule() == passes
    if error is _flip_one_value:
        assert measured.psnr > MIN_PSNR and measured.max_levels >= 128  # PSNR alone would pass
    if not passes and error is not _flip_one_value:
        assert measured.psnr < MIN_PSNR and measured.max_levels <= MAX_LEVELS


def test_output_that_overflows_in_fp16_fails_the_rule():
    found = fidelity(_Identity(), {torch.float16: _Identity(lambda x: x * float("inf"))}, 3, 1)
    assert found[torch.float16] == Fidelity() and not found[torch.float16].meets_rule()


def test_stopping_early_still_fails_what_fails():
    reduced = _Identity(lambda x: torch.full_like(x, 3 / 255))
    quick = fidelity(_Identity(), {torch.bfloat16: reduced}, 3, 1, float_input=True)
    whole = fidelity(_Identity(), {torch.bfloat16: reduced}, 3, 1, True, stop_early=False)
    assert not quick[torch.bfloat16].meets_rule() and not whole[torch.bfloat16].meets_rule()
    assert quick[torch.bfloat16].psnr >= whole[torch.bfloat16].psnr  # a bound, not the figure


def test_a_compact_cast_to_bf16_keeps_its_input_layer_in_float32():
    model = Compact(CompactConfig(num_features=8, num_blocks=2, scale=2)).eval()
    half = model.to(torch.bfloat16)
    convs = [m for m in half.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].weight.dtype == torch.float32
    assert all(c.weight.dtype == torch.bfloat16 for c in convs[1:])
    x = torch.rand(1, 3, 12, 12)
    with torch.inference_mode():
        assert half(x).dtype == torch.float32  # float input: exact base, float output
        assert half(x.bfloat16()).dtype == torch.bfloat16
    back = half.float()
    assert all(
        c.weight.dtype == torch.float32 for c in back.modules() if isinstance(c, torch.nn.Conv2d)
    )


@pytest.mark.skipif(not (PEERS / ANIME).is_file(), reason="no peers")
def test_realesr_animevideov3_meets_the_rule_in_bf16_and_fp16(monkeypatch):
    """Measured: bf16 57.0 dB from fp32, at most 4 levels off, its input kept float32
    (rounding the input to bf16 costs it dB); fp16 68.9 dB, at most 1 level."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # fp16 is measured for GPUs
    module, info = read_model(PEERS / ANIME)
    assert info.bf16_fidelity.meets_rule() and info.fp16_fidelity.meets_rule()
    assert info.fp16_fidelity.psnr > info.bf16_fidelity.psnr  # fp16: 3 more mantissa bits
    half = {torch.bfloat16: copy.deepcopy(module).to(torch.bfloat16)}
    rounded_input = fidelity(module, half, 3, 1, float_input=False, stop_early=False)
    assert rounded_input[torch.bfloat16].psnr < info.bf16_fidelity.psnr


def test_fp16_is_measured_only_where_a_gpu_could_run_it(monkeypatch, tiny_x2):
    _, cpu_only = read_model(tiny_x2)
    assert cpu_only.fp16_fidelity == Fidelity() and cpu_only.bf16_fidelity.psnr > 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _, with_gpu = read_model(tiny_x2)  # not the CPU-only cache entry: measured again
    assert with_gpu.fp16_fidelity.meets_rule() and with_gpu.bf16_fidelity == cpu_only.bf16_fidelity


@pytest.mark.slow
@pytest.mark.skipif(not (PEERS / "RealESRGAN_x4plus.safetensors").is_file(), reason="no peers")
def test_realesrgan_x4plus_meets_the_rule_in_bf16(monkeypatch):
    """Measured with its input layer in float32: bf16 52.2 dB from fp32, at most 8 levels off
    (under the old rule, 98.7% of pixels within a level, it stayed fp32); fp16 62.5 dB, 1."""
    module, info = read_model(PEERS / "RealESRGAN_x4plus.safetensors")
    assert info.input_layer == "conv_first"
    assert info.bf16_fidelity.meets_rule() and info.bf16_fidelity.psnr < 55
    monkeypatch.setattr(load, "native_bf16", lambda device: True)
    assert pick_dtype("auto", CPU, info) == torch.bfloat16


def test_auto_says_why_a_model_runs_in_fp32_on_a_device_with_a_faster_precision(monkeypatch):
    from upscaler.cli import _precision_note
    from upscaler.engine.pipeline import Upscaler

    module, info = read_model("texture-x4")
    monkeypatch.setattr(load, "native_bf16", lambda device: True)
    off = replace(info, bf16_fidelity=Fidelity(47.3, 20))
    differs = Upscaler(module, off, device=CPU, dtype=torch.float32)
    note = _precision_note(differs)
    assert note is not None
    assert "fp32" in note and "47.3 dB" in note and "20 levels" in note
    assert "50 dB" in note and "12 levels" in note and "--precision bf16" in note
    # bf16 chosen, or the fidelity unknown: nothing to explain
    assert _precision_note(Upscaler(module, info, device=CPU, dtype=torch.bfloat16)) is None
    unknown = replace(info, bf16_fidelity=Fidelity())
    assert _precision_note(Upscaler(module, unknown, device=CPU, dtype=torch.float32)) is None
    monkeypatch.setattr(load, "native_bf16", lambda device: False)  # no native bf16: no choice
    assert _precision_note(differs) is None


class _Net(nn.Module):
    """A small community-style network: an input conv, a body, and optionally a second layer
    inside the body that also reads the image (which cannot run with the layers at its ends
    alone in float32, and holds too many of the weights to be kept float32 as a block)."""

    def __init__(self, image_skip: bool = False) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)
        )
        self.skip = nn.Conv2d(3, 8, 7, padding=3) if image_skip else None  # most weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip is None:
            return self.body(self.head(x)) + x
        inner = self.body[1](self.body[0](self.head(x))) + self.skip(x)
        return self.body[2](inner)


def test_a_community_model_keeps_the_layer_that_sees_the_image_in_float32():
    torch.manual_seed(0)
    net = _Net().eval()
    measured = measurement.measure(net, in_channels=3, scale=1)
    assert measured.input_layer == "head"
    bf16 = Fidelity(measured.bf16_psnr, measured.bf16_max_levels)
    info = replace(_info(bf16), scale=1, input_layer="head")
    engine = Upscaler(copy.deepcopy(net), info, device=CPU, dtype=torch.bfloat16)
    module = engine.module
    assert module.head.weight.dtype == torch.float32
    assert module.body[0].weight.dtype == torch.bfloat16
    x = torch.rand(1, 3, 20, 20)
    with torch.inference_mode():
        fp32 = net(x)
        ours = engine(x)  # float32 image in: no bf16 rounding of the input levels
        rounded = net.to(torch.bfloat16)(x.bfloat16()).float()  # plain cast, input rounded
    reference, rounded = fp32.clamp(0, 1), rounded.clamp(0, 1)  # the engine returns [0, 1]
    assert (ours - reference).abs().mean() < (rounded - reference).abs().mean() / 2
    # later casts keep it consistent (the hooks read the dtypes at call time)
    module.float()
    with torch.inference_mode():
        assert module(x).dtype == torch.float32
    module.to(torch.bfloat16)
    with torch.inference_mode():
        assert module(x.bfloat16()).dtype == torch.bfloat16


def test_a_network_that_reads_the_image_twice_keeps_plain_casting():
    net = _Net(image_skip=True).eval()
    measured = measurement.measure(net, in_channels=3, scale=1)
    assert measured.float32_layers == Float32Layers()  # float32 input would reach the skip
    assert measured.bf16_psnr > 0 and measured.fp16_psnr > 0


def test_fp32_on_a_gpu_runs_without_tf32_and_leaves_the_flag_as_it_was():
    from upscaler.engine.pipeline import no_tf32

    cudnn = torch.backends.cudnn
    before = cudnn.allow_tf32
    try:
        cudnn.allow_tf32 = True
        with no_tf32():
            assert not cudnn.allow_tf32
        with no_tf32(on=False):  # bf16 and fp16 are not fp32: nothing to keep exact
            assert cudnn.allow_tf32
        assert cudnn.allow_tf32
    finally:
        cudnn.allow_tf32 = before


def test_texture_x4_meets_the_rule_in_bf16_with_the_layers_at_its_ends_in_float32():
    """Measured on the probe: 51.1 dB and 19 levels from fp32 with the input layer alone (the
    rule allows 12), 53.2 dB and 9 with SPAN's first block and its upsampler conv too."""
    module, info = read_model("texture-x4")  # measured.json's figures
    fused = fused_for_inference(module.eval())
    fresh = measurement.measure(module, in_channels=3, scale=4, fp16=False)
    layers = Float32Layers("conv_1.eval_conv", "block_1", "upsampler.0")
    assert fresh.float32_layers == layers == info.float32_layers
    assert Fidelity(fresh.bf16_psnr, fresh.bf16_max_levels).meets_rule()
    input_only = {torch.bfloat16: reduced_copy(fused, torch.bfloat16, Float32Layers(layers.input))}
    assert not fidelity(fused, input_only, 3, 1, True)[torch.bfloat16].meets_rule()  # why
    engine = Upscaler(module, info, device=CPU, dtype=torch.bfloat16)
    kept = [engine.module.get_submodule(n) for n in layers.names]
    assert all(next(p.parameters()).dtype == torch.float32 for p in kept)
    assert engine.module.get_submodule("block_2.c1_r.eval_conv").weight.dtype == torch.bfloat16
    x = torch.rand(1, 3, 24, 24)
    with torch.inference_mode():
        assert engine.module(x).dtype == torch.float32  # the output layer's stays float32
        reference = fused(x).clamp(0, 1)
    assert (engine(x) - reference).abs().max() < MAX_LEVELS / 255


def test_a_blown_up_output_is_filled_from_bicubic_and_a_sound_one_is_left_alone():
    from upscaler.engine.pipeline import REACH, WILD, steadied

    torch.manual_seed(0)
    data = torch.rand(1, 3, 32, 32)
    sound = torch.nn.functional.interpolate(data, scale_factor=2, mode="bicubic").clamp(0, 1)
    sound = sound + 0.3 * torch.randn_like(sound)  # overshoots of a few tenths are not blow-ups
    out, count = steadied(sound.clone(), data, 2)
    assert count == 0 and torch.equal(out, sound)
    wild = sound.clone()
    wild[:, :, 40:42, 40:42] = 40.0  # a blow-up in the lower right of the tile
    wild[:, 1, 44, 44] = -(1 + WILD) - 0.5
    out, count = steadied(wild, data, 2)
    assert count == 4 + 1
    bicubic = torch.nn.functional.interpolate(data, scale_factor=2, mode="bicubic").clamp(0, 1)
    near = slice(40 - REACH * 2 + 2, 42 + REACH * 2 - 2)
    assert torch.allclose(out[:, :, near, near], bicubic[:, :, near, near])
    assert torch.equal(out[:, :, :2, :2], sound[:, :, :2, :2])  # far away: untouched
    assert float(out.abs().max()) < 1 + WILD

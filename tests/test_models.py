"""Architectures: shapes, and that saved weights load back as the same model (spandrel-style)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from upscaler import ModelFileError, load_model, read_model, save_weights
from upscaler.models import (
    Compact,
    CompactConfig,
    RRDBConfig,
    RRDBNet,
    build_generator,
    make_config,
    recognise,
)


@pytest.mark.parametrize(
    ("scale", "num_features", "num_blocks", "activation"),
    list(itertools.product((1, 2, 3, 4), (4, 8), (0, 3), ("prelu",))) + [(4, 8, 2, "relu")],
)
def test_compact_shapes_and_recognition(
    scale: int, num_features: int, num_blocks: int, activation: str
) -> None:
    config = CompactConfig(
        num_features=num_features, num_blocks=num_blocks, scale=scale, activation=activation
    )
    model = Compact(config).eval()
    x = torch.rand(2, 3, 17, 11)
    assert model(x).shape == (2, 3, 17 * scale, 11 * scale)
    found = recognise(model.state_dict())
    assert found is not None
    arch, recovered = found
    assert arch == "compact"
    expected = (
        config
        if activation == "prelu"
        else CompactConfig(
            num_features=num_features, num_blocks=num_blocks, scale=scale, activation="leakyrelu"
        )
    )
    assert recovered == expected


@pytest.mark.parametrize(("scale", "num_blocks"), [(1, 1), (2, 1), (4, 2)])
def test_rrdb_shapes_and_recognition(scale: int, num_blocks: int) -> None:
    config = RRDBConfig(num_features=8, num_blocks=num_blocks, growth_channels=4, scale=scale)
    model = RRDBNet(config).eval()
    x = torch.rand(1, 3, 16, 12)
    assert model(x).shape == (1, 3, 16 * scale, 12 * scale)
    assert recognise(model.state_dict()) == ("rrdb", config)


def test_our_checkpoint_round_trip(tmp_path: Path) -> None:
    config = CompactConfig(num_features=8, num_blocks=2, scale=2)
    model = Compact(config)
    path = tmp_path / "m.safetensors"
    save_weights(path, model, arch="compact", config=config, training={"steps": 3})
    module, info = read_model(path)
    assert info.arch == "compact" and info.scale == 2 and info.receptive_field == 4
    assert dict(info.metadata)["upscaler.training"] == '{"steps": 3}'
    for key, value in model.state_dict().items():
        assert torch.equal(module.state_dict()[key], value)


def test_fp16_weights_load_as_fp32(tmp_path: Path) -> None:
    config = CompactConfig(num_features=8, num_blocks=1, scale=2)
    path = tmp_path / "half.safetensors"
    save_weights(path, Compact(config), arch="compact", config=config, dtype=torch.float16)
    upscaler = load_model(path)
    assert next(upscaler.module.parameters()).dtype == torch.float32


def test_real_esrgan_compact_pth_loads_natively(tmp_path: Path) -> None:
    """A plain SRVGGNetCompact state dict, as Real-ESRGAN publishes it (wrapped in params)."""
    config = CompactConfig(num_features=8, num_blocks=3, scale=4)
    state = Compact(config).state_dict()
    path = tmp_path / "realesr-tiny.pth"
    torch.save({"params": state}, path)
    module, info = read_model(path)
    assert info.arch == "compact" and info.scale == 4
    assert torch.equal(module.state_dict()["body.8.weight"], state["body.8.weight"])


def test_esrgan_rrdb_pth_with_module_prefix(tmp_path: Path) -> None:
    config = RRDBConfig(num_features=8, num_blocks=1, growth_channels=4, scale=2)
    state = {f"module.{k}": v for k, v in RRDBNet(config).state_dict().items()}
    path = tmp_path / "rrdb.pth"
    torch.save({"params_ema": state}, path)
    _, info = read_model(path)
    assert (info.arch, info.scale, info.size_multiple) == ("rrdb", 2, 2)


def test_community_architecture_through_spandrel(tmp_path: Path) -> None:
    """An architecture we do not own (SPAN) builds through spandrel from weights alone."""
    from spandrel.architectures.SPAN import SPAN

    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2)
    path = tmp_path / "span.pth"
    torch.save(net.state_dict(), path)
    upscaler = load_model(path)
    assert upscaler.info.arch == "SPAN" and upscaler.scale == 2
    assert upscaler(torch.rand(1, 3, 16, 12)).shape == (1, 3, 32, 24)


def test_span_runs_its_branches_fused_once(tmp_path: Path) -> None:
    """The engine runs SPAN with each Conv3XC summed into one convolution once: the same output
    bit for bit, the model it was given left with its training branches."""
    from spandrel.architectures.SPAN import SPAN

    from upscaler.models.span import FusedConv3XC, fused_for_inference

    torch.manual_seed(0)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2)
    with torch.no_grad():  # branches unlike the fused conv's stored weights, as after training
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.eval()
    fused = fused_for_inference(net)
    assert fused is not net and not any(isinstance(m, FusedConv3XC) for m in net.modules())
    assert sum(isinstance(m, FusedConv3XC) for m in fused.modules()) == 1 + 6 * 3 + 1
    assert isinstance(fused.get_submodule("conv_1.eval_conv"), torch.nn.Conv2d)
    x = torch.rand(1, 3, 20, 17)
    with torch.inference_mode():
        assert torch.equal(fused(x), net(x))
    compact = Compact(CompactConfig(num_features=8, num_blocks=2))
    assert fused_for_inference(compact) is compact

    path = tmp_path / "span.pth"
    torch.save(net.state_dict(), path)
    upscaler = load_model(path)
    assert any(isinstance(m, FusedConv3XC) for m in upscaler.module.modules())


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="valid keys"):
        make_config("compact", {"num_feat": 64})
    with pytest.raises(ValueError, match="known: compact, rrdb"):
        build_generator("srresnet", {})


def test_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "weird.pth"
    torch.save({"a.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ModelFileError, match="unsupported architecture"):
        read_model(path)

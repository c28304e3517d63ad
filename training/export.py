"""Turn a training checkpoint into a model file ``upscale --model`` loads (and optionally ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from upscaler.models import build_generator, make_config
from upscaler.models.checkpoint import save_weights

from .checkpoint import generator_weights


def load_generator(source: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The generator (EMA weights for checkpoints) on CPU in fp32, in eval mode, and its info."""
    weights, info = generator_weights(source)
    config = make_config(info["arch"], info["arch_config"])
    module = build_generator(info["arch"], config)
    module.load_state_dict({k: v.float() for k, v in weights.items()})
    info["arch_config_obj"] = config
    return module.eval(), info


def training_summary(info: dict[str, Any]) -> dict[str, Any]:
    """What the model card needs: the recipe, steps, data and losses behind the weights."""
    config = info.get("config") or {}
    return {
        "run": config.get("run", {}).get("name", ""),
        "steps": info.get("step", 0),
        "data": config.get("data", {}).get("train", []),
        "loss": config.get("loss", {}),
        "degrade": config.get("degrade", {}),
        "weights": "ema",
    }


def export_model(source: str | Path, out: str | Path, *, fp16: bool = False) -> dict[str, Any]:
    """Write ``out`` (.safetensors, our format) from a checkpoint or run folder."""
    module, info = load_generator(source)
    save_weights(
        out,
        module,
        arch=info["arch"],
        config=info["arch_config_obj"],
        training=training_summary(info),
        dtype=torch.float16 if fp16 else None,
    )
    return info


def export_onnx(module: nn.Module, out: str | Path, *, opset: int = 17) -> None:
    """ONNX with dynamic batch, height and width (needs the ``onnx`` package)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise RuntimeError("ONNX export needs the onnx package: pip install onnx") from None
    dummy = torch.rand(1, module.config.in_channels, 32, 32)  # type: ignore[union-attr]
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        module,
        (dummy,),
        str(out),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": axes, "output": axes},
        opset_version=opset,
        dynamo=False,
    )

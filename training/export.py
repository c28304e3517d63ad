"""Turn a training checkpoint into a model file ``upscale --model`` loads (and optionally ONNX).

Native architectures (``upscaler.models.ARCHITECTURES``) are written in our safetensors format
(``upscaler.models.checkpoint``); the others (SPAN) as a plain safetensors state dict with
spandrel's own key names, which spandrel - and through it ``upscale --model``, chaiNNer and
ComfyUI - detect by themselves; the export checks that spandrel rebuilds the same network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from upscaler.atomic import write_bytes_atomic
from upscaler.models import ARCHITECTURES, build_generator, make_config
from upscaler.models.checkpoint import FORMAT_VERSION, save_weights
from upscaler.worklist import overwrites

from .archs import settle, span_from_fused, span_without_norm
from .checkpoint import CheckpointError, generator_weights


def load_generator(source: str | Path, weights: str = "ema") -> tuple[nn.Module, dict[str, Any]]:
    """The generator (``weights``: ``ema`` or ``live`` for checkpoints) on CPU in fp32, in eval
    mode, and its info. Model files of architectures we do not train load as spandrel builds
    them (for ``eval``)."""
    state, info = generator_weights(source, weights)
    if info["arch"].startswith("spandrel:"):
        from upscaler.models.loader import read_model

        return read_model(info["path"])[0].eval(), info
    config = make_config(info["arch"], info["arch_config"])
    module = build_generator(info["arch"], config)
    module.load_state_dict({k: v.float() for k, v in state.items()})
    info["arch_config_obj"] = config
    return settle(module.eval()), info


def training_summary(info: dict[str, Any]) -> dict[str, Any]:
    """What the model card needs: the recipe, steps, data and losses behind the weights."""
    config = info.get("config") or {}
    return {
        "run": config.get("run", {}).get("name", ""),
        "steps": info.get("step", 0),
        "data": config.get("data", {}).get("train", []),
        "loss": config.get("loss", {}),
        "degrade": config.get("degrade", {}),
        "weights": info.get("weights", "ema"),
        **({"blend": info["blend"]} if "blend" in info else {}),
    }


def export_model(
    source: str | Path, out: str | Path, *, fp16: bool = False, weights: str = "ema"
) -> dict[str, Any]:
    """Write ``out`` (.safetensors) from a checkpoint or run folder."""
    module, info = load_generator(source, weights)
    if info["arch"].startswith("spandrel:"):
        raise CheckpointError(f"{source}: already a model file ({info['arch']}); nothing to export")
    clash = overwrites(Path(out), [("the checkpoint it reads", Path(info["path"]))])
    if clash is not None:
        raise CheckpointError(f"{out}: the export would overwrite {clash[0]}, {clash[1]}")
    _write(Path(out), module, info, torch.float16 if fp16 else None)
    return info


def _write(out: Path, module: nn.Module, info: dict[str, Any], dtype: torch.dtype | None) -> None:
    """``module`` as a model file: ours in this project's format, spandrel's as a plain state
    dict that spandrel is checked to rebuild."""
    if ARCHITECTURES[info["arch"]].native:
        save_weights(
            out,
            module,
            arch=info["arch"],
            config=info["arch_config_obj"],
            training=training_summary(info),
            dtype=dtype,
        )
        return
    _save_spandrel(out, module, info, dtype)
    _check_spandrel_loads(out, module, info)


def blend_models(
    first: str | Path, second: str | Path, alpha: float, out: str | Path, weights: str = "ema"
) -> dict[str, Any]:
    """Network interpolation (ESRGAN, Wang et al. 2018, section 3.4): every weight
    ``(1 - alpha) * first + alpha * second`` of two generators of one architecture, written as
    ``out``. Between a faithful and a sharp model of one lineage it trades fidelity for detail
    smoothly, without the artefacts of blending their outputs. A SPAN with input normalisation
    meets one without it in the latter's form (``span_without_norm``); fused convs are
    recomputed from the blended branches, so the file is consistent for any loader."""
    if not 0 <= alpha <= 1:
        raise CheckpointError(f"blend: alpha must be in [0, 1], got {alpha}")
    (a, a_info), (b, b_info) = load_generator(first, weights), load_generator(second, weights)
    states = [a.state_dict(), b.state_dict()]
    configs = [dict(a_info["arch_config"]), dict(b_info["arch_config"])]
    if a_info["arch"] != b_info["arch"] or a_info["arch"].startswith("spandrel:"):
        raise CheckpointError(f"blend: {first} and {second} are not one trainable architecture")
    if a_info["arch"] == "span" and configs[0].get("norm") != configs[1].get("norm"):
        normed = 0 if configs[0].get("norm", True) else 1
        states[normed] = span_without_norm(states[normed])
        configs[normed] = {**configs[normed], "norm": False}
    if configs[0] != configs[1] or states[0].keys() != states[1].keys():
        raise CheckpointError(f"blend: {first} and {second} differ in shape: {configs}")
    for path in (first, second):
        clash = overwrites(Path(out), [("a model it reads", Path(path))])
        if clash is not None:
            raise CheckpointError(f"{out}: the blend would overwrite {clash[1]}")
    mixed = {
        key: torch.lerp(value.float(), states[1][key].float(), alpha)
        if value.is_floating_point()
        else value
        for key, value in states[0].items()
    }
    module = build_generator(a_info["arch"], make_config(a_info["arch"], configs[0]))
    if a_info["arch"] == "span":  # blend the fused convs inference runs, not the branches
        module.load_state_dict(span_from_fused(mixed))
    else:
        module.load_state_dict(mixed)
    settle(module.eval())
    info = {
        **a_info,
        "arch_config": configs[0],
        "arch_config_obj": make_config(a_info["arch"], configs[0]),
        "blend": {"first": str(first), "second": str(second), "alpha": alpha},
    }
    _write(Path(out), module, info, None)
    return info


def _save_spandrel(
    out: Path, module: nn.Module, info: dict[str, Any], dtype: torch.dtype | None
) -> None:
    from safetensors.torch import save

    tensors = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        tensors[name] = (
            tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
        )
    # No ``upscaler.arch``: loaders find the architecture from the key names, as spandrel does.
    metadata = {
        "upscaler.format": FORMAT_VERSION,
        "upscaler.spandrel_arch": info["arch"],
        "upscaler.config": json.dumps(info["arch_config"], sort_keys=True),
        "upscaler.training": json.dumps(training_summary(info), sort_keys=True),
    }
    write_bytes_atomic(out, save(tensors, metadata=metadata))


def _check_spandrel_loads(out: Path, module: nn.Module, info: dict[str, Any]) -> None:
    import spandrel

    descriptor = spandrel.ModelLoader().load_from_file(str(out))
    probe = torch.rand(1, int(info["arch_config"].get("in_channels", 3)), 24, 20)
    with torch.no_grad():
        ours, theirs = module(probe), descriptor.model.float().eval()(probe)
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-2):
        out.unlink(missing_ok=True)
        raise CheckpointError(f"{out}: spandrel rebuilt a different network; nothing written")


def export_onnx(
    module: nn.Module, out: str | Path, *, in_channels: int = 3, opset: int = 17
) -> None:
    """ONNX with dynamic batch, height and width (needs the ``onnx`` package)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise RuntimeError("ONNX export needs the onnx package: pip install onnx") from None
    dummy = torch.rand(1, in_channels, 32, 32)
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

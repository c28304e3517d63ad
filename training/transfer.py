"""Starting weights for a new run: ``model.init_from`` and ``discriminator.init_from`` loaded into
a built ``TrainState``.

A generator can start from one of our checkpoints or run folders (its EMA weights), from our
model files, or from any generator file spandrel loads (``.pth`` state dicts through upscaler's
safe reader, ``.safetensors``): Real-ESRGAN's x4plus is an RRDBNet, which is our ``rrdb``;
realesr-animevideov3 is an SRVGGNetCompact, which is our ``compact``. Strict loading wants every
tensor to fit, except across scales: from a multiple of this run's scale (x4 weights for an x2
run) the sub-pixel conv's phases are averaged (``archs.collapse_subpixels``: at step 0 the run
computes the x4 output box-shrunk to x2), from another scale the upsampling layers keep this
run's own init. ``init_strict = false`` loads whatever fits by name and shape and reports the
rest.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from upscaler.models.checkpoint import ModelFileError, read_weights

from .archs import collapse_subpixels, span_without_norm
from .checkpoint import (
    CheckpointError,
    checkpoint_dir,
    generator_weights,
    latest_checkpoint,
    training_checkpoint,
)
from .state import TrainState

# Real-ESRGAN's UNetDiscriminatorSN (BasicSR ``discriminator_arch.py``) has our U-Net's layout
# under other names, with the old ``torch.nn.utils.spectral_norm`` parameter names.
_REALESRGAN_D = {"conv0": "conv0", "conv9": "head"} | {
    f"conv{i}": name
    for i, name in enumerate(
        [f"down.{k}" for k in range(3)] + [f"up.{k}" for k in range(3)] + ["refine.0", "refine.1"],
        start=1,
    )
}
_OLD_SPECTRAL_NORM = {
    "weight_orig": "parametrizations.weight.original",
    "weight_u": "parametrizations.weight.0._u",
    "weight_v": "parametrizations.weight.0._v",
}


@dataclasses.dataclass(frozen=True)
class Fit:
    """How a state dict fits a module: what loads, what is missing, left over or misshapen."""

    loaded: dict[str, torch.Tensor]
    missing: list[str]
    unexpected: list[str]
    misshapen: list[str]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.misshapen)

    def describe(self, limit: int = 4) -> str:
        parts = [f"{len(self.loaded)} tensors loaded"]
        for label, names in (
            ("missing (kept this run's init)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape differs (kept this run's init)", self.misshapen),
        ):
            if names:
                shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
                parts.append(f"{len(names)} {label}: {shown}")
        return "; ".join(parts)


def match(own: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> Fit:
    loaded = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    return Fit(
        loaded,
        missing=sorted(set(own) - set(theirs)),
        unexpected=sorted(set(theirs) - set(own)),
        misshapen=sorted(k for k in theirs if k in own and own[k].shape != theirs[k].shape),
    )


def load_into(module: nn.Module, fit: Fit) -> None:
    own = module.state_dict()
    module.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in fit.loaded.items()}})


def initialise(state: TrainState, log: Callable[[str], None]) -> None:
    """Load ``model.init_from`` and ``discriminator.init_from`` (where set) into a new run."""
    config = state.config
    if config.model.init_from:
        _init_generator(state, log)
        state.ema.module.load_state_dict(state.g.state_dict())
    source = config.discriminator.init_from
    if source and state.d is not None:
        weights, where = discriminator_weights(source)
        fit = match(state.d.state_dict(), weights)
        if not fit.exact and (config.discriminator.init_strict or not fit.loaded):
            raise CheckpointError(
                f"discriminator.init_from: {where} does not fit this run's "
                f"{config.discriminator.arch} discriminator: {fit.describe()}"
                + ("" if not fit.loaded else " (discriminator.init_strict=false loads what fits)")
            )
        load_into(state.d, fit)
        log(f"discriminator initialised from {where}: {fit.describe()}")
    elif source:
        log("note: discriminator.init_from is ignored: this run has no discriminator")


def _init_generator(state: TrainState, log: Callable[[str], None]) -> None:
    model = state.config.model
    try:
        weights, info = generator_weights(model.init_from)
    except CheckpointError as exc:
        raise CheckpointError(
            f"model.init_from: {exc} (train the PSNR stage first, or set model.init_from='')"
        ) from None
    ours = dataclasses.asdict(state.arch_config)  # type: ignore[call-overload]
    theirs = dict(info["arch_config"])
    same_arch = info["arch"] == model.arch
    if same_arch and model.arch == "span" and theirs.get("norm") and not ours.get("norm", True):
        weights, theirs = span_without_norm(weights), {**theirs, "norm": False}
    other_scale = same_arch and theirs != ours and {**theirs, "scale": ours["scale"]} == ours
    own = state.g.state_dict()
    high = int(theirs.get("scale", 0))
    collapsed = other_scale and high > ours["scale"] and high % ours["scale"] == 0
    if collapsed:
        weights = collapse_subpixels(weights, own, high, ours["scale"])
    fit = match(own, weights)
    described = f"{info['path']} ({info.get('source') or info['arch']})"
    if same_arch and theirs == ours and fit.exact:
        load_into(state.g, fit)
        log(f"generator initialised from {described}")
        return
    if other_scale or not model.init_strict:
        if not fit.loaded:
            raise CheckpointError(
                f"model.init_from: no tensor of {described} fits this {model.arch} generator"
            )
        load_into(state.g, fit)
        if collapsed and fit.exact:
            log(
                f"generator initialised from {described}, x{high} made "
                f"x{ours['scale']} by averaging its sub-pixel phases: {fit.describe()}"
            )
            return
        what = f"trunk (x{theirs['scale']})" if other_scale else "partially"
        log(f"generator initialised {what} from {described}: {fit.describe()}")
        return
    if not same_arch:
        raise CheckpointError(
            f"{model.init_from}: a {info['arch']} {theirs} generator cannot start a "
            f"{model.arch} {ours} run (set model.arch to match it, or model.init_strict=false "
            "to load the tensors that fit)"
        )
    raise CheckpointError(
        f"{model.init_from}: a {info['arch']} {theirs} generator does not fit this run's "
        f"{ours}: {fit.describe()} (model.init_strict=false loads the tensors that fit)"
    )


def discriminator_weights(source: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """A discriminator state dict from a checkpoint, a run folder or a weights file."""
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"discriminator.init_from: {path}: no such file or run folder")
    if path.is_dir():
        folder = checkpoint_dir(path) if checkpoint_dir(path).is_dir() else path
        state = latest_checkpoint(folder)
        if state is None:
            raise CheckpointError(f"discriminator.init_from: {path}: no checkpoints there")
    else:
        state = training_checkpoint(path)
    if state is not None:
        if not state.get("discriminator"):
            raise CheckpointError(
                f"discriminator.init_from: {state['path']} has no discriminator (a PSNR stage)"
            )
        return state["discriminator"], f"{state['path']} (step {state['step']})"
    try:
        weights, _ = read_weights(path)
    except ModelFileError as exc:
        raise CheckpointError(f"discriminator.init_from: {exc}") from None
    return _rename_realesrgan(weights), str(path)


def _rename_realesrgan(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Real-ESRGAN/BasicSR ``UNetDiscriminatorSN`` names -> ours; other names pass unchanged."""
    if "conv1.weight_orig" not in weights:
        return weights
    out = {}
    for key, value in weights.items():
        found = re.fullmatch(r"(conv\d)\.(\w+)", key)
        if found is None or found[1] not in _REALESRGAN_D:
            out[key] = value
            continue
        out[f"{_REALESRGAN_D[found[1]]}.{_OLD_SPECTRAL_NORM.get(found[2], found[2])}"] = value
    return out

"""``load_model``: a shipped name, our checkpoint or a community model file -> ``Upscaler``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from upscaler.engine.pipeline import ModelInfo, Upscaler
from upscaler.models import ARCHITECTURES, build_generator, make_config, recognise, zoo
from upscaler.models.checkpoint import MAX_PARAMETERS, ModelFileError, read_weights

MAX_SCALE = 16


def _bytes_per_pixel(arch: str, config: Any) -> int:
    """fp32 activation bytes per input pixel for one image, estimated from the architecture."""
    if arch == "compact":
        return 4 * (3 * config.num_features + 3 * config.out_channels * config.scale**2)
    if arch == "rrdb":
        nf, gc, s = config.num_features, config.growth_channels, config.scale
        unshuffle = 4 // s
        trunk = 3 * (2 * nf + 4 * gc) / unshuffle**2  # dense-block concatenations
        return int(4 * (trunk + 3 * nf * s * s))  # the upsampled stages hold a few nf-wide maps
    return 2048


def _native(
    path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]
) -> tuple[nn.Module, ModelInfo] | None:
    """Build one of our architectures from our metadata, or by recognising its keys."""
    if "upscaler.arch" in metadata:
        arch = metadata["upscaler.arch"]
        if arch not in ARCHITECTURES:
            raise ModelFileError(path, f"unknown architecture {arch!r} in metadata")
        try:
            config = make_config(arch, json.loads(metadata.get("upscaler.config", "{}")))
        except (ValueError, TypeError) as exc:
            raise ModelFileError(path, f"bad model config in metadata: {exc}") from None
    else:
        try:
            found = recognise(state_dict)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ModelFileError(
                path, f"inconsistent weights ({type(exc).__name__}: {exc})"
            ) from None
        if found is None:
            return None
        arch, config = found
    if not 1 <= config.scale <= MAX_SCALE:
        raise ModelFileError(path, f"implausible scale x{config.scale}")
    _check_fits(path, arch, config, state_dict)
    module = build_generator(arch, config)
    try:
        module.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[0][:200]
        raise ModelFileError(
            path, f"weights do not fit the {arch} architecture: {detail}"
        ) from None
    info = ModelInfo(
        name=path.stem,
        arch=arch,
        scale=config.scale,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        receptive_field=int(getattr(module, "receptive_field", 16)),
        size_multiple=int(getattr(module, "size_multiple", 1)),
        bytes_per_pixel=_bytes_per_pixel(arch, config),
        num_params=sum(p.numel() for p in module.parameters()),
        source=str(path),
        metadata=tuple(sorted(metadata.items())),
    )
    return module, info


def _check_fits(path: Path, arch: str, config: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse a config (from metadata, or inferred from key names) that the weights do not fill,
    before the network is built: a small file must not make us allocate a huge network."""
    blocks = int(getattr(config, "num_blocks", 0))
    if blocks > len(state_dict):
        raise ModelFileError(
            path, f"{arch} with {blocks:,} blocks, but the file holds {len(state_dict)} tensors"
        )
    with torch.device("meta"):  # shapes only, no memory
        expected = {
            k: tuple(v.shape) for k, v in build_generator(arch, config).state_dict().items()
        }
    given = {k: tuple(v.shape) for k, v in state_dict.items()}
    if expected == given:
        return
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    wrong = [k for k in expected if k in given and expected[k] != given[k]]
    if missing:
        detail = f"{len(missing)} missing, e.g. {missing[0]}"
    elif extra:
        detail = f"{len(extra)} unexpected, e.g. {extra[0]}"
    else:
        detail = f"{wrong[0]} is {given[wrong[0]]}, expected {expected[wrong[0]]}"
    raise ModelFileError(path, f"weights do not fit the {arch} architecture: {detail}")


def _spandrel_dry_run(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Build spandrel's guess on the meta device first: an architecture inferred from key names
    (e.g. block 5000 of an ESRGAN) must be refused before gigabytes are allocated for it."""
    import spandrel

    # Layer counts are inferred from key indices; even on the meta device, Python objects for
    # thousands of claimed blocks cost gigabytes. Real networks index far below this bound.
    bound = 8 * len(state_dict) + 64
    for key in state_dict:
        index = max((int(part) for part in key.split(".") if part.isdigit()), default=0)
        if index > bound:
            raise ModelFileError(
                path, f"key {key!r} names layer {index} in a file of {len(state_dict)} tensors"
            )
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            dry = spandrel.MAIN_REGISTRY.load(spandrel.canonicalize_state_dict(dict(state_dict)))
    except spandrel.UnsupportedModelError:
        raise ModelFileError(path, "unsupported architecture (not one spandrel knows)") from None
    except Exception as exc:
        if "meta" in str(exc).lower():
            return  # this architecture cannot be built on the meta device; strict loading checks it
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelFileError(path, f"could not build the model: {reason}") from None
    count = sum(p.numel() for p in dry.model.parameters())
    if count > MAX_PARAMETERS:
        raise ModelFileError(path, f"the inferred network has {count:,} parameters; refused")


def _community(path: Path, state_dict: dict[str, torch.Tensor]) -> tuple[nn.Module, ModelInfo]:
    """Any architecture spandrel knows, built from the state dict alone (no code from the file)."""
    try:
        import spandrel
    except ImportError:
        raise ModelFileError(path, "unknown architecture and spandrel is not installed") from None
    _spandrel_dry_run(path, state_dict)
    try:
        descriptor = spandrel.MAIN_REGISTRY.load(spandrel.canonicalize_state_dict(state_dict))
    except spandrel.UnsupportedModelError:
        raise ModelFileError(path, "unsupported architecture (not one spandrel knows)") from None
    except Exception as exc:  # spandrel raises assorted errors on malformed weights
        raise ModelFileError(path, f"could not build the model: {str(exc)[:200]}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in (
        "SR",
        "Restoration",
    ):
        raise ModelFileError(path, f"not an image upscaling model ({descriptor.purpose})")
    if not 1 <= descriptor.scale <= MAX_SCALE:
        raise ModelFileError(path, f"implausible scale x{descriptor.scale}")
    req = descriptor.size_requirements
    info = ModelInfo(
        name=path.stem,
        arch=str(descriptor.architecture.id),
        scale=descriptor.scale,
        in_channels=descriptor.input_channels,
        out_channels=descriptor.output_channels,
        receptive_field=32,
        size_multiple=max(1, req.multiple_of),
        min_size=max(1, req.minimum),
        supports_bf16=bool(descriptor.supports_bfloat16),
        supports_fp16=bool(descriptor.supports_half),
        bytes_per_pixel=4096,
        num_params=sum(p.numel() for p in descriptor.model.parameters()),
        source=str(path),
    )
    return descriptor.model, info


def read_model(name_or_path: str | Path) -> tuple[nn.Module, ModelInfo]:
    """Resolve and build a model on CPU in fp32. Raises ``ModelFileError`` when refused."""
    path = zoo.resolve(name_or_path)
    state_dict, metadata = read_weights(path)
    built = _native(path, state_dict, metadata) or _community(path, state_dict)
    module, info = built
    if info.in_channels not in (1, 3, 4) or info.out_channels != info.in_channels:
        raise ModelFileError(
            path, f"{info.in_channels}->{info.out_channels} channel models are not supported"
        )
    return module, info


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was asked for but no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RuntimeError(f"{device} asked for, but there are {torch.cuda.device_count()} GPUs")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("MPS was asked for but is not available on this machine")
    return device


def pick_dtype(precision: str, device: torch.device, info: ModelInfo) -> torch.dtype:
    """``auto``: bf16 on CUDA where the model supports it (and the GPU does), else fp32."""
    if precision == "auto":
        if device.type == "cuda" and info.supports_bf16 and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    dtype = dtypes[precision]
    if dtype == torch.bfloat16 and not info.supports_bf16:
        raise ValueError(f"{info.name} does not support bf16")
    if dtype == torch.float16 and not info.supports_fp16:
        raise ValueError(
            f"{info.name} does not support fp16 (it would produce NaN or black output)"
        )
    return dtype


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Upscaler:
    """Load a shipped model by name (``texture-x4``), our ``.safetensors`` or a community model.

    Returns an ``Upscaler``: ``.scale``, and ``upscaler(x)`` maps ``(B, C, H, W)`` in ``[0, 1]`` to
    ``(B, C, H*scale, W*scale)``. Loads on CPU in float32 unless ``device``/``dtype`` say otherwise.
    """
    module, info = read_model(name_or_path)
    return Upscaler(module, info, device=pick_device(device or "cpu"), dtype=dtype or torch.float32)

"""One loader: a model source (``upscaler.models.sources``) -> the module on CPU in fp32 and its
descriptor (``ModelInfo``), for our architectures and spandrel's alike.

Our files are built from their metadata or recognised by their key names
(``upscaler.models.ARCHITECTURES``), after checking that the weights fill the network the config
describes; anything else goes to spandrel, whose guess is first built on the meta device. The
file itself is read by ``upscaler.models.checkpoint`` (no code from it is ever run).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from upscaler.models import (
    ARCHITECTURES,
    ArchConfig,
    Architecture,
    build_generator,
    find_architecture,
    make_config,
    recognise,
)
from upscaler.models.checkpoint import MAX_PARAMETERS, ModelFileError, read_weights
from upscaler.models.descriptor import ModelInfo
from upscaler.models.measurement import Measured, measure
from upscaler.models.measurement_cache import measured_file
from upscaler.models.sources import ModelSource, resolve

MAX_SCALE = 16


def _native(
    path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]
) -> tuple[nn.Module, ModelInfo] | None:
    """Build one of our architectures from our metadata, or by recognising its keys."""
    if "upscaler.arch" in metadata:
        arch = metadata["upscaler.arch"]
        if arch not in ARCHITECTURES or not ARCHITECTURES[arch].native:
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
    with torch.device("meta"):  # no random init of weights that are replaced at once
        module = build_generator(arch, config)
    try:
        weights = {k: v.float().contiguous() for k, v in state_dict.items()}
        module.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[0][:200]
        raise ModelFileError(
            path, f"weights do not fit the {arch} architecture: {detail}"
        ) from None
    info = describe_built(
        module, ARCHITECTURES[arch], config, name=path.stem, source=path, metadata=metadata
    )
    return module, info


def _check_fits(
    path: Path, arch: str, config: ArchConfig, state_dict: dict[str, torch.Tensor]
) -> None:
    """Refuse a config (from metadata, or inferred from key names) that the weights do not fill,
    before the network is built: a small file must not make us allocate a huge network."""
    blocks = config.num_blocks
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
    ours = find_architecture(str(descriptor.architecture.id))
    info = describe(
        descriptor.model,
        name=path.stem,
        arch=str(descriptor.architecture.id),
        scale=descriptor.scale,
        channels=(descriptor.input_channels, descriptor.output_channels),
        size=(max(1, req.multiple_of), max(1, req.minimum)),
        precisions=(bool(descriptor.supports_bfloat16), bool(descriptor.supports_half)),
        conv_only=ours is not None and ours.conv_only,
        source=path,
    )
    return descriptor.model, info


def describe(
    module: nn.Module,
    *,
    name: str,
    arch: str,
    scale: int,
    channels: tuple[int, int],
    size: tuple[int, int] = (1, 1),
    precisions: tuple[bool, bool] = (True, True),
    theoretical_field: int | None = None,
    float_input: bool = False,
    conv_only: bool = False,
    source: Path | None = None,
    metadata: dict[str, str] | None = None,
) -> ModelInfo:
    """The one place a ``ModelInfo`` is made, for our architectures and spandrel's alike: the
    static part from the architecture (``size``: multiple and minimum; ``precisions``: bf16 and
    fp16 support; ``float_input`` and ``conv_only``: its traits, see ``Architecture``), the
    measured part (``measurement.measure``) cached by the model file's hash, or measured afresh
    for a module with no file (training's validation)."""

    # fp16 is only ever chosen on a GPU (CPUs emulate it, slower than fp32; x4plus's five probe
    # passes took longer than fp32's): it is measured (on CPU, once per file) where one is.
    fp16 = precisions[1] and torch.cuda.is_available()

    def run() -> Measured:
        return measure(
            module,
            in_channels=channels[0],
            scale=scale,
            size_multiple=size[0],
            theoretical_field=theoretical_field,
            bf16=precisions[0],
            fp16=fp16,
            float_input=float_input,
        )

    measured = measured_file(source, fp16, run) if source else run()
    return ModelInfo(
        name=name,
        arch=arch,
        scale=scale,
        in_channels=channels[0],
        out_channels=channels[1],
        receptive_field=measured.receptive_field,
        wrap_field=measured.wrap_field,
        size_multiple=size[0],
        min_size=size[1],
        supports_bf16=precisions[0],
        supports_fp16=precisions[1],
        bytes_per_pixel=measured.bytes_per_pixel,
        bf16_bytes_per_pixel=measured.bf16_bytes_per_pixel,
        bf16_fidelity=measured.fidelity(torch.bfloat16),
        fp16_fidelity=measured.fidelity(torch.float16),
        float_input=float_input,
        input_layer=measured.input_layer,
        float32_block=measured.float32_block,
        output_layer=measured.output_layer,
        circular=conv_only,
        num_params=sum(p.numel() for p in module.parameters()),
        source=str(source or ""),
        metadata=tuple(sorted((metadata or {}).items())),
    )


def describe_built(
    module: nn.Module,
    arch: Architecture,
    config: ArchConfig,
    *,
    name: str,
    source: Path | None = None,
    metadata: dict[str, str] | None = None,
) -> ModelInfo:
    """The descriptor of ``module``, built as ``arch`` from ``config``."""
    return describe(
        module,
        name=name,
        arch=arch.name,
        scale=config.scale,
        channels=(config.in_channels, config.out_channels),
        size=(config.size_multiple, 1),
        theoretical_field=config.receptive_field or None,
        float_input=arch.float_input,
        conv_only=arch.conv_only,
        source=source,
        metadata=metadata,
    )


def read_model(model: str | Path | ModelSource) -> tuple[nn.Module, ModelInfo]:
    """A model by name, by path or already resolved, built on CPU in fp32 with its descriptor (a
    known model not in the cache is downloaded if allowed). Raises ``ModelFileError`` when
    refused."""
    path = (model if isinstance(model, ModelSource) else resolve(model)).file()
    state_dict, metadata = read_weights(path)
    built = _native(path, state_dict, metadata) or _community(path, state_dict)
    module, info = built
    if info.in_channels not in (1, 3, 4) or info.out_channels != info.in_channels:
        raise ModelFileError(
            path, f"{info.in_channels}->{info.out_channels} channel models are not supported"
        )
    return module, info

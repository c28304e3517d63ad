"""The generator architectures this project builds and trains, in one explicit dict, with the
traits that inference and training read from it.

Community architectures we do not train (SwinIR, DAT, ...) are loaded through spandrel from their
weights alone; see ``upscaler.models.loader``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from upscaler.models.compact import Compact, CompactConfig, infer_compact_config
from upscaler.models.rrdb import RRDBConfig, RRDBNet, infer_rrdb_config
from upscaler.models.span import SpanConfig, build_span, span_config
from upscaler.schema import Wording, from_dict


class ArchConfig(Protocol):
    """What every architecture's config dataclass tells about the network it builds."""

    @property
    def scale(self) -> int: ...
    @property
    def in_channels(self) -> int: ...
    @property
    def out_channels(self) -> int: ...
    @property
    def num_blocks(self) -> int: ...
    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""

    @property
    def receptive_field(self) -> int:
        """Theoretical radius in input pixels beyond which a pixel cannot move an output."""


@dataclass(frozen=True)
class Architecture:
    """One generator architecture and its traits.

    ``infer_config`` recognises the architecture's state dict by its key names: such an
    architecture is *native*, saved in our format (``upscaler.models.checkpoint``). The others
    are saved with spandrel's key names and loaded through spandrel, which calls them
    ``spandrel_id`` (ours too: it loads Real-ESRGAN's files of both); ``from_spandrel`` reads
    their config back from the hyper-parameters spandrel records."""

    name: str  # what our model files and training recipes call it
    config: type
    build: Callable[[Any], nn.Module]  # on CPU in fp32, from a config
    spandrel_id: str
    infer_config: Callable[[dict[str, torch.Tensor]], Any] | None = None
    from_spandrel: Callable[[dict[str, Any]], Any] | None = None
    # The module keeps its input layer float32 under bf16/fp16 by itself (``Compact._apply``),
    # so it takes float32 input at any weight dtype.
    float_input: bool = False
    # Only convolutions look at neighbouring pixels (no attention windows, no image-wide
    # statistics), so circular padding wraps it exactly.
    conv_only: bool = False

    @property
    def native(self) -> bool:
        return self.infer_config is not None


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "compact",
            CompactConfig,
            Compact,
            "Compact",
            infer_config=infer_compact_config,
            float_input=True,
            conv_only=True,
        ),
        Architecture(
            "rrdb", RRDBConfig, RRDBNet, "ESRGAN", infer_config=infer_rrdb_config, conv_only=True
        ),
        Architecture(
            "span", SpanConfig, build_span, "SPAN", from_spandrel=span_config, conv_only=True
        ),
    )
}


def find_architecture(name: str) -> Architecture | None:
    """The architecture called ``name`` here or by spandrel (``architecture.id``), or None."""
    return ARCHITECTURES.get(name) or next(
        (a for a in ARCHITECTURES.values() if a.spandrel_id == name), None
    )


class ArchWording(Wording):
    """Architecture configs name the architecture: ``unknown compact config keys [...]``."""

    def unknown(self, where: str, keys: list[str], valid: list[str]) -> str:
        return f"unknown {where} config keys {keys}; valid keys: {valid}"


def build_config(arch: str, config_type: type, values: dict[str, Any]) -> Any:
    """``config_type`` (``arch``'s) from ``values``, which may be untrusted file metadata:
    unknown keys are refused by name, types checked (8.0 blocks is not a network)."""
    return from_dict(config_type, values, arch, wording=ArchWording())


def make_config(arch: str, values: dict[str, Any]) -> Any:
    """Build ``arch``'s config dataclass from ``values``, rejecting unknown keys by name."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return build_config(arch, ARCHITECTURES[arch].config, values)


def build_generator(arch: str, config: Any) -> nn.Module:
    """Instantiate ``arch`` from its config (dataclass or dict of its fields), on CPU in fp32."""
    if isinstance(config, dict):
        config = make_config(arch, config)
    return ARCHITECTURES[arch].build(config)


def recognise(state_dict: dict[str, torch.Tensor]) -> tuple[str, Any] | None:
    """Find which of our native architectures ``state_dict`` belongs to, with its config."""
    for arch in ARCHITECTURES.values():
        config = arch.infer_config(state_dict) if arch.infer_config else None
        if config is not None:
            return arch.name, config
    return None


__all__ = [
    "ARCHITECTURES",
    "ArchConfig",
    "Architecture",
    "Compact",
    "CompactConfig",
    "RRDBConfig",
    "RRDBNet",
    "SpanConfig",
    "build_generator",
    "find_architecture",
    "make_config",
    "recognise",
]

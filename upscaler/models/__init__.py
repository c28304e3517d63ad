"""The generator architectures this project builds and trains, in one explicit dict.

Community architectures we do not own (SPAN, SwinIR, ...) are loaded through spandrel instead; see
``upscaler.models.checkpoint``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from upscaler.models.compact import Compact, CompactConfig, infer_compact_config
from upscaler.models.rrdb import RRDBConfig, RRDBNet, infer_rrdb_config
from upscaler.schema import Wording, from_dict


@dataclass(frozen=True)
class Architecture:
    name: str
    module: Callable[[Any], nn.Module]
    config: type
    infer_config: Callable[[dict[str, torch.Tensor]], Any]


ARCHITECTURES: dict[str, Architecture] = {
    "compact": Architecture("compact", Compact, CompactConfig, infer_compact_config),
    "rrdb": Architecture("rrdb", RRDBNet, RRDBConfig, infer_rrdb_config),
}


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
    return ARCHITECTURES[arch].module(config)


def recognise(state_dict: dict[str, torch.Tensor]) -> tuple[str, Any] | None:
    """Find which of our architectures ``state_dict`` belongs to, with its config."""
    for arch in ARCHITECTURES.values():
        config = arch.infer_config(state_dict)
        if config is not None:
            return arch.name, config
    return None


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Compact",
    "CompactConfig",
    "RRDBConfig",
    "RRDBNet",
    "build_generator",
    "make_config",
    "recognise",
]

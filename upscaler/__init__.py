"""Super-resolution upscaling for game textures.

``load_model(name_or_path)`` returns an ``Upscaler`` whose call maps ``(B, C, H, W)`` images in
``[0, 1]`` to ``(B, C, H*scale, W*scale)``. The ``upscale`` command (``upscaler.cli``) runs it over
folder trees of texture files.

The public names are imported on first use, so ``import upscaler.cli`` (and ``upscale --help``)
does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from upscaler.engine.load import load_model
    from upscaler.engine.pipeline import NotEnoughMemoryError, Upscaler
    from upscaler.models.checkpoint import ModelFileError, read_weights, save_weights
    from upscaler.models.descriptor import ModelInfo
    from upscaler.models.loader import read_model

__version__ = "0.1.0"

_PUBLIC = {
    "ModelFileError": "upscaler.models.checkpoint",
    "ModelInfo": "upscaler.models.descriptor",
    "NotEnoughMemoryError": "upscaler.engine.pipeline",
    "Upscaler": "upscaler.engine.pipeline",
    "load_model": "upscaler.engine.load",
    "read_model": "upscaler.models.loader",
    "read_weights": "upscaler.models.checkpoint",
    "save_weights": "upscaler.models.checkpoint",
}
__all__ = [
    "ModelFileError",
    "ModelInfo",
    "NotEnoughMemoryError",
    "Upscaler",
    "__version__",
    "load_model",
    "read_model",
    "read_weights",
    "save_weights",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'upscaler' has no attribute {name!r}")

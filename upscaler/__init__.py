"""Super-resolution upscaling for game textures.

``load_model(name_or_path)`` returns an ``Upscaler`` whose call maps ``(B, C, H, W)`` images in
``[0, 1]`` to ``(B, C, H*scale, W*scale)``. The ``upscale`` command (``upscaler.cli``) runs it over
folder trees of texture files.
"""

from upscaler.engine.pipeline import ModelInfo, NotEnoughMemoryError, Upscaler
from upscaler.models.checkpoint import ModelFileError, read_weights, save_weights
from upscaler.models.loader import load_model, read_model

__version__ = "0.1.0"

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

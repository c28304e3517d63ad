"""Training for texture upscalers: data preparation, degradations, losses, the training loop.

Use the ``upscale-train`` command (``training.cli``). This package imports ``upscaler`` (its
architectures, model file format and image I/O); ``upscaler`` never imports it.
"""

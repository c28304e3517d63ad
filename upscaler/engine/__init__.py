"""The tensor engine: a loaded generator run over (B, C, H, W) images with tiling, padding,
precision and a memory budget. Knows models' contracts, not textures or files.
"""

"""Texture semantics: map types, normals, alpha, colour, levels, resampling, mips, seamless,
palettes. Pure functions on tensors and arrays, used by inference and training alike.
"""

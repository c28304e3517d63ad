"""Block compression (BC1-BC7) of one surface: maintained codecs behind one small interface.

Decoding is bcdec (through imagecodecs, already a dependency): BC1-BC5 and BC7. Encoding uses,
per format, the better maintained encoder as measured by ``benchmarks/bcn.py`` on 18 validation
textures: Pillow for BC1 (29.4 dB against etcpak's 26.5: etcpak drops BC1's 1-bit alpha) and BC2,
etcpak for BC3 (34.5 against 33.5 dB), BC5 (43.2 against 36.2 dB), BC4 and BC7 (Pillow has no
BC4/BC7 encoder). etcpak is also 2-6x faster.
Signed BC4/BC5 are stored as the unsigned blocks with their endpoints' top bit flipped: the
palette is linear in the endpoints and the mode test compares them, so both survive the offset.
"""

from __future__ import annotations

import functools
import io as _io
from collections.abc import Callable

import numpy as np

# Bytes per 4x4 block.
BLOCK_BYTES = {1: 8, 2: 16, 3: 16, 4: 8, 5: 16, 7: 16}
# Channels of the decoded surface per format (BC5: R, G).
DECODED_CHANNELS = {1: 4, 2: 4, 3: 4, 4: 1, 5: 2, 7: 4}


class BlockCodecError(Exception):
    """No codec for this block format here (e.g. etcpak is not installed)."""


def surface_bytes(block: int, height: int, width: int) -> int:
    return -(-height // 4) * -(-width // 4) * BLOCK_BYTES[block]


def decode(data: bytes, block: int, height: int, width: int, *, signed: bool = False) -> np.ndarray:
    """Blocks to ``(height, width, DECODED_CHANNELS[block])`` uint8. Signed formats come back as
    offset binary (value + 128)."""
    import imagecodecs

    if signed:
        data = _flip_endpoints(data, block)
    hp, wp = -(-height // 4) * 4, -(-width // 4) * 4
    channels = DECODED_CHANNELS[block]
    shape = (hp, wp) if channels == 1 else (hp, wp, channels)
    blocks = data[: surface_bytes(block, height, width)]
    pixels = np.asarray(imagecodecs.bcn_decode(blocks, block, shape=shape)).reshape(
        hp, wp, channels
    )
    return np.ascontiguousarray(pixels[:height, :width])


def can_encode(block: int) -> bool:
    return block in _encoders()


def encode(pixels: np.ndarray, block: int, *, signed: bool = False) -> bytes:
    """``(H, W, C)`` uint8 (C = 1..4; missing channels are filled: gray to RGB, opaque alpha) to
    blocks. Signed formats take offset-binary values (value + 128)."""
    encoders = _encoders()
    if block not in encoders:
        raise BlockCodecError(f"no BC{block} encoder installed")
    rgba = _padded_rgba(pixels, two_channel=block == 5)
    data = encoders[block](rgba)
    return _flip_endpoints(data, block) if signed else data


def _padded_rgba(pixels: np.ndarray, *, two_channel: bool = False) -> np.ndarray:
    """RGBA uint8 with height and width padded to multiples of 4 by repeating the last row and
    column (partial blocks then encode only real texels' colours). Two channels are gray and
    alpha, or with ``two_channel`` (BC5) red and green."""
    h, w, c = pixels.shape
    if c == 1:
        rgba = np.concatenate([np.repeat(pixels, 3, axis=2), np.full_like(pixels, 255)], axis=2)
    elif c == 2 and two_channel:
        blue_alpha = np.zeros_like(pixels)
        blue_alpha[:, :, 1] = 255
        rgba = np.concatenate([pixels, blue_alpha], axis=2)
    elif c == 2:
        rgba = np.concatenate([np.repeat(pixels[:, :, :1], 3, axis=2), pixels[:, :, 1:]], axis=2)
    elif c == 3:
        rgba = np.concatenate([pixels, np.full_like(pixels[:, :, :1], 255)], axis=2)
    else:
        rgba = pixels
    hp, wp = -(-h // 4) * 4, -(-w // 4) * 4
    if (hp, wp) != (h, w):
        rgba = np.pad(rgba, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    return np.ascontiguousarray(rgba, dtype=np.uint8)


def _flip_endpoints(data: bytes, block: int) -> bytes:
    """Signed <-> offset-binary BC4/BC5 endpoints (the first two bytes of each 8-byte half)."""
    if block not in (4, 5):
        return data
    array = np.frombuffer(data, dtype=np.uint8).copy().reshape(-1, 8)
    array[:, :2] ^= 0x80
    return array.tobytes()


def _pillow(pixel_format: str, mode: str = "RGBA") -> Callable[[np.ndarray], bytes]:
    def run(rgba: np.ndarray) -> bytes:
        from PIL import Image

        buffer = _io.BytesIO()
        image = Image.fromarray(np.ascontiguousarray(rgba[:, :, : len(mode)]), mode)
        image.save(buffer, format="DDS", pixel_format=pixel_format)
        data = buffer.getvalue()
        offset = 148 if data[84:88] == b"DX10" else 128
        return data[offset:]

    return run


def _etcpak(name: str) -> Callable[[np.ndarray], bytes]:
    def run(rgba: np.ndarray) -> bytes:
        import etcpak

        h, w = rgba.shape[:2]
        function = getattr(etcpak, f"compress_{name}")
        if name == "bc7":
            return bytes(function(rgba.tobytes(), w, h, None))
        return bytes(function(rgba.tobytes(), w, h))

    return run


@functools.cache
def _encoders() -> dict[int, Callable[[np.ndarray], bytes]]:
    found = {1: _pillow("DXT1"), 2: _pillow("DXT3"), 3: _pillow("DXT5"), 5: _pillow("BC5", "RGB")}
    try:
        import etcpak  # noqa: F401
    except ImportError:
        return found  # BC4 and BC7 then fall back to the closest format we can write
    found.update({3: _etcpak("bc3"), 4: _etcpak("bc4"), 5: _etcpak("bc5"), 7: _etcpak("bc7")})
    return found

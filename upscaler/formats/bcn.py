"""Block compression (BC1-BC7) of one surface: decoding, and the measured choice of encoder.

Decoding is bcdec (through imagecodecs, already a dependency): BC1-BC5 and BC7. Encoding picks,
per format and ``--dds-quality``, the encoder that ``benchmarks/bcn.py`` measured best at that
speed on real textures and on our own x4 outputs of them (``CHOICES``; the README has the
table). The adapters are in ``blockencoders``. Each choice ends with an encoder that is always
installed (Pillow or etcpak, the encoders used before the ``dds`` extra); ``choose`` falls back
along it with a note naming both encoders.

Signed BC4/BC5 are stored as the unsigned blocks with their endpoints' top bit flipped: the
palette is linear in the endpoints and the mode test compares them, so both survive the offset.
"""

from __future__ import annotations

import numpy as np

from upscaler.formats import blockencoders
from upscaler.formats.blockencoders import Encoder
from upscaler.options import DDS_QUALITIES as QUALITIES

DEFAULT_QUALITY = "balanced"

# Encoder names (``blockencoders``) per format and quality, preferred first, then the fallbacks:
# the dependencies' encoders (etcpak, then Pillow where it has the format). BC2 uses BC3's (its
# colour blocks). "BC7 colour" is for colour maps (perceptual weights), "BC7" for normal and
# data maps (errors weighed evenly). Measured: the README's table (benchmarks/bcn.py).
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "BC1": {
        "fast": ("ISPC", "Pillow"),
        "balanced": ("quicktex level 9", "Pillow"),
        "best": ("quicktex level 18", "Pillow"),
    },
    "BC3": {
        "fast": ("ISPC", "etcpak", "Pillow"),
        "balanced": ("quicktex level 9", "etcpak", "Pillow"),
        "best": ("quicktex level 18", "etcpak", "Pillow"),
    },
    "BC4": dict.fromkeys(QUALITIES, ("quicktex", "etcpak")),
    "BC5": dict.fromkeys(QUALITIES, ("quicktex", "etcpak", "Pillow")),
    "BC7 colour": {
        "fast": ("etcpak perceptual p0", "ISPC ultrafast"),
        "balanced": ("etcpak perceptual p4", "ISPC veryfast"),
        "best": ("etcpak perceptual p64 u4", "ISPC basic"),
    },
    "BC7": {
        "fast": ("ISPC ultrafast", "etcpak uniform p0"),
        "balanced": ("ISPC veryfast", "etcpak uniform p16"),
        "best": ("ISPC basic", "etcpak uniform p64 u4"),
    },
}

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


def choices(block: int, quality: str = DEFAULT_QUALITY, *, colour: bool = True) -> list[Encoder]:
    """The encoders for ``block`` at ``quality``, preferred first (installed or not)."""
    if quality not in QUALITIES:
        raise ValueError(f"DDS quality must be one of {QUALITIES}, got {quality!r}")
    key = "BC7 colour" if block == 7 and colour else f"BC{3 if block == 2 else block}"
    table = blockencoders.registry()
    return [table[(3 if block == 2 else block, name)] for name in CHOICES[key][quality]]


def choose(
    block: int, quality: str = DEFAULT_QUALITY, *, colour: bool = True, label: str = ""
) -> tuple[Encoder, list[str]]:
    """The first installed encoder of ``choices``, and a note naming both when it is not the
    preferred one. Raises ``BlockCodecError`` when none is installed."""
    ranked = choices(block, quality, colour=colour)
    for encoder in ranked:
        if blockencoders.installed(encoder.module):
            if encoder is ranked[0]:
                return encoder, []
            best = ranked[0]
            return encoder, [
                f"{label or f'BC{block}'} encoded with {encoder.name}, not {best.name}: "
                f"{best.package} is not installed (pip install {best.package})"
            ]
    raise BlockCodecError(f"no BC{block} encoder installed")


def can_encode(block: int) -> bool:
    try:
        choose(block)
    except (BlockCodecError, KeyError):
        return False
    return True


def encode(
    pixels: np.ndarray, block: int, *, signed: bool = False, encoder: Encoder | None = None
) -> bytes:
    """``(H, W, C)`` uint8 (C = 1..4; missing channels are filled: gray to RGB, opaque alpha) to
    blocks, with ``encoder`` (from ``choose``; default: the balanced choice for colour). Signed
    formats take offset-binary values (value + 128)."""
    if encoder is None:
        encoder = choose(block)[0]
    rgba = _padded_rgba(pixels, two_channel=block == 5)
    if block == 2:
        data = _bc2(rgba, encoder)
    elif block == 1 and encoder.module != "PIL":
        data = _bc1(rgba, encoder)
    else:
        data = encoder.run(rgba)
    return _flip_endpoints(data, block) if signed else data


def round_trip(pixels: np.ndarray, block: int) -> np.ndarray:
    """``(H, W, C)`` uint8 ``pixels`` encoded as ``block`` with the default encoder and decoded:
    what a texture stored in that format holds, with as many channels as it came with (at most
    the decoded ones)."""
    h, w = pixels.shape[:2]
    decoded = decode(encode(pixels, block), block, h, w)
    return np.ascontiguousarray(decoded[:, :, : min(pixels.shape[2], decoded.shape[2])])


PREMULTIPLIED_ROUNDS = 6  # re-encodings that lower colour the compression lifted above alpha


def encode_premultiplied(
    pixels: np.ndarray, block: int, *, encoder: Encoder | None = None
) -> bytes:
    """``encode`` for premultiplied ``(H, W, 2|4)`` uint8 (colour at most alpha): blocks whose
    decoded colour is, texel by texel, still at most the decoded alpha.

    Block compression rounds colour and alpha apart (565 endpoints, 4-bit or interpolated
    alpha), so a texel at the bound can come back with colour above alpha: light added where
    the texture is partly transparent, a glow where it is clear. Texels lifted so have their
    colour lowered by the excess and a margin that doubles each round (past the next 565
    step), and only their blocks are encoded again; blocks still over after
    ``PREMULTIPLIED_ROUNDS`` get black colour (always exact), keeping their alpha. Smooth
    premultiplied content converges in a round or two; blocks mixing hues at the bound (where
    no 4-colour line fits under the alpha) pay in colour accuracy."""
    if block not in (1, 2, 3, 7) or pixels.shape[2] not in (2, 4):
        return encode(pixels, block, encoder=encoder)
    encoder = encoder or choose(block)[0]
    target = _padded_rgba(pixels)
    hp, wp = target.shape[:2]
    step = 8 if block == 1 else 16
    data = np.frombuffer(encode(target, block, encoder=encoder), np.uint8).reshape(-1, step)
    data = data.copy()
    for round_ in range(PREMULTIPLIED_ROUNDS + 2):
        decoded = decode(data.tobytes(), block, hp, wp).astype(np.int16)
        excess = np.clip(decoded[:, :, :3] - decoded[:, :, 3:], 0, None)
        over = _as_blocks(excess).reshape(len(data), -1).any(axis=1)
        if not over.any():
            return data.tobytes()
        if round_ > PREMULTIPLIED_ROUNDS:
            raise ValueError("premultiplied blocks keep colour above alpha after encoding")
        lift = np.where(excess > 0, excess + (2 << round_), 0)  # past the next 565 step
        lowered = np.clip(target[:, :, :3] - lift, 0, 255).astype(np.uint8)
        target = np.concatenate([lowered, target[:, :, 3:]], axis=2)
        redo = _as_blocks(target)[over]
        if round_ == PREMULTIPLIED_ROUNDS:
            redo[..., :3] = 0
        strip = np.ascontiguousarray(redo.transpose(1, 0, 2, 3).reshape(4, -1, 4))
        data[over] = np.frombuffer(encode(strip, block, encoder=encoder), np.uint8).reshape(
            -1, step
        )
    raise AssertionError("unreachable")


def _as_blocks(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` with H and W multiples of 4 -> ``(N, 4, 4, C)``, blocks in file order."""
    h, w, c = image.shape
    return image.reshape(h // 4, 4, w // 4, 4, c).transpose(0, 2, 1, 3, 4).reshape(-1, 4, 4, c)


def _bc1(rgba: np.ndarray, encoder: Encoder) -> bytes:
    """Colour from ``encoder``; blocks with a transparent texel (alpha below half) from Pillow,
    the one encoder here that writes BC1's 1-bit alpha."""
    data = encoder.run(rgba)
    transparent = _per_block(rgba[:, :, 3] < 128).any(axis=2)
    if not transparent.any():
        return data
    pillow = blockencoders.registry()[(1, "Pillow")].run(rgba)
    blocks = np.frombuffer(data, np.uint8).reshape(-1, 8).copy()
    blocks[transparent.ravel()] = np.frombuffer(pillow, np.uint8).reshape(-1, 8)[
        transparent.ravel()
    ]
    return blocks.tobytes()


def _bc2(rgba: np.ndarray, encoder: Encoder) -> bytes:
    """BC2: 4-bit alpha per texel (rounded), then the colour half of ``encoder``'s BC3 blocks
    (BC2 and BC3 colour blocks are both 4-colour BC1 blocks)."""
    colour = np.frombuffer(encoder.run(rgba), np.uint8).reshape(-1, 16)[:, 8:]
    a4 = (_per_block(rgba[:, :, 3]).reshape(-1, 16).astype(np.uint32) * 15 + 127) // 255
    pairs = a4[:, 0::2] | (a4[:, 1::2] << 4)  # texel 2i in the low nibble of byte i
    return np.concatenate([pairs.astype(np.uint8), colour], axis=1).tobytes()


def _per_block(plane: np.ndarray) -> np.ndarray:
    """``(H, W)`` -> ``(H/4, W/4, 16)``: each block's texels in row order."""
    h, w = plane.shape
    return plane.reshape(h // 4, 4, w // 4, 4).transpose(0, 2, 1, 3).reshape(h // 4, w // 4, 16)


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

"""The ``upscale`` command line: every option declared once, as a field of ``Arguments``.

A field's metadata is its click declaration; ``declare`` puts them on the command in field order
(the order of ``--help``). A field named as a field of ``TextureOptions`` or ``RunOptions`` fills
it (``Arguments.fill``), so an option that changes how a texture is treated is this one field
plus its use. No torch here: ``--help`` is built from this module.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from upscaler import options as choices

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    _D = TypeVar("_D", bound=DataclassInstance)

_F = TypeVar("_F", bound=Callable[..., Any])
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


class MemorySize(click.ParamType):
    """A byte count: ``4G``, ``512M``, ``1.5GiB`` (binary units; a bare number is bytes)."""

    name = "size"
    UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in "KMGT" and text else ""
        try:
            number = float(text[: len(text) - len(unit)])
        except ValueError:
            self.fail(f"{value!r} is not a size; use e.g. 4G, 512M or 1.5G", param, ctx)
        if not math.isfinite(number) or number * (1 << self.UNITS[unit]) < 1 << 20:
            self.fail(f"{value!r} is not a usable size; give at least 1M", param, ctx)
        return int(number * (1 << self.UNITS[unit]))


class _GivenPath(click.Path):
    """A path that was written out: an empty one ('') would silently mean the working folder."""

    def convert(
        self,
        value: str | os.PathLike[str],
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path would mean the working folder; write . if you mean it")
        return super().convert(value, param, ctx)


_GIVEN_PATH = _GivenPath(path_type=Path)


def _check_device(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise click.BadParameter(f"{value!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


def _check_output_scale(
    _ctx: click.Context, _param: click.Parameter, value: float | None
) -> float | None:
    if value is not None and not 0 < value <= 64:
        raise click.BadParameter("must be in (0, 64]", param_hint="--output-scale")
    return value


def _option(*decls: str, **attrs: Any) -> Any:
    """A field filled by the option ``decls`` (click's ``attrs``)."""
    return field(metadata={"declare": (click.option, decls, attrs)})


def _choice(decl: str, values: tuple[str, ...], default: str | None, help: str) -> Any:
    """A field filled by the option ``decl``, one of ``values``."""
    return _option(decl, type=click.Choice(values), default=default, help=help)


def _argument(**attrs: Any) -> Any:
    return field(metadata={"declare": (click.argument, (), attrs)})


@dataclass(frozen=True)
class Arguments:
    """The command line, as click parsed it."""

    inputs: tuple[Path, ...] = _argument(nargs=-1, type=_GIVEN_PATH, metavar="INPUTS...")
    output: Path = _option(
        "-o",
        "--output",
        type=_GIVEN_PATH,
        help="Output folder (required); the input tree is mirrored inside it.",
    )
    scale: int | None = _option(
        "-s",
        "--scale",
        type=click.IntRange(1, 16),
        help="Model scale; picks the shipped model (default 4, or the --model's scale).",
    )
    model: str | None = _option(
        "-m",
        "--model",
        help="Shipped or known model name (--list-models), our .safetensors, or a community "
        ".pth/.safetensors.",
    )
    sharp: bool = _option(
        "--sharp",
        is_flag=True,
        help="Use the shipped sharp model (texture-x4-sharp: a GAN, more invented detail, "
        "less faithful) instead of the default.",
    )
    no_download: bool = _option(
        "--no-download",
        is_flag=True,
        help="Never download a known model; say where to put its file instead "
        "(also UPSCALE_NO_DOWNLOAD=1).",
    )
    native: bool = _option(
        "--native", is_flag=True, help="Upscale, then filter back to the input's size."
    )
    output_scale: float | None = _option(
        "--output-scale",
        type=float,
        callback=_check_output_scale,
        help="Final size as a multiple of the input (e.g. 2 with a x4 model).",
    )
    format: str | None = _choice(
        "--format",
        choices.OUTPUT_FORMATS,
        None,
        "Convert outputs to this format (default: keep each input's format).",
    )
    tile: int | None = _option(
        "--tile",
        type=click.IntRange(16, 16384),
        help="Tile size in input pixels (default: from available memory).",
    )
    max_memory: int | None = _option(
        "--max-memory",
        type=MemorySize(),
        help="Memory the upscaling may use on its device, e.g. 4G or 512M; sets the tile size "
        "and batch, and bounds the review page's pictures (default: a quarter of RAM up to 4G on "
        "CPU, half of the GPU's memory).",
    )
    seamless: str = _choice(
        "--seamless",
        choices.SEAMLESS_MODES,
        "auto",
        "Wrap-around padding so tileable textures stay tileable (auto: detect per axis; "
        "x: left/right edges only, y: top/bottom only).",
    )
    map: str = _choice(
        "--map",
        choices.MAP_CHOICES,
        "auto",
        "Map type (auto: from the name suffix, e.g. _n normal, _rough data; checked by content).",
    )
    alpha: str = _choice(
        "--alpha",
        choices.ALPHA_CHOICES,
        "auto",
        "Alpha meaning (auto: cutout if mostly 0/255, else blended; data in normal/data maps).",
    )
    palette: str = _choice(
        "--palette",
        choices.PALETTE_MODES,
        "rgb",
        "Palette images: upscale as RGB(A), or keep: re-quantise to the source palette.",
    )
    dds_format: str = _choice(
        "--dds-format",
        choices.DDS_FORMATS,
        "auto",
        "DDS outputs: auto keeps the source's format (BC7 for other sources).",
    )
    dds_quality: str = _choice(
        "--dds-quality",
        choices.DDS_QUALITIES,
        "balanced",
        help="DDS block encoders: fast, balanced (encoding ~15% of a CPU run), or best (slowest).",
    )
    rules: Path | None = _option(
        "--rules",
        type=click.Path(path_type=Path, dir_okay=False),
        help="TOML file of per-pattern options (glob -> map, alpha, seamless, native, format...).",
    )
    skip_existing: bool = _option(
        "--skip-existing",
        is_flag=True,
        help="Keep outputs this tool already made from the same input, model and options.",
    )
    dry_run: bool = _option(
        "--dry-run", is_flag=True, help="List what would be done; write nothing."
    )
    report: Path | None = _option(
        "--report",
        type=click.Path(path_type=Path),
        help="Write per-file results as JSON (never onto an input or an output).",
    )
    review: Path | None = _option(
        "--review",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Write a page to review the batch by eye (pictures in a folder beside it, named "
        "PAGE_files); never inside the output or an input folder.",
    )
    device: str = _option(
        "--device", default="auto", callback=_check_device, help="auto, cpu, cuda, cuda:N or mps."
    )
    precision: str = _choice(
        "--precision",
        choices.PRECISIONS,
        "auto",
        "auto: bf16 where the device has it natively (a CPU with AVX512-BF16/AMX, a GPU), "
        "else fp16 on a GPU, when the model's output in it is >= 50 dB from fp32's with no value "
        "over 12 levels off (measured once per model); else fp32.",
    )
    shard: str | None = _option(
        "--shard",
        metavar="K/N",
        help="Process only the K-th of N shares of the files (automatic under torchrun).",
    )
    png_level: int | None = _option(
        "--png-level",
        type=click.IntRange(0, 9),
        help="zlib level for PNG (9: smallest files, slowest). Default: a fast run-length "
        "mode that is also smaller than level 3 on upscaled textures.",
    )
    max_batch: int | None = _option(
        "--batch",
        type=click.IntRange(1, 1024),
        help="Most same-size images upscaled together (default: 16 on a GPU; 1 on a CPU, where "
        "one image at a time stays in cache and runs faster).",
    )
    workers: int = _option(
        "--workers",
        type=click.IntRange(1, 64),
        default=2,
        help="Threads for decoding and encoding.",
    )
    quiet: bool = _option(
        "-q", "--quiet", is_flag=True, help="No progress lines; errors and summary only."
    )

    def fill(self, kind: type[_D], **given: object) -> _D:
        """A ``kind`` (a dataclass) from the fields named as its fields, and ``given``."""
        names = {f.name for f in fields(kind)} - given.keys()
        mine = {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        return kind(**mine, **given)


def declare(command: _F) -> _F:
    """``command`` with an option (or argument) for each field of ``Arguments``, in order."""
    for spec in reversed(fields(Arguments)):
        kind, decls, attrs = spec.metadata["declare"]
        command = kind(*decls, spec.name, **attrs)(command)
    return command

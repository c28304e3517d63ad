"""Models by name: the ones shipped inside the package, then the known community models
(``upscaler.models.known``, fetched into the torch hub cache)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from upscaler.models.checkpoint import ModelFileError

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    scale: int
    summary: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def card(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.md"

    @property
    def installed(self) -> bool:
        return self.path.is_file()


SHIPPED: dict[str, ShippedModel] = {
    m.name: m
    for m in (
        ShippedModel("texture-x4", 4, "x4 for game textures: faithful, no screen door or hatch"),
        ShippedModel("texture-x2", 2, "x2 for game textures: detail back, no texel grid"),
        ShippedModel(
            "texture-x4-fidelity", 4, "x4, v2's compact network: faster, better --native on BC1"
        ),
        ShippedModel("texture-x2-fidelity", 2, "x2, weight-averaged: smoother, highest PSNR"),
    )
}


def default_model(scale: int) -> str:
    """The shipped model used when ``--model`` is not given."""
    for name in (f"texture-x{scale}", f"texture-x{scale}-fidelity"):
        if name in SHIPPED and SHIPPED[name].installed:
            return name
    available = sorted({m.scale for m in SHIPPED.values() if m.installed})
    raise ModelFileError(
        f"texture-x{scale}",
        f"no shipped x{scale} model (shipped scales: {available or 'none'}); pass --model",
    )


def resolve(name_or_path: str | Path, *, download: bool | None = None) -> Path:
    """A shipped model's file, a known model's cached file (downloaded if needed and allowed,
    see ``known.fetch``), or the path itself."""
    from upscaler.models import known

    key = str(name_or_path)
    if key in SHIPPED:
        model = SHIPPED[key]
        if not model.installed:
            raise ModelFileError(key, "this shipped model is not installed in this package")
        return model.path
    path = Path(name_or_path).expanduser()
    community = known.find(key)
    if community is not None and not path.exists():
        return known.fetch(community, download=download)
    if not path.exists():
        named = known.find(path.stem)
        if named is not None:
            raise ModelFileError(
                key, f"no such file; to fetch the known model: --model {named.name}"
            )
        if path.suffix == "":
            names = ", ".join(m.name for m in SHIPPED.values() if m.installed) or "none installed"
            every = {n: n for n in SHIPPED}  # a known model by any of its names, suggested by one
            for other in known.known_models().values():
                every.update((n, other.name) for n in (other.name, *other.aliases))
            raise ModelFileError(
                key,
                f"no such model file, shipped model (shipped: {names}) or known model "
                f"(upscale --list-models){did_you_mean(key, every)}",
            )
    return path


def did_you_mean(name: str, names: Mapping[str, str]) -> str:
    """``; did you mean X?`` for a mistyped ``name``: the (at most two) names suggested by the
    spellings in ``names`` closest to it, letter case aside; an empty string when none is close.
    ``names`` maps each accepted spelling to the name to suggest for it."""
    by_key = {spelling.casefold(): shown for spelling, shown in names.items()}
    close = difflib.get_close_matches(name.casefold(), list(by_key), n=6, cutoff=0.75)
    picks = list(dict.fromkeys(by_key[c] for c in close))[:2]
    return f"; did you mean {' or '.join(picks)}?" if picks else ""

"""Where a model comes from: a name or path resolves once, here, to a ``ModelSource``.

Names are looked up in order: the models shipped inside the package, then the known community
models (``upscaler.models.known``, fetched into the torch hub cache when not there yet), then the
name is taken as a path to a model file.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from upscaler.models import known
from upscaler.models.checkpoint import ModelFileError
from upscaler.models.known import KnownModel, Progress

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """A model inside the package: its weights and card in ``weights/``. ``blocks``: the shipped
    model that takes its place on textures that were block-compressed (BC1-BC3: DDS files and
    what was exported from them; ``upscaler.texture.blocks``), if any."""

    name: str
    scale: int
    summary: str
    blocks: str = ""

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
        ShippedModel(
            "texture-x4",
            4,
            "x4 for game textures: faithful, no screen door; DXT/BC ones via texture-x4-bc",
            blocks="texture-x4-bc",
        ),
        ShippedModel(
            "texture-x4-bc",
            4,
            "x4 for block-compressed (DXT/BC1-BC3) textures; texture-x4 uses it on them",
        ),
        ShippedModel(
            "texture-x2",
            2,
            "x2 for game textures: faithful, no screen door; DXT/BC ones via texture-x2-bc",
            blocks="texture-x2-bc",
        ),
        ShippedModel(
            "texture-x2-bc",
            2,
            "x2 for block-compressed (DXT/BC1-BC3) textures; texture-x2 uses it on them",
        ),
        ShippedModel(
            "texture-x4-fidelity", 4, "x4, v2's compact network: faster, better --native on BC1"
        ),
        ShippedModel("texture-x2-fidelity", 2, "x2, v2's compact network: better --native"),
        ShippedModel("texture-x4-sharp", 4, "x4 GAN (--sharp): invented fine detail; CC-BY-SA-4.0"),
    )
}


def default_model(scale: int, *, sharp: bool = False) -> str:
    """The shipped model used when ``--model`` is not given (``sharp``: the GAN model)."""
    if sharp:
        name = f"texture-x{scale}-sharp"
        if name in SHIPPED and SHIPPED[name].installed:
            return name
        shipped = sorted(
            m.scale for m in SHIPPED.values() if m.name.endswith("-sharp") and m.installed
        )
        scales = ", ".join(f"x{s}" for s in shipped) or "none"
        raise ModelFileError(name, f"no shipped sharp x{scale} model (sharp models: {scales})")
    for name in (f"texture-x{scale}", f"texture-x{scale}-fidelity"):
        if name in SHIPPED and SHIPPED[name].installed:
            return name
    available = sorted({m.scale for m in SHIPPED.values() if m.installed})
    raise ModelFileError(
        f"texture-x{scale}",
        f"no shipped x{scale} model (shipped scales: {available or 'none'}); pass --model",
    )


@dataclass(frozen=True)
class ModelSource:
    """A model named by the user, resolved: a shipped model, a known community model or a file.

    ``path`` is the model's file when it is here: a shipped model's, a known model's verified copy
    in the cache, or the path given (which may not exist: reading it says so). It is None for a
    known model not in the cache yet (``fetch`` gets it) and for a name that names no model, for
    which ``problem`` says why, as ``file`` reports it."""

    name: str  # as given
    path: Path | None
    known_model: KnownModel | None = None
    problem: str = ""

    def fetch(
        self, *, download: bool | None = None, progress: Progress | None = None
    ) -> ModelSource:
        """This source with its file here: a known model not in the cache is downloaded, if
        allowed (``known.fetch``: ``download=None`` follows ``$UPSCALE_NO_DOWNLOAD``)."""
        if self.path is not None or self.known_model is None:
            return self
        path = known.fetch(self.known_model, download=download, progress=progress)
        return dataclasses.replace(self, path=path)

    def file(self) -> Path:
        """The model's file, fetched first if needed and allowed; ``ModelFileError`` when there is
        none (``known.ModelUnavailableError``: one that cannot be fetched)."""
        path = self.fetch().path
        if path is None:
            raise ModelFileError(self.name, self.problem)
        return path


def blocks_model(source: str | Path | ModelSource) -> str:
    """The shipped model that ``source`` hands block-compressed textures to ("" for none)."""
    name = source.name if isinstance(source, ModelSource) else str(source)
    model = SHIPPED.get(name)
    if model is None or not model.blocks or not SHIPPED[model.blocks].installed:
        return ""
    return model.blocks


def resolve(name_or_path: str | Path) -> ModelSource:
    """What ``name_or_path`` names: a shipped model, a known model (present in the cache or not),
    or a file. Reads nothing but the known models' registry and, for a known model, the hashes of
    the cache's candidate files; never downloads."""
    key = str(name_or_path)
    if key in SHIPPED:
        model = SHIPPED[key]
        if not model.installed:
            return ModelSource(
                key, None, problem="this shipped model is not installed in this package"
            )
        return ModelSource(key, model.path)
    path = Path(name_or_path).expanduser()
    community = known.find(key)
    if community is not None and not path.exists():
        return ModelSource(key, known.presence(community).path, community)
    if not path.exists():
        named = known.find(path.stem)
        if named is not None:
            return ModelSource(
                key, None, problem=f"no such file; to fetch the known model: --model {named.name}"
            )
        if path.suffix == "":
            names = ", ".join(m.name for m in SHIPPED.values() if m.installed) or "none installed"
            every = {n: n for n in SHIPPED}  # a known model by any of its names, suggested by one
            for other in known.known_models().values():
                every.update((n, other.name) for n in (other.name, *other.aliases))
            return ModelSource(
                key,
                None,
                problem=f"no such model file, shipped model (shipped: {names}) or known model "
                f"(upscale --list-models){did_you_mean(key, every)}",
            )
    return ModelSource(key, path)


def did_you_mean(name: str, names: Mapping[str, str]) -> str:
    """``; did you mean X?`` for a mistyped ``name``: the (at most two) names suggested by the
    spellings in ``names`` closest to it, letter case aside; an empty string when none is close.
    ``names`` maps each accepted spelling to the name to suggest for it."""
    by_key = {spelling.casefold(): shown for spelling, shown in names.items()}
    close = difflib.get_close_matches(name.casefold(), list(by_key), n=6, cutoff=0.75)
    picks = list(dict.fromkeys(by_key[c] for c in close))[:2]
    return f"; did you mean {' or '.join(picks)}?" if picks else ""

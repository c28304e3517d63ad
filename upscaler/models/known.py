"""Well-known community models by name, fetched once into the torch hub cache.

The list is plain data, ``known.toml`` beside this module: name, scale, licence, file name, size,
SHA-256 and download URL (or a page for a manual download), each with its source. A file is used
only when its SHA-256 matches. A download streams into a temporary file beside its target, is
checked for size and hash, and only then renamed into place (``upscaler.atomic``); on any failure,
Ctrl-C included, nothing is left in the cache and the message says what to do. A server that goes
silent is given up after ``TIMEOUT_S``; one that drips is given up at the transfer's deadline
(``deadline_for``), checked after every read, so at most one silent ``TIMEOUT_S`` past it.

The cache is ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), where
``torch.hub.load_state_dict_from_url`` and the training losses' backbones live too.
``UPSCALE_NO_DOWNLOAD=1`` forbids downloads; ``UPSCALE_MODEL_MIRROR=<url>`` fetches
``<url>/<file>`` instead of the official URL (a local mirror; the hash still decides);
``UPSCALE_KNOWN_MODELS=<file.toml>`` adds entries in the same format.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import os
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from upscaler.atomic import (
    atomic_write,
    file_sha256,
    is_disk_full,
    read_regular,
    remove_stale_temps,
)
from upscaler.models.checkpoint import ModelFileError

NO_DOWNLOAD_ENV = "UPSCALE_NO_DOWNLOAD"
MIRROR_ENV = "UPSCALE_MODEL_MIRROR"
EXTRA_ENV = "UPSCALE_KNOWN_MODELS"
TIMEOUT_S = 30.0  # per connection attempt and per read: how long a silent server is waited for
DEADLINE_BASE_S = 600.0  # the whole transfer: this, plus the file's size at SLOWEST_RATE
SLOWEST_RATE = 64 * 1024  # bytes per second: a 67 MB model may take 27 minutes, not 11 hours
_CHUNK = 1 << 20
MAX_REGISTRY_BYTES = 1 << 20  # a registry file of a team's models: a few kilobytes
_SCHEMES = ("https://", "http://", "file://")

Progress = Callable[[int, int], None]  # (bytes so far, total bytes)


class ModelUnavailableError(ModelFileError):
    """A known model's file is not usable here: not cached and not downloadable, or a download
    failed. The message is one line that says what to do."""


@dataclass(frozen=True)
class LocalCopy:
    """Another file accepted as a known model when found in the cache with this SHA-256."""

    file: str
    sha256: str
    source: str


@dataclass(frozen=True)
class KnownModel:
    name: str
    scale: int
    architecture: str
    licence: str
    summary: str
    file: str  # the name it is cached under
    size: int  # bytes
    sha256: str
    source: str  # where the facts above come from
    url: str = ""  # a direct download; empty when the file must be fetched by hand
    page: str = ""  # where to get it by hand
    aliases: tuple[str, ...] = ()
    copies: tuple[LocalCopy, ...] = ()


@dataclass(frozen=True)
class Presence:
    """What the cache holds for a model: the first file whose hash matches, or else the files
    found under its names whose hashes do not, with their hashes."""

    path: Path | None
    mismatched: tuple[tuple[Path, str], ...] = ()


def cache_dir() -> Path:
    """Where known models are cached: ``torch.hub.get_dir()/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _parse(entry: dict[str, Any]) -> KnownModel:
    valid = {f.name for f in fields(KnownModel)} - {"copies"} | {"copy"}
    unknown = set(entry) - valid
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; valid keys: {sorted(valid)}")
    required = {f.name for f in fields(KnownModel) if f.default is MISSING}
    if required - set(entry):
        raise ValueError(f"model {entry.get('name', '?')!r} lacks {sorted(required - set(entry))}")
    values = dict(entry)
    copies = tuple(LocalCopy(**c) for c in values.pop("copy", ()))
    values["aliases"] = tuple(values.get("aliases", ()))
    model = KnownModel(**values, copies=copies)
    name = model.name
    for key in ("scale", "size"):
        value = getattr(model, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer, not {value!r}")
    texts = [model.name, model.file, model.url, model.page, *model.aliases]
    if not all(isinstance(t, str) for t in texts + [c.file for c in copies]):
        raise ValueError(f"{name}: names, files and URLs must be strings")
    for file in [model.file, *(c.file for c in copies)]:
        if Path(file).name != file or file.startswith("."):
            raise ValueError(f"{name}: {file!r} must be a plain file name")
    for digest in [model.sha256, *(c.sha256 for c in copies)]:
        if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ValueError(f"{name}: {digest!r} is not a lowercase SHA-256")
    if model.url and not model.url.startswith(_SCHEMES):
        raise ValueError(f"{name}: the url must be https://, http:// or file://")
    if not (model.url or model.page):
        raise ValueError(f"{name}: neither a url nor a page to get it from")
    return model


def known_models() -> dict[str, KnownModel]:
    """The registry, by name: ``known.toml`` plus the files listed in ``$UPSCALE_KNOWN_MODELS``
    (separated by ``os.pathsep``; same format, for a team's own models)."""
    return _registry(os.environ.get(EXTRA_ENV, ""))


@functools.cache
def _registry(extra: str) -> dict[str, KnownModel]:
    shipped = resources.files("upscaler.models").joinpath("known.toml")
    sources: list[tuple[str, str]] = [("known.toml", shipped.read_text("utf-8"))]
    for name in filter(None, extra.split(os.pathsep)):
        try:  # a regular file only: a FIFO here would block every command that names a model
            sources.append((name, read_regular(name, MAX_REGISTRY_BYTES).decode("utf-8")))
        except OSError as exc:
            raise ValueError(f"{EXTRA_ENV}: cannot read {name} ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{EXTRA_ENV}: cannot read {name} ({exc})") from None
    models: dict[str, KnownModel] = {}
    names: set[str] = set()
    for origin, text in sources:
        try:
            entries = tomllib.loads(text).get("model", [])
            parsed = [_parse(entry) for entry in entries]
        except (tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"{origin}: {exc}") from None
        except RecursionError:
            raise ValueError(f"{origin}: TOML nested too deep") from None
        for model in parsed:
            for label in (model.name, *model.aliases):
                if label.casefold() in names:
                    raise ValueError(f"{origin}: the model name {label!r} is already taken")
                names.add(label.casefold())
            models[model.name] = model
    return models


def find(name: str) -> KnownModel | None:
    """The known model called ``name`` or one of its aliases (any letter case), or None."""
    key = name.casefold()
    for model in known_models().values():
        if key in (n.casefold() for n in (model.name, *model.aliases)):
            return model
    return None


def presence(model: KnownModel, cache: Path | None = None) -> Presence:
    """Look for the model in the cache, under its own file name and its local copies' names."""
    cache = cache_dir() if cache is None else cache
    mismatched = []
    for name, expected in [(model.file, model.sha256), *((c.file, c.sha256) for c in model.copies)]:
        path = cache / name
        if not path.is_file():
            continue
        actual = file_sha256(path)
        if actual == expected:
            return Presence(path)
        mismatched.append((path, actual))
    return Presence(None, tuple(mismatched))


def downloads_allowed() -> bool:
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")


def download_url(model: KnownModel) -> str:
    """The official URL, or the file under ``$UPSCALE_MODEL_MIRROR``; empty if there is none."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        if not mirror.startswith(_SCHEMES):
            raise ModelUnavailableError(
                model.name, f"{MIRROR_ENV}={mirror!r} is not an http(s):// or file:// URL"
            )
        return f"{mirror.rstrip('/')}/{model.file}"
    return model.url


def fetch(
    model: KnownModel,
    *,
    download: bool | None = None,
    progress: Progress | None = None,
    cache: Path | None = None,
    deadline_s: float | None = None,
) -> Path:
    """The verified local file of ``model``, downloaded first if needed and allowed.

    ``download=None`` follows ``$UPSCALE_NO_DOWNLOAD``; ``deadline_s=None`` gives the transfer
    ``deadline_for(model.size)`` seconds. Raises ``ModelUnavailableError`` with
    what to do when the file is missing and cannot be downloaded, when a download fails, or when
    the cache holds a different file under the model's name (it is never overwritten).
    """
    cache = cache_dir() if cache is None else cache
    found = presence(model, cache)
    if found.path is not None:
        return found.path
    target = cache / model.file
    for path, actual in found.mismatched:
        if path == target:
            raise ModelUnavailableError(
                model.name,
                f"{path} is not this model (SHA-256 {actual[:16]}..., expected "
                f"{model.sha256[:16]}...); delete it to download again, or replace it",
            )
    if download is None:
        download = downloads_allowed()
    if not download:
        why = f"downloads are off (--no-download or {NO_DOWNLOAD_ENV})"
        raise ModelUnavailableError(
            model.name, f"not in the model cache and {why}; " + _by_hand(model, target)
        )
    url = download_url(model)
    if not url:
        raise ModelUnavailableError(model.name, "no direct download; " + _by_hand(model, target))
    _download(
        model, url, target, progress, deadline_for(model.size) if deadline_s is None else deadline_s
    )
    return target


def deadline_for(size: int) -> float:
    """Seconds a download of ``size`` bytes may take in all, however its bytes trickle in."""
    return DEADLINE_BASE_S + size / SLOWEST_RATE


def _by_hand(model: KnownModel, target: Path) -> str:
    how = f"download {model.url}" if model.url else f"get it from {model.page}"
    return f"{how} and save it as {target} (SHA-256 {model.sha256[:16]}...)"


class _TransferError(Exception):
    pass


def _download(
    model: KnownModel, url: str, target: Path, progress: Progress | None, deadline_s: float
) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "texture-upscaler"})
    done = 0
    end = time.monotonic() + deadline_s
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent)
        with contextlib.ExitStack() as stack:
            timeout = min(TIMEOUT_S, deadline_s)
            response = stack.enter_context(urllib.request.urlopen(request, timeout=timeout))
            offered = response.headers.get("Content-Length")
            if offered is not None and offered.isdigit() and int(offered) != model.size:
                raise _TransferError(
                    f"{url} offers {int(offered):,} bytes, expected {model.size:,}; "
                    "nothing was downloaded"
                )
            out = stack.enter_context(atomic_write(target))
            digest = hashlib.sha256()
            if progress is not None:
                progress(0, model.size)
            # read1: what has arrived, up to a chunk; read() would wait for a whole chunk, and a
            # server that drips a byte at a time would never let the deadline be looked at
            while chunk := response.read1(_CHUNK):
                if time.monotonic() > end:
                    late = f"not done within the {deadline_s:g} s allowed"
                    raise _TransferError(_stopped(url, done, model.size, late))
                done += len(chunk)
                if done > model.size:
                    raise _TransferError(
                        f"{url} sent more than the expected {model.size:,} bytes; the partial "
                        "download was deleted"
                    )
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(done, model.size)
            if done < model.size:
                raise _TransferError(_stopped(url, done, model.size, "connection closed"))
            if digest.hexdigest() != model.sha256:
                raise _TransferError(
                    f"the download from {url} has SHA-256 {digest.hexdigest()[:16]}..., expected "
                    f"{model.sha256[:16]}... (not the registered file); the download was deleted"
                )
    except _TransferError as exc:
        raise ModelUnavailableError(model.name, str(exc)) from None
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {exc.reason}"
        raise ModelUnavailableError(
            model.name, f"could not download {url} ({reason}); " + _by_hand(model, target)
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = _reason(exc)
        if is_disk_full(exc):
            message = f"disk full while downloading into {target.parent}; nothing was kept"
        elif isinstance(exc, PermissionError):
            message = (
                f"cannot write into the model cache {target.parent} ({reason}); set TORCH_HOME "
                "to a writable folder, or " + _by_hand(model, target)
            )
        elif done:
            message = _stopped(url, done, model.size, reason)
        else:
            message = f"not in the model cache and could not be downloaded ({reason}); " + _by_hand(
                model, target
            )
        raise ModelUnavailableError(model.name, message) from None


def _stopped(url: str, done: int, size: int, reason: str) -> str:
    return (
        f"the transfer from {url} stopped after {done:,} of {size:,} bytes ({reason}); the "
        "partial download was deleted, run again to retry"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:120]

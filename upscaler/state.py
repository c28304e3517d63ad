"""Resume state: which outputs this tool wrote, from what, and their exact bytes.

``--skip-existing`` keeps an output only if this state says this tool wrote it from the same
input (its size and SHA-256: content decides, so an input edited in place with its modification
time restored, as ``cp -p``, ``tar``, ``rsync -t`` and unzip leave it, is redone, and one only
touched is not), the same model (SHA-256 of its file), the same scale and precision and the same
options that change pixels (map, alpha, seamless, native, output scale, palette, DDS format, tile,
output format), and if the file still has the bytes written (SHA-256).
Anything else is redone: another model, a changed option, a corrupted or replaced file, an output
of another tool.

The state lives outside the output tree, so it never ships with a mod: one JSON-lines file per
output folder in ``$UPSCALE_STATE_DIR``, else ``$XDG_CACHE_HOME/texture-upscaler/runs`` (default
``~/.cache/texture-upscaler/runs``; ``%LOCALAPPDATA%`` on Windows), named after the output folder
and a hash of its absolute path. Each record is one short ``O_APPEND`` write, so shards running on
one machine can share it, and a line cut by a kill is skipped. If the state cannot be written the
run goes on; only ``--skip-existing`` loses its memory of those files.

The state file is untrusted input: it is read and appended to only as a regular file (a FIFO, a
device or a symbolic link in its place is neither read nor written through: the run goes on without
resume state, and says so), and a record counts only if it is well formed and names a file under
the output folder it belongs to. A state folder inside the output tree, or one that cannot be a
folder (``$UPSCALE_STATE_DIR`` naming a file, such as the model or an input), is refused
(``StateError``): the run would otherwise go on without its state, or be tempted to write there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from upscaler.atomic import append_regular, file_sha256, folder_problem, read_regular
from upscaler.worklist import inside, real_path

STATE_ENV = "UPSCALE_STATE_DIR"
LEGACY_MANIFEST = ".upscale-done.jsonl"  # where older versions kept it: inside the output tree
MAX_STATE_BYTES = 1 << 28  # about a million records; a larger file is not read
_HEX = frozenset("0123456789abcdef")


class StateError(ValueError):
    """The resume state cannot go where it is asked to; one line."""


def state_dir() -> Path:
    """The folder that holds every output folder's state file."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA")
    return Path(base or Path.home() / ".cache") / "texture-upscaler" / "runs"


def state_path(output_root: Path) -> Path:
    """The state file of the output folder ``output_root`` (an absolute, resolved path)."""
    digest = hashlib.sha256(os.fsencode(str(output_root))).hexdigest()[:16]
    label = re.sub(r"[^A-Za-z0-9._-]", "_", output_root.name)[:40] or "root"
    return state_dir() / f"{label}-{digest}.jsonl"


def recipe(source: Path, producer: Mapping[str, object]) -> str:
    """A short hash of what makes an output what it is: the producer (model hash, scale,
    precision, options that change pixels, output format) and the input's size and content.

    The whole input is hashed: measured on a core shared with two training runs, 0.5 ms for a
    64 KiB texture, 2.4 ms for 1 MiB, 18 ms for 16 MiB, about a sixteenth of what checking its x4
    output's bytes already costs. A sampled hash would miss an edited texel of a TGA or DDS."""
    data = {**producer, "source": [os.stat(source).st_size, file_sha256(source)]}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class RunState:
    """The records of one output folder, loaded once; ``record`` appends one line per output."""

    def __init__(
        self, output_root: Path, path: Path | None = None, inputs: Sequence[Path] = ()
    ) -> None:
        """``StateError`` if the state file would lie inside ``output_root`` (it would ship with
        the mod, and the run would walk or overwrite it) or inside one of the input folders
        ``inputs`` (the next run would walk it as a texture), or its folder is a file."""
        self.root = output_root
        self.path = path or state_path(output_root)
        folders = [("output", output_root)] + [("input", p) for p in inputs if p.is_dir()]
        for kind, folder in folders:
            if inside(real_path(self.path), real_path(folder)):
                raise StateError(
                    f"the resume state {self.path} would lie inside the {kind} folder {folder}; "
                    f"set {STATE_ENV} to a folder outside it"
                )
        if self.path.parent.exists() and not self.path.parent.is_dir():
            # a file named as the state folder: most likely one the run reads (the model, an
            # input, the rules), so the run stops before anything is written
            raise StateError(
                f"the resume state folder {self.path.parent} is a file, not a folder; "
                f"set {STATE_ENV} to a folder"
            )
        self.records: dict[str, dict[str, object]] = {}
        self._cut_short = False  # the last line was cut by a kill: start ours on a fresh line
        # why the state could not be read or written, if it could not: a folder that cannot be
        # made (below a file, unreadable) costs only the resume
        problem = folder_problem(self.path.parent)
        self.error: str | None = problem and f"{self.path.parent}: {problem}"
        self.error = self.error or _hard_linked(self.path)
        if self.error is not None:
            return
        try:
            data = read_regular(self.path, MAX_STATE_BYTES, follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError as exc:  # a FIFO, a link, a device, too large: neither read nor written
            self.error = f"{self.path}: {exc.strerror or exc}"
            return
        text = data.decode("utf-8", errors="replace")
        self._cut_short = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                name, entry = _parse(json.loads(line))
            except (ValueError, KeyError, TypeError, RecursionError):
                continue  # a line cut short by a crash, or not one of ours
            self.records[name] = entry

    def _name(self, target: Path) -> str | None:
        """``target``'s name relative to the output folder, or None outside it."""
        try:
            return real_path(target).relative_to(real_path(self.root)).as_posix()
        except ValueError:
            return None

    def written_by_us(self, target: Path) -> bool:
        """Whether ``target`` holds exactly the bytes this tool last wrote there."""
        name = self._name(target)
        entry = self.records.get(name) if name is not None else None
        return entry is not None and self._same_bytes(target, entry)

    def complete(self, target: Path, made_by: str) -> bool:
        """Whether ``target`` is this tool's output from the recipe ``made_by``, intact."""
        name = self._name(target)
        entry = self.records.get(name) if name is not None else None
        return entry is not None and entry["recipe"] == made_by and self._same_bytes(target, entry)

    @staticmethod
    def _same_bytes(target: Path, entry: Mapping[str, object]) -> bool:
        try:
            if os.stat(target).st_size != entry["bytes"]:
                return False
            return file_sha256(target) == entry["sha256"]
        except OSError:
            return False

    def record(self, target: Path, made_by: str) -> None:
        """Append ``target``'s record. Never raises: a state that cannot be written only costs
        ``--skip-existing`` its memory of this file (``error`` says why)."""
        name = self._name(target)
        if name is None:
            return  # outside the output folder: no record may claim it
        try:
            entry = {
                "target": name,
                "bytes": os.stat(target).st_size,
                "sha256": file_sha256(target),
                "recipe": made_by,
            }
            line = json.dumps(entry) + "\n"
            if self._cut_short:
                line, self._cut_short = "\n" + line, False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            linked = _hard_linked(self.path)  # checked again: it may have been linked since
            if linked is not None:
                self.error = self.error or linked
                return
            # one short O_APPEND write: atomic even with several shards; never through a link
            append_regular(self.path, line.encode("utf-8"))
        except OSError as exc:
            self.error = self.error or f"{self.path}: {exc.strerror or exc}"


def _hard_linked(path: Path) -> str | None:
    """Why the state file at ``path`` is not ours to read or append to: it has other names (a
    hard link to a model, an input or a rules file would be appended to). None otherwise."""
    try:
        links = os.lstat(path).st_nlink
    except OSError:
        return None  # missing, or refused by the regular-file checks that follow
    return None if links <= 1 else f"{path}: has {links} hard links; not used or written"


def _parse(entry: dict[str, object]) -> tuple[str, dict[str, object]]:
    """A record's target name and fields; ``ValueError`` unless every field has its type and
    the target is a plain relative path (no ``..``, not absolute) inside the output folder."""
    target, size, digest, made_by = (entry[k] for k in ("target", "bytes", "sha256", "recipe"))
    if not isinstance(target, str) or not isinstance(made_by, str):
        raise ValueError("target and recipe must be strings")
    parts = PurePosixPath(target).parts
    if not parts or target.startswith("/") or any(p in (".", "..") for p in target.split("/")):
        raise ValueError(f"{target!r} is not a path inside the output folder")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("bytes must be a count")
    if not isinstance(digest, str) or len(digest) != 64 or not _HEX.issuperset(digest):
        raise ValueError("sha256 must be a lowercase SHA-256")
    return target, {"bytes": size, "sha256": digest, "recipe": made_by}

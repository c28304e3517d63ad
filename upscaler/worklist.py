"""The work list: which files to upscale and where each result goes.

Folders are walked without following directory symlinks (no loops, no escaping the tree); file
symlinks are followed only when they stay inside the folder being walked. Only regular files are
taken: a FIFO, socket or device named like an image is reported and never opened. The output
folder is never walked, so results cannot re-enter the work list.

No output may land on an input. Paths are compared as the filesystem sees them: resolved, by
file identity where they exist (so hard links, ``..`` and case variants are caught), and
case-folded where the output's filesystem folds case. A plan in which two inputs map to one
output, or an output lands on an input, is refused as a whole before anything is written. When
the output folder lies inside an input folder, the files already in it are the user's unless this
tool wrote them (``written_by_us``): an output would overwrite them, so the run is refused.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from upscaler.atomic import TEMP_MARKER, file_kind, folder_problem, is_temp_file
from upscaler.options import EXTENSIONS, FORMATS


class PlanError(Exception):
    """The run cannot start as asked (a usage error: exit code 2)."""


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    relative: Path  # of the target, inside the output folder
    format: str  # output format (Pillow name)
    found_as: Path = Path()  # the source's path relative to the input it was found in

    @property
    def name(self) -> Path:
        """What rules and map-type suffixes are matched against."""
        return self.found_as if self.found_as.parts else Path(self.source.name)


FileId = tuple[int, int]  # (device, inode)


@dataclass
class WorkList:
    jobs: list[Job] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # unreadable: these fail
    notes: list[tuple[Path, str]] = field(default_factory=list)  # links not followed, temp names
    ignored: int = 0  # files that are not images by their extension
    duplicates: int = 0  # the same file named more than once: done once
    folds_case: bool = False  # the output's filesystem ignores case in names
    source_ids: set[FileId] = field(default_factory=set)
    target_keys: dict[str, Path] = field(default_factory=dict)  # key() -> target

    def key(self, path: Path) -> str:
        """How the output's filesystem tells paths apart: resolved, case-folded if it folds."""
        text = os.path.normcase(str(_resolve(path)))
        return text.casefold() if self.folds_case else text

    def check_report(self, report: Path, inputs: list[Path], output: Path) -> None:
        """Raise ``PlanError`` unless ``report`` may be written: it must not be an input, an
        output of this run, a folder the outputs need, or anything but a regular file, and its
        folder must exist or be possible to make."""
        try:
            info = os.stat(report)
        except (FileNotFoundError, NotADirectoryError):
            info = None
        except (OSError, ValueError) as exc:
            raise PlanError(f"--report {report}: cannot be used ({exc})") from None
        why = None
        if info is not None:
            identity = (info.st_dev, info.st_ino)
            if not stat.S_ISREG(info.st_mode):
                why = f"is {file_kind(info.st_mode)}; the report must be a file"
            elif identity in self.source_ids or identity in {file_id(i) for i in inputs}:
                why = "is an input of this run; the report would overwrite it"
        key = self.key(report)
        if why is not None:
            pass
        elif key in self.target_keys:
            why = "is an output of this run"
        elif key == self.key(output) or any(t.startswith(key + os.sep) for t in self.target_keys):
            why = "is a folder the outputs of this run go into"
        elif any(key.startswith(t + os.sep) for t in self.target_keys):
            why = "lies under an output file of this run"
        else:  # a missing folder is made before the run, once every check has passed
            problem = folder_problem(_resolve(report).parent)
            why = f"its folder cannot be made: {problem}" if problem else None
        if why is not None:
            raise PlanError(f"--report {report}: {why}")


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: as written, made absolute
        return Path(os.path.abspath(path))


def file_id(path: Path, *, follow_symlinks: bool = True) -> FileId | None:
    """``path``'s (device, inode), or None where there is nothing (or nothing to stat)."""
    try:
        info = os.stat(path, follow_symlinks=follow_symlinks)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or lies under it; give both resolved (``real_path``)."""
    return path == root or root in path.parents


def real_path(path: Path) -> Path:
    """``path`` resolved as the filesystem sees it (a symlink loop: made absolute as written)."""
    return _resolve(Path(path))


def overwrites(target: Path, reads: Iterable[tuple[str, Path]]) -> tuple[str, Path] | None:
    """The first of ``reads`` (a label such as ``"the model file"``, and its path) that writing
    ``target`` would replace: the same file by identity (also through a link at ``target``, or a
    hard link), or the same resolved name, case-folded where the target's disk folds case.
    None when ``target`` replaces none of them. ``upscale``, ``upscale-review`` and
    ``upscale-train`` check every file they write besides their outputs with this."""
    target = Path(target)
    ids = {file_id(target), file_id(target, follow_symlinks=False)} - {None}
    fold = folds_case(target.parent)

    def name(path: Path) -> str:
        text = os.path.normcase(str(_resolve(path.parent) / path.name))
        return text.casefold() if fold else text

    names = {name(target), name(_resolve(target))}
    for label, other in reads:
        other = Path(other)
        if file_id(other) in ids or name(other) in names or name(_resolve(other)) in names:
            return label, other
    return None


def folds_case(folder: Path) -> bool:
    """Whether the filesystem that holds (or will hold) ``folder`` ignores case in file names.

    Asked of an entry inside the nearest existing folder (an entry's own name is looked up in
    its parent, which may be another filesystem): does its case-swapped twin name the same file?
    Without such an entry, the platform's usual answer (macOS and Windows fold case).
    """
    probe = _resolve(folder)
    while not probe.is_dir() and probe != probe.parent:
        probe = probe.parent
    try:
        with os.scandir(probe) as entries:
            for entry in entries:
                twin = entry.name.swapcase()
                if twin != entry.name:
                    try:
                        return os.path.samestat(
                            entry.stat(follow_symlinks=False), os.lstat(probe / twin)
                        )
                    except OSError:
                        return False
    except OSError:
        pass
    return sys.platform in ("darwin", "win32")


def _walk(root: Path, skip: Path, found: WorkList) -> tuple[list[tuple[Path, Path]], bool]:
    """Image files under ``root`` as (path, path relative to root); and whether the folder
    ``skip`` (the output) was met inside it."""
    files: list[tuple[Path, Path]] = []
    met_skip = False
    stack = [root]
    real_root = _resolve(root)
    while stack:
        folder = stack.pop()
        if _resolve(folder) == skip:
            met_skip = True
            continue
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            found.problems.append((folder, f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    if entry.is_dir():
                        found.notes.append((path, "folder symlink not followed"))
                        continue
                    if not inside(_resolve(path), real_root):
                        found.notes.append((path, "symlink points outside the input folder"))
                        continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                    continue
            except OSError as exc:
                found.problems.append((path, f"cannot inspect: {exc.strerror or exc}"))
                continue
            if is_temp_file(path):  # ours, left by a killed run, or a user's file named so
                found.notes.append(
                    (
                        path,
                        f"named like this tool's temporary files ({TEMP_MARKER}"
                        "...); not upscaled: rename it to include it",
                    )
                )
                continue
            if path.suffix.lower() in FORMATS:
                files.append((path, path.relative_to(root)))
            else:
                found.ignored += 1
    return files, met_skip


def _regular(path: Path, found: WorkList) -> FileId | None:
    """The file's identity if it is a regular file; otherwise a problem is noted (a FIFO would
    block whoever opens it, a device may never end) and None returned."""
    try:
        info = os.stat(path)
    except OSError as exc:
        found.problems.append((path, f"cannot read: {exc.strerror or exc}"))
        return None
    if not stat.S_ISREG(info.st_mode):
        found.problems.append((path, f"is {file_kind(info.st_mode)}, not an image file; not read"))
        return None
    return info.st_dev, info.st_ino


def build_worklist(
    inputs: list[Path],
    output: Path,
    fmt: str | None = None,
    format_for: Callable[[Path], str | None] | None = None,
    written_by_us: Callable[[Path], bool] | None = None,
    case_folding: bool | None = None,
) -> WorkList:
    """Plan every job. Raises ``PlanError`` for collisions, outputs that would hit inputs or an
    output folder that is a file.

    ``fmt``: convert every output to this format; ``format_for(relative path)``: a per-file
    format (from a rules file) that wins over ``fmt``; ``written_by_us(target)``: whether an
    existing file there is an output of an earlier run (see the module docstring);
    ``case_folding``: whether the output's disk folds case (default: ``folds_case`` asks it).
    """
    output_real = _resolve(output)
    if output.exists() and not output.is_dir():  # a file the run may read: never replaced
        raise PlanError(f"output folder {output} is a file, not a folder")
    found = WorkList(folds_case=folds_case(output) if case_folding is None else case_folding)
    pairs: list[tuple[Path, Path]] = []
    output_in_input: Path | None = None
    for item in inputs:
        if not item.exists() and not item.is_symlink():
            raise PlanError(f"{item}: no such file or folder")
        if item.is_dir():
            if _resolve(item) == output_real:
                raise PlanError(f"{item}: the output folder cannot be an input folder")
            if inside(_resolve(item), output_real):
                raise PlanError(f"{item}: input folder lies inside the output folder {output}")
            files, met_output = _walk(item, output_real, found)
            pairs += files
            if met_output or inside(output_real, _resolve(item)):
                output_in_input = output_in_input or item
        elif item.suffix.lower() in FORMATS:
            pairs.append((item, Path(item.name)))
        else:
            raise PlanError(
                f"{item}: not an image file type we read ({', '.join(sorted(FORMATS))})"
            )
    sources: list[tuple[Path, Path, FileId]] = []
    for source, found_as in pairs:
        identity = _regular(source, found)
        if identity is not None:
            sources.append((source, found_as, identity))
            found.source_ids.add(identity)
    planned: dict[str, tuple[Path, FileId]] = {}
    for source, found_as, identity in sources:
        relative = found_as
        own = FORMATS[source.suffix.lower()]
        out_format = (format_for(relative) if format_for else None) or fmt or own
        if out_format != own:
            relative = relative.with_suffix(EXTENSIONS[out_format])
        target = output / relative
        key = found.key(target)
        if key in planned:
            if planned[key][1] == identity:  # the same file named twice: done once
                found.duplicates += 1
                continue
            raise PlanError(f"{source} and {planned[key][0]} would both be written to {target}")
        _check_target(target, source, found, output_in_input, written_by_us)
        planned[key] = (source, identity)
        found.target_keys[key] = target
        found.jobs.append(Job(source, target, relative, out_format, found_as))
    found.jobs.sort(key=lambda j: str(j.relative))
    return found


def _check_target(
    target: Path,
    source: Path,
    found: WorkList,
    output_in_input: Path | None,
    written_by_us: Callable[[Path], bool] | None,
) -> None:
    """Refuse a target that is an input of this run, or (output inside an input folder) an
    existing file this tool did not write."""
    existing = file_id(target)
    if existing is None:
        return
    if existing in found.source_ids:
        raise PlanError(f"{source}: its output {target} would overwrite an input")
    if output_in_input is not None and not (written_by_us and written_by_us(target)):
        raise PlanError(
            f"{source}: its output {target} would overwrite a file inside the input folder "
            f"{output_in_input} that upscale did not write; choose an output folder outside "
            "the input folders"
        )


def shard(jobs: list[Job], index: int, count: int) -> list[Job]:
    """Every ``count``-th job starting at ``index`` (0-based), over the sorted list."""
    if count < 1 or not 0 <= index < count:
        raise PlanError(f"shard {index + 1}/{count} is out of range")
    return jobs[index::count]

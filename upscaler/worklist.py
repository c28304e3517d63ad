"""The work list: which files to upscale and where each result goes.

Folders are walked without following directory symlinks (no loops, no escaping the tree); file
symlinks are followed only when they stay inside the folder being walked. The output folder is
never walked, so results cannot re-enter the work list; a plan in which two inputs map to one
output, or an output lands on an input, is refused as a whole before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from upscaler.atomic import is_temp_file
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


@dataclass
class WorkList:
    jobs: list[Job] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # unreadable: these fail
    notes: list[tuple[Path, str]] = field(default_factory=list)  # links not followed
    ignored: int = 0  # files that are not images by their extension


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _walk(root: Path, skip: Path, found: WorkList) -> list[tuple[Path, Path]]:
    """Image files under ``root`` as (absolute path, path relative to root)."""
    files: list[tuple[Path, Path]] = []
    stack = [root]
    real_root = root.resolve()
    while stack:
        folder = stack.pop()
        if folder.resolve() == skip:
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
                    if not _inside(path.resolve(), real_root):
                        found.notes.append((path, "symlink points outside the input folder"))
                        continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                    continue
            except OSError as exc:
                found.problems.append((path, f"cannot inspect: {exc.strerror or exc}"))
                continue
            if is_temp_file(path):
                continue
            if path.suffix.lower() in FORMATS:
                files.append((path, path.relative_to(root)))
            else:
                found.ignored += 1
    return files


def build_worklist(
    inputs: list[Path],
    output: Path,
    fmt: str | None = None,
    format_for: Callable[[Path], str | None] | None = None,
) -> WorkList:
    """Plan every job. Raises ``PlanError`` for collisions or outputs that would hit inputs.

    ``fmt``: convert every output to this format; ``format_for(relative path)``: a per-file
    format (from a rules file) that wins over ``fmt``.
    """
    output_real = output.resolve()
    found = WorkList()
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        if not item.exists() and not item.is_symlink():
            raise PlanError(f"{item}: no such file or folder")
        if item.is_dir():
            if item.resolve() == output_real:
                raise PlanError(f"{item}: the output folder cannot be an input folder")
            if _inside(item.resolve(), output_real):
                raise PlanError(f"{item}: input folder lies inside the output folder {output}")
            pairs += _walk(item, output_real, found)
        elif item.suffix.lower() in FORMATS:
            pairs.append((item, Path(item.name)))
        else:
            raise PlanError(
                f"{item}: not an image file type we read ({', '.join(sorted(FORMATS))})"
            )
    targets: dict[Path, Path] = {}
    sources = {p.resolve() for p, _ in pairs}
    for source, found_as in pairs:
        relative = found_as
        own = FORMATS[source.suffix.lower()]
        out_format = (format_for(relative) if format_for else None) or fmt or own
        if out_format != own:
            relative = relative.with_suffix(EXTENSIONS[out_format])
        target = output / relative
        key = Path(os.path.normcase(target.resolve()))
        if key in targets and targets[key] != source:
            raise PlanError(f"{source} and {targets[key]} would both be written to {target}")
        if key in sources:
            raise PlanError(f"{source}: its output {target} would overwrite an input")
        targets[key] = source
        found.jobs.append(Job(source, target, relative, out_format, found_as))
    found.jobs.sort(key=lambda j: str(j.relative))
    return found


def shard(jobs: list[Job], index: int, count: int) -> list[Job]:
    """Every ``count``-th job starting at ``index`` (0-based), over the sorted list."""
    if count < 1 or not 0 <= index < count:
        raise PlanError(f"shard {index + 1}/{count} is out of range")
    return jobs[index::count]

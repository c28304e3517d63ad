"""A review page for a whole batch: one offline HTML file and a sibling folder of pictures.

``upscale ... --review review.html`` builds it after a run, ``upscale-review run.json -o
review.html`` from an earlier run's ``--report``. The page is ``review.html``; its pictures go in
``review_files/`` beside it (the page names the folder). Neither may land inside the output tree
or an input folder: the next run would walk the pictures as textures.

The page's data travels as JSON inside it and is rendered by a small script with ``textContent``,
so file names never need HTML escaping; ``string.Template`` fills the three slots of the shell.
"""

from __future__ import annotations

import html
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

from upscaler.atomic import file_kind, folder_problem
from upscaler.worklist import inside, overwrites

MARKER = ".upscale-review"  # in the pictures folder: we made it, stale pictures may go
_PICTURE = re.compile(r"^\d{5,}-[a-z-]+\.(jpg|png)$")


class ReviewError(Exception):
    """The page cannot go where asked (a usage error), or its report cannot be read."""


@dataclass(frozen=True)
class ReviewPaths:
    page: Path
    folder: Path  # the pictures, beside the page

    @classmethod
    def beside(cls, page: Path) -> ReviewPaths:
        page = Path(os.path.abspath(page))
        return cls(page, page.with_name(f"{page.stem}_files"))


def check_paths(
    page: Path,
    output_root: Path | None,
    inputs: Iterable[Path] = (),
    keep: Iterable[tuple[str, Path]] = (),
) -> ReviewPaths:
    """Where the page and its pictures go; ``ReviewError`` if that is inside the output folder,
    inside an input folder, on an input file, on one of the other files the run reads or writes
    (``keep``: label and path, e.g. ``("the model file", path)``), on anything but a new or
    regular file (a FIFO, a device), a folder not made by a review, or under a file."""
    paths = ReviewPaths.beside(page)
    real_page = paths.page.parent.resolve() / paths.page.name
    real_folder = paths.folder.parent.resolve() / paths.folder.name
    if paths.page.is_dir():
        raise ReviewError(f"review page {page} is a folder; give a file name such as review.html")
    _check_page_file(page, keep)
    roots = [("output folder", Path(output_root).resolve())] if output_root is not None else []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            roots.append(("input folder", item.resolve()))
        elif item.resolve() == real_page:
            raise ReviewError(f"review page {page} would overwrite the input {item}")
    for what, root in roots:
        for path, real in ((paths.page, real_page), (paths.folder, real_folder)):
            if inside(real, root):
                raise ReviewError(
                    f"review {'page' if path == paths.page else 'pictures'} {path} would land "
                    f"inside the {what} {root}; put the page outside it"
                )
    problem = folder_problem(real_page.parent)  # a missing folder is made before the run
    if problem is not None:
        raise ReviewError(f"review page {page}: its folder cannot be made: {problem}")
    folder = paths.folder
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir() or folder.is_symlink():
            raise ReviewError(f"{folder} (the page's pictures folder) exists and is not a folder")
        if not (folder / MARKER).is_file() and any(folder.iterdir()):
            raise ReviewError(
                f"{folder} exists and was not made by a review; choose another page name"
            )
    return paths


def _check_page_file(page: Path, keep: Iterable[tuple[str, Path]]) -> None:
    """The page replaces whatever is at its path: refuse a device or FIFO (as root, a page on
    /dev/null would replace it), and any file the run reads or writes besides."""
    try:
        info = os.lstat(page)
    except (FileNotFoundError, NotADirectoryError):  # a path under a file: said below, by name
        info = None
    except OSError as exc:
        raise ReviewError(f"review page {page}: cannot be used ({exc.strerror or exc})") from None
    if info is not None and not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
        kind = file_kind(info.st_mode)
        raise ReviewError(f"review page {page} is {kind}; the page must be a new or regular file")
    clash = overwrites(page, keep)
    if clash is not None:
        raise ReviewError(f"review page {page} would overwrite {clash[0]} {clash[1]}")


# -- entries: one per texture, from a run's results or a report -----------------------------------


def _relative_name(entry: Mapping[str, Any], output_root: Path | None) -> str:
    target = entry.get("target") or ""
    if target and output_root is not None:
        try:
            return Path(os.path.abspath(target)).relative_to(output_root).as_posix()
        except ValueError:
            pass
    return Path(target or entry.get("source") or "?").as_posix()


def _absolute(path: object) -> str:
    return os.path.abspath(str(path)) if path else ""


def entries(files: Sequence[Mapping[str, Any]], output_root: Path | None) -> list[dict[str, Any]]:
    """The page's rows from report records (``FileResult`` as dicts), paths made absolute."""
    rows = []
    for index, f in enumerate(files):
        status = str(f.get("status", ""))
        rows.append(
            {
                "id": index,
                "name": _relative_name(f, output_root),
                "source": _absolute(f.get("source")),
                "target": _absolute(f.get("target")) if status in ("done", "skipped") else "",
                "status": status,
                "reason": str(f.get("reason") or ""),
                "map": str(f.get("map") or ""),
                "alpha": str(f.get("alpha") or ""),
                "wrap": [bool(w) for w in (f.get("wrap") or [])][:2],
                "notes": [str(n) for n in f.get("notes") or []],
                "seconds": float(f.get("seconds") or 0.0),
                "model": str(f.get("model") or ""),  # set when merged reports differ
                "in": [int(v) for v in f.get("input_size") or []][:2],
                "out": [int(v) for v in f.get("output_size") or []][:2],
            }
        )
    return rows


# -- the page --------------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: object) -> str:
    """JSON that cannot close its ``<script>`` element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(rows: list[dict[str, Any]], summary: Mapping[str, Any], folder: str) -> str:
    """The page's HTML: ``rows`` from ``entries`` with their pictures, pictures in ``folder``."""
    data = {"summary": dict(summary), "folder": folder, "base": quote(folder) + "/", "rows": rows}
    title = f"Review: {len(rows)} textures"
    return Template(_asset("page.html")).substitute(
        title=html.escape(title),
        style=_asset("page.css"),
        script=_asset("page.js"),
        data=_json_for_script(data),
    )


def _picture_job(row: dict[str, Any], folder: Path, memory: int | None = None) -> None:
    from upscaler.review.pictures import Pictures, make_pictures

    wrap = (row["wrap"] + [False, False])[:2]
    try:
        pictures = make_pictures(
            row["source"],
            row["target"],
            folder,
            f"{row['id']:05d}",
            map_kind=row["map"],
            alpha_mode=row["alpha"],
            wrap=(wrap[0], wrap[1]),
            memory=memory,
        )
    except OSError:
        raise  # the pictures folder cannot be written (disk full...): the page fails
    except Exception as exc:  # one texture's pictures fail alone, never the page
        pictures = Pictures(problems=[f"no pictures: {type(exc).__name__}: {exc}"[:300]])
    row["img"] = pictures.files
    row["crop"] = pictures.crop
    row["view"], row["thumb"] = pictures.view, pictures.thumb
    problems = pictures.problems
    if row["status"] == "failed":  # its reason already says why the input did not read
        problems = [p for p in problems if not p.startswith("input cannot")]
    row["problems"] = problems


def write_review(
    paths: ReviewPaths,
    files: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    *,
    workers: int = 2,
    on_picture: Callable[[], None] | None = None,
    memory: int | None = None,
) -> int:
    """Make every texture's pictures, then write the page (atomically, last). Returns the
    number of textures on it. Raises ``OSError`` when the page or folder cannot be written.
    ``memory``: bytes all the picture workers together may use (None: no limit); a texture
    too big to picture within its worker's share is listed with that problem."""
    from upscaler.atomic import write_bytes_atomic

    output = summary.get("output")
    rows = entries(files, Path(str(output)) if output else None)
    paths.folder.mkdir(parents=True, exist_ok=True)
    (paths.folder / MARKER).write_text("pictures of the review page beside this folder\n")
    with ThreadPoolExecutor(max(1, workers), "review") as pool:
        share = None if memory is None else memory // max(1, workers)
        futures = [pool.submit(_picture_job, row, paths.folder, share) for row in rows]
        for future in futures:
            future.result()
            if on_picture is not None:
                on_picture()
    _remove_stale(paths.folder, {name for row in rows for name in row["img"].values()})
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    page = render(rows, {**summary, "reviewed": stamp}, paths.folder.name)
    write_bytes_atomic(paths.page, page.encode("utf-8"))
    return len(rows)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Pictures of an earlier, larger page in the same folder (ours by name only)."""
    for path in folder.iterdir():
        if _PICTURE.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)


# -- reports of earlier runs -----------------------------------------------------------------------


_SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    "cwd": (str,),
    "output": (str,),
    "inputs": (list,),
    "model": (str,),
    **dict.fromkeys(("done", "skipped", "failed", "total", "seconds"), (int, float)),
}
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "source": (str,),
    "target": (str,),
    "wrap": (list,),
    "notes": (list,),
    "seconds": (int, float),
    "input_size": (list,),
    "output_size": (list,),
}


def _check_types(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
    """``TypeError`` where a field the page reads has a type no report holds (a path that is
    a number, a size that is a string): a hand-edited or hostile report is one line, not a
    traceback."""

    def check(entry: Mapping[str, Any], types: Mapping[str, tuple[type, ...]]) -> None:
        for key, allowed in types.items():
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, allowed)):
                raise TypeError(key)

    check(summary, _SUMMARY_TYPES)
    if not all(isinstance(p, str) for p in summary.get("inputs") or []):
        raise TypeError("inputs")
    for record in records:
        check(record, _RECORD_TYPES)
        for key in ("input_size", "output_size"):
            if not all(type(v) is int for v in record.get(key) or []):
                raise TypeError(key)


def load_reports(reports: Sequence[Path], outputs: Path | None = None) -> tuple[list, dict]:
    """(files, summary) of one or more ``--report`` files (shards merge), paths made absolute:
    relative ones against the folder the run was started in. ``outputs``: the run's output
    folder, where it has moved since."""
    files: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for report in reports:
        try:
            data = json.loads(Path(report).read_text(encoding="utf-8"))
            part, records = data["summary"], data["files"]
            if not isinstance(part, dict) or not isinstance(records, list):
                raise TypeError
            if not all(isinstance(r, dict) for r in records):
                raise TypeError
            _check_types(part, records)
        except OSError as exc:
            raise ReviewError(f"{report}: cannot read: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError, RecursionError):  # deep nesting: not ours
            raise ReviewError(f"{report}: not a report written by upscale --report") from None
        base = Path(part.get("cwd") or Path(report).resolve().parent)
        old_root = Path(part["output"]) if part.get("output") else None
        for record in records:
            record = dict(record)
            record.setdefault("model", part.get("model"))
            for key in ("source", "target"):
                if record.get(key):
                    record[key] = os.path.abspath(base / record[key])
            if outputs is not None and old_root is not None and record.get("target"):
                try:
                    inside = Path(record["target"]).relative_to(old_root)
                    record["target"] = str(Path(os.path.abspath(outputs)) / inside)
                except ValueError:
                    pass
            files.append(record)
        for key, value in part.items():
            if key in ("done", "skipped", "failed", "total", "seconds") and key in summary:
                summary[key] = summary[key] + value
            elif key == "model" and summary.get("model") not in (None, value):
                summary["model"] = f"{summary['model']}, {value}"
            else:
                summary.setdefault(key, value)
    if outputs is not None:
        summary["output"] = os.path.abspath(outputs)
    return files, summary

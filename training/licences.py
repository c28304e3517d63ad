"""Which licence covers each file of unpacked Debian packages, from ``usr/share/doc/*/copyright``.

A package unpacked with ``dpkg -x PKG.deb DIR`` holds ``DIR/usr/share/doc/PKG/copyright``; it
covers the files under ``DIR`` (its *root*). A file takes the copyright files of the deepest root
above it; several there (two packages unpacked into one folder) leave it ambiguous, and it is
recorded as "see" all of them rather than guessed.

A machine-readable (DEP-5) copyright file is a list of ``Files:`` paragraphs with glob patterns
(``*`` matches any characters, ``/`` included; ``?`` one) and a ``License:`` short name; the last
paragraph that matches a file wins. Its patterns are paths in the *source* package, which the
installed paths rarely equal: ``share/hedgewars/Data/Graphics/*`` is installed as
``usr/share/games/hedgewars/Data/Graphics/``, SuperTux's ``data/images/...`` as
``usr/share/games/supertux2/images/...``, Minetest's ``mtg/mods/...`` as
``.../games/minetest_game/mods/...``. So a pattern matches a file when it matches the file's
path from the package root, or when the pattern with its first few directories dropped matches
the end of the path (from a ``/``): the source folder the pattern names inside (``data/``,
``mtg/``, ``share/``) is replaced by wherever the package put it. It drops as few as make it match
any of the given files at all (``hedgewars/Data/Graphics/*``, never then the looser
``Graphics/*``), and never so many that only one component or a wildcard directory is left
(``debian/*`` must not become ``*``). A pattern is never matched unchanged at the end of a path:
Hedgewars' engine sources ``hedgewars/*`` are not its installed ``.../games/hedgewars/``. A file
no specific pattern matches takes the ``Files: *`` paragraph, and its record says it fell back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DOC_GLOB = "usr/share/doc/*/copyright"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Licence:
    """``name``: the DEP-5 short name (``GPL-2+``, ``CC-BY-SA-3.0``, ``GPL-2+ or CC-BY-SA-3.0``),
    ``see <copyright path>`` when that file is not machine-readable, or ``unknown``;
    ``origin``: which copyright file (relative to the source folder) and how it matched."""

    name: str
    origin: str = ""


@dataclass(frozen=True)
class Paragraph:
    patterns: tuple[str, ...]
    licence: str


def read_paragraphs(text: str) -> list[dict[str, str]]:
    """RFC 822-style paragraphs: ``{field: value}`` with continuation lines joined by newlines."""
    paragraphs: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, name = {}, ""
        elif line[0] in " \t":
            if name:
                fields[name] += "\n" + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            name = name.strip().lower()
            fields[name] = value.strip()
    if fields:
        paragraphs.append(fields)
    return paragraphs


def parse_dep5(text: str) -> list[Paragraph] | None:
    """The ``Files`` paragraphs of a DEP-5 copyright file, in order; None if it is not one."""
    paragraphs = read_paragraphs(text)
    if not paragraphs:
        return None
    header = paragraphs[0].get("format", "").lower()
    if "copyright-format" not in header and "dep5" not in header:
        return None
    return [
        Paragraph(tuple(p["files"].split()), p.get("license", "").split("\n")[0] or UNKNOWN)
        for p in paragraphs[1:]
        if "files" in p
    ]


def _glob_regex(pattern: str) -> str:
    """A DEP-5 glob as a regular expression for one line (``\\*``, ``\\?``, ``\\\\`` escape)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif c == "*":
            out.append("[^\n]*")
        elif c == "?":
            out.append("[^\n]")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _tails(pattern: str) -> list[str]:
    """The pattern, then with 1, 2, ... leading directories dropped, while at least two
    components remain and the first of them is a plain name."""
    parts = pattern.strip("/").split("/")
    return [
        "/".join(parts[k:])
        for k in range(max(1, len(parts) - 1))
        if k == 0 or not set("*?") & set(parts[k])
    ]


def _tail_matches(tail: str, listing: str, *, anchored: bool) -> set[str]:
    """The lines of ``listing`` (paths, one a line) that ``tail`` matches whole (``anchored``)
    or that end with ``tail`` from a ``/``."""
    start = "^" if anchored else "^(?:[^\n]*/)?"
    regex = re.compile(f"{start}{_glob_regex(tail)}$", re.MULTILINE)
    return {m.group(0) for m in regex.finditer(listing)}


def match_dep5(
    paragraphs: list[Paragraph], paths: list[str], copyright_path: str
) -> dict[str, Licence]:
    """The licence of each of ``paths`` (relative to the package's root) by the rule above."""
    listing = "\n".join(paths)
    found: dict[str, Licence] = {}
    for paragraph in paragraphs:
        for pattern in paragraph.patterns:
            origin = f"{copyright_path}: Files: {pattern}"
            if pattern == "*":
                matched: set[str] = set(paths)
                origin = f"{copyright_path}: the default Files: * (no specific pattern matched)"
            else:
                matched = set()
                for k, tail in enumerate(_tails(pattern)):
                    matched = _tail_matches(tail, listing, anchored=k == 0)
                    if matched:
                        if tail != pattern:
                            origin += f" (as .../{tail})"
                        break
            for path in matched:
                found[path] = Licence(paragraph.licence, origin)
    return found


def find_copyrights(src: Path) -> list[Path]:
    """Every ``usr/share/doc/*/copyright`` under ``src`` (itself an unpacked package or a folder
    of them), sorted."""
    return sorted(
        p
        for p in src.rglob("copyright")
        if p.is_file() and p.parent.parent.parts[-3:] == ("usr", "share", "doc")
    )


def licences(
    src: str | Path, files: Iterable[Path], copyright_files: list[Path] | None = None
) -> dict[Path, Licence]:
    """The licence of each of ``files`` (under ``src``), from the copyright files under it
    (``copyright_files``: ``find_copyrights(src)``, when the caller has walked ``src`` already)."""
    src = Path(src)
    files = list(files)
    roots: dict[Path, list[Path]] = {}
    for copyright_file in find_copyrights(src) if copyright_files is None else copyright_files:
        roots.setdefault(copyright_file.parents[4], []).append(copyright_file)
    groups: dict[Path, list[Path]] = {}
    out: dict[Path, Licence] = {}
    for path in files:
        root = next((p for p in path.parents if p in roots), None)
        if root is None:
            out[path] = Licence(UNKNOWN)
        else:
            groups.setdefault(root, []).append(path)
    for root, members in groups.items():
        out.update(_package_licences(src, root, roots[root], members))
    return out


def _package_licences(
    src: Path, root: Path, copyright_files: list[Path], members: list[Path]
) -> dict[Path, Licence]:
    shown = [str(c.relative_to(src)) for c in copyright_files]
    if len(copyright_files) > 1:
        see = Licence("see " + ", ".join(shown), "several packages unpacked into one folder")
        return dict.fromkeys(members, see)
    paragraphs = parse_dep5(copyright_files[0].read_text(encoding="utf-8", errors="replace"))
    if paragraphs is None:
        return dict.fromkeys(members, Licence(f"see {shown[0]}", f"{shown[0]}: not DEP-5"))
    relative = [str(p.relative_to(root)) for p in members]
    found = match_dep5(paragraphs, [r for r in relative if "\n" not in r], shown[0])
    missing = Licence(UNKNOWN, f"{shown[0]}: no Files paragraph matched")
    return {path: found.get(rel, missing) for rel, path in zip(relative, members, strict=True)}

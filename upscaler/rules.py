"""Per-file options for a whole batch, from a TOML rules file: glob -> options.

    # rules.toml: later rules win where they set the same option
    ["*_mask.png"]              # no "/": the file name, in any folder
    map = "data"

    ["env/foliage/"]            # a folder (and everything below it)
    alpha = "cutout"

    ["ui/**/*.png"]             # "/" inside: relative to the input folder
    native = true
    seamless = "off"

Patterns match a file's path relative to the input folder it was found in, with ``/`` between
folders, ignoring case: ``*`` and ``?`` stay within one folder, ``**`` spans any number. Options
override the command line's for the files they match. Unknown options are refused with the list
of valid ones, and bad values with the rule's name.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePath
from typing import Any

from upscaler.options import FORMATS, OUTPUT_FORMATS
from upscaler.process import TextureOptions

OPTIONS = (
    "map",
    "alpha",
    "seamless",
    "native",
    "output_scale",
    "format",
    "palette",
    "dds_format",
    "dds_quality",
)
_TYPES: dict[str, tuple[type, ...]] = {
    "native": (bool,),
    "output_scale": (int, float),
}


class RulesError(ValueError):
    """The rules file cannot be used; the message is one line naming the file and the rule."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    regex: re.Pattern[str]
    options: tuple[tuple[str, Any], ...]

    def matches(self, relative: PurePath | str) -> bool:
        return self.regex.fullmatch(PurePath(relative).as_posix()) is not None


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = ()
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> Rules:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesError(f"{path}: cannot read rules file: {exc}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "rules") -> Rules:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{source}: not valid TOML: {exc}") from None
        rules = []
        for pattern, options in data.items():
            where = f"{source}: rule [{pattern!r}]"
            if not isinstance(options, dict):
                raise RulesError(f'{where}: must be a table of options, e.g. ["{pattern}"]')
            try:
                regex = glob_regex(pattern)
            except RulesError as exc:
                raise RulesError(f"{where}: {exc}") from None
            rules.append(Rule(pattern, regex, _check(options, where)))
        return cls(tuple(rules), source)

    def settings(self, relative: PurePath | str) -> dict[str, Any]:
        """The options every matching rule sets, later rules winning."""
        found: dict[str, Any] = {}
        for rule in self.rules:
            if rule.matches(relative):
                options = dict(rule.options)
                if options.get("native"):  # the later of native / output_scale wins
                    found.pop("output_scale", None)
                if options.get("output_scale") is not None:
                    found.pop("native", None)
                found.update(options)
        return found

    def options_for(self, relative: PurePath | str, base: TextureOptions) -> TextureOptions:
        return apply(base, self.settings(relative))

    def format_for(self, relative: PurePath | str) -> str | None:
        """The output format (Pillow name) a rule asks for, or None."""
        value = self.settings(relative).get("format")
        return FORMATS["." + value] if value else None


def apply(base: TextureOptions, settings: dict[str, Any]) -> TextureOptions:
    """``base`` with ``settings`` (rule options) applied; ``native`` and ``output_scale``
    replace each other."""
    names = {f.name for f in fields(TextureOptions)}
    changes = {k: v for k, v in settings.items() if k in names}
    if changes.get("native"):
        changes.setdefault("output_scale", None)
    if changes.get("output_scale") is not None:
        changes.setdefault("native", False)
        changes["output_scale"] = float(changes["output_scale"])
    return replace(base, **changes)


def _check(options: dict[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    for key, value in options.items():
        if key not in OPTIONS:
            raise RulesError(f"{where}: unknown option {key!r} (valid: {', '.join(OPTIONS)})")
        types = _TYPES.get(key, (str,))
        if not isinstance(value, types) or (key != "native" and isinstance(value, bool)):
            kind = " or ".join(t.__name__ for t in types)
            raise RulesError(f"{where}: {key} must be a {kind}, got {value!r}")
        if key == "format" and value not in OUTPUT_FORMATS:
            raise RulesError(f"{where}: format must be one of {OUTPUT_FORMATS}, got {value!r}")
    try:
        apply(TextureOptions(), options)
    except ValueError as exc:
        raise RulesError(f"{where}: {exc}") from None
    return tuple(options.items())


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a rule's glob (see the module docstring) to a case-insensitive regex."""
    p = pattern.strip().replace("\\", "/")
    if not p:
        raise RulesError('an empty pattern matches nothing; use "**" for every file')
    anchored = "/" in p.rstrip("/")
    p = p.lstrip("/")
    if p.endswith("/"):
        p += "**"
    out, i = [], 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        elif p[i] == "[" and "]" in p[i + 2 :]:
            end = p.index("]", i + 2)
            body = p[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    try:
        return re.compile(prefix + "".join(out), re.IGNORECASE)
    except re.error as exc:  # e.g. a range written backwards: [z-a]
        raise RulesError(f"pattern {pattern!r} is not a valid glob ({exc})") from None

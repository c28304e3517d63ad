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
of valid ones, and bad values with the rule's name. The file is read only if it is a regular file
of at most ``MAX_RULES_BYTES``, and globs match in time linear in the path (``Glob``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePath
from typing import Any

from upscaler.atomic import read_regular
from upscaler.options import FORMATS, OUTPUT_FORMATS
from upscaler.process import TextureOptions
from upscaler.schema import Wording, from_dict

MAX_RULES_BYTES = 1 << 20  # a rules file is a few hundred lines; /dev/zero is refused, not read


class RulesError(ValueError):
    """The rules file cannot be used; the message is one line naming the file and the rule."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    glob: Glob
    options: tuple[tuple[str, Any], ...]

    def matches(self, relative: PurePath | str) -> bool:
        return self.glob.matches(PurePath(relative).as_posix())


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = ()
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> Rules:
        try:
            text = read_regular(path, MAX_RULES_BYTES).decode("utf-8")
        except OSError as exc:
            raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise RulesError(f"{path}: cannot read rules file: {exc}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "rules") -> Rules:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{source}: not valid TOML: {exc}") from None
        except RecursionError:  # tomllib recurses once per level of nested arrays and tables
            raise RulesError(f"{source}: not valid TOML: nested too deep") from None
        rules = []
        for pattern, options in data.items():
            where = f"{source}: rule [{pattern!r}]"
            if not isinstance(options, dict):
                raise RulesError(f'{where}: must be a table of options, e.g. ["{pattern}"]')
            try:
                glob = compile_glob(pattern)
            except RulesError as exc:
                raise RulesError(f"{where}: {exc}") from None
            rules.append(Rule(pattern, glob, _check(options, where)))
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


@dataclass(frozen=True)
class RuleOptions:
    """The options one rule may set (None: left to the command line or an earlier rule)."""

    map: str | None = None
    alpha: str | None = None
    seamless: str | None = None
    native: bool | None = None
    output_scale: float | None = None
    format: str | None = None
    palette: str | None = None
    dds_format: str | None = None
    dds_quality: str | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {OUTPUT_FORMATS}, got {self.format!r}")
        apply(TextureOptions(), self.settings())

    def settings(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


OPTIONS = tuple(f.name for f in fields(RuleOptions))


class _RulesWording(Wording):
    def unknown(self, where: str, keys: list[str], valid: list[str]) -> str:
        return f"unknown option {', '.join(map(repr, keys))} (valid: {', '.join(valid)})"

    def wrong_type(self, key: str, expected: str, value: Any) -> str:
        return f"{key} must be a {expected}, got {value!r}"


def _check(options: dict[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    """The options of one rule, in the file's order, once ``RuleOptions`` has checked them."""
    try:
        checked = from_dict(RuleOptions, options, wording=_RulesWording())
    except ValueError as exc:
        raise RulesError(f"{where}: {exc}") from None
    return tuple((key, getattr(checked, key)) for key in options)


_OPTIONAL = ("star", "any", "dirs")
MAX_PATTERN = 1024  # characters in one glob: far longer than any texture path a rule names


class Glob:
    """A rule's glob, compiled to a small automaton and matched in time linear in the path.

    ``re`` backtracks: ``**/**/**/...`` against a deep path or ``*a*a*a*...b`` against a long
    name took minutes as a regex. Here every position the pattern can be in is followed at once
    (a set of states, one step per character), and each step is cached, so a path costs at most
    its length times the pattern's and a batch of similar paths mostly dictionary look-ups.
    """

    _MEMO = 4096  # cached steps kept per glob; a hostile pattern cannot grow memory without end

    def __init__(self, pattern: str, tokens: list[tuple[str, Any]]) -> None:
        self.pattern = pattern
        self._tokens = tokens
        self._accept = 2 * len(tokens)
        self._start = self._closure({0})
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def matches(self, path: str) -> bool:
        """Whether the whole of ``path`` (``/`` between folders) matches, ignoring case."""
        states = self._start
        for char in path:
            key = (states, char)
            following = self._steps.get(key)
            if following is None:
                if len(self._steps) >= self._MEMO:
                    self._steps.clear()
                following = self._steps[key] = self._step(states, char)
            if not following:
                return False
            states = following
        return self._accept in states

    # A state is 2*i "before token i" or 2*i+1 "inside the folders of a **/ at token i" (some
    # characters taken, so it may only end on a "/"); 2*len(tokens) accepts.
    def _closure(self, states: set[int]) -> frozenset[int]:
        todo, seen = list(states), set(states)
        while todo:
            state = todo.pop()
            optional = state % 2 == 0 and state < self._accept  # star, any, dirs may take nothing
            if optional and self._tokens[state // 2][0] in _OPTIONAL and state + 2 not in seen:
                seen.add(state + 2)
                todo.append(state + 2)
        return frozenset(seen)

    def _step(self, states: frozenset[int], char: str) -> frozenset[int]:
        folded, slash = _fold(char), char == "/"
        following: set[int] = set()
        for state in states:
            index = state // 2
            if state % 2:  # inside a **/: any character, and a "/" may end it
                following.add(state)
                if slash:
                    following.add(state + 1)
                continue
            if index == len(self._tokens):
                continue
            kind, value = self._tokens[index]
            if kind == "dirs":
                following.add(state + 1)
                if slash:
                    following.add(state + 2)
            elif kind == "any":
                following.add(state)
            elif kind == "star":
                if not slash:
                    following.add(state)
            elif kind == "one":
                if not slash:
                    following.add(state + 2)
            elif kind == "class":
                if value.fullmatch(char):
                    following.add(state + 2)
            elif folded == value:
                following.add(state + 2)
        return self._closure(following)


def _fold(char: str) -> str:
    """``char`` for a comparison that ignores case (one character in, one out)."""
    for folded in (char.casefold(), char.lower()):
        if len(folded) == 1:
            return folded
    return char


def compile_glob(pattern: str) -> Glob:
    """Compile a rule's glob (see the module docstring), matched ignoring case."""
    p = pattern.strip().replace("\\", "/")
    if not p:
        raise RulesError('an empty pattern matches nothing; use "**" for every file')
    if len(p) > MAX_PATTERN:
        raise RulesError(f"a pattern of {len(p):,} characters is longer than {MAX_PATTERN:,}")
    anchored = "/" in p.rstrip("/")
    p = p.lstrip("/")
    if p.endswith("/"):
        p += "**"
    tokens: list[tuple[str, Any]] = [] if anchored else [("dirs", None)]
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            tokens.append(("dirs", None))
            i += 3
        elif p.startswith("**", i):
            tokens.append(("any", None))
            i += 2
        elif p[i] == "*":
            tokens.append(("star", None))
            i += 1
        elif p[i] == "?":
            tokens.append(("one", None))
            i += 1
        elif p[i] == "[" and "]" in p[i + 2 :]:
            end = p.index("]", i + 2)
            body = p[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            try:  # one character, so no backtracking; re keeps ranges and case as they were
                tokens.append(("class", re.compile("[" + body.replace("\\", "\\\\") + "]", re.I)))
            except re.error as exc:  # e.g. a range written backwards: [z-a]
                raise RulesError(f"pattern {pattern!r} is not a valid glob ({exc})") from None
            i = end + 1
        else:
            tokens.append(("char", _fold(p[i])))
            i += 1
    return Glob(pattern, tokens)

"""Hypothesis strategies for the text files a run reads besides images: rules files (random
TOML-ish text, and well-formed rules with random globs and options, pathological globs among
them) and ``--report`` files for ``upscale-review`` (random JSON, plausible reports with wrong
types, truncated ones, deep nesting)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from upscaler.options import ALPHA_CHOICES, MAP_CHOICES, OUTPUT_FORMATS, SEAMLESS_MODES

# -- rules files --------------------------------------------------------------------------------

_TOML_BITS = ["[", "]", '"', "'", "=", "\n", "#", "{", "}", ",", ".", "*", "/", "**/", " "]
_TOML_WORDS = ["map", "alpha", "native", "true", "false", "1e309", "nan", "inf", '"""', "[[x]]"]

toml_ish = st.lists(
    st.one_of(st.sampled_from(_TOML_BITS + _TOML_WORDS), st.text(max_size=6)), max_size=60
).map("".join)

_GLOB_BITS = [
    "*",
    "**",
    "**/",
    "?",
    "/",
    "a",
    "b",
    ".png",
    "[a-c]",
    "[!x]",
    "[",
    "]",
    "\\",
    "[z-a]",
]


@st.composite
def globs(draw: st.DrawFn) -> str:
    """A random glob, or one built to make a backtracking matcher take forever."""
    n = draw(st.integers(1, 300))
    return draw(
        st.one_of(
            st.lists(st.sampled_from(_GLOB_BITS), max_size=30).map("".join),
            st.just("**/" * n + "*.png"),
            st.just("*a" * n + "*b"),
            st.just("*" * n + "b"),
            st.just("a" * (n * 8)),  # past MAX_PATTERN for the larger n
            st.text(max_size=20),
        )
    )


_VALUES: dict[str, Any] = {
    "map": st.sampled_from(MAP_CHOICES),
    "alpha": st.sampled_from(ALPHA_CHOICES),
    "seamless": st.sampled_from(SEAMLESS_MODES),
    "native": st.booleans(),
    "output_scale": st.one_of(st.integers(-2, 9), st.floats(0.0, 8.0)),
    "format": st.sampled_from(OUTPUT_FORMATS),
}
_ANY = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
)


@st.composite
def rules_files(draw: st.DrawFn) -> str:
    """Well-formed TOML: tables named by globs, each with valid or wrong options."""
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"[{json.dumps(draw(globs()))}]")
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from([*_VALUES, "tile", "bogus", "map"]))
            value = draw(st.one_of(_VALUES.get(key, _ANY), _ANY))
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


any_rules = st.one_of(toml_ish, rules_files())

# -- reports ------------------------------------------------------------------------------------

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_FIELDS = ["source", "target", "status", "reason", "input_size", "output_size", "model", "map"]
_SUMMARY = ["output", "cwd", "inputs", "model", "scale", "done", "failed", "total", "skipped"]


@st.composite
def plausible_reports(draw: st.DrawFn) -> Any:
    """A report's shape with fields of random types (a path that is a number, a size that is
    a string, a status nobody wrote)."""
    value = st.one_of(_json, st.sampled_from(["done", "failed", "skipped", "a.png", "/", ".."]))
    summary = draw(st.dictionaries(st.sampled_from(_SUMMARY), value, max_size=6))
    files = draw(st.lists(st.dictionaries(st.sampled_from(_FIELDS), value), max_size=4))
    return {"summary": summary, "files": files}


@st.composite
def reports(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["json", "plausible", "truncated", "nested"]))
    if kind == "json":
        return json.dumps(draw(_json))
    if kind == "nested":
        depth = draw(st.integers(100, 100_000))
        inner = "[" * depth + "]" * depth
        return draw(st.sampled_from([inner, f'{{"summary": {inner}, "files": []}}']))
    text = json.dumps(draw(plausible_reports()))
    if kind == "truncated":
        return text[: draw(st.integers(0, len(text)))]
    return text

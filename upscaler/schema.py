"""Plain dicts (TOML tables, JSON metadata) into frozen dataclasses, strictly.

``from_dict`` is the one loader of the training config, the architecture configs and the rules
file. It refuses keys the dataclass lacks, naming them and the valid ones; checks each value
against its field's type (``bool`` is no ``int``, an ``int`` is a ``float``, floats are finite,
a list fills a ``tuple[...]``, a table a nested dataclass); then builds the dataclass, whose own
``__post_init__`` checks ranges and choices. Every error is one line naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Wording:
    """How the errors read; the default is the training config's. Each file keeps the words its
    users (and tests) know by overriding what differs."""

    def unknown(self, where: str, keys: list[str], valid: list[str]) -> str:
        place = f"[{where}]" if where else "top level"
        return f"unknown key(s) {', '.join(keys)} in {place}; valid keys: {', '.join(valid)}"

    def wrong_type(self, key: str, expected: str, value: Any) -> str:
        return f"{key} must be {expected}, got {value!r}"


PLAIN = Wording()


def from_dict(
    cls: type[T],
    values: Any,
    where: str = "",
    *,
    wording: Wording = PLAIN,
    error: type[ValueError] = ValueError,
) -> T:
    """``cls`` built from ``values`` (a dict); ``where`` names the table in errors (keys are
    ``where.key``). Raises ``error`` with one line, or whatever ``cls.__post_init__`` raises."""
    if not isinstance(values, Mapping):
        raise error(f"[{where}] must be a table" if where else f"not a table: {values!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise error(wording.unknown(where, unknown, valid))
    kwargs = {}
    for name, value in values.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, key, wording=wording, error=error)
        else:
            kwargs[name] = _convert(value, hint, key, wording, error)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field left out
        raise error(f"[{where}]: {exc}") from None


def _convert(value: Any, hint: Any, key: str, wording: Wording, error: type[ValueError]) -> Any:
    """``value`` checked against the type ``hint``; lists become tuples, ints floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, key, wording, error)
            except error as exc:
                errors.append(str(exc))
        raise error(errors[0])
    if origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(v, str | int | float | bool) for v in value.values()
        ):
            raise error(f"{key} must be a table of plain values, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise error(f"{key} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], key, wording, error) for v in value)
        if len(value) != len(args):
            raise error(f"{key} must have {len(args)} entries, got {value!r}")
        return tuple(_convert(v, a, key, wording, error) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise error(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and type(value) is hint:
        return value
    raise error(wording.wrong_type(key, getattr(hint, "__name__", str(hint)), value))

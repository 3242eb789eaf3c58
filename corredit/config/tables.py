"""TOML tables into frozen dataclasses: type-directed conversion whose errors name the key.

Usage::

    from corredit.config.tables import _from_table, _to_plain, _Invalid
    cfg = _from_table(DataConfig, {"source": "world", "n_subjects": 8}, "data")
    _to_plain(cfg)          # a JSON-ready dict; _from_table reads it back

A field's type hint says what a value may be (``int``, ``str | None``, ``tuple[int, ...]``,
a nested dataclass, a free-form ``dict``); a bad value raises :class:`_Invalid` with the
key path (``data.n_subjects``), to which :func:`corredit.config.parse_config` adds the
file name. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import fields
from typing import Any, Mapping

__all__ = ["_Invalid", "_from_table", "_to_plain", "_plain_table", "_check", "_positive",
           "_unique", "_section", "_entry"]


class _Invalid(ValueError):
    """A bad value at a key path; :func:`parse_config` adds the file name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_describe(a) for a in parts) + (" (or omitted)" if len(parts) < len(
            typing.get_args(tp)) else "")
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return f"a list of {plural.get(inner, _describe(inner))}"
    if origin in (dict, Mapping):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except _Invalid:
                pass
        raise _Invalid(key, f"expected {_describe(tp)}, got {value!r}")
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _Invalid(key, f"expected {_describe(tp)}, got {value!r}")
        return tuple(_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Invalid(key, f"expected a table, got {value!r}")
        return _plain_table(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(key, f"expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(key, f"expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise _Invalid(key, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Invalid(key, f"expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(key, f"expected a table, got {value!r}")
        return _from_table(tp, value, key)
    raise TypeError(f"no conversion for {tp!r}")  # pragma: no cover


def _plain_table(value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready copy of a free-form table (lists stay lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(value)


def _from_table(cls: type, table: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.init and not f.name.startswith("_")]
    unknown = sorted(set(table) - set(known))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise _Invalid(f"{where}{unknown[0]}",
                       f"unknown key (known keys{' of ' + prefix if prefix else ''}: "
                       f"{', '.join(known)})")
    kwargs = {}
    for f in fields(cls):
        if f.name in table:
            key = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _convert(table[f.name], hints[f.name], key)
    missing = [f.name for f in fields(cls) if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        key = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise _Invalid(key, "required key is missing")
    try:
        return cls(**kwargs)
    except _Invalid as exc:
        if prefix and not exc.key.startswith(prefix):
            raise _Invalid(f"{prefix}.{exc.key}", str(exc).split(": ", 1)[-1]) from None
        raise


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj) if f.init
                and not f.name.startswith("_")}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise _Invalid(key, message)


def _positive(value: int | None, key: str, *, allow_zero: bool = False) -> None:
    if value is not None:
        _check(value >= (0 if allow_zero else 1), key,
               f"must be {'>= 0' if allow_zero else '>= 1'}, got {value}")


def _unique(values: tuple, key: str) -> None:
    seen = set()
    for v in values:
        _check(v not in seen, key, f"{v!r} appears twice")
        seen.add(v)


def _section(cls: type, table: Mapping[str, Any], key: str) -> Any:
    try:
        return _from_table(cls, table, "")
    except _Invalid as exc:
        raise _Invalid(f"{key}.{exc.key}" if exc.key else key,
                       str(exc)[len(exc.key) + 2:] if exc.key else str(exc)) from None


def _entry(cls: type, value: Any, key: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise _Invalid(key, f"expected a table, got {value!r}")
    return _section(cls, value, key)

"""Typed TOML: build frozen dataclasses from parsed TOML tables, checking keys and types.

The generic half of `daemon.config`: it knows nothing of sigd's sections. Every problem is
a ConfigError whose message starts with the dotted key; `daemon.config.load` adds the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


def require(cond: bool, key: str, why: str) -> None:
    """Raise ConfigError("key: why") unless `cond` (a section's `check()` uses this)."""
    # Raised without the file name; load() adds it.
    if not cond:
        raise ConfigError(f"{key}: {why}")


def build(cls: type, raw: Any, key: str, skip: tuple[str, ...] = ()) -> Any:
    """Build dataclass `cls` from a TOML table, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or '<root>'}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {name: coerce(hints[name], raw[name], f"{key}.{name}" if key else name) for name in raw}
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(key)
    return obj


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against type `tp`, converting TOML arrays to tuples and tables to dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(arm, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected an array, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return {str(k): coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")

"""Typed TOML: build frozen dataclasses from parsed TOML tables, checking keys and types.

The generic half of `daemon.config`: it knows nothing of sigd's sections. Every problem is
a ConfigError whose message starts with the dotted key; `daemon.config.load` adds the file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

# A field whose metadata holds this key may take inf and nan; every other number must be finite
# (`speed = inf` would hang a replay, `starting_balance = inf` poison every figure after it).
ALLOW_NONFINITE = "allow_nonfinite"
SHOW_CHARS = 80  # an echoed value is cut here: a 1 MB symbol must not put 1 MB on stderr
MESSAGE_CHARS = 400  # and a whole message (keys included) here


def clip(text: str, limit: int = SHOW_CHARS) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} chars)"


def show(value: Any) -> str:
    """repr(value) for an error message: one line, at most SHOW_CHARS characters."""
    return clip(repr(value))


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key.

    The message is one line of bounded length, whatever the file held (keys can be long too).
    """

    def __init__(self, message: str) -> None:
        one_line = message.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(clip(one_line, MESSAGE_CHARS))


def require(cond: bool, key: str, why: str) -> None:
    """Raise ConfigError("key: why") unless `cond` (a section's `check()` uses this)."""
    # Raised without the file name; load() adds it.
    if not cond:
        raise ConfigError(f"{clip(key)}: {clip(why, 2 * SHOW_CHARS)}")


def build(cls: type, raw: Any, key: str, skip: tuple[str, ...] = ()) -> Any:
    """Build dataclass `cls` from a TOML table, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or '<root>'}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown key {clip(where + unknown[0])} (known: {', '.join(sorted(fields))})")
    kwargs = {
        name: coerce(
            hints[name], raw[name], f"{key}.{name}" if key else name, finite=not fields[name].metadata.get(ALLOW_NONFINITE, False)
        )
        for name in raw
    }
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(key)
    return obj


def coerce(tp: Any, value: Any, key: str, finite: bool = True) -> Any:
    """Check `value` against type `tp`, converting TOML arrays to tuples and tables to dataclasses.

    With `finite` (the default) no float anywhere inside `value` may be inf or nan.
    """
    key = clip(key)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {show(value)} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(arm, value, key, finite)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {show(value)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected an array, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(coerce(item, v, f"{key}[{i}]", finite) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return {str(k): coerce(args[1], v, f"{key}.{k}", finite) for k, v in value.items()}
    if tp is Any:
        if finite:
            _require_finite(value, key)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {show(value)}")
        if finite and not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {show(value)}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _require_finite(value: Any, key: str) -> None:
    """No inf or nan anywhere inside an untyped value (arrays and tables included)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    if isinstance(value, list):
        for i, v in enumerate(value):
            _require_finite(v, f"{key}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            _require_finite(v, f"{key}.{clip(str(k))}")

"""Property-based fuzzing (hypothesis) of the config loader: whatever a file holds, `load()`
returns a Config whose every number is finite, or raises ConfigError with one bounded line
naming the file; `sigd check` then exits 2 instead of a traceback."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import typing
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.typedtoml import MESSAGE_CHARS
from tests.daemon_harness import toml_value


def _keys(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(section, key) of every scalar or array field of the config's dataclass tree."""
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _keys(tp, f"{prefix}{f.name}.")
        elif prefix:
            out.append((prefix.rstrip("."), f.name))
    return out


KEYS = _keys(config.Config)
SCALAR = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.sampled_from([math.inf, -math.inf, math.nan, 0.5, 2.0])
    | st.booleans()
    | st.text(max_size=30)
    | st.sampled_from(["ETH/USDT", "1m", "local", "cpu", "auto", "127.0.0.1", ""])
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["mtf_transformer", "cnn_lstm_attn", "x"]), inner, max_size=2)
    ),
    max_leaves=6,
)


@st.composite
def toml_text(draw: st.DrawFn) -> str:
    sections: dict[str, dict[str, Any]] = {}
    for section, key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=5, unique=True)):
        sections.setdefault(section, {})[key] = draw(VALUE)
    return "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in kv.items()) for s, kv in sections.items())


def _floats(obj: Any) -> list[float]:
    if isinstance(obj, float):
        return [obj]
    if dataclasses.is_dataclass(obj):
        return [x for f in dataclasses.fields(obj) for x in _floats(getattr(obj, f.name))]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _floats(v)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _floats(v)]
    return []


def _load(path: Path) -> None:
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        msg = str(exc)
        assert msg.startswith(str(path)) and "\n" not in msg and len(msg) <= MESSAGE_CHARS + 2, msg
        return
    assert all(math.isfinite(x) for x in _floats(cfg)), "a non-finite number got through"


def test_any_bytes_load_or_fail_cleanly() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
        def fuzz(data: bytes) -> None:
            path.write_bytes(data)
            _load(path)

        fuzz()


def test_typed_values_at_every_key_load_or_fail_cleanly() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(toml_text())
        def fuzz(text: str) -> None:
            path.write_text(text)
            _load(path)

        fuzz()

"""Configuration: `config.toml` loaded once into frozen, typed dataclasses.

Every table in the file maps to one section dataclass below. An unknown key, a value of
the wrong type or an impossible value raises ConfigError naming the file and the dotted
key; the CLI turns that into exit code 2. Secrets never live in the file: it names the
environment variables that hold them (`*_env` fields), read with `secret()`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from daemon.domain import PRIMARY_TIMEFRAMES, REFERENCE_SYMBOL, TIMEFRAME_MS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


def _require(cond: bool, key: str, why: str) -> None:
    # Raised without the file name; load() adds it.
    if not cond:
        raise ConfigError(f"{key}: {why}")


# --- sections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeConfig:
    """Which exchange endpoint to talk to and what to stream from it."""

    endpoint: Literal["local", "testnet", "live"] = "local"
    symbol: str = "ETH/USDT"
    reference_symbol: str = REFERENCE_SYMBOL
    timeframes: tuple[str, ...] = PRIMARY_TIMEFRAMES
    reference_timeframe: str = "1m"
    warmup_bars: int = 600
    api_key_env: str = "SIGD_API_KEY"
    api_secret_env: str = "SIGD_API_SECRET"
    # Seconds of silence after which a stream counts as stalled, as a multiple of its timeframe
    # (with a floor in seconds), so a 1d stream is not declared dead after 10 s.
    stall_factor: float = 3.0
    stall_floor_s: float = 10.0
    request_timeout_s: float = 10.0
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    # ccxt's client-side request throttle; keep it on against a real exchange.
    enable_rate_limit: bool = True

    def check(self, key: str) -> None:
        for tf in self.timeframes + (self.reference_timeframe,):
            _require(tf in TIMEFRAME_MS, f"{key}.timeframes", f"unknown timeframe {tf!r}")
        _require("/" in self.symbol, f"{key}.symbol", f"expected BASE/QUOTE, got {self.symbol!r}")
        _require("/" in self.reference_symbol, f"{key}.reference_symbol", "expected BASE/QUOTE")
        _require(10 <= self.warmup_bars <= 100_000, f"{key}.warmup_bars", "must be within 10..100000")
        _require(self.stall_factor > 1, f"{key}.stall_factor", "must be > 1")
        _require(self.stall_floor_s > 0, f"{key}.stall_floor_s", "must be > 0")
        _require(0 < self.backoff_base_s <= self.backoff_max_s, f"{key}.backoff_base_s", "must be > 0 and <= backoff_max_s")
        _require(self.request_timeout_s > 0, f"{key}.request_timeout_s", "must be > 0")
        _require(self.max_retries >= 0, f"{key}.max_retries", "must be >= 0")


@dataclass(frozen=True)
class LocalExchangeConfig:
    """The built-in local exchange started by `sigd run` when exchange.endpoint = "local"."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port
    tape: str = ""  # "" = the real slice bundled in daemon/localexchange/tape
    start: str = ""  # ISO instant inside the tape; "" = leave warm-up history before it
    speed: float = 1.0  # 1 = real time; 0 = as fast as possible
    seed: int = 7  # for derived 1s bars

    def check(self, key: str) -> None:
        _require(0 <= self.port <= 65535, f"{key}.port", "must be within 0..65535")
        _require(self.speed >= 0, f"{key}.speed", "must be >= 0 (0 = as fast as possible)")
        _require(self.host in ("127.0.0.1", "localhost", "::1"), f"{key}.host", "the local exchange binds loopback only")


@dataclass(frozen=True)
class StoreConfig:
    """Where the SQLite state lives."""

    path: str = "state/sigd.sqlite"

    def check(self, key: str) -> None:
        _require(bool(self.path), f"{key}.path", "must not be empty")


@dataclass(frozen=True)
class LogConfig:
    """Logging: JSON lines off a TTY (journald), readable on a TTY."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    def check(self, key: str) -> None:
        pass


@dataclass(frozen=True)
class EngineConfig:
    """Per-bar decisions: which closed bars trigger both models."""

    trigger_timeframe: str = "1m"  # closed bars of this primary-symbol timeframe trigger a decision
    strategies: tuple[str, ...] = ("confidence",)  # names of [strategy]-configured strategies

    def check(self, key: str) -> None:
        _require(self.trigger_timeframe in TIMEFRAME_MS, f"{key}.trigger_timeframe",
                 f"unknown timeframe {self.trigger_timeframe!r}")
        _require(len(self.strategies) > 0, f"{key}.strategies", "name at least one strategy")
        for name in self.strategies:
            _require(name == "confidence", f"{key}.strategies", f"unknown strategy {name!r} (known: confidence)")


@dataclass(frozen=True)
class StrategyConfig:
    """The confidence strategy's combination of the two models and the risk rules."""

    combine: Literal["both", "either", "weighted"] = "both"
    weights: dict[str, float] = field(default_factory=dict)  # model name -> weight ("weighted"); {} = equal
    min_score: float = 0.5  # |weighted score| needed for a side ("weighted")
    exit_on_flat: bool = True  # a combined FLAT closes the position
    position_fraction: float = 0.1  # entry notional as a fraction of equity
    max_position: float = 5_000.0  # cap on a position's notional, quote currency
    cooldown_bars: int = 3  # trigger bars after a trade without new entries
    stop_loss: float = 0.02  # fraction from entry; 0 = off
    take_profit: float = 0.04  # fraction from entry; 0 = off
    max_drawdown: float = 0.1  # fraction of peak equity that halts new entries; 0 = off
    allow_short: bool = True

    def check(self, key: str) -> None:
        for name, w in self.weights.items():
            _require(w >= 0, f"{key}.weights.{name}", "must be >= 0")
        _require(not self.weights or sum(self.weights.values()) > 0, f"{key}.weights", "need a positive weight")
        _require(0 < self.min_score <= 1, f"{key}.min_score", "must be within (0, 1]")
        _require(0 < self.position_fraction <= 1, f"{key}.position_fraction", "must be within (0, 1]")
        _require(self.max_position > 0, f"{key}.max_position", "must be > 0")
        _require(self.cooldown_bars >= 0, f"{key}.cooldown_bars", "must be >= 0")
        for name in ("stop_loss", "take_profit", "max_drawdown"):
            _require(0 <= getattr(self, name) < 1, f"{key}.{name}", "must be within [0, 1) (0 = off)")


@dataclass(frozen=True)
class BrokerConfig:
    """Where signals go: alerts only, the internal paper broker, or real testnet orders."""

    mode: Literal["alerts", "paper", "testnet"] = "paper"
    fee: float = 0.001  # paper: fee per side as a fraction of notional
    slippage: float = 0.0005  # paper: adverse price move per fill, fraction
    starting_balance: float = 10_000.0  # quote currency; equity before any trade
    unknown_grace_s: float = 15.0  # testnet: an order not found this long after sending was never placed

    def check(self, key: str) -> None:
        _require(0 <= self.fee < 0.1, f"{key}.fee", "must be within [0, 0.1)")
        _require(0 <= self.slippage < 0.1, f"{key}.slippage", "must be within [0, 0.1)")
        _require(self.starting_balance > 0, f"{key}.starting_balance", "must be > 0")
        _require(self.unknown_grace_s >= 0, f"{key}.unknown_grace_s", "must be >= 0")


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    local_exchange: LocalExchangeConfig = field(default_factory=LocalExchangeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    log: LogConfig = field(default_factory=LogConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    source: str = ""  # the file it came from (not a TOML key)

    def path(self, value: str) -> Path:
        """Resolve a path from the config: relative paths are relative to the config file."""
        p = Path(value).expanduser()
        if p.is_absolute() or not self.source:
            return p
        return Path(self.source).resolve().parent / p


# --- loading ------------------------------------------------------------------------------


def secret(env_name: str, what: str) -> str:
    """Read a secret from the environment; a clear error (never the value) when it is missing."""
    value = os.environ.get(env_name, "")
    if not value:
        raise ConfigError(f"{what}: environment variable {env_name} is not set")
    return value


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file; ConfigError names the file and the key on any problem."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        with p.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        cfg = _build(Config, {k: v for k, v in raw.items()}, "", skip=("source",))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return dataclasses.replace(cfg, source=str(p))


def _build(cls: type, raw: Any, key: str, skip: tuple[str, ...] = ()) -> Any:
    """Build dataclass `cls` from a TOML table, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or '<root>'}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(hints[name], raw[name], f"{key}.{name}" if key else name) for name in raw}
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(key)
    return obj


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against type `tp`, converting TOML arrays to tuples and tables to dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
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
                return _coerce(arm, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected an array, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
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

"""Configuration: `config.toml` loaded once into frozen, typed dataclasses.

Every table in the file maps to one section dataclass: here, in daemon/tradingconfig.py
and in daemon/alertsconfig.py. An unknown key, a value of
the wrong type or an impossible value raises ConfigError naming the file and the dotted
key; the CLI turns that into exit code 2. Secrets never live in the file: it names the
environment variables that hold them (`*_env` fields), read with `secret()`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# Sections split out by concept; re-exported so `from daemon.config import X` keeps working.
from daemon.alertsconfig import AlertsConfig, SignalWsConfig, TelegramConfig, WebhookConfig, is_loopback_url  # noqa: F401
from daemon.domain import PRIMARY_TIMEFRAMES, REFERENCE_SYMBOL, TIMEFRAME_MS
from daemon.tradingconfig import BrokerConfig, EngineConfig, PortfolioConfig, StrategyConfig, SymbolConfig
from daemon.typedtoml import ConfigError
from daemon.typedtoml import build as _build
from daemon.typedtoml import require as _require

__all__ = ["Config", "ConfigError", "load", "secret"]

DEFAULT_SYMBOL = "ETH/USDT"


class _Unset(tuple):  # type: ignore[type-arg]
    """An empty tuple that is not `()`: `exchange.symbols` left out, told from `symbols = []`."""


_SYMBOLS_UNSET: tuple[str, ...] = _Unset()
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"


# --- sections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeConfig:
    """Which exchange endpoint to talk to and what to stream from it."""

    endpoint: Literal["local", "testnet", "live"] = "local"
    # The traded symbols, decided together; the reference symbol is streamed once and shared
    # by all of them (it may be traded too: its stream is then not subscribed twice).
    # `symbol = "X/Y"` (the first version's key) is a one-element list.
    symbols: tuple[str, ...] = _SYMBOLS_UNSET
    symbol: str = ""  # legacy spelling of symbols = [symbol]; after loading: symbols[0]
    reference_symbol: str = REFERENCE_SYMBOL
    timeframes: tuple[str, ...] = PRIMARY_TIMEFRAMES
    reference_timeframe: str = "1m"
    warmup_bars: int = 600
    # Streams warmed up over REST at once; ccxt's limiter spaces the requests themselves.
    warmup_concurrency: int = 4
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

    def __post_init__(self) -> None:
        if self.symbols and self.symbol:
            raise ConfigError("exchange.symbol: give exchange.symbols or exchange.symbol, not both")
        if not self.symbols and self.symbols is not _SYMBOLS_UNSET:
            # An empty list is a mistake, not a request for the default symbol: trading
            # ETH/USDT nobody asked for is worse than refusing to start.
            raise ConfigError("exchange.symbols: is empty; list at least one symbol, e.g. ['ETH/USDT']")
        symbols = self.symbols or ((self.symbol,) if self.symbol else (DEFAULT_SYMBOL,))
        object.__setattr__(self, "symbols", tuple(symbols))
        object.__setattr__(self, "symbol", symbols[0])

    def check(self, key: str) -> None:
        for tf in self.timeframes + (self.reference_timeframe,):
            _require(tf in TIMEFRAME_MS, f"{key}.timeframes", f"unknown timeframe {tf!r}")
        seen: set[str] = set()
        for i, sym in enumerate(self.symbols):
            where = f"{key}.symbols[{i}]"
            _require(sym.count("/") == 1 and all(sym.split("/")), where, f"expected BASE/QUOTE, got {sym!r}")
            _require(sym not in seen, where, f"{sym!r} is listed twice")
            seen.add(sym)
        _require("/" in self.reference_symbol, f"{key}.reference_symbol", "expected BASE/QUOTE")
        _require(10 <= self.warmup_bars <= 100_000, f"{key}.warmup_bars", "must be within 10..100000")
        _require(1 <= self.warmup_concurrency <= 64, f"{key}.warmup_concurrency", "must be within 1..64")
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
    spread_bps: float = 2.0  # derived bid/ask spread around the replay price (bookTicker, depth)
    # Base URL of a `sigd local-exchange` already running (e.g. to inject faults through its
    # control endpoint while the daemon runs); "" = start one inside the daemon.
    url: str = ""

    def check(self, key: str) -> None:
        _require(
            not self.url or is_loopback_url(self.url),
            f"{key}.url",
            f"expected a loopback http:// URL of a running `sigd local-exchange`, got {self.url!r}",
        )
        _require(0 <= self.port <= 65535, f"{key}.port", "must be within 0..65535")
        _require(self.speed >= 0, f"{key}.speed", "must be >= 0 (0 = as fast as possible)")
        _require(0 <= self.spread_bps <= 1000, f"{key}.spread_bps", "must be within 0..1000")
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


# --- app: HTTP API, service lifecycle, overnight retraining ----------------------------------


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP API and dashboard (health, status, metrics, bearer-token actions), served by
    their own process; the security model and limits: docs/operations/security.md."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8787  # 0 = an ephemeral port (the bound URL is stored in kv "api_url")
    token_env: str = "SIGD_API_TOKEN"  # bearer token for POST /pause, /resume, /flat
    # A port in use: bind a free one instead (and log the URL) rather than refuse to start.
    free_port_fallback: bool = False
    # Host header names served besides loopback names, IP addresses and `host` (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 2000  # open connections (websockets included); more are cut at once
    handshake_timeout_s: float = 10.0  # a connection that sends no request in this long is cut
    idle_timeout_s: float = 75.0  # a kept-alive connection idle this long is closed
    ws_heartbeat_s: float = 20.0  # websocket ping interval; no pong within half of it: closed
    send_timeout_s: float = 10.0  # a websocket send that does not finish in this long: the page is dropped
    snapshot_max_age_s: float = 1.0  # /status and /metrics are shared by the requests of this window

    def check(self, key: str) -> None:
        _require(0 <= self.port <= 65535, f"{key}.port", "must be within 0..65535")
        # Beyond loopback only with the token set: checked at start-up, where the environment is known.
        _require(bool(self.token_env), f"{key}.token_env", "must name an environment variable")
        for i, name in enumerate(self.allowed_hosts):
            _require(
                bool(name) and all(c.isalnum() or c in ".-_" for c in name),
                f"{key}.allowed_hosts[{i}]",
                f"expected a host name such as 'sigd.example.lan' (no scheme, port or path), got {name!r}",
            )
        _require(1 <= self.max_connections <= 100_000, f"{key}.max_connections", "must be within 1..100000")
        for name in ("handshake_timeout_s", "idle_timeout_s", "ws_heartbeat_s", "send_timeout_s"):
            _require(0 < getattr(self, name) <= 3600, f"{key}.{name}", "must be within (0, 3600] seconds")
        _require(0 <= self.snapshot_max_age_s <= 60, f"{key}.snapshot_max_age_s", "must be within 0..60 seconds")


@dataclass(frozen=True)
class ModelsConfig:
    """The served models: registry name -> artifact directory (the shipped ones by default)."""

    device: str = "auto"  # "auto" = CUDA when there is one, else CPU; or "cpu", "cuda", "cuda:1"
    # CPU threads for inference. One keeps p99 low on a small shared machine: two busy
    # OpenMP threads that lose their cores stall a decision for hundreds of ms.
    threads: int = 1
    # Shadow mode: a model whose artifact has no passing `validation` block (the gate of
    # `sigd compare`) still runs and is scored, but its predictions do not trade.
    trade_only_validated: bool = True
    # Live scoring: the rolling window (scored predictions per model); a model whose macro-F1
    # over a full window falls below its persistence baseline's, or whose calls lose to
    # always-FLAT after fees, goes to shadow mode.
    score_window: int = 1440
    # The gate of `sigd compare`, `--validate` and the nightly retrain's validation
    # (daemon/research/stats.py): trades in the test window, PSR and DSR it must reach.
    gate_min_trades: int = 30
    gate_min_psr: float = 0.95
    gate_min_dsr: float = 0.95
    # The live gate on the shadow ledgers (daemon/trading/verdict.py): over the last
    # `ledger_window` decision cycles (at least `ledger_min_cycles` of them), a trading model
    # whose ledger lost money after costs goes to shadow mode; with promote_from_shadow, a model
    # in shadow mode whose ledger beat always-flat (DSR) and buy-and-hold (PSR of the excess
    # return) with gate_min_trades fills trades.
    promote_from_shadow: bool = False
    ledger_window: int = 720
    ledger_min_cycles: int = 168
    # Without a [models] table: the artifacts shipped with the package, wherever the config lives.
    paths: dict[str, str] = field(
        default_factory=lambda: {
            name: str(REPO_ROOT / "models" / "artifacts" / name) for name in ("mtf_transformer", "cnn_lstm_attn")
        }
    )

    def check(self, key: str) -> None:
        _require(bool(self.paths), f"{key}.paths", "name at least one model")
        _require(1 <= self.threads <= 256, f"{key}.threads", "must be within 1..256")
        _require(self.score_window >= 10, f"{key}.score_window", "must be >= 10 scored predictions")
        _require(self.gate_min_trades >= 1, f"{key}.gate_min_trades", "must be >= 1 trade")
        _require(self.ledger_window >= 10, f"{key}.ledger_window", "must be >= 10 decision cycles")
        _require(
            2 <= self.ledger_min_cycles <= self.ledger_window,
            f"{key}.ledger_min_cycles",
            f"must be within 2..ledger_window ({self.ledger_window}), got {self.ledger_min_cycles}",
        )
        for name in ("gate_min_psr", "gate_min_dsr"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, f"{key}.{name}", f"a probability in [0, 1), got {value}")
        _require(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            f"{key}.device",
            f"expected auto, cpu, cuda[:N] or mps, got {self.device!r}",
        )


@dataclass(frozen=True)
class ServiceConfig:
    """Lifecycle: watchdog freshness, shutdown deadline, STATUS= cadence."""

    # The watchdog is fed only while the newest closed bar arrived less than this long ago.
    stale_after_s: float = 90.0
    shutdown_deadline_s: float = 10.0
    status_interval_s: float = 15.0
    # Failed decisions in a row that turn /healthz red and stop WATCHDOG=1, so that systemd
    # restarts the service. A failed SQLite commit or refused write turns it red at once.
    max_consecutive_failures: int = 3

    def check(self, key: str) -> None:
        _require(self.stale_after_s > 0, f"{key}.stale_after_s", "must be > 0")
        _require(self.max_consecutive_failures >= 1, f"{key}.max_consecutive_failures", "must be >= 1")
        _require(self.shutdown_deadline_s > 0, f"{key}.shutdown_deadline_s", "must be > 0")
        _require(self.status_interval_s > 0, f"{key}.status_interval_s", "must be > 0")


@dataclass(frozen=True)
class RetrainConfig:
    """The overnight retraining job (APScheduler cron, UTC)."""

    enabled: bool = True
    cron: str = "30 2 * * *"  # minute hour day month day-of-week, UTC
    preset: Literal["tiny", "small", "seed"] = "small"
    epochs: int = 0  # 0 = the preset's default
    max_batches: int = 0  # training batches per epoch; 0 = all
    device: str = "cpu"  # the training subprocess's device ("auto" = the GPU when there is one)
    # The most recent stretch of stored history that neither model trained on; both are
    # scored on it and the new one is promoted only when it scores better.
    holdout_hours: float = 24.0
    # Training history before the holdout cut; what SQLite lacks is backfilled from the exchange.
    train_days: float = 7.0
    min_improvement: float = 0.0  # promote when new score > current score + this
    timeout_s: float = 3600.0
    artifacts_dir: str = "state/models"  # promoted artifacts (current and previous) live here

    def check(self, key: str) -> None:
        _require(len(self.cron.split()) == 5, f"{key}.cron", f"expected 5 crontab fields, got {self.cron!r}")
        _require(self.epochs >= 0, f"{key}.epochs", "must be >= 0")
        _require(self.max_batches >= 0, f"{key}.max_batches", "must be >= 0")
        _require(self.holdout_hours > 0, f"{key}.holdout_hours", "must be > 0")
        _require(self.train_days > 0, f"{key}.train_days", "must be > 0")
        _require(self.timeout_s > 0, f"{key}.timeout_s", "must be > 0")


@dataclass(frozen=True)
class ResearchConfig:
    """Where research and retraining jobs run (daemon/retrain/runners.py), and what `sigd tune` searches."""

    runner: Literal["local", "ray"] = "local"
    ray_address: str = ""  # "" = a local single-node Ray; "ray://head:10001" = a cluster
    num_cpus: int = 0  # local Ray: CPUs it may use; 0 = all of the machine's
    max_retries: int = 3  # Ray retries of a job whose worker died
    # `sigd tune` search space: name = [low, high] (a range; ints stay ints) or [a, b, c, ...] / strings (a choice).
    # Names: preset, epochs, horizon, label_threshold, neutral_zone, hold.
    search: dict[str, tuple[Any, ...]] = field(
        default_factory=lambda: {"horizon": (5, 30), "label_threshold": (0.001, 0.004), "hold": (1, 30)}
    )
    family_search: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)  # per family, over `search`

    def check(self, key: str) -> None:
        _require(self.num_cpus >= 0, f"{key}.num_cpus", "must be >= 0")
        _require(self.max_retries >= 0, f"{key}.max_retries", "must be >= 0")
        _require(
            not self.ray_address or "://" in self.ray_address or ":" in self.ray_address,
            f"{key}.ray_address",
            f"expected ray://host:port or host:port, got {self.ray_address!r}",
        )
        for fam, space in [("", self.search), *self.family_search.items()]:
            for name, values in space.items():
                where = f"{key}.{'family_search.' + fam + '.' if fam else 'search.'}{name}"
                _require(name in SEARCHABLE, where, f"not searchable; searchable: {', '.join(SEARCHABLE)}")
                _require(len(values) >= 1, where, "give [low, high] or a list of choices")


SEARCHABLE = ("preset", "epochs", "horizon", "label_threshold", "neutral_zone", "hold")


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    local_exchange: LocalExchangeConfig = field(default_factory=LocalExchangeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    log: LogConfig = field(default_factory=LogConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    research: ResearchConfig = field(default_factory=ResearchConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    symbols: dict[str, SymbolConfig] = field(default_factory=dict)  # per-symbol overrides
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    source: str = ""  # the file it came from (not a TOML key)

    def path(self, value: str) -> Path:
        """Resolve a path from the config: relative paths are relative to the config file."""
        p = Path(value).expanduser()
        if p.is_absolute() or not self.source:
            return p
        return Path(self.source).resolve().parent / p

    def check(self, key: str) -> None:
        """Rules across sections (each section checked its own keys already)."""
        decides, tf = self.decision_timeframe()
        _require(
            tf in self.exchange.timeframes,
            decides,
            f"{tf!r} is not streamed (exchange.timeframes: {list(self.exchange.timeframes)})",
        )
        if self.engine.portfolio:  # caps that cannot be met by this many symbols
            self.portfolio.spec(len(self.exchange.symbols))
        for sym in self.symbols:
            _require(
                sym in self.exchange.symbols,
                f"symbols.{sym}",
                f"overrides a symbol that is not traded (exchange.symbols: {list(self.exchange.symbols)})",
            )

    def decision_timeframe(self) -> tuple[str, str]:
        """(the key that sets it, the timeframe whose closed bars trigger a decision cycle)."""
        if self.engine.portfolio:
            return "portfolio.decision_timeframe", self.portfolio.decision_timeframe
        return "engine.trigger_timeframe", self.engine.trigger_timeframe

    def strategy_for(self, symbol: str) -> StrategyConfig:
        """[strategy] with the symbol's overrides applied."""
        over = self.symbols.get(symbol)
        if over is None:
            return self.strategy
        changes = {f.name: getattr(over, f.name) for f in dataclasses.fields(over) if getattr(over, f.name) is not None}
        return dataclasses.replace(self.strategy, **changes)


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
        raw = tomllib.loads(_read_text(p))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        cfg = _build(Config, {k: v for k, v in raw.items()}, "", skip=("source",))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return dataclasses.replace(cfg, source=str(p))


def _read_text(p: Path) -> str:
    """The file's text; anything but a readable UTF-8 file is a ConfigError naming it."""
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a config file") from None
    except OSError as exc:  # permission denied, I/O error, ...
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None

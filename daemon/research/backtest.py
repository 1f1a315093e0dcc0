"""`sigd backtest`: recorded bars through the very engine, models, strategies, risk rules and
paper broker the daemon runs live, with time taken from the data.

The replay does what the feed does, minus the network: warm every ring buffer with the bars
closed by `--from` (these bars only warm up), then deliver each later bar — ordered by close
instant, bars closing at the same instant in the live feed's stream order — to its ring and
then to `Engine.on_bar`, which in backtest mode awaits its decision. Nothing waits on the
wall clock and nothing opens a socket. Predictions may be computed in batches beforehand
(daemon/research/batch.py: the same windows, the same model, the same numbers); the decision path
after them is the engine's own. State goes to an in-memory SQLite store; the report is built
from the predictions, signals and fills the engine stored there.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from daemon import log as logging
from daemon.config import Config
from daemon.domain import Bar, PredictorLike, timeframe_ms
from daemon.market.bars import Buffers
from daemon.research.replay import Stream, Tape, TapeError, iso, replay_order, warmup_rows
from daemon.research.result import BacktestResult, ModelRun
from daemon.store import Store

log = logging.get("backtest")
PROGRESS_MIN_BARS = 20_000  # runs shorter than this get no progress bar


class MemorySink:
    """EventSink of a backtest: events are counted, never sent anywhere."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        """Count the event; return its id."""
        self.counts[type] = self.counts.get(type, 0) + 1
        return event_id or f"{type}-{sum(self.counts.values())}"


def live_order(cfg: Config) -> list[Stream]:
    """The streams in the order the live feed delivers bars that close at the same instant.

    The feed hands bars on in the order their closing frames arrive, and the local exchange
    sends the frames due at one instant shortest timeframe first, then by stream name
    (`btcusdt@kline_1m` before `ethusdt@kline_1m` before `ethusdt@kline_1h`). So a decision
    on the 12:00 ETH 1m bar sees BTC's 12:00 1m bar but not the ETH 1h bar that closes at
    12:00 too (that one arrives just after). A real exchange promises no order at all.
    """
    from daemon.market.feed import feed_streams

    return sorted(feed_streams(cfg.exchange), key=lambda s: (timeframe_ms(s[1]), s[0].replace("/", "").lower()))


def parse_iso(text: str, flag: str) -> int:
    """ISO 8601 (UTC when no zone is given) → ms; a clear error naming the flag."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{flag} {text!r}: not an ISO 8601 instant (e.g. 2025-06-01T00:00:00Z)") from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


@dataclass
class Plan:
    """What one replay covers: bars closing in (start_ms, end_ms] reach the engine."""

    cfg: Config
    tape: Tape
    order: list[Stream]
    trigger: Stream
    start_ms: int
    end_ms: int
    swaps: list[tuple[int, dict[str, PredictorLike]]] = field(default_factory=list)  # (from bar_ts, predictors)

    @property
    def capacity(self) -> int:
        """Ring capacity: what the feed gives every stream."""
        return self.cfg.exchange.warmup_bars

    def trigger_ts(self) -> np.ndarray:
        """Open times of the trigger bars the engine decides on."""
        rows = self.tape.streams[self.trigger]
        close = rows[:, 0].astype(np.int64) + timeframe_ms(self.trigger[1])
        return rows[(close > self.start_ms) & (close <= self.end_ms), 0].astype(np.int64)


def make_plan(cfg: Config, tape: Tape, start: str | None, end: str | None) -> Plan:
    """The period: default from the first trigger bar with a full warm-up, to the tape's end."""
    order = live_order(cfg)
    trigger = (cfg.exchange.symbol, cfg.decision_timeframe()[1])  # the portfolio strategy's, or engine's
    step = timeframe_ms(trigger[1])
    rows = tape.streams[trigger]
    first, last_close = int(rows[0, 0]), int(rows[-1, 0]) + step
    start_ms = parse_iso(start, "--from") if start else first + cfg.exchange.warmup_bars * step
    end_ms = parse_iso(end, "--to") if end else last_close
    if end_ms <= start_ms:
        raise ValueError(f"--to must be after --from (got {iso(start_ms)} >= {iso(end_ms)})")
    if start_ms >= last_close or end_ms <= first:
        raise TapeError(
            f"the period {iso(start_ms)}..{iso(end_ms)} holds no {trigger[0]} {trigger[1]} bar "
            f"(the tape covers {iso(first)}..{iso(last_close)})"
        )
    return Plan(cfg, tape, order, trigger, start_ms, end_ms)


def _warm(buffers: Buffers, plan: Plan) -> None:
    for stream in plan.order:
        ring = buffers.add(stream[0], stream[1], plan.capacity)
        for row in warmup_rows(plan.tape, stream, plan.start_ms, plan.capacity):
            ring.append_row(row)


async def replay(
    plan: Plan, predictors: Mapping[str, PredictorLike], store: Store, progress: Callable[[int], None] = lambda n: None
) -> dict[str, int]:
    """Drive the engine over the plan's bars; the engine writes to `store`. Returns event counts."""
    from daemon.trading.engine import Engine

    cfg = dataclasses.replace(plan.cfg, broker=dataclasses.replace(plan.cfg.broker, mode="paper"))
    buffers, sink = Buffers(), MemorySink()
    _warm(buffers, plan)
    engine = Engine.from_config(cfg, store=store, buffers=buffers, predictors=predictors, sink=sink, wait_for_decision=True)
    await engine.start()
    swaps = sorted(plan.swaps, key=lambda s: s[0])
    streams_idx, rows_idx = replay_order(plan.tape, plan.order, plan.start_ms, plan.end_ms)
    arrays = [plan.tape.streams.get(s) for s in plan.order]
    try:
        for k, (s, r) in enumerate(zip(streams_idx.tolist(), rows_idx.tolist())):
            symbol, timeframe = plan.order[s]
            row = arrays[s][r]
            bar = Bar(symbol, timeframe, int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))
            while swaps and (symbol, timeframe) == plan.trigger and bar.ts >= swaps[0][0]:
                for name, predictor in swaps.pop(0)[1].items():
                    engine.swap_predictor(name, predictor)
            buffers.append(bar)
            await engine.on_bar(bar)
            if k % 1000 == 999:
                progress(1000)
    finally:
        await engine.close()
    progress(len(streams_idx) % 1000)
    return {"bars_replayed": int(len(streams_idx)), "decisions": engine.decisions, **sink.counts}


def model_runs(store: Store, symbol: str, truth_of: Callable[[str, np.ndarray], np.ndarray]) -> list[ModelRun]:
    """Each model's stored predictions beside the truth `truth_of(model, bar_ts)` gives."""
    rows = store.prediction_rows(symbol)
    runs = []
    for name in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == name]
        bar_ts = np.array([r[0] for r in mine], dtype=np.int64)
        runs.append(
            ModelRun(
                name=name,
                version=",".join(sorted({r[2] for r in mine})),
                threshold=float(mine[-1][8]),
                bar_ts=bar_ts,
                probs=np.array([r[3:6] for r in mine], dtype=np.float64).reshape(-1, 3),
                side=np.array([r[6] for r in mine], dtype=np.int64),
                confidence=np.array([r[7] for r in mine], dtype=np.float64),
                truth=truth_of(name, bar_ts),
            )
        )
    return runs


def collect(
    plan: Plan, store: Store, truth_of: Callable[[str, np.ndarray], np.ndarray], counts: Mapping[str, int]
) -> BacktestResult:
    """The run as the report reads it, for the plan's trigger symbol: trigger bars of the period,
    fills, signals, predictions (a multi-symbol run is collected once per symbol)."""
    symbol = plan.trigger[0]
    rows = plan.tape.streams[plan.trigger]
    close = rows[:, 0].astype(np.int64) + timeframe_ms(plan.trigger[1])
    signals = [
        {
            "bar_ts": s.bar_ts,
            "strategy": s.strategy,
            "side": int(s.side),
            "confidence": s.confidence,
            "price": s.price,
            "reasons": "; ".join(s.reasons),
        }
        for _, s in reversed(store.signals(symbol=symbol, limit=2**31))
    ]
    b = plan.cfg.broker
    own = plan.cfg.symbols.get(symbol)
    size = own.position_fraction if own is not None and own.position_fraction is not None else plan.cfg.strategy.position_fraction
    # gaps that touch the replay or the warm-up of its slowest stream
    since = plan.start_ms - plan.capacity * max(timeframe_ms(tf) for _, tf in plan.order)
    notes = {
        **plan.tape.notes(since, plan.end_ms),
        "warmup_bars_per_stream": plan.capacity,
        "replay": dict(counts),
        "stream_order_at_equal_close": [f"{s} {tf}" for s, tf in plan.order],
    }
    return BacktestResult(
        symbol=symbol,
        timeframe=plan.trigger[1],
        bars=rows[(close > plan.start_ms) & (close <= plan.end_ms)],
        fills=store.fills(symbol=symbol),
        signals=signals,
        models=model_runs(store, symbol, truth_of),
        cash=b.starting_balance,
        fee=b.fee,
        slippage=b.slippage,
        notes=notes,
        position_fraction=float(size),
    )


def gate_notes(predictors: Mapping[str, Any]) -> dict[str, str]:
    """{model: why} for each model whose artifact did not pass the gate: the daemon (trading only
    validated models, its default) would not trade it, whatever this backtest shows."""
    from daemon.trading.scoring import validation_verdict

    out = {}
    for name, p in predictors.items():
        passed, why = validation_verdict(getattr(p, "meta", None))
        if not passed:
            out[name] = why
    return out


def artifact_dirs(cfg: Config, model_dir: str | None) -> dict[str, Path]:
    """{model name: artifact dir}: --model-dir (one artifact, or a folder of them), else the config's."""
    if model_dir:
        root = Path(model_dir)
        if (root / "artifact.json").is_file():
            return {root.name: root}
        found = {p.name: p for p in sorted(root.iterdir()) if (p / "artifact.json").is_file()} if root.is_dir() else {}
        if not found:
            raise ValueError(f"--model-dir {root}: no artifact (a folder with artifact.json) in it")
        # the daemon asks its models in the config's order (it shows in every signal's reasons)
        configured = list(getattr(getattr(cfg, "models", None), "paths", {}) or {})
        return {
            n: found[n] for n in sorted(found, key=lambda n: (configured.index(n) if n in configured else len(configured), n))
        }
    paths = getattr(getattr(cfg, "models", None), "paths", None)
    if paths:
        return {name: cfg.path(p) for name, p in paths.items()}
    from pipeline.train import REPO

    shipped = REPO / "models" / "artifacts"
    return {p.name: p for p in sorted(shipped.glob("*")) if (p / "artifact.json").is_file()}


def load_predictors(dirs: Mapping[str, Path], device: str = "cpu") -> dict[str, Any]:
    """Predictor per artifact dir, keyed by the model name the artifact declares."""
    from pipeline.predictor import Predictor

    out = {}
    for where in dirs.values():
        p = Predictor.load(where, device=device)
        out[p.name] = p
    return out


def batched(
    plan: Plan,
    predictors: Mapping[str, Any],
    bar_ts: np.ndarray,
    workers: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, PredictorLike]:
    """PrecomputedPredictor per model, its table filled by predict_batch over `bar_ts` (in
    `workers` processes; default: the cores this process may use)."""
    from daemon.research.batch import PrecomputedPredictor, WindowIndex, default_workers, precompute_parallel

    index = WindowIndex(plan.tape, plan.order, plan.trigger, plan.capacity)
    n = batch_workers(predictors, workers, default_workers())
    out: dict[str, PredictorLike] = {}
    for name, p in predictors.items():
        out[name] = PrecomputedPredictor(p, precompute_parallel(p, index, bar_ts, n, progress=progress))
    return out


def batch_workers(predictors: Mapping[str, Any], workers: int | None, default: int) -> int:
    """Processes for batched inference: a GPU batches by itself (and CUDA does not survive a fork)."""
    on_gpu = any(str(getattr(p, "device", "cpu")) != "cpu" for p in predictors.values())
    return 1 if on_gpu else (default if workers is None else workers)


def batched_portfolio(
    plan: Plan, predictors: Mapping[str, Any], workers: int | None = None, progress: Callable[[int], None] = lambda n: None
) -> dict[str, PredictorLike]:
    """PortfolioPredictor per model: a precomputed table per traded symbol, each built from
    that symbol's windows as the engine would copy them (the engine asks by symbol)."""
    from daemon.research.batch import PortfolioPredictor, WindowIndex, default_workers, precompute_parallel

    n = batch_workers(predictors, workers, default_workers())
    tables: dict[str, dict[str, Any]] = {name: {} for name in predictors}
    for symbol in plan.cfg.exchange.symbols:
        mine = dataclasses.replace(plan, trigger=(symbol, plan.trigger[1]))
        index = WindowIndex(plan.tape, plan.order, mine.trigger, plan.capacity)
        for name, p in predictors.items():
            tables[name][symbol] = precompute_parallel(p, index, mine.trigger_ts(), n, progress=progress)
    return {name: PortfolioPredictor(p, tables[name]) for name, p in predictors.items()}


def truth_function(plan: Plan, predictors: Mapping[str, Any]) -> Callable[[str, np.ndarray], np.ndarray]:
    """truth(model, bar_ts) → class per bar from the artifact's target definition (-1 = unknown).

    Computed on the period's trigger bars only (at a longer decision timeframe, the 1m bar that
    closes with each decision bar), so the truth of the last `horizon` bars (which would need
    bars after --to) is unknown and left out of the classification scores.
    """
    from daemon.trading.portfoliocycle import MODEL_TIMEFRAME
    from models.targets import TargetSpec, labels

    # At a decision timeframe longer than the models' own (1m), a prediction is stored under its
    # decision bar but was made at the 1m bar that closes with it, and its target counts 1m bars:
    # its truth is that 1m bar's label, looked up under the decision bar.
    symbol, decision = plan.trigger
    own = (symbol, MODEL_TIMEFRAME)
    source = plan.trigger if decision == MODEL_TIMEFRAME or own not in plan.tape.streams else own
    shift = timeframe_ms(decision) - timeframe_ms(source[1])  # decision bar open -> its last model bar's open
    rows = plan.tape.streams[source]
    close_ts = rows[:, 0].astype(np.int64) + timeframe_ms(source[1])
    period = rows[(close_ts > plan.start_ms) & (close_ts <= plan.end_ms)]
    ts = period[:, 0].astype(np.int64) - shift
    cache: dict[str, np.ndarray] = {}
    for name, p in predictors.items():
        spec = TargetSpec.from_dict(p.meta["target"])
        cache[name] = labels(period[:, 4], spec) if spec.mode == "classification" else np.full(len(ts), -1)

    def truth(name: str, bar_ts: np.ndarray) -> np.ndarray:
        y = cache.get(name)
        if y is None or not len(ts):
            return np.full(len(bar_ts), -1, dtype=np.int64)
        idx = np.clip(np.searchsorted(ts, bar_ts), 0, len(ts) - 1)
        return np.where(ts[idx] == bar_ts, y[idx], -1).astype(np.int64)

    return truth


class Progress:
    """A tqdm bar on stderr for long runs on a terminal; silent otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool | None = None) -> None:
        on = enabled if enabled is not None else (total >= PROGRESS_MIN_BARS and sys.stderr.isatty())
        self.bar = None
        if on:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="bar", mininterval=0.5, file=sys.stderr)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """End the bar."""
        if self.bar is not None:
            self.bar.close()


def run_backtest(
    plan: Plan, predictors: Mapping[str, Any], *, batch: bool = True, workers: int | None = None, progress: bool | None = None
) -> BacktestResult:
    """One backtest over the plan with the given (loaded) predictors (the first symbol's result
    when the config trades several; see run_portfolio)."""
    return run_portfolio(plan, predictors, batch=batch, workers=workers, progress=progress)[0]


def run_portfolio(
    plan: Plan, predictors: Mapping[str, Any], *, batch: bool = True, workers: int | None = None, progress: bool | None = None
) -> list[BacktestResult]:
    """One backtest of every symbol the config trades, through one engine (one portfolio);
    a result per symbol, in the config's order. With `batch`, every symbol's predictions are
    computed up front (a table per symbol); the engine's cycles then ask the tables by symbol.
    """
    symbols = plan.cfg.exchange.symbols
    serving: Mapping[str, PredictorLike] = predictors
    # The tables are keyed by the trigger bar; at a decision timeframe longer than the models'
    # 1m the engine asks them at the newest 1m bar instead: ask the models cycle by cycle.
    batch = batch and plan.trigger[1] == "1m"
    if batch and len(symbols) > 1:
        bar = Progress(
            sum(len(dataclasses.replace(plan, trigger=(s, plan.trigger[1])).trigger_ts()) for s in symbols) * len(predictors),
            "inference",
            progress,
        )
        serving = batched_portfolio(plan, predictors, workers, bar)
        bar.close()
    elif batch:
        bar_ts = plan.trigger_ts()
        bar = Progress(len(bar_ts) * len(predictors), "inference", progress)
        serving = batched(plan, predictors, bar_ts, workers, bar)
        bar.close()
    store = Store(":memory:")
    try:
        total = len(replay_order(plan.tape, plan.order, plan.start_ms, plan.end_ms)[0])
        bar = Progress(total, "replay", progress)
        counts = asyncio.run(replay(plan, serving, store, bar))
        bar.close()
        results = []
        for symbol in symbols:
            mine = dataclasses.replace(plan, trigger=(symbol, plan.trigger[1]))
            results.append(collect(mine, store, truth_function(mine, predictors), counts))
        return results
    finally:
        store.close()


def backtest_command(args: argparse.Namespace) -> int:
    """`sigd backtest`: replay, print the summary, write the report when --report is given."""
    from daemon import config as config_mod
    from daemon.research.replay import load_streams
    from daemon.research.report import summarize, terminal_summary, write_report

    cfg = config_mod.load(args.config)
    # Per-signal info lines would drown the terminal in a long replay; warnings still show.
    logging.setup("debug" if cfg.log.level == "debug" else "warning", cfg.log.format)
    try:
        report_dir(args.report)
        cfg = with_symbols(cfg, getattr(args, "symbols", None))
        trigger = (cfg.exchange.symbol, cfg.decision_timeframe()[1])
        tape = load_streams(Path(args.data), live_order(cfg), trigger)
        missing = [s for s in cfg.exchange.symbols if (s, trigger[1]) not in tape.streams]
        if missing:  # e.g. the shipped five symbols against a BTC/ETH-only data directory
            raise ValueError(f"{args.data}: no {trigger[1]} bars of {', '.join(missing)}; choose others with --symbols")
        plan = make_plan(cfg, tape, args.start, args.end)
        if args.walk_forward:
            from daemon.research.walkforward import run_walk_forward

            result = run_walk_forward(plan, Path(args.data), args.walk_forward, artifact_dirs(cfg, args.model_dir))
        else:
            device = getattr(getattr(cfg, "models", None), "device", "cpu")
            predictors = load_predictors(artifact_dirs(cfg, args.model_dir), device=device)
            results = run_portfolio(plan, predictors, batch=not getattr(args, "bar_by_bar", False))
            notes = gate_notes(predictors)
            for r in results:
                r.gate = notes
            if len(results) > 1:
                return print_portfolio(results, args.report, plan)
            result = results[0]
    except (OSError, ValueError) as exc:  # TapeError, ArtifactError and bad flags are ValueErrors
        print(f"sigd backtest: {exc}", file=sys.stderr)
        return 1
    summary = write_report(result, Path(args.report)) if args.report else summarize(result)
    print(terminal_summary(summary))
    if args.report:
        print(f"\nreport: {Path(args.report) / 'report.md'}")
    return 0


def report_dir(report: str | None) -> None:
    """Make --report DIR before the run, so an unwritable one fails at once, in one line (OSError)."""
    if not report:
        return
    try:
        Path(report).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"--report {report}: {exc.strerror or exc}") from None
    try:  # a real probe: os.access says yes to root on a read-only mount
        tempfile.TemporaryFile(dir=report).close()
    except OSError as exc:
        raise OSError(f"--report {report}: cannot write in it: {exc.strerror or exc}") from None


def with_symbols(cfg: Config, symbols: str | None) -> Config:
    """The config trading `--symbols A,B,C` instead of exchange.symbols (None: unchanged)."""
    if not symbols:
        return cfg
    names = tuple(s.strip() for s in symbols.split(",") if s.strip())
    if not names or any("/" not in n for n in names):
        raise ValueError(f"--symbols {symbols!r}: expected BASE/QUOTE names separated by commas, e.g. ETH/USDT,XRP/USDT")
    if len(set(names)) != len(names):  # the reference symbol may be traded too
        raise ValueError(f"--symbols {symbols!r}: a symbol is listed twice")
    exchange = dataclasses.replace(cfg.exchange, symbols=names, symbol="")
    overrides = {k: v for k, v in cfg.symbols.items() if k in names}
    return dataclasses.replace(cfg, exchange=exchange, symbols=overrides)


def portfolio_book(plan: Plan, results: Sequence[BacktestResult]) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """The strategy's book beside the portfolio baselines, sized by the same PortfolioSpec and
    charged the same costs at the decision timeframe (daemon/research/portfolio_report.py):
    (the JSON summary, {run: PortfolioResult}, the decision closes' instants)."""
    from daemon.research import portfolio_report
    from daemon.trading.wiring import book_spec

    cfg, tf = plan.cfg, plan.trigger[1]
    step = timeframe_ms(tf)
    symbols = [r.symbol for r in results]
    ts, close = portfolio_report.decision_closes(
        {s: plan.tape.streams[(s, tf)] for s in symbols}, symbols, step, plan.start_ms, plan.end_ms
    )
    first = int(np.searchsorted(ts + step, plan.start_ms, side="right"))  # the first close inside the period
    spec, rate = book_spec(cfg), cfg.broker.fee + cfg.broker.slippage
    weights = portfolio_report.held_weights(ts[first:], close[first:], step, [r.fills for r in results], results[0].cash)
    runs = portfolio_report.book_results(ts, close, first, weights, spec, rate, step)
    return portfolio_report.book_summary(runs, spec, rate), runs, ts[first:] + step


def print_portfolio(results: Sequence[BacktestResult], report: str | None, plan: Plan | None = None) -> int:
    """Each symbol's summary (and report under REPORT/<BASE>_<QUOTE>/) of a multi-symbol run,
    then the portfolio total from the engine's fills and, given the plan, the book beside every
    portfolio baseline at the same sizing and costs (REPORT/portfolio.json,
    REPORT/portfolio_exposure.csv: exposure, turnover and costs over time)."""
    import json

    from daemon.research.report import (
        gate_lines,
        portfolio_summary,
        portfolio_terminal,
        summarize,
        terminal_summary,
        write_report,
    )

    gate = {"gate": dict(results[0].gate)} if results and results[0].gate else {}
    notes = gate_lines(gate)  # the models the daemon would not trade: first and last on the screen
    for line in notes:
        print(line)
    for result in results:
        out = Path(report) / result.symbol.replace("/", "_") if report else None
        print(f"\n== {result.symbol} ==")
        print(terminal_summary(write_report(result, out) if out else summarize(result)))
        if out:
            print(f"report: {out / 'report.md'}")
    total = {**portfolio_summary(results), **gate}
    runs: dict[str, Any] = {}
    if plan is not None:
        total["book"], runs, closes = portfolio_book(plan, results)
    print("\n== portfolio ==")
    for line in notes:
        print(line)
    print(portfolio_terminal(total))
    if report:
        (Path(report) / "portfolio.json").write_text(json.dumps(total, indent=2) + "\n")
        print(f"report: {Path(report) / 'portfolio.json'}")
        if runs:
            from daemon.research.portfolio_report import write_exposure

            write_exposure(runs, closes, Path(report) / "portfolio_exposure.csv")
            print(f"exposure over time: {Path(report) / 'portfolio_exposure.csv'}")
    return 0

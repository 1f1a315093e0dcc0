"""Shadow ledgers: for every served model (trading or in shadow mode) a paper book of what it
would have done on its own, next to an always-flat and a buy-and-hold book over the same cycles.

Each book is kept in weights of its own equity, exactly as the research backtests keep one
(strategies/portfolio.py: `drift`, `target_weights`, `rebalance_cost`), so a ledger equals a
backtest of the same model over the same bars:

1. at each decision cycle, the weights held drift with the returns of the cycle's closes
   against the previous cycle's closes, and the equity moves with them;
2. the model's scores for the cycle (its own P(long) - P(short)) become target weights through
   the same construction as the live book (`spec`);
3. the move to the targets fills at the cycle's closes (the quote at the decision) and pays the
   one-way cost rate (fee + slippage) on the notional traded.

Per book: signals (weight changes), fills, positions (weights and base amounts), equity, peak,
max drawdown, turnover and costs, and each of the last `history` cycles' net return and fills
(the record the live gate reads: daemon/trading/verdict.py). Always-flat stays at the starting
balance; buy-and-hold buys equal weights (gross_cap / N) at its first cycle and never trades again.

No churn: a book does not trade a weight whose target barely moved (the construction's
`no_trade_band`; exits are never held back). A book of calls (`by_side`, the per-symbol
confidence strategy) holds a position until its call changes, as the live per-symbol book
holds its amount: its band is at least half a position, so drift alone never trades it, while
an entry, an exit or a reversal always does.
"""

from __future__ import annotations

import base64
import json
import math
from collections import deque
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from daemon import events
from daemon.domain import Prediction, Side
from strategies.portfolio import PortfolioSpec, drift, rebalance_cost, target_weights, turnover

FLAT, HOLD = "always_flat", "buy_and_hold"  # the two baseline books
KV_LEDGERS = "shadow.ledgers"  # the books, so a restart goes on with them
CURVE_POINTS = 240  # equity points kept per book for the status and the dashboard
HISTORY = 720  # cycles of per-cycle return and fills kept per book (the live gate's record)


def _pack(values: np.ndarray) -> str:
    return base64.b64encode(values.tobytes()).decode("ascii")


def _unpack(text: str | None, dtype: type) -> np.ndarray:
    """Inverse of _pack; books kept before the per-cycle record have none (empty)."""
    return np.frombuffer(base64.b64decode(text), dtype=dtype) if text else np.zeros(0, dtype=dtype)


def _side(weight: float) -> str:
    return Side.LONG.name if weight > 0 else Side.SHORT.name if weight < 0 else Side.FLAT.name


def model_scores(predictions: Sequence[Prediction], by_side: bool) -> float:
    """One model's score for one symbol: P(long) - P(short), or with `by_side` its thresholded
    call (+1 LONG, -1 SHORT, 0 FLAT; the per-symbol confidence strategy trades on calls)."""
    if not predictions:
        return math.nan
    p = predictions[0]
    if by_side:
        return 1.0 if p.side == Side.LONG else -1.0 if p.side == Side.SHORT else 0.0
    return float(p.probs[2] - p.probs[0])


@dataclass
class Book:
    """One paper book in weights of its equity."""

    name: str
    equity: float
    weights: np.ndarray
    peak: float = 0.0
    max_drawdown: float = 0.0
    turnover: float = 0.0
    costs: float = 0.0
    signals: int = 0
    fills: int = 0
    cycles: int = 0
    curve: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=CURVE_POINTS))
    last_signals: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10))
    # per cycle, oldest first: the net return (after costs) and the fills of that cycle
    returns: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    trades: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY))
    _opened: float = 0.0  # equity at the start of the cycle in progress
    _fills_before: int = 0

    def mark(self, returns: np.ndarray) -> None:
        """Prices moved by `returns` since the last cycle: equity and weights drift."""
        self._opened, self._fills_before = self.equity, self.fills
        self.equity *= 1.0 + float((self.weights * np.nan_to_num(returns)).sum())
        self.weights = drift(self.weights, returns)

    def trade(
        self, target: np.ndarray, rates: np.ndarray, ts: int, symbols: Sequence[str], prices: np.ndarray
    ) -> list[dict[str, Any]]:
        """Fill the move to `target` at the cycle's prices, paying `rates` on the notional.
        Returns the symbols whose side changed (entered, left or reversed), for the alerts."""
        moved = np.abs(target - self.weights) > 1e-12
        flipped = [
            {
                "symbol": symbols[i],
                "bar_ts": ts,
                "side": _side(float(target[i])),
                "weight": round(float(target[i]), 6),
                "prev_weight": round(float(self.weights[i]), 6),
                "price": float(prices[i]),
            }
            for i in np.flatnonzero(moved & (np.sign(target) != np.sign(self.weights)) & np.isfinite(prices)).tolist()
        ]
        if moved.any():
            cost = rebalance_cost(self.weights, target, rates)
            self.turnover += turnover(self.weights, target)
            self.costs += cost * self.equity
            self.equity *= 1.0 - cost
            self.signals += int(moved.sum())
            self.fills += int(moved.sum())
            for i in np.flatnonzero(moved).tolist():
                self.last_signals.append(
                    {"bar_ts": ts, "symbol": symbols[i], "weight": round(float(target[i]), 6), "price": float(prices[i])}
                )
        self.weights = target.copy()
        return flipped

    def close_cycle(self, ts: int) -> None:
        self.cycles += 1
        self.returns.append(self.equity / self._opened - 1.0 if self._opened > 0 else 0.0)
        self.trades.append(self.fills - self._fills_before)
        self.peak = max(self.peak, self.equity)
        if self.peak > 0:
            self.max_drawdown = max(self.max_drawdown, 1.0 - self.equity / self.peak)
        self.curve.append((ts, round(self.equity, 6)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (the store keeps it between runs)."""
        return {
            "equity": self.equity,
            "weights": self.weights.tolist(),
            "peak": self.peak,
            "max_drawdown": self.max_drawdown,
            "turnover": self.turnover,
            "costs": self.costs,
            "signals": self.signals,
            "fills": self.fills,
            "cycles": self.cycles,
            "curve": list(self.curve),
            "last_signals": list(self.last_signals),
            # the per-cycle record packed (exact float64 / int32 bytes in base64): a list of 720
            # JSON floats per book costs milliseconds to write at every cycle
            "returns": _pack(np.fromiter(self.returns, dtype=np.float64, count=len(self.returns))),
            "trades": _pack(np.fromiter(self.trades, dtype=np.int32, count=len(self.trades))),
        }

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any], history: int = HISTORY) -> Book:
        """Inverse of to_dict (books kept before the per-cycle record start it empty)."""
        book = cls(
            name,
            float(raw["equity"]),
            np.asarray(raw["weights"], dtype=np.float64),
            float(raw["peak"]),
            float(raw["max_drawdown"]),
            float(raw["turnover"]),
            float(raw["costs"]),
            int(raw["signals"]),
            int(raw["fills"]),
            int(raw["cycles"]),
        )
        book.curve.extend(tuple(p) for p in raw["curve"])  # type: ignore[misc]
        book.last_signals.extend(raw["last_signals"])
        returns, trades = _unpack(raw.get("returns"), np.float64), _unpack(raw.get("trades"), np.int32)
        book.returns = deque((float(r) for r in returns), maxlen=history)
        book.trades = deque((int(t) for t in trades), maxlen=history)
        return book

    def status(self, symbols: Sequence[str], prices: np.ndarray | None, starting: float) -> dict[str, Any]:
        amounts = {}
        if prices is not None:
            for i, s in enumerate(symbols):
                if self.weights[i] and prices[i] > 0:
                    amounts[s] = {
                        "weight": round(float(self.weights[i]), 6),
                        "amount": float(self.weights[i] * self.equity / prices[i]),
                    }
        return {
            "equity": round(self.equity, 4),
            "pnl": round(self.equity - starting, 4),
            "return": round(self.equity / starting - 1.0, 6),
            "drawdown": round(1.0 - self.equity / self.peak, 6) if self.peak > 0 else 0.0,
            "max_drawdown": round(self.max_drawdown, 6),
            "turnover": round(self.turnover, 6),
            "costs": round(self.costs, 4),
            "signals": self.signals,
            "fills": self.fills,
            "cycles": self.cycles,
            "positions": amounts,
            "last_signals": list(self.last_signals),
            "equity_curve": list(self.curve),
        }


class ShadowLedgers:
    """Every model's book and the two baselines, advanced once per decision cycle."""

    def __init__(
        self,
        symbols: Sequence[str],
        spec: PortfolioSpec,
        *,
        periods_per_year: float,
        cost_rate: float,
        starting_balance: float,
        by_side: bool = False,
        history: int = HISTORY,
    ) -> None:
        self.symbols = tuple(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if by_side and spec.no_trade_band < spec.max_weight / 2.0:
            # a call's position is held until the call changes: drift alone never trades it
            spec = replace(spec, no_trade_band=spec.max_weight / 2.0)
        self.spec, self.periods_per_year, self.by_side = spec, periods_per_year, by_side
        self.history = history
        self.rates = np.full(len(self.symbols), cost_rate)
        self.starting = starting_balance
        self.books: dict[str, Book] = {}
        self.loaded_cycles: dict[str, int] = {}  # each book's cycles when a previous run's books were loaded
        self.prev: np.ndarray = np.full(len(self.symbols), np.nan)  # each symbol's last decision close
        for name in (FLAT, HOLD):
            self._book(name)

    def _book(self, name: str) -> Book:
        if name not in self.books:
            book = Book(name, self.starting, np.zeros(len(self.symbols)), peak=self.starting)
            book.returns, book.trades = deque(maxlen=self.history), deque(maxlen=self.history)
            self.books[name] = book
        return self.books[name]

    def on_cycle(
        self, ts: int, closes: Mapping[str, float], predictions: Mapping[str, Sequence[Prediction]]
    ) -> list[dict[str, Any]]:
        """One decision cycle: `closes` and every model's `predictions` per symbol decided now.
        Returns the models' shadow signals (a side change in a symbol, with "model"), baselines left out."""
        signals: list[dict[str, Any]] = []
        prices = self.prev.copy()
        for s, c in closes.items():
            if s in self.index:
                prices[self.index[s]] = c
        returns = np.where(np.isfinite(self.prev) & np.isfinite(prices), prices / self.prev - 1.0, 0.0)
        models = sorted({p.model for ps in predictions.values() for p in ps})
        for name in models:
            self._book(name)
        for name, book in self.books.items():
            book.mark(returns)
            if name == HOLD:
                if book.cycles == 0:
                    book.trade(self._hold_target(prices), self.rates, ts, self.symbols, prices)
            elif name != FLAT:
                scores = np.full(len(self.symbols), np.nan)
                for s, ps in predictions.items():
                    if s in self.index:
                        scores[self.index[s]] = model_scores([p for p in ps if p.model == name], self.by_side)
                target = target_weights(scores, book.weights, None, self.spec, self.periods_per_year)
                signals += [{"model": name, **s} for s in book.trade(target, self.rates, ts, self.symbols, prices)]
            book.close_cycle(ts)
        self.prev = prices
        return signals

    def _hold_target(self, prices: np.ndarray) -> np.ndarray:
        known = np.isfinite(prices)
        target = np.zeros(len(self.symbols))
        if known.any():
            target[known] = min(self.spec.gross_cap, 1.0) / int(known.sum())
        return target

    def save(self, store: Any) -> None:
        """Keep the books in the store (one kv row, its own commit)."""
        raw = {
            "symbols": list(self.symbols),
            "starting": self.starting,
            "prev": [None if not math.isfinite(p) else p for p in self.prev.tolist()],
            "books": {n: b.to_dict() for n, b in self.books.items()},
        }
        with store.transaction():
            store.set_kv(KV_LEDGERS, json.dumps(raw))

    def load(self, store: Any) -> bool:
        """Go on with the books a previous run kept, when it traded the same symbols from the
        same balance; False (fresh books) otherwise."""
        text = store.get_kv(KV_LEDGERS)
        if not text:
            return False
        raw = json.loads(text)
        if raw.get("symbols") != list(self.symbols) or raw.get("starting") != self.starting:
            return False
        self.prev = np.array([math.nan if p is None else p for p in raw["prev"]], dtype=np.float64)
        self.books = {n: Book.from_dict(n, b, self.history) for n, b in raw["books"].items()}
        self.loaded_cycles = {n: b.cycles for n, b in self.books.items()}
        return True

    def brief(self) -> dict[str, str]:
        """Each book's equity and shadow fills so far, for the cycle's log line."""
        return {n: f"{b.equity:.2f} ({b.fills} fills)" for n, b in self.books.items()}

    def status(self) -> dict[str, Any]:
        """Per book: equity, PnL, drawdown, turnover, positions, recent signals, equity curve."""
        prices = self.prev if np.isfinite(self.prev).any() else None
        return {
            "starting_balance": self.starting,
            "books": {n: b.status(self.symbols, prices, self.starting) for n, b in self.books.items()},
        }


def publish_signals(sink: Any, store: Any, signals: Sequence[Mapping[str, Any]], shadowed: Container[str]) -> None:
    """Queue a cycle's shadow signals on the alert outbox (`sink`; call inside the transaction
    that saves the books) and push each on the bus once committed. The outbox hands them only
    to channels that opted in with `shadow = true`."""
    for raw in signals:
        event = events.ShadowSignal(state="shadow" if raw["model"] in shadowed else "trading", **raw)
        sink.publish(event.kind, event.payload(), event_id=event.event_id)
        store.after_commit(lambda e=event: events.publish(e))


def render_ledgers(status: Mapping[str, Any] | None) -> list[str]:
    """`sigd status` lines: each book's equity, PnL, drawdown and turnover, models first."""
    if not status or not status.get("books"):
        return []
    books = status["books"]
    lines = [f"shadow ledgers (paper, from {status.get('starting_balance', 0):g}; what each model would have done):"]
    for name in sorted(books, key=lambda n: (n in (FLAT, HOLD), n)):
        b = books[name]
        lines.append(
            f"  {name:<16} equity {b['equity']:>12.2f}  pnl {b['pnl']:+10.2f}  max dd {b['max_drawdown']:6.2%}"
            f"  turnover {b['turnover']:7.3f}  signals {b['signals']}  fills {b['fills']}"
        )
    return lines

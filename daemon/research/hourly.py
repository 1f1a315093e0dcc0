"""`sigd research`: the hourly leaderboard. Pooled families x targets x {1h, 4h, 1d} under CPCV
on the multi-year hourly data set, beside every baseline, with PBO and the DSR's N counted
across runs.

For each timeframe (bars from `load_panel`; 4h/1d derived from the 1h files):
1. Features: `models.xsfeatures` (cross-sectional, per-symbol normalised, 4h/1d context).
2. For each family x target (`daemon.research.panelmodels`): CPCV splits over the decision
   bars (`daemon.research.cpcv`, purge by each label's end, embargo = the label horizon), one
   fit per split, out-of-sample scores of its test bars. The splits assemble into C(N-1, k-1)
   complete paths; each path's scores become weights through the portfolio module
   (`strategies.portfolio.weights_path`, the same rule the daemon trades) and are simulated with
   costs (`daemon.research.portfolio_sim`): one Sharpe per path, a distribution per config.
3. Every configuration is recorded in the trial registry of this data set
   (`daemon.research.registry`, MLflow); N = every configuration ever tried on it.
4. The gate (stats.gate: PSR and DSR >= 0.95 after N) judges the mean of the CPCV paths.
5. PBO (`daemon.research.pbo`) across the configurations of the timeframe, on their mean
   out-of-sample path returns.
6. Baselines (`daemon.research.baselines`) under the same portfolio rule and costs.

Writes `leaderboard.md` and `leaderboard.json` under `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon import log as logging
from daemon.domain import timeframe_ms
from daemon.retrain import cli_args
from models.labels import KINDS, LabelSpec, label_end, make_labels
from models.panel import Panel

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hourly"
PERIODS_PER_YEAR = {"1h": 24 * 365.0, "4h": 6 * 365.0, "1d": 365.0}
# per timeframe: label horizon (bars, ~1 day or a week for 1d), vol window, momentum lookback
LABELS = {
    "1h": {"horizon": 24, "vol_window": 48, "momentum": 168},
    "4h": {"horizon": 6, "vol_window": 42, "momentum": 42},
    "1d": {"horizon": 5, "vol_window": 20, "momentum": 30},
}
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class GridSpec:
    """What one leaderboard run tries."""

    families: tuple[str, ...] = ("lgbm", "gru")
    targets: tuple[str, ...] = KINDS
    timeframes: tuple[str, ...] = ("1h", "4h", "1d")
    deep_timeframes: tuple[str, ...] = ("4h", "1d")  # deep families run only here (CPU budget)
    deep_targets: tuple[str, ...] = ("triple_barrier", "forward_return")
    n_groups: int = 6
    n_test_groups: int = 2
    cost_bps: float = 10.0  # one way, every pair: fee + spread + slippage
    max_train: int = 60_000  # (decision, pair) rows sampled per fit
    lgbm_trees: int = 100
    deep_epochs: int = 1
    top_k: int = 4
    long_short: bool = False
    no_trade_band: float = 0.02
    seed: int = 0
    turnover_penalty: float = 0.0  # >= 0: each rebalance moves 1 / (1 + penalty) of the way

    def validate(self, n_symbols: int) -> None:
        """ValueError naming the flag of the first setting that cannot work."""
        if bad := [t for t in self.timeframes if t not in LABELS]:
            raise ValueError(f"--timeframes: {bad[0]} is not one of {', '.join(LABELS)}")
        if bad := [t for t in self.targets if t not in KINDS]:
            raise ValueError(f"--targets: {bad[0]} is not one of {', '.join(KINDS)}")
        if self.cost_bps < 0:
            raise ValueError(f"--cost-bps: a cost must be >= 0, got {self.cost_bps}")
        if not 1 <= self.n_test_groups < self.n_groups:
            raise ValueError(f"--test-groups: must be >= 1 and < --groups ({self.n_groups})")
        if self.top_k * (2 if self.long_short else 1) > n_symbols:
            raise ValueError(f"--top-k: {self.top_k} is larger than the universe ({n_symbols} pairs)")
        if self.no_trade_band < 0:
            raise ValueError(f"--no-trade-band: must be >= 0, got {self.no_trade_band}")
        if self.turnover_penalty < 0:
            raise ValueError(f"--turnover-penalty: must be >= 0, got {self.turnover_penalty}")
        if self.max_train < 1000:
            raise ValueError(f"--max-train: need at least 1000 rows, got {self.max_train}")

    def portfolio(self) -> Any:
        """The portfolio rule every configuration and baseline trades with."""
        from strategies.portfolio import PortfolioSpec

        return PortfolioSpec(
            long_short=self.long_short,
            top_k=self.top_k,
            max_weight=1.0 / self.top_k,
            gross_cap=1.0,
            no_trade_band=self.no_trade_band,
            turnover_penalty=self.turnover_penalty,
        )

    def configs(self, timeframe: str) -> list[Any]:
        """The PanelModelSpecs tried at a timeframe."""
        from daemon.research.panelmodels import PanelModelSpec

        out = []
        for fam in self.families:
            deep = fam != "lgbm"
            if deep and timeframe not in self.deep_timeframes:
                continue
            for kind in self.targets:
                if deep and kind not in self.deep_targets:
                    continue
                label = LabelSpec(kind, cost=2 * self.cost_bps / 1e4, **LABELS[timeframe])  # type: ignore[arg-type]
                params = {"n_estimators": self.lgbm_trees} if not deep else {}
                out.append(
                    PanelModelSpec(fam, label, params=params, max_train=self.max_train, epochs=self.deep_epochs, seed=self.seed)
                )
        return out


@dataclass
class ConfigResult:
    """One configuration's CPCV outcome."""

    timeframe: str
    name: str
    config: dict[str, Any]
    path_sharpes: list[float]
    mean_returns: np.ndarray = field(repr=False)  # mean over paths, per period (for PBO and the gate)
    metrics: dict[str, float]
    gate: dict[str, Any]
    seconds: float
    median_returns: np.ndarray = field(repr=False)  # the path of median Sharpe (its figures and trades)
    trades: int = 0  # rebalances on that path

    def row(self) -> dict[str, Any]:
        """JSON-ready summary."""
        s = np.array(self.path_sharpes)
        return {
            "timeframe": self.timeframe,
            "config": self.name,
            "params": self.config,
            "sharpe_paths": [round(x, 4) for x in self.path_sharpes],
            "sharpe_median": float(np.median(s)),
            "sharpe_min": float(s.min()),
            "sharpe_max": float(s.max()),
            **self.metrics,
            "gate": self.gate,
            "seconds": round(self.seconds, 1),
        }


def path_scores(splits: Sequence[Any], paths: np.ndarray, oos: Sequence[np.ndarray], shape: tuple[int, int]) -> list[np.ndarray]:
    """(T, S) out-of-sample scores of every CPCV path (NaN where no test covered a row)."""
    from daemon.research.cpcv import group_of

    group = group_of(shape[0], paths.shape[1])
    out = []
    for row in paths:
        sc = np.full(shape, np.nan)
        for g, s in enumerate(row.tolist()):
            idx = splits[s].test_idx
            mine = group[idx] == g
            sc[idx[mine]] = oos[s][mine]
        out.append(sc)
    return out


def evaluate_scores(scores: np.ndarray, panel: Panel, grid: GridSpec, vol: np.ndarray) -> Any:
    """Scores (T, S) -> the simulated portfolio (weights by the portfolio module, costs charged)."""
    from daemon.research.portfolio_sim import simulate
    from strategies.portfolio import weights_path

    ppy = PERIODS_PER_YEAR[panel.timeframe]
    rets = _period_returns(panel.close)
    w = weights_path(scores, vol, grid.portfolio(), ppy, rets)
    return simulate(w, panel.close, np.full(len(panel.symbols), grid.cost_bps / 1e4), ppy)


def _period_returns(close: np.ndarray) -> np.ndarray:
    out = np.zeros_like(close)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = close[1:] / close[:-1] - 1.0
    return np.nan_to_num(out)


def run_config(
    panel: Panel, X: np.ndarray, spec: Any, grid: GridSpec, vol: np.ndarray, on_fold: Callable[[], None]
) -> ConfigResult:
    """CPCV of one configuration: scores per split, paths, portfolios (the gate comes later,
    once N is known: `judge`)."""
    from daemon.research.cpcv import cpcv_paths, cpcv_splits
    from daemon.research.panelmodels import fold_scores

    t0 = time.perf_counter()
    step = timeframe_ms(panel.timeframe)
    y = make_labels(panel.close, spec.label)
    splits = cpcv_splits(
        panel.ts, grid.n_groups, grid.n_test_groups, label_end(panel.ts, spec.label, step), spec.label.horizon * step
    )
    oos = fold_scores(X, y, panel.close, spec, splits, progress=lambda i, n: on_fold())
    paths = cpcv_paths(splits, grid.n_groups)
    results = [evaluate_scores(sc, panel, grid, vol) for sc in path_scores(splits, paths, oos, panel.close.shape)]
    sharpes = [r.metrics()["sharpe"] for r in results]
    median_path = results[int(np.argsort(sharpes)[len(sharpes) // 2])]
    m = median_path.metrics()
    metrics = {k: float(m[k]) for k in ("turnover_per_year", "cost_drag_per_year", "gross_exposure", "max_drawdown", "cagr")}
    return ConfigResult(
        panel.timeframe,
        spec.name,
        spec.to_dict(),
        sharpes,
        np.mean([r.returns for r in results], axis=0),
        metrics,
        {},
        time.perf_counter() - t0,
        median_path.returns,
        int(np.count_nonzero(median_path.turnover > 1e-9)),
    )


def judge(res: ConfigResult, n_trials: int, trial_sharpes: Sequence[float]) -> None:
    """The gate on the mean of the CPCV paths (stats.gate), N = every configuration tried on the data set."""
    from daemon.research.stats import gate

    verdict = gate(res.mean_returns, res.trades, max(1, n_trials), trial_sharpes=trial_sharpes)
    res.metrics.update(psr=verdict.psr, dsr=verdict.dsr)
    res.gate = {"passed": verdict.passed, "why": verdict.why, "n_trials": verdict.n_trials}


def baselines(panel: Panel, grid: GridSpec) -> dict[str, dict[str, float]]:
    """Every baseline under the same portfolio rule and costs, over the whole span."""
    from daemon.research.baselines import BASELINE_NAMES, baseline_results

    ppy = PERIODS_PER_YEAR[panel.timeframe]
    res = baseline_results(
        panel.ts, panel.close, grid.portfolio(), np.full(len(panel.symbols), grid.cost_bps / 1e4), ppy, BASELINE_NAMES
    )
    return {
        n: {
            k: float(v)
            for k, v in r.metrics().items()
            if k in ("sharpe", "cagr", "max_drawdown", "turnover_per_year", "cost_drag_per_year")
        }
        for n, r in res.items()
    }


def run_grid(
    data: Path,
    grid: GridSpec,
    symbols: Sequence[str] | None,
    start_ms: int | None,
    end_ms: int | None,
    tracking_uri: str | None,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The whole leaderboard as a JSON-ready dict (see the module doc)."""
    from daemon.research.dataset import load_panel
    from daemon.research.pbo import pbo
    from daemon.research.registry import Registry, dataset_id
    from models.labels import realised_vol
    from models.xsfeatures import xs_features

    panels = {tf: load_panel(data, tf, symbols, start_ms, end_ms, cache_dir) for tf in grid.timeframes}
    grid.validate(len(next(iter(panels.values())).symbols))
    registry = Registry(tracking_uri)  # after the input checks: a bad flag creates no store
    files = sorted(Path(data).glob("*-1h.csv*"))
    total = sum(len(grid.configs(tf)) for tf in grid.timeframes) * math.comb(grid.n_groups, grid.n_test_groups)
    done, t0 = 0, time.perf_counter()

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, time.perf_counter() - t0)

    out: dict[str, Any] = {"grid": dataclasses.asdict(grid), "data": str(data), "timeframes": {}}
    for tf, panel in panels.items():
        ds = dataset_id(files, timeframe=tf, symbols=panel.symbols, start_ms=start_ms, end_ms=end_ms)
        names, X = xs_features(panel)
        vol = realised_vol(panel.close, LABELS[tf]["vol_window"])
        rows: list[ConfigResult] = []
        for spec in grid.configs(tf):
            config = {
                "timeframe": tf,
                **spec.to_dict(),
                "cpcv": [grid.n_groups, grid.n_test_groups],
                "cost_bps": grid.cost_bps,
                "portfolio": dataclasses.asdict(grid.portfolio()),
            }
            res = run_config(panel, X, spec, grid, vol, tick)
            registry.record_trial(
                ds,
                config,
                {
                    "sharpe_median": float(np.median(res.path_sharpes)),
                    "sharpe_min": float(min(res.path_sharpes)),
                    "sharpe_max": float(max(res.path_sharpes)),
                },
                group=f"research-{tf}",
            )
            rows.append(res)
        n_trials = registry.trials_count(ds)
        # the spread of Sharpe across every trial on record sets the DSR's bar (per period)
        ppy = PERIODS_PER_YEAR[tf]
        trial_sharpes = [t.metrics["sharpe_median"] / math.sqrt(ppy) for t in registry.trials(ds) if "sharpe_median" in t.metrics]
        for res in rows:
            judge(res, n_trials, trial_sharpes)
        matrix = np.column_stack([r.mean_returns for r in rows]) if len(rows) >= 2 else None
        p = pbo(matrix, n_blocks=16, seed=grid.seed).to_dict() if matrix is not None else None
        out["timeframes"][tf] = {
            "dataset_id": ds,
            "n_trials": n_trials,
            "bars": len(panel.ts),
            "symbols": list(panel.symbols),
            "gaps": panel.gaps,
            "features": list(names),
            "first": int(panel.ts[0]),
            "last": int(panel.ts[-1]),
            "configs": [r.row() for r in rows],
            "pbo": p,
            "baselines": baselines(panel, grid),
        }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def markdown(result: dict[str, Any]) -> str:
    """The leaderboard as Markdown tables, one per timeframe."""
    g = result["grid"]
    head = (
        f"Hourly leaderboard: {result['data']}; CPCV {g['n_groups']} groups / {g['n_test_groups']} tested "
        f"({math.comb(g['n_groups'] - 1, g['n_test_groups'] - 1)} paths); costs {g['cost_bps']:g} bp one way; "
        f"portfolio {'long/short' if g['long_short'] else 'long-only'} top-{g['top_k']}, "
        f"no-trade band {g['no_trade_band']:g}, turnover penalty {g.get('turnover_penalty', 0.0):g}; "
        f"{result['seconds']:.0f} s."
    )
    lines = [head, ""]
    for tf, r in result["timeframes"].items():
        p = r["pbo"]
        pbo_text = f"PBO = {p['pbo']:.2f}" if p else "PBO: needs 2+ configurations"
        lines += [
            (
                f"### {tf}: {len(r['symbols'])} pairs, {r['bars']} bars, {_iso(r['first'])} to {_iso(r['last'])}; "
                f"N = {r['n_trials']} configurations ever tried on this data set; {pbo_text}"
            ),
            "",
            "| config | CPCV Sharpe median [min, max] | PSR | DSR | turnover/yr | cost drag/yr | gate |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in sorted(r["configs"], key=lambda c: -c["sharpe_median"]):
            lines.append(
                f"| {c['config']} | {c['sharpe_median']:.2f} [{c['sharpe_min']:.2f}, {c['sharpe_max']:.2f}] "
                f"| {c['psr']:.2f} | {c['dsr']:.2f} | {c['turnover_per_year']:.0f} | "
                f"{c['cost_drag_per_year']:.1%} | {'PASS' if c['gate']['passed'] else 'fail'} |"
            )
        for name, b in r["baselines"].items():
            lines.append(
                f"| baseline: {name} | {b['sharpe']:.2f} (whole span) | | | {b['turnover_per_year']:.0f} | "
                f"{b['cost_drag_per_year']:.1%} | |"
            )
        lines.append("")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`sigd research` flags."""
    d = GridSpec()
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of <BASE>_<QUOTE>-1h.csv.gz files")
    p.add_argument("--symbols", default="", metavar="A,B", help="pairs (default: every pair of --data)")
    p.add_argument("--from", dest="start", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC")
    p.add_argument("--to", dest="end", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC (exclusive)")
    p.add_argument("--families", default=",".join(d.families), help="lgbm and/or registry window families")
    p.add_argument("--targets", default=",".join(d.targets))
    p.add_argument("--timeframes", default=",".join(d.timeframes))
    p.add_argument("--deep-timeframes", default=",".join(d.deep_timeframes))
    p.add_argument("--deep-targets", default=",".join(d.deep_targets))
    p.add_argument("--groups", type=int, default=d.n_groups)
    p.add_argument("--test-groups", type=int, default=d.n_test_groups)
    p.add_argument("--cost-bps", type=float, default=d.cost_bps, help="one-way cost per trade, every pair")
    p.add_argument("--max-train", type=int, default=d.max_train)
    p.add_argument("--trees", type=int, default=d.lgbm_trees)
    p.add_argument("--epochs", type=int, default=d.deep_epochs)
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--long-short", action="store_true")
    p.add_argument("--no-trade-band", type=float, default=d.no_trade_band, help="weight moves smaller than this are not made")
    p.add_argument(
        "--turnover-penalty",
        type=float,
        default=d.turnover_penalty,
        help="each rebalance moves 1 / (1 + penalty) of the way to the target",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: SIGD_TRACKING_URI or local SQLite)")
    p.add_argument("--out", default="runs/research", help="folder for leaderboard.md and leaderboard.json")


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def research_command(args: argparse.Namespace) -> int:
    """`sigd research`: bad input is one line naming the flag, exit 2."""
    from daemon.research.backtest import parse_iso
    from daemon.research.dataset import DatasetError

    logging.setup("warning", "auto")
    try:
        grid = GridSpec(
            _split(args.families),
            _split(args.targets),
            _split(args.timeframes),
            _split(args.deep_timeframes),
            _split(args.deep_targets),
            args.groups,
            args.test_groups,
            args.cost_bps,
            args.max_train,
            args.trees,
            args.epochs,
            args.top_k,
            args.long_short,
            args.no_trade_band,
            turnover_penalty=args.turnover_penalty,
        )
        for fam in grid.families:
            if fam != "lgbm":
                from models import registry

                try:
                    registry.family(fam)
                except (KeyError, ValueError) as e:
                    raise ValueError(f"--families: {e}") from None
        start = parse_iso(args.start, "--from") if args.start else None
        end = parse_iso(args.end, "--to") if args.end else None
        symbols = list(_split(args.symbols)) or None
        if len(_split(args.symbols)) == 0 and args.symbols.strip():
            raise ValueError("--symbols: empty list")
    except (ValueError, DatasetError) as e:
        print(f"sigd research: {e}", file=sys.stderr)
        return 2

    def show(done: int, total: int, elapsed: float) -> None:
        eta = elapsed / done * (total - done)
        print(f"\r{done}/{total} fits, {elapsed:.0f} s elapsed, ETA {eta:.0f} s   ", end="", file=sys.stderr, flush=True)

    try:
        result = run_grid(Path(args.data), grid, symbols, start, end, args.tracking_uri, show)
    except (ValueError, DatasetError) as e:
        print(f"\nsigd research: {e}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    (out / "leaderboard.md").write_text(md + "\n")
    (out / "leaderboard.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(md)
    print(f"\nleaderboard: {out / 'leaderboard.md'}, {out / 'leaderboard.json'}")
    return 0

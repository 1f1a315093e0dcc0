"""Every trial, recorded once per data set, across runs and days: the DSR's N.

The Deflated Sharpe Ratio (daemon/research/stats.py) deflates the best Sharpe by how many
configurations were tried. A run that counts only its own tries understates N as soon as
anyone ran a grid on the same data before. So every configuration tried is a trial in one
registry per data set, and `trials_count(dataset_id)` is the number of distinct configurations
ever tried on it, whoever ran them and whenever.

Storage is MLflow tracking (a well-kept, standard experiment tracker; its UI and API read the
same records): one MLflow experiment per data set (`sigd-dataset-<id>`), one MLflow run per
trial with the configuration as params, its out-of-sample figures as metrics, and tags for
the data set, the configuration's key (a hash of its params) and the invocation that tried it.
The default backend is a local SQLite file (`sqlite:///~/.local/share/sigd/mlflow.db`); a team
points `tracking_uri` (or SIGD_TRACKING_URI) at a tracking server (`http://mlflow:5000`).

The data set id is a hash of what the data is: each file's name and size, the symbols, the
timeframe and the time range used. The same files over the same span give the same id on any
machine; appending a day to a file gives a new data set.

MLflow takes about 3 s to import: it is imported only when a registry is opened.
"""

from __future__ import annotations

import hashlib
import json
import logging as std_logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import log as logging

log = logging.get("registry")
DEFAULT_DB = Path.home() / ".local" / "share" / "sigd" / "mlflow.db"
ENV_URI = "SIGD_TRACKING_URI"
MAX_PARAM = 500  # MLflow's limit on a param value's length


def dataset_id(files: Sequence[Path], *, timeframe: str, symbols: Sequence[str], start_ms: int | None, end_ms: int | None) -> str:
    """16 hex digits naming the data a run read: file names and sizes, symbols, timeframe, range."""
    parts = sorted((Path(f).name, Path(f).stat().st_size) for f in files)
    doc = {"files": parts, "timeframe": timeframe, "symbols": sorted(symbols), "start_ms": start_ms, "end_ms": end_ms}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def config_key(config: Mapping[str, Any]) -> str:
    """16 hex digits naming a configuration (its params, order-free)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_uri() -> str:
    """SIGD_TRACKING_URI, else the local SQLite file."""
    return os.environ.get(ENV_URI) or f"sqlite:///{DEFAULT_DB}"


@dataclass(frozen=True)
class Trial:
    """One recorded trial."""

    config_key: str
    params: dict[str, str]
    metrics: dict[str, float]
    group: str
    start_ms: int


class Registry:
    """One MLflow tracking store; an experiment per data set."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.uri = tracking_uri or default_uri()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.filterwarnings("ignore", message=".*noload.*")  # SQLAlchemy on MLflow's store, not ours
        from mlflow.tracking import MlflowClient

        # after the import: MLflow sets its own logger up when imported
        for name in ("mlflow", "alembic", "sqlalchemy"):  # their INFO lines are not ours to print
            std_logging.getLogger(name).setLevel(std_logging.WARNING)

        self.client = MlflowClient(tracking_uri=self.uri)
        self._experiments: dict[str, str] = {}

    def _experiment(self, dataset: str) -> str:
        if dataset not in self._experiments:
            name = f"sigd-dataset-{dataset}"
            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    exp_id = self.client.create_experiment(name, tags={"sigd.dataset_id": dataset})
                except Exception:  # another process created it between our look and our create
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
                    exp_id = found.experiment_id
            else:
                exp_id = found.experiment_id
            self._experiments[dataset] = exp_id
        return self._experiments[dataset]

    def record_trial(
        self,
        dataset: str,
        config: Mapping[str, Any],
        metrics: Mapping[str, float],
        *,
        group: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Record one configuration tried on `dataset` (its out-of-sample figures); the run id."""
        from mlflow.entities import Metric, Param

        exp = self._experiment(dataset)
        key = config_key(config)
        run = self.client.create_run(
            exp,
            run_name=f"trial-{key}",
            tags={"sigd.dataset_id": dataset, "sigd.config_key": key, "sigd.group": group, **(tags or {})},
        )
        now = run.info.start_time
        params = [
            Param(str(k), json.dumps(v, default=str)[:MAX_PARAM] if not isinstance(v, str) else v[:MAX_PARAM])
            for k, v in sorted(config.items())
        ]
        values = [Metric(str(k), float(v), now, 0) for k, v in sorted(metrics.items()) if v is not None]
        self.client.log_batch(run.info.run_id, metrics=values, params=params)
        self.client.set_terminated(run.info.run_id)
        log.info("trial_recorded", dataset=dataset, config=key, group=group, run=run.info.run_id)
        return str(run.info.run_id)

    def trials(self, dataset: str) -> list[Trial]:
        """Every trial recorded on `dataset`, oldest first."""
        exp = self._experiment(dataset)
        out: list[Trial] = []
        token = None
        while True:
            page = self.client.search_runs([exp], max_results=1000, page_token=token, order_by=["attributes.start_time ASC"])
            for r in page:
                out.append(
                    Trial(
                        r.data.tags.get("sigd.config_key", r.info.run_id),
                        dict(r.data.params),
                        dict(r.data.metrics),
                        r.data.tags.get("sigd.group", ""),
                        int(r.info.start_time),
                    )
                )
            token = page.token
            if not token:
                return out

    def trials_count(self, dataset: str) -> int:
        """Distinct configurations ever tried on `dataset` (a configuration tried twice is one trial)."""
        return len({t.config_key for t in self.trials(dataset)})


def trials_count(dataset: str, tracking_uri: str | None = None) -> int:
    """Distinct configurations ever tried on `dataset` in the registry at `tracking_uri`."""
    return Registry(tracking_uri).trials_count(dataset)

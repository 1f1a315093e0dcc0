"""Page an exchange's bar history into tape files (the library of `sigd backfill`).

One gzip CSV per (symbol, timeframe): `<BASE>_<QUOTE>-<tf>.csv.gz`, header
`timestamp,open,high,low,close,volume`, the format of the local exchange's tapes and of the
training data. Resumable: an existing file is continued after its last row (a new gzip member
is appended per page, which every gzip reader treats as one stream), so rerunning never
duplicates a row and an interrupted run loses at most the page in flight.
"""

from __future__ import annotations

import dataclasses
import gzip
from datetime import UTC, datetime
from pathlib import Path

from daemon import log as logging
from daemon.config import ConfigError, ExchangeConfig
from daemon.domain import Bar, BarError, timeframe_ms
from daemon.market.exchange import ExchangeClient, make_client

log = logging.get("sigd.backfill")
HEADER = "timestamp,open,high,low,close,volume\n"


def parse_instant(text: str, what: str) -> int:
    """ISO 8601 (UTC when no offset is given) to ms since the epoch; ConfigError naming `what`."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}: not an ISO 8601 instant: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def tape_path(out: Path, symbol: str, timeframe: str) -> Path:
    """`<BASE>_<QUOTE>-<tf>.csv.gz` inside `out`."""
    return out / f"{symbol.replace('/', '_')}-{timeframe}.csv.gz"


def last_tape_ts(path: Path) -> int | None:
    """Open time of the last row of a tape file, None when it has no rows."""
    if not path.exists():
        return None
    last = None
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line and line[0].isdigit():
                last = line
    return int(last.split(",", 1)[0]) if last else None


def _format(bar: Bar) -> str:
    return f"{bar.ts},{bar.open!r},{bar.high!r},{bar.low!r},{bar.close!r},{bar.volume!r}\n"


async def backfill_stream(
    client: ExchangeClient, out: Path, symbol: str, timeframe: str, since_ms: int, until_ms: int | None
) -> int:
    """Append the missing closed bars of one stream to its tape; the number of rows written."""
    path = tape_path(out, symbol, timeframe)
    last = last_tape_ts(path)
    start = max(since_ms, last + timeframe_ms(timeframe)) if last is not None else since_ms
    if not path.exists():
        with gzip.open(path, "wt") as fh:
            fh.write(HEADER)
    written = skipped = 0
    async for page in client.iter_bar_pages(symbol, timeframe, start, until_ms):
        rows = []
        for bar in page:
            try:
                bar.validate()
            except BarError as exc:
                skipped += 1
                log.warning("backfill_bad_bar", symbol=symbol, timeframe=timeframe, error=str(exc))
                continue
            rows.append(_format(bar))
        with gzip.open(path, "at") as fh:  # one gzip member per page: resumable
            fh.write("".join(rows))
        written += len(rows)
    log.info("backfill_done", file=str(path), written=written, skipped=skipped, start=start)
    return written


async def backfill(
    cfg: ExchangeConfig,
    out: Path,
    symbols: list[str],
    timeframes: list[str],
    since_ms: int,
    until_ms: int | None,
    rest_url: str | None,
) -> dict[str, int]:
    """Backfill every (symbol, timeframe); rows written per file name."""
    # The client checks its symbols against the exchange's markets: these, not the traded ones.
    cfg = dataclasses.replace(cfg, symbols=tuple(symbols), symbol="")
    client = make_client(cfg, rest_url=rest_url, api_key="", api_secret="")
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, int] = {}
    try:
        await client.start()
        for symbol in symbols:
            for tf in timeframes:
                done[tape_path(out, symbol, tf).name] = await backfill_stream(client, out, symbol, tf, since_ms, until_ms)
    finally:
        await client.close()
    return done

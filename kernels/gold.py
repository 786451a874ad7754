"""Gold: hourly features from 1-min bars and funding, and cross-sectional features over the whole universe.

``gold/hourly/exchange=…/symbol=…/date=…/part-0.parquet`` and ``gold/cross_sectional/exchange=…/date=…/``.
Hourly tables are partitioned by day, not hour: an hour holds a single row per symbol, and 24 one-row files a day
would cost more to open than to read. Rows are stamped at bar close + 1 ms (``kernels.hourly``), in ``ts_ns`` and
as Feast's ``event_timestamp``. Bronze bars written twice (a re-fetched backfill page) are deduplicated by open
time, keeping the latest ingest.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from collectors.bronze import read_dataset
from kernels.pipeline import event_timestamp
from l2lab import atomic


def _day_dir(base: Path, day_ns: int) -> Path:
    return base / f"date={dt.datetime.fromtimestamp(day_ns // 1_000_000_000, tz=dt.timezone.utc):%Y-%m-%d}"


def _write_by_day(df: pd.DataFrame, base: Path) -> int:
    if df.empty:
        return 0
    day = df["hour_start_ns"].to_numpy(np.int64) // 86_400_000_000_000
    n = 0
    for d in np.unique(day):
        part = pa.Table.from_pandas(df[day == d], preserve_index=False)
        part = part.append_column("event_timestamp", event_timestamp(part.column("ts_ns").to_numpy()))
        atomic.write_parquet(_day_dir(base, int(d) * 86_400_000_000_000) / "part-0.parquet", part)
        n += 1
    return n


def load_bars(root: Path, exchange: str, symbol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    bars = read_dataset(root / "bronze", "ohlcv_1m", exchange=exchange, symbol=symbol).to_pandas()
    if not bars.empty:
        bars = (bars.sort_values(["open_time_ms", "ts_ingest_ns"]).drop_duplicates("open_time_ms", keep="last")
                .reset_index(drop=True))
    fund = read_dataset(root / "bronze", "funding", exchange=exchange, symbol=symbol).to_pandas()
    if not fund.empty:
        fund = (fund.sort_values(["funding_time_ms", "ts_ingest_ns"]).drop_duplicates("funding_time_ms", keep="last")
                .reset_index(drop=True))
    return bars, fund


def build_gold(data_root: str | Path, exchange: str = "binanceusdm") -> dict:
    """Rebuild gold hourly and cross-sectional tables from every bronze bar of ``exchange``."""
    from kernels.cross_sectional import compute_cross_sectional
    from kernels.hourly import compute_hourly

    root = Path(data_root)
    base = root / "bronze" / "ohlcv_1m" / f"exchange={exchange}"
    symbols = sorted(d.name.split("=", 1)[1] for d in base.glob("symbol=*")) if base.exists() else []
    frames = []
    files = 0
    for sym in symbols:
        bars, fund = load_bars(root, exchange, sym)
        if bars.empty:
            continue
        last_closed = int(bars["open_time_ms"].iloc[-1]) + 60_000
        hourly = compute_hourly(bars, fund if not fund.empty else None, symbol=sym, complete_through_ms=last_closed)
        # the symbol is in the partition path; a column of the same name would clash with it on read
        files += _write_by_day(hourly.drop(columns=["symbol"]),
                               root / "gold" / "hourly" / f"exchange={exchange}" / f"symbol={sym}")
        frames.append(hourly)
    panel = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    xs_rows = 0
    if not panel.empty:
        xs = compute_cross_sectional(panel)
        files += _write_by_day(xs, root / "gold" / "cross_sectional" / f"exchange={exchange}")
        xs_rows = len(xs)
    return {"symbols": len(frames), "hourly_rows": int(len(panel)), "cross_sectional_rows": xs_rows, "files": files}

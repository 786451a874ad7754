"""Slow, obviously-right point-in-time join (Feast's definition, row by row) and test data writers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class RefView:
    """A feature view for the reference: rows in Feast names (after field mapping)."""

    rows: pd.DataFrame                  # key columns, ``ts`` (int ns), optional ``created`` (int ns), features
    keys: dict[str, str]                # feature-table key column -> entity column
    features: dict[str, str]            # feature column -> output column
    ttl_ns: int | None = None
    created: bool = True


def brute_force(entity: pd.DataFrame, ts_ns: list, views: list[RefView],
                filter_by_created: bool = False) -> pd.DataFrame:
    """For each entity row and view: among the rows with equal keys, time <= entity time, within the TTL
    (``time + ttl >= entity time``; none or 0 = unlimited) and, if asked, created <= entity time, the one with the
    greatest (time, created); its features, else nulls. ``ts_ns``: entity times (int ns or None)."""
    out = {}
    for v in views:
        rts = v.rows["ts"].to_numpy(dtype=np.int64)
        rc = v.rows["created"].to_numpy(dtype=np.int64) if v.created else np.zeros(len(rts), dtype=np.int64)
        picked = []
        for i, t in enumerate(ts_ns):
            m = np.full(len(rts), t is not None)
            for k, e in v.keys.items():
                value = entity[e].iloc[i]
                m &= False if pd.isna(value) else (v.rows[k].to_numpy(dtype=object) == value)
            if t is not None:
                m &= rts <= t
                if v.ttl_ns:
                    m &= rts + v.ttl_ns >= t
                if filter_by_created and v.created:
                    m &= rc <= t
            cand = np.flatnonzero(m)
            picked.append(max(cand, key=lambda j: (rts[j], rc[j])) if len(cand) else None)
        for col, name in v.features.items():
            values = v.rows[col].to_numpy(dtype=object)
            out[name] = [None if p is None else values[p] for p in picked]
    return pd.DataFrame(out, index=entity.index)


def write_hive(df: pd.DataFrame, root: Path, times: pd.Series | None = None, exchange: str = "sim") -> None:
    """Write rows as ``exchange=…/symbol=…/date=…/hour=…/part-0.parquet`` (symbol only in the path), like
    silver; ``times`` (default: the ``event_timestamp`` column) choose the date and hour."""
    ts = pd.to_datetime(df["event_timestamp"] if times is None else times, utc=True)
    for (sym, date, hour), part in df.groupby([df["symbol"], ts.dt.strftime("%Y-%m-%d"), ts.dt.hour]):
        folder = root / f"exchange={exchange}" / f"symbol={sym}" / f"date={date}" / f"hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part.drop(columns=["symbol"]), preserve_index=False),
                       folder / "part-0.parquet")


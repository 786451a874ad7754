"""Readers and summaries for notebook 01 (data exploration) and the lead-lag part of notebook 02.

They read Parquet directly with an in-memory DuckDB (never the warehouse file, which one process at a time may
open for writing; grid cells run in parallel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from l2lab.schema import L2_GAP


def _glob(data_root, layer: str, dataset: str) -> str:
    base = Path(data_root) / layer / dataset
    if not base.exists() or not any(base.rglob("*.parquet")):
        raise FileNotFoundError(f"{base}: no Parquet files")
    return str(base / "**" / "*.parquet").replace("'", "''")


def _where(exchange, symbols, start_ns, end_ns, time_col: str) -> str:
    w = []
    if exchange:
        w.append(f"exchange = '{exchange}'")
    if symbols:
        w.append("symbol IN (" + ", ".join(f"'{s}'" for s in symbols) + ")")
    if start_ns is not None:
        w.append(f"{time_col} >= {int(start_ns)}")
    if end_ns is not None:
        w.append(f"{time_col} < {int(end_ns)}")
    return (" WHERE " + " AND ".join(w)) if w else ""


def query(sql: str) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    try:
        return con.sql(sql).df()
    finally:
        con.close()


def message_rates(data_root, exchange=None, symbols=None, start_ns=None, end_ns=None, bucket_s: int = 60) -> pd.DataFrame:
    """Per symbol and ``bucket_s`` bucket of receive time: level changes, trades and gap markers, per second."""
    src = "read_parquet('{}', hive_partitioning=true, hive_types_autocast=false, union_by_name=true)"
    b = int(bucket_s * 1e9)
    l2 = query(f"""SELECT symbol, (ts_recv_ns // {b}) * {b} AS bucket_ns, count(*) FILTER (WHERE kind <> {L2_GAP}) AS l2,
                          count(*) FILTER (WHERE kind = {L2_GAP}) AS gaps
                   FROM {src.format(_glob(data_root, 'bronze', 'l2_events'))}
                   {_where(exchange, symbols, start_ns, end_ns, 'ts_recv_ns')} GROUP BY 1, 2""")
    tr = query(f"""SELECT symbol, (ts_recv_ns // {b}) * {b} AS bucket_ns, count(*) AS trades
                   FROM {src.format(_glob(data_root, 'bronze', 'trades'))}
                   {_where(exchange, symbols, start_ns, end_ns, 'ts_recv_ns')} GROUP BY 1, 2""")
    out = l2.merge(tr, on=["symbol", "bucket_ns"], how="outer").fillna(0).sort_values(["symbol", "bucket_ns"])
    out["l2_per_s"] = out["l2"] / bucket_s
    out["trades_per_s"] = out["trades"] / bucket_s
    out["time"] = pd.to_datetime(out["bucket_ns"], unit="ns", utc=True)
    return out.reset_index(drop=True)


def silver(data_root, dataset: str, columns: list[str], exchange=None, symbols=None, start_ns=None,
           end_ns=None) -> pd.DataFrame:
    """Columns of a silver dataset (e.g. ``book_features_100ms``) with symbol and ts_ns, sorted by symbol, time."""
    cols = ", ".join(f'"{c}"' for c in ["symbol", "ts_ns"] + [c for c in columns if c not in ("symbol", "ts_ns")])
    return query(f"""SELECT {cols} FROM read_parquet('{_glob(data_root, 'silver', dataset)}', hive_partitioning=true,
                          hive_types_autocast=false, union_by_name=true)
                     {_where(exchange, symbols, start_ns, end_ns, 'ts_ns')} ORDER BY symbol, ts_ns""")


def coverage(df: pd.DataFrame, grid_s: float, probe: str = "spread_bps") -> pd.DataFrame:
    """Per symbol: rows, rows with a usable book (``probe`` finite), first/last time, and the longest run of
    rows without a usable book (a gap) in seconds."""
    rows = []
    for sym, d in df.groupby("symbol"):
        ok = np.isfinite(d[probe].to_numpy(float))
        run = longest = 0
        for v in ok:
            run = 0 if v else run + 1
            longest = max(longest, run)
        rows.append({"symbol": sym, "rows": len(d), "usable_share": float(ok.mean()),
                     "first": pd.Timestamp(int(d["ts_ns"].min()), tz="UTC"),
                     "last": pd.Timestamp(int(d["ts_ns"].max()), tz="UTC"), "longest_gap_s": longest * grid_s})
    return pd.DataFrame(rows)


def log_returns(df: pd.DataFrame, price: str = "mid") -> pd.DataFrame:
    """Wide frame (index ts_ns, one column per symbol) of one-step log returns of ``price``."""
    wide = df.pivot_table(index="ts_ns", columns="symbol", values=price)
    return np.log(wide).diff()

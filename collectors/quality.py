"""Data-quality report per bronze partition (symbol x hour): message rate, gaps, crossed books, duplicates,
quarantined frames.

The book is rebuilt exactly (``kernels.book.BookRebuilder``, state carried across hours) to count crossed
frames; duplicates and quarantined frames come from ``bronze_quarantine``: a quarantined frame counts in the row
of every product it names (``events[].product_id``, ``events[].trades[].product_id``); frames that name none
(malformed JSON, venue error frames, ...) count in an exchange-wide row per hour with symbol ``*`` (whose other
counters are 0), so summing a column over all rows gives the hour's total.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from collectors.bronze import part_sort_key
from l2lab.schema import L2_EVENT_DTYPE

COUNTERS = ("frames", "rows", "snapshots", "gaps", "crossed_frames", "duplicates")
QUARANTINE_COUNTS = ("quarantined", "duplicate_frames", "late_frames", "malformed")
EXCHANGE_WIDE = "*"  # the symbol of rows counting quarantined frames that name no product


def _partitions(base: Path) -> list[tuple[str, str, str, Path]]:
    out = []
    for sym_dir in sorted(base.glob("symbol=*")):
        for hour_dir in sorted(sym_dir.glob("date=*/hour=*")):
            out.append((sym_dir.name.split("=", 1)[1], hour_dir.parent.name.split("=", 1)[1],
                        hour_dir.name.split("=", 1)[1], hour_dir))
    return out


def _read(folder: Path, columns: list[str] | None = None):
    parts = sorted(folder.glob("part-*.parquet"), key=part_sort_key)
    return [pq.read_table(p, columns=columns) for p in parts]


def quality_report(data_root: str | Path, exchange: str = "coinbase") -> pd.DataFrame:
    from kernels.book import BookRebuilder

    bronze = Path(data_root) / "bronze"
    rows = []
    rebuilders: dict[str, BookRebuilder] = {}
    for symbol, date, hour, folder in _partitions(bronze / "l2_events" / f"exchange={exchange}"):
        rb = rebuilders.get(symbol)
        if rb is None:
            rb = rebuilders[symbol] = BookRebuilder(1, depth=1, grids_ns=(), width=1 << 16, event_time=False)
        before = rb.stats
        first_ts = last_ts = None
        for table in _read(folder):
            ev = np.empty(table.num_rows, L2_EVENT_DTYPE)
            for name in L2_EVENT_DTYPE.names:
                ev[name] = table.column(name).to_numpy()
            rb.process(ev)
            if len(ev):
                first_ts = ev["ts_recv_ns"][0] if first_ts is None else first_ts
                last_ts = ev["ts_recv_ns"][-1]
        after = rb.stats
        delta = {k: after[k] - before[k] for k in COUNTERS}
        span_s = max(1e-9, (last_ts - first_ts) / 1e9) if first_ts is not None else 0.0
        trades_dir = bronze / "trades" / f"exchange={exchange}" / f"symbol={symbol}" / f"date={date}" / f"hour={hour}"
        trades = sum(pq.ParquetFile(p).metadata.num_rows for p in trades_dir.glob("part-*.parquet"))
        rows.append({"symbol": symbol, "date": date, "hour": hour, **delta,
                     "frames_per_s": round(delta["frames"] / span_s, 1) if span_s else 0.0,
                     "trades": trades})
    report = pd.DataFrame(rows, columns=["symbol", "date", "hour", *COUNTERS, "frames_per_s", "trades"])
    if report.empty:
        return report
    q = _quarantine_counts(bronze / "quarantine" / f"exchange={exchange}")
    wide = q[q["symbol"] == EXCHANGE_WIDE]
    report = report.merge(q[q["symbol"] != EXCHANGE_WIDE], on=["symbol", "date", "hour"], how="left")
    if not wide.empty:
        report = pd.concat([report, wide], ignore_index=True).sort_values(["date", "hour", "symbol"], kind="stable")
    fill = {c: 0 for c in (*COUNTERS, "frames_per_s", "trades", *QUARANTINE_COUNTS)}
    report = report.fillna(fill).reset_index(drop=True)
    for c in (*COUNTERS, "trades", *QUARANTINE_COUNTS):
        report[c] = report[c].astype(int)
    return report


def _named_products(raw: str) -> list[str]:
    """Product ids a frame names (none if it is not a JSON object with events)."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    found: dict[str, None] = {}
    events = msg.get("events") if isinstance(msg, dict) else None
    for ev in events if isinstance(events, list) else []:
        if not isinstance(ev, dict):
            continue
        if isinstance(ev.get("product_id"), str):
            found[ev["product_id"]] = None
        trades = ev.get("trades")
        for t in trades if isinstance(trades, list) else []:
            if isinstance(t, dict) and isinstance(t.get("product_id"), str):
                found[t["product_id"]] = None
    return list(found)


def _quarantine_counts(base: Path) -> pd.DataFrame:
    counts: dict[tuple, dict] = {}
    for hour_dir in sorted(base.glob("date=*/hour=*")) if base.exists() else []:
        date, hour = hour_dir.parent.name.split("=", 1)[1], hour_dir.name.split("=", 1)[1]
        for t in _read(hour_dir, ["raw", "reason"]):
            for raw, reason in zip(t.column("raw").to_pylist(), t.column("reason").to_pylist()):
                for symbol in _named_products(raw) or [EXCHANGE_WIDE]:
                    c = counts.setdefault((symbol, date, hour), dict.fromkeys(QUARANTINE_COUNTS, 0))
                    c["quarantined"] += 1
                    c["duplicate_frames"] += reason.startswith("duplicate frame")
                    c["late_frames"] += reason.startswith("late frame")
                    c["malformed"] += reason.startswith("malformed JSON")
    rows = [{"symbol": s, "date": d, "hour": h, **c} for (s, d, h), c in counts.items()]
    return pd.DataFrame(rows, columns=["symbol", "date", "hour", *QUARANTINE_COUNTS]).astype(
        {c: "int64" for c in QUARANTINE_COUNTS})


def register(sub) -> None:
    p = sub.add_parser("quality", help="data-quality report per bronze partition (rates, gaps, crossed, duplicates)")
    p.add_argument("--exchange", default="coinbase")
    p.add_argument("--csv", action="store_true", help="print CSV")
    p.set_defaults(func=run)


def run(args) -> int:
    from l2lab.settings import Settings

    report = quality_report(Settings.load(args.data_root).data_root, args.exchange)
    if report.empty:
        print("no bronze L2 data yet")
        return 0
    if args.csv:
        print(report.to_csv(index=False), end="")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 500):
            print(report.to_string(index=False))
    return 0

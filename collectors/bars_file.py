"""Ingest 1-min OHLCV and funding files recorded elsewhere (CSV or Parquet) into the bronze data sets.

Columns (names are case-insensitive; a ``symbol`` column may replace ``--symbol``):

* OHLCV:   ``open_time`` (or ``timestamp``/``time``), ``open``, ``high``, ``low``, ``close``, ``volume``
* funding: ``funding_time`` (or ``timestamp``/``time``), ``funding_rate``, optional ``mark_price``

Times are integer milliseconds since the epoch (seconds and nanoseconds are recognized by magnitude) or
ISO-8601 UTC strings. Every row is validated (the same rules as the REST backfill); a rejected row goes to
``bronze_quarantine`` with a reason naming the file, the line and the field. Missing minutes are recorded in
``bronze_venue_gaps`` and never filled.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from collectors.backfill import MINUTE_MS, minute_gaps, ohlcv_problem
from collectors.bronze import BronzeWriter

TIME_ALIASES = ("timestamp", "time", "date", "datetime")
REQUIRED = {"ohlcv": ("open_time", "open", "high", "low", "close", "volume"),
            "funding": ("funding_time", "funding_rate")}


class BarsFileError(ValueError):
    """The file cannot be ingested at all (unreadable, missing columns)."""


def read_table(path: Path) -> tuple[pd.DataFrame, int]:
    """The file as strings-or-native columns, and the line number of its first data row (CSV header = 1)."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path), 1
        return pd.read_csv(path, dtype=str, keep_default_na=False), 2
    except (OSError, ValueError) as exc:
        raise BarsFileError(f"{path}: cannot read ({exc})") from None


def _columns(df: pd.DataFrame, kind: str, path: Path) -> dict[str, str]:
    lower = {c.lower().strip(): c for c in df.columns}
    time_name = REQUIRED[kind][0]
    if time_name not in lower:
        for alias in TIME_ALIASES:
            if alias in lower:
                lower[time_name] = lower[alias]
                break
    missing = [c for c in REQUIRED[kind] if c not in lower]
    if missing:
        raise BarsFileError(f"{path}: missing column(s) {', '.join(missing)} for {kind} "
                            f"(have {', '.join(map(str, df.columns))})")
    out = {c: lower[c] for c in REQUIRED[kind]}
    for optional in ("mark_price", "symbol"):
        if optional in lower:
            out[optional] = lower[optional]
    return out


def parse_time_ms(value) -> int:
    if isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        v = int(value)
    elif isinstance(value, pd.Timestamp):
        return int(value.tz_localize("UTC").value // 1_000_000 if value.tzinfo is None else value.value // 1_000_000)
    else:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            v = int(text)
        else:
            t = pd.Timestamp(text)
            if t.tzinfo is None:
                t = t.tz_localize("UTC")
            return int(t.value // 1_000_000)
    if abs(v) >= 10**17:  # nanoseconds
        v //= 1_000_000
    elif abs(v) >= 10**14:  # microseconds
        v //= 1000
    elif abs(v) < 10**11:  # seconds
        v *= 1000
    if not 946_684_800_000 <= v < 4_102_444_800_000:  # 2000-01-01 .. 2100-01-01
        raise ValueError(f"time {value!r} is not a plausible epoch time (s, ms, us or ns)")
    return v


def _number(value):
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    text = str(value).strip()
    return float(text) if text else float("nan")


def ingest_bars_file(path: str | Path, data_root: Path, kind: str, *, exchange: str,
                     symbol: str | None = None) -> dict:
    path = Path(path)
    if kind not in REQUIRED:
        raise BarsFileError(f"unknown kind {kind!r}: use ohlcv or funding")
    df, first_line = read_table(path)
    cols = _columns(df, kind, path)
    if symbol is None and "symbol" not in cols:
        raise BarsFileError(f"{path}: no symbol column; pass --symbol")
    bronze = BronzeWriter(Path(data_root) / "bronze", exchange)
    rows_by_symbol: dict[str, list] = {}
    rejected = []
    source = f"file:{path.name}"
    for i, rec in enumerate(df.to_dict("records")):
        line = first_line + i
        sym = str(rec[cols["symbol"]]).strip() if "symbol" in cols else symbol
        where = f"{path}: line {line}"
        try:
            t = parse_time_ms(rec[cols[REQUIRED[kind][0]]])
        except (ValueError, TypeError, OverflowError) as exc:
            rejected.append((where, f"field {REQUIRED[kind][0]}: {exc}", rec))
            continue
        values = []
        for name in REQUIRED[kind][1:] + (("mark_price",) if kind == "funding" and "mark_price" in cols else ()):
            try:
                values.append(_number(rec[cols[name]]))
            except (ValueError, TypeError):
                rejected.append((where, f"field {name}: {rec[cols[name]]!r} is not a number", rec))
                break
        else:
            rows_by_symbol.setdefault(sym, []).append((line, [t, *values]))
    gaps_total = 0
    accepted = 0
    for sym, rows in rows_by_symbol.items():
        rows.sort(key=lambda r: r[1][0])
        if kind == "ohlcv":
            good, last = [], None
            for line, row in rows:
                problem = ohlcv_problem(row, last)
                if problem:
                    rejected.append((f"{path}: line {line}", problem, row))
                else:
                    good.append(row)
                    last = row[0]
            if good:
                arr = np.array(good, dtype=float)
                n = len(good)
                bronze.write("ohlcv_1m", {
                    "open_time_ms": arr[:, 0].astype(np.int64), "open": arr[:, 1], "high": arr[:, 2],
                    "low": arr[:, 3], "close": arr[:, 4], "volume": arr[:, 5],
                    "ts_ingest_ns": np.full(n, time.time_ns(), np.int64), "source": [source] * n}, sym)
                gaps = minute_gaps([int(r[0]) for r in good], None)
                bronze.write_records("venue_gaps", [
                    {"start_ms": a, "end_ms": b, "dataset": "ohlcv_1m",
                     "detail": f"{path.name} has no bars for {(b - a) // MINUTE_MS} minute(s)"} for a, b in gaps], sym)
                gaps_total += len(gaps)
                accepted += n
        else:
            good, last = [], None
            for line, row in rows:
                t, rate = row[0], row[1]
                if last is not None and t <= last:
                    rejected.append((f"{path}: line {line}", f"field funding_time: {t} repeats or goes back", row))
                elif not math.isfinite(rate) or abs(rate) > 1:
                    rejected.append((f"{path}: line {line}", f"field funding_rate: {rate!r} out of range", row))
                else:
                    good.append(row)
                    last = t
            if good:
                n = len(good)
                bronze.write("funding", {
                    "funding_time_ms": np.array([r[0] for r in good], np.int64),
                    "funding_rate": np.array([r[1] for r in good]),
                    "mark_price": np.array([r[2] if len(r) > 2 else float("nan") for r in good]),
                    "ts_ingest_ns": np.full(n, time.time_ns(), np.int64), "source": [source] * n}, sym)
                accepted += n
    bronze.write_records("quarantine", [
        {"ts_recv_ns": time.time_ns(), "conn": -1, "where": where, "reason": reason,
         "raw": json.dumps(rec, default=str), "source": source} for where, reason, rec in rejected])
    return {"rows": len(df), "accepted": accepted, "rejected": len(rejected), "venue_gaps": gaps_total,
            "symbols": sorted(rows_by_symbol), "first_errors": [f"{w}: {r}" for w, r, _ in rejected[:5]]}

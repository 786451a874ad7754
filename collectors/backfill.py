"""REST backfill of 1-min OHLCV and funding history for a perpetuals universe, through ccxt.

For every symbol (every linear perpetual the venue lists, delisted ones included while the venue still lists
them, or a given list) and dataset, pages forward from a resumable checkpoint:

* OHLCV: ``fetch_ohlcv(symbol, "1m", since=cursor, limit=page)`` until the venue has nothing newer; only closed
  bars (``open_time + 60 s <= venue now``) are kept, so a later run tops up without rewriting partial bars.
* funding: ``fetch_funding_rate_history(symbol, since=cursor, limit=page)``.

Every row is validated (times on the grid and increasing; high >= max(open, close); low <= min(open, close);
positive prices, non-negative volume; finite funding); a bad row goes to quarantine with its reason, never into
bronze. Missing minutes between bars are **venue gaps**: recorded in ``venue_gaps`` and never filled. After
each page is written to bronze the checkpoint moves on atomically; part files are named by their first time,
so a page fetched again after a crash replaces itself instead of duplicating rows. Rate limits: ccxt's
throttle (``enableRateLimit``) plus exponential backoff on ``RateLimitExceeded``/``DDoSProtection``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import ccxt
import numpy as np

from collectors.bronze import BronzeWriter
from l2lab import atomic

MINUTE_MS = 60_000
OHLCV_PAGE = 1500
FUNDING_PAGE = 1000


@dataclass
class BackfillReport:
    symbols: int = 0
    requests: int = 0
    rows: dict = field(default_factory=lambda: {"ohlcv_1m": 0, "funding": 0})
    quarantined: int = 0
    venue_gaps: int = 0
    gap_minutes: int = 0
    rate_limited: int = 0
    wall_s: float = 0.0


def linear_perps(client) -> list[dict]:
    """Every linear perpetual swap the venue lists (ccxt markets), delisted-but-listed ones included."""
    markets = client.load_markets()
    return sorted((m for m in markets.values() if m.get("swap") and m.get("linear")), key=lambda m: m["id"])


class Backfill:
    def __init__(self, client, data_root: Path, exchange: str = "binanceusdm", *, source: str = "rest",
                 max_retries: int = 8, sleep=time.sleep, progress=None):
        self.client = client
        self.exchange = exchange
        self.bronze = BronzeWriter(Path(data_root) / "bronze", exchange)
        self.state_dir = Path(data_root) / "bronze" / "_state" / "backfill" / exchange
        self.source = source
        self.max_retries = max_retries
        self.sleep = sleep
        self.progress = progress
        self.report = BackfillReport()

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _checkpoint_path(self, dataset: str, symbol_id: str) -> Path:
        return self.state_dir / dataset / f"{symbol_id}.json"

    def checkpoint(self, dataset: str, symbol_id: str) -> dict | None:
        p = self._checkpoint_path(dataset, symbol_id)
        return json.loads(p.read_text()) if p.exists() else None

    def _save_checkpoint(self, dataset: str, symbol_id: str, state: dict) -> None:
        atomic.write_json(self._checkpoint_path(dataset, symbol_id), state)

    # -- requests -------------------------------------------------------------------------------------------
    def _call(self, fn, *args, **kwargs):
        delay = 1.0
        for attempt in range(self.max_retries + 1):
            try:
                self.report.requests += 1
                return fn(*args, **kwargs)
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
                self.report.rate_limited += 1
                if attempt == self.max_retries:
                    raise
                self.sleep(delay)
                delay = min(60.0, delay * 2)
            except ccxt.NetworkError:
                if attempt == self.max_retries:
                    raise
                self.sleep(delay)
                delay = min(60.0, delay * 2)

    # -- public ---------------------------------------------------------------------------------------------
    def run(self, symbols: list[str] | None = None, *, since_ms: int | None = None, until_ms: int | None = None,
            datasets: tuple[str, ...] = ("ohlcv_1m", "funding")) -> BackfillReport:
        started = time.monotonic()
        markets = linear_perps(self.client)
        by_id = {m["id"]: m for m in markets}
        if symbols:
            unknown = [s for s in symbols if s not in by_id]
            if unknown:
                raise ValueError(f"unknown perp(s) on {self.exchange}: {', '.join(unknown)}")
            markets = [by_id[s] for s in symbols]
        now_ms = self._call(self.client.fetch_time)
        until = min(until_ms, now_ms) if until_ms is not None else now_ms
        for m in markets:
            self.report.symbols += 1
            start = since_ms if since_ms is not None else _onboard_ms(m)
            if "ohlcv_1m" in datasets:
                self._ohlcv(m, start, until)
            if "funding" in datasets:
                self._funding(m, start, until)
        self.report.wall_s = round(time.monotonic() - started, 3)
        return self.report

    # -- OHLCV ----------------------------------------------------------------------------------------------
    def _ohlcv(self, m: dict, start_ms: int, until_ms: int) -> None:
        sid, symbol = m["id"], m["symbol"]
        state = self.checkpoint("ohlcv_1m", sid) or {}
        cursor = max(state.get("next_ms", 0), _ceil_minute(start_ms))
        last = state.get("last_ms")
        last_closed = until_ms - MINUTE_MS  # bars opening after this are not closed yet
        while cursor <= last_closed:
            page = self._call(self.client.fetch_ohlcv, symbol, "1m", since=cursor, limit=OHLCV_PAGE)
            page = [row for row in page if row[0] >= cursor and row[0] <= last_closed]
            if not page:
                break
            good, bad = validate_ohlcv(page, last, where=f"{self.exchange} {sid} fetch_ohlcv since={cursor}")
            gaps = minute_gaps([r[0] for r in good], last)
            self._write_ohlcv(sid, good)
            self._write_problems(sid, bad, gaps, "ohlcv_1m")
            last = good[-1][0] if good else last
            cursor = page[-1][0] + MINUTE_MS
            self._save_checkpoint("ohlcv_1m", sid, {"next_ms": cursor, "last_ms": last})
            if self.progress:
                self.progress(sid, "ohlcv_1m", cursor)

    def _write_ohlcv(self, sid: str, rows: list) -> None:
        if not rows:
            return
        arr = np.array(rows, dtype=float)
        n = len(rows)
        self.bronze.write("ohlcv_1m", {
            "open_time_ms": arr[:, 0].astype(np.int64), "open": arr[:, 1], "high": arr[:, 2], "low": arr[:, 3],
            "close": arr[:, 4], "volume": arr[:, 5], "ts_ingest_ns": np.full(n, time.time_ns(), np.int64),
            "source": [self.source] * n,
        }, sid, name_tag="bf")
        self.report.rows["ohlcv_1m"] += n

    # -- funding --------------------------------------------------------------------------------------------
    def _funding(self, m: dict, start_ms: int, until_ms: int) -> None:
        sid, symbol = m["id"], m["symbol"]
        state = self.checkpoint("funding", sid) or {}
        cursor = max(state.get("next_ms", 0), start_ms)
        last = state.get("last_ms")
        while cursor <= until_ms:
            page = self._call(self.client.fetch_funding_rate_history, symbol, since=cursor, limit=FUNDING_PAGE)
            page = [f for f in page if f["timestamp"] >= cursor and f["timestamp"] <= until_ms]
            if not page:
                break
            rows, bad = [], []
            for f in page:
                t, rate = f["timestamp"], f.get("fundingRate")
                mark = _float((f.get("info") or {}).get("markPrice"))
                if last is not None and t <= last:
                    bad.append({"time_ms": t, "reason": f"field timestamp: {t} not after {last}"})
                elif rate is None or not math.isfinite(rate):
                    bad.append({"time_ms": t, "reason": f"field fundingRate: {rate!r} is not a finite number"})
                else:
                    rows.append((t, rate, mark))
                    last = t
            if rows:
                n = len(rows)
                self.bronze.write("funding", {
                    "funding_time_ms": np.array([r[0] for r in rows], np.int64),
                    "funding_rate": np.array([r[1] for r in rows]), "mark_price": np.array([r[2] for r in rows]),
                    "ts_ingest_ns": np.full(n, time.time_ns(), np.int64), "source": [self.source] * n,
                }, sid, name_tag="bf")
                self.report.rows["funding"] += n
            self._write_problems(sid, bad, [], "funding")
            cursor = page[-1]["timestamp"] + 1
            self._save_checkpoint("funding", sid, {"next_ms": cursor, "last_ms": last})

    # -- quarantine and gaps --------------------------------------------------------------------------------
    def _write_problems(self, sid: str, bad: list[dict], gaps: list[tuple[int, int]], dataset: str) -> None:
        if bad:
            self.report.quarantined += len(bad)
            self.bronze.write_records("quarantine", [
                {"ts_recv_ns": b["time_ms"] * 1_000_000, "conn": -1, "where": f"{self.exchange} {sid} {dataset}",
                 "reason": b["reason"], "raw": json.dumps(b.get("row")), "source": self.source} for b in bad])
        if gaps:
            self.report.venue_gaps += len(gaps)
            self.report.gap_minutes += sum((b - a) // MINUTE_MS for a, b in gaps)
            self.bronze.write_records("venue_gaps", [
                {"start_ms": a, "end_ms": b, "dataset": dataset,
                 "detail": f"venue returned no bars for {(b - a) // MINUTE_MS} minute(s)"} for a, b in gaps], sid)


def validate_ohlcv(rows: list, last_ms: int | None, where: str) -> tuple[list, list[dict]]:
    """Split bars into accepted and rejected (with the reason naming the field)."""
    good, bad = [], []
    for i, row in enumerate(rows):
        reason = ohlcv_problem(row, last_ms)
        if reason:
            bad.append({"time_ms": int(row[0]) if row and isinstance(row[0], (int, float)) else 0,
                        "reason": f"{where} row {i}: {reason}", "row": row})
            continue
        good.append(row)
        last_ms = row[0]
    return good, bad


def ohlcv_problem(row, last_ms) -> str | None:
    """Why a bar ``[time, open, high, low, close, volume]`` cannot be accepted after ``last_ms`` (None: fine);
    the reason names the field."""
    if not isinstance(row, (list, tuple)) or len(row) < 6:
        return "expected [time, open, high, low, close, volume]"
    t, o, h, lo, c, v = row[:6]
    names = ("open", "high", "low", "close", "volume")
    for name, x in zip(names, (o, h, lo, c, v)):
        if not isinstance(x, (int, float)) or not math.isfinite(x):
            return f"field {name}: {x!r} is not a finite number"
    if not isinstance(t, int) or t % MINUTE_MS:
        return f"field time: {t!r} is not on the 1-minute grid"
    if last_ms is not None and t <= last_ms:
        return f"field time: {t} is not after the previous bar {last_ms}"
    if min(o, h, lo, c) <= 0:
        return "field low: prices must be positive"
    if h < max(o, c):
        return f"field high: {h} below max(open, close) {max(o, c)}"
    if lo > min(o, c):
        return f"field low: {lo} above min(open, close) {min(o, c)}"
    if v < 0:
        return f"field volume: {v} is negative"
    return None


def minute_gaps(times: list[int], last_ms: int | None) -> list[tuple[int, int]]:
    """Missing minutes as [start, end) windows, including between ``last_ms`` and the first time."""
    gaps = []
    prev = last_ms
    for t in times:
        if prev is not None and t - prev > MINUTE_MS:
            gaps.append((prev + MINUTE_MS, t))
        prev = t
    return gaps


def _onboard_ms(m: dict) -> int:
    info = m.get("info") or {}
    for key in ("onboardDate", "listingDate"):
        if info.get(key):
            return int(info[key])
    return int(m.get("created") or 0)


def _ceil_minute(ms: int) -> int:
    return -(-int(ms) // MINUTE_MS) * MINUTE_MS


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")

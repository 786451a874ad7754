"""Market data for the backtest: one symbol's bronze ``l2_events`` and ``trades``, streamed hour partition by hour
partition, with the exact book rebuilt by :class:`kernels.book.BookRebuilder` up to any requested time.

Queries go forward in time. Only the partitions between the cursor and the furthest time asked for are in
memory (a partition is dropped once the cursor has passed it), so memory is bounded by a few hours of one symbol.
The book "at t" is the book after every frame received at or before t (a frame is applied whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collectors.bronze import HOUR_NS, hour_key_start_ns, hour_partitions, partition_exps, read_partition
from kernels.book import BookRebuilder
from kernels.frame import DEFAULT_MAX_STALE_NS
from kernels.stream import dedupe_trades
from l2lab.schema import FLAG_FRAME_END, L2_EVENT_DTYPE, TRADE_DTYPE

_REBUILDERS: dict[int, BookRebuilder] = {}
_PARTITIONS: dict = {}  # (folder, its files' names/sizes/mtimes) -> rows: the last few partitions read
PARTITION_CACHE = 4  # partitions kept (the observation pass and the event loop read the same ones in turn)


def cached_partition(folder: Path, dtype: np.dtype) -> np.ndarray:
    """All rows of one bronze hour folder (``collectors.bronze.read_partition``), from a small cache of recent
    reads keyed by the folder's files, so a rewritten partition is read again."""
    files = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("part-*.parquet"))) \
        if folder.exists() else ()
    key = (str(folder), files)
    rows = _PARTITIONS.get(key)
    if rows is None:
        rows = read_partition(folder, dtype)
        while len(_PARTITIONS) >= PARTITION_CACHE:
            _PARTITIONS.pop(next(iter(_PARTITIONS)))
        _PARTITIONS[key] = rows
    return rows


def rebuilder(depth: int) -> BookRebuilder:
    """One rebuilder per depth per process (its ladder is 16 MB: allocate once, reset between symbols)."""
    rb = _REBUILDERS.get(depth)
    if rb is None:
        rb = _REBUILDERS[depth] = BookRebuilder(1, depth=depth, grids_ns=(), event_time=False)
    rb.reset()
    return rb


@dataclass
class Book:
    """One side pair of the book in real units, best first (size 0 = no level), and whether it is whole."""

    t_ns: int
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    valid: bool

    @property
    def two_sided(self) -> bool:
        return self.valid and self.bid_sz[0] > 0 and self.ask_sz[0] > 0 and self.bid_px[0] < self.ask_px[0]

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid_px[0] + self.ask_px[0]) if self.two_sided else np.nan

    def side(self, taker_buy: bool) -> tuple[np.ndarray, np.ndarray]:
        """The levels a taker order walks: asks for a buy, bids for a sell."""
        return (self.ask_px, self.ask_sz) if taker_buy else (self.bid_px, self.bid_sz)


def exchanges(data_root) -> list[str]:
    base = Path(data_root) / "bronze" / "l2_events"
    return sorted(d.name.split("=", 1)[1] for d in base.glob("exchange=*")) if base.exists() else []


def find_exchange(data_root, symbol: str, exchange: str | None, t_ns: int | None = None) -> str:
    """The exchange partition holding ``symbol``: the given one; else the only one that has it; else the only one
    with an hour partition containing ``t_ns`` (e.g. a collected session and a simulated research session of the
    same symbols under different exchanges)."""
    if exchange is not None:
        return exchange
    base = Path(data_root) / "bronze" / "l2_events"
    have = [ex for ex in exchanges(data_root) if (base / f"exchange={ex}" / f"symbol={symbol}").exists()]
    if len(have) > 1 and t_ns is not None:
        hour = np.datetime64(int(t_ns), "ns").astype("datetime64[h]")
        day, hh = str(hour).split("T")
        covering = [ex for ex in have if (base / f"exchange={ex}" / f"symbol={symbol}" / f"date={day}" /
                                          f"hour={hh[:2]}").exists()]
        if len(covering) == 1:
            return covering[0]
    if len(have) != 1:
        raise FileNotFoundError(f"{base}: symbol {symbol} found under exchanges {have or 'none'} and the predictions' "
                                f"first hour does not single one out; set config exchange")
    return have[0]


class SymbolTape:
    """Bronze L2 rows and trades of one symbol, loaded hour by hour as time advances; a book cursor on top."""

    def __init__(self, data_root, exchange: str, symbol: str, depth: int = 20,
                 max_stale_ns: int = DEFAULT_MAX_STALE_NS):
        root = Path(data_root) / "bronze"
        self.max_stale_ns = int(max_stale_ns)
        self.symbol = symbol
        self.l2_base = root / "l2_events" / f"exchange={exchange}" / f"symbol={symbol}"
        self.tr_base = root / "trades" / f"exchange={exchange}" / f"symbol={symbol}"
        self.hours = hour_partitions(self.l2_base)
        if not self.hours:
            raise FileNotFoundError(f"{self.l2_base}: no bronze l2_events partitions")
        self.hour_starts = [hour_key_start_ns(f"{date}/{hour}") for date, hour, _ in self.hours]
        self.price_exp, self.size_exp = partition_exps(self.hours[0][2])
        self.pdiv, self.sdiv = 10.0 ** self.price_exp, 10.0 ** self.size_exp
        self.rb = rebuilder(depth)
        self.depth = depth
        self._recent_ids: dict = {}
        self._next_hour = 0
        self._parts: list[tuple[int, int]] = []  # (l2 rows, trades) per loaded partition, oldest first
        self.ev = np.empty(0, L2_EVENT_DTYPE)
        self.tr = np.empty(0, TRADE_DTYPE)
        self.ev_ts = np.empty(0, np.int64)  # contiguous copies of the receive times (searchsorted needs them)
        self.tr_ts = np.empty(0, np.int64)
        self.pos = 0  # rows of self.ev already fed to the book
        self.rows_fed = 0
        self.trades_loaded = 0

    @property
    def loaded_until_ns(self) -> int:
        """Every row received before this time is loaded (or does not exist)."""
        if self._next_hour >= len(self.hours):
            return np.iinfo(np.int64).max
        return self.hour_starts[self._next_hour]

    def ensure(self, t_ns: int) -> None:
        """Load partitions until every row received at or before ``t_ns`` is in memory."""
        while self._next_hour < len(self.hours) and self.loaded_until_ns <= t_ns:
            date, hour, folder = self.hours[self._next_hour]
            ev = cached_partition(folder, L2_EVENT_DTYPE)
            tr = dedupe_trades(cached_partition(self.tr_base / f"date={date}" / f"hour={hour}", TRADE_DTYPE),
                                self._recent_ids)
            self._next_hour += 1
            self._parts.append((len(ev), len(tr)))
            self.ev = np.concatenate([self.ev, ev]) if len(self.ev) else ev
            self.tr = np.concatenate([self.tr, tr]) if len(self.tr) else tr
            self.ev_ts = np.ascontiguousarray(self.ev["ts_recv_ns"])
            self.tr_ts = np.ascontiguousarray(self.tr["ts_recv_ns"])
            self.trades_loaded += len(tr)

    def _trim(self) -> None:
        """Drop leading partitions the book has fully consumed (keep the last one loaded)."""
        drop_ev = drop_tr = 0
        while len(self._parts) > 1 and self.pos - drop_ev >= self._parts[0][0]:
            n_ev, n_tr = self._parts.pop(0)
            drop_ev += n_ev
            drop_tr += n_tr
        if drop_ev:
            self.ev = self.ev[drop_ev:]
            self.tr = self.tr[drop_tr:]
            self.ev_ts = self.ev_ts[drop_ev:]
            self.tr_ts = self.tr_ts[drop_tr:]
            self.pos -= drop_ev

    def advance(self, t_ns: int) -> None:
        """Feed the book every whole frame received at or before ``t_ns``."""
        self.ensure(t_ns)
        idx = int(np.searchsorted(self.ev_ts, t_ns, side="right"))
        while idx > self.pos and not self.ev[idx - 1]["flags"] & FLAG_FRAME_END:
            idx -= 1  # a frame is applied whole or not at all
        if idx > self.pos:
            self.rb.process(self.ev[self.pos:idx])
            self.rows_fed += idx - self.pos
            self.pos = idx
            self._trim()

    def book(self, t_ns: int) -> Book:
        """The book after every frame received at or before ``t_ns``. Not valid if no frame arrived for more than
        ``max_stale_ns`` (a recording that ended without its stop marker must not leave a frozen book that looks
        current; the same rule as kernels.frame)."""
        self.advance(t_ns)
        top = self.rb.top()
        sdiv, pdiv = self.sdiv, self.pdiv
        fresh = t_ns - int(top.ts_ns[0]) <= self.max_stale_ns
        return Book(int(t_ns), top.bid_px[0] / pdiv, top.bid_sz[0] / sdiv, top.ask_px[0] / pdiv,
                    top.ask_sz[0] / sdiv, bool(top.valid[0]) and fresh)

    def rows_after(self, t0_ns: int, t1_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """L2 rows and trades received in (t0, t1] (loads ahead as needed; does not move the book)."""
        self.ensure(t1_ns)
        a, b = np.searchsorted(self.ev_ts, [t0_ns, t1_ns], side="right")
        c, d = np.searchsorted(self.tr_ts, [t0_ns, t1_ns], side="right")
        return self.ev[a:b], self.tr[c:d]

    def trades_between(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        return self.rows_after(t0_ns, t1_ns)[1]

    def ev_first_ns(self) -> int:
        """Receive time of the first L2 row (loads the first partition)."""
        self.ensure(self.hour_starts[0])
        return int(self.ev_ts[0]) if len(self.ev_ts) else self.hour_starts[0]

    def ev_last_ns(self) -> int:
        """Receive time of the last L2 row (reads only the last partition's receive times)."""
        last = read_partition(self.hours[-1][2], np.dtype([("ts_recv_ns", "<i8")]))
        return int(last["ts_recv_ns"].max()) if len(last) else self.hour_starts[-1] + HOUR_NS - 1

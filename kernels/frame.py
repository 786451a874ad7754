"""The input of the book-table feature kernels: one symbol on one clock grid.

Row i describes the market as it was known at grid time ``t_ns[i]``: the rebuilt book after the last frame
received at or before ``t_ns[i]`` and the trades received in ``(t_ns[i-1], t_ns[i]]``. Nothing received after
``t_ns[i]`` is in row i, so any kernel that reads rows ``<= i`` only is point-in-time by construction.
``avail_ns[i]`` is the receive time of the last input used (the time the row became available).

Prices and sizes are float64 in real units here (the exact mantissas stay in bronze and in the book); a missing
level has price NaN and size 0. Windows continue across partitions through the
kernels' carried state (``kernels.catalog``), not through overlapping rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from l2lab.schema import SIDE_BID


@dataclass
class MarketFrame:
    symbol: str
    step_ns: int
    t_ns: np.ndarray  # int64 (n,)
    avail_ns: np.ndarray  # int64 (n,)
    valid: np.ndarray  # bool (n,): the book is whole (no gap since the last snapshot)
    bid_px: np.ndarray  # float64 (n, depth), best first
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    buy_volume: np.ndarray  # float64 (n,): taker-buy base volume in (t_{i-1}, t_i]
    sell_volume: np.ndarray
    buy_count: np.ndarray  # int64 (n,)
    sell_count: np.ndarray
    notional: np.ndarray  # float64 (n,): sum of price * size in the bucket
    max_trade: np.ndarray  # float64 (n,): largest trade size in the bucket (0 if none)
    last_price: np.ndarray  # float64 (n,): last trade price at or before t (NaN before the first trade)
    book_rows: np.ndarray  # int64 (n,): L2 rows received in the bucket (event intensity)

    @property
    def n(self) -> int:
        return len(self.t_ns)

    @property
    def depth(self) -> int:
        return self.bid_px.shape[1]

    def take(self, idx) -> "MarketFrame":
        """Rows ``idx`` (a slice or index array) as a new frame with its own copies."""
        return MarketFrame(**{k: (np.array(v[idx]) if isinstance(v, np.ndarray) else v)
                              for k, v in self.__dict__.items()})


DEFAULT_MAX_STALE_NS = 60_000_000_000


def build_frame(symbol: str, samples, trades: np.ndarray | None, price_exp: int, size_exp: int,
                step_ns: int, prev_last_price: float = np.nan, prev_row: int | None = None,
                max_stale_ns: int | None = DEFAULT_MAX_STALE_NS, prev_last_trade_ns: int | None = None) -> MarketFrame:
    """A frame from grid samples of ``kernels.book.BookRebuilder`` (``TopN``) and normalized trades
    (``l2lab.schema.TRADE_DTYPE``) received up to the last grid time. ``prev_last_price``, ``prev_row`` and
    ``prev_last_trade_ns`` carry the last trade price, the last sample's stream row and the last trade's receive
    time from the previous chunk (partition, or live row), so any chunking gives the same frame.

    ``avail_ns`` is the receive time of the last input used: the book's last frame, or the last trade at or
    before the row (its price is ``last_price``), whichever is later.

    A row whose book has not been updated for more than ``max_stale_ns`` (default 60 s) is not valid: a recording
    that ended without its stop marker (a crash) must not leave a frozen book that looks current."""
    n = len(samples)
    pdiv, sdiv = 10.0**price_exp, 10.0**size_exp
    sizes = {k: getattr(samples, k).astype(np.float64) / sdiv for k in ("bid_sz", "ask_sz")}
    prices = {}
    for k, sz in (("bid_px", "bid_sz"), ("ask_px", "ask_sz")):
        px = getattr(samples, k).astype(np.float64) / pdiv
        px[getattr(samples, sz) == 0] = np.nan
        prices[k] = px
    t = samples.ts_ns.astype(np.int64)
    buy_v = np.zeros(n)
    sell_v = np.zeros(n)
    buy_c = np.zeros(n, np.int64)
    sell_c = np.zeros(n, np.int64)
    notional = np.zeros(n)
    max_trade = np.zeros(n)
    last_price = np.full(n, np.nan)
    avail = samples.ts_avail_ns.astype(np.int64).copy()
    prev_t = -1 if prev_last_trade_ns is None else int(prev_last_trade_ns)
    if trades is not None and len(trades) and n:
        tt = trades["ts_recv_ns"]
        bucket = np.searchsorted(t, tt, side="left")  # trade at ts goes to the first grid time >= ts
        keep = bucket < n
        b = bucket[keep]
        px = trades["price"][keep] / pdiv
        sz = trades["size"][keep] / sdiv
        is_buy = trades["side"][keep] == SIDE_BID
        np.add.at(buy_v, b[is_buy], sz[is_buy])
        np.add.at(sell_v, b[~is_buy], sz[~is_buy])
        np.add.at(buy_c, b[is_buy], 1)
        np.add.at(sell_c, b[~is_buy], 1)
        np.add.at(notional, b, px * sz)
        np.maximum.at(max_trade, b, sz)
        # last trade price at or before each grid time, and the trade's receive time for availability
        order = np.argsort(b, kind="stable")  # receive order within each bucket
        b_sorted = b[order]
        run_ends = np.flatnonzero(np.r_[b_sorted[1:] != b_sorted[:-1], True]) if len(b_sorted) else b_sorted
        last_idx = np.full(n, -1)
        last_idx[b_sorted[run_ends]] = order[run_ends]  # the last trade of each bucket
        filled = np.maximum.accumulate(last_idx)
        last_price = np.where(filled >= 0, px[np.maximum(filled, 0)], prev_last_price)
        trade_t = tt[keep]
        avail = np.maximum(avail, np.where(filled >= 0, trade_t[np.maximum(filled, 0)], prev_t))
    elif n:
        last_price[:] = prev_last_price
        avail = np.maximum(avail, prev_t)
    rows = samples.row.astype(np.int64)
    book_rows = np.diff(rows, prepend=rows[0] if prev_row is None else prev_row) if n else rows
    valid = samples.valid.astype(bool)
    if max_stale_ns is not None:
        valid &= (t - samples.ts_avail_ns.astype(np.int64)) <= max_stale_ns
    return MarketFrame(symbol, int(step_ns), t, avail, valid, prices["bid_px"],
                       sizes["bid_sz"], prices["ask_px"], sizes["ask_sz"], buy_v, sell_v, buy_c, sell_c, notional,
                       max_trade, last_price, book_rows)


TOUCH_COLUMNS = ("ts_ns", "ts_avail_ns", "valid", "bid_px_L0", "ask_px_L0", "bid_sz_L0", "ask_sz_L0")


def touch_frame(symbol: str, step_ns: int, col: dict) -> MarketFrame:
    """A depth-1 frame from book-feature columns (:data:`TOUCH_COLUMNS`: the grid times, validity and the
    touch), with no trades: what labels and cross-asset features read. Silver rows (``features build``) and live
    rows (``l2lab live``) go through this one function."""
    n = len(col["ts_ns"])
    bid_px = np.asarray(col["bid_px_L0"]).reshape(n, 1).astype(float)
    ask_px = np.asarray(col["ask_px_L0"]).reshape(n, 1).astype(float)
    bid_sz = np.asarray(col["bid_sz_L0"]).reshape(n, 1).astype(float)
    ask_sz = np.asarray(col["ask_sz_L0"]).reshape(n, 1).astype(float)
    zeros, izeros = np.zeros(n), np.zeros(n, np.int64)
    return MarketFrame(symbol, int(step_ns), np.asarray(col["ts_ns"]), np.asarray(col["ts_avail_ns"]),
                       np.asarray(col["valid"]).astype(bool), bid_px, bid_sz, ask_px, ask_sz, zeros, zeros.copy(),
                       izeros, izeros.copy(), zeros.copy(), zeros.copy(), np.full(n, np.nan), izeros.copy())

"""One order's execution at the venue: a market order against the arrival book, or a resting limit order through
the queue model (research.backtest.fills), with the execution-cost breakdown.

Cost breakdown of a fill of q at VWAP v for an order of direction d (+1 buy, -1 sell) decided when the observed
mid was m_dec, arriving at a book with mid m_arr and touch a (the best price on the side it takes: the ask for a
buy; for a resting order, its own limit price):

    latency  = d (m_arr - m_dec) q       the market moved between decision and arrival
    spread   = d (a - m_arr) q           half the spread (negative for a maker: it earns it)
    impact   = d (v - a) q               walking past the touch (0 for a maker)
    shortfall = latency + spread + impact = d (v - m_dec) q     (implementation shortfall vs the decision mid)

Fees are separate (research.backtest.fees).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from research.backtest.fills import passive_fills, walk_book
from research.backtest.market import Book, SymbolTape
from l2lab.schema import SIDE_ASK, SIDE_BID


@dataclass
class Execution:
    """One arrival at the venue and what it filled."""

    t_arr_ns: int
    maker: bool
    requested: float
    filled: float = 0.0
    notional: float = 0.0
    fee: float = 0.0
    arr_mid: float = np.nan
    touch: float = np.nan
    last_fill_ns: int = 0
    levels: int = 0
    rejected: str = ""  # why nothing could be filled ("" if not rejected)
    taker_px: np.ndarray | None = None  # the side a taker would walk on arrival (capacity curve)
    taker_sz: np.ndarray | None = None

    @property
    def vwap(self) -> float:
        return self.notional / self.filled if self.filled > 0 else np.nan


@dataclass
class Leg:
    """Every execution of one decision (an entry or an exit) of direction ``d``."""

    d: int
    target: float
    dec_ns: int
    dec_mid: float
    reason: str
    execs: list[Execution] = field(default_factory=list)

    @property
    def filled(self) -> float:
        return sum(e.filled for e in self.execs)

    @property
    def notional(self) -> float:
        return sum(e.notional for e in self.execs)

    @property
    def fees(self) -> float:
        return sum(e.fee for e in self.execs)

    @property
    def vwap(self) -> float:
        f = self.filled
        return self.notional / f if f > 0 else np.nan

    def costs(self) -> dict[str, float]:
        """latency, spread, impact (quote currency) summed over the executions; see the module docstring."""
        out = {"latency": 0.0, "spread": 0.0, "impact": 0.0}
        for e in self.execs:
            if e.filled <= 0:
                continue
            out["latency"] += self.d * (e.arr_mid - self.dec_mid) * e.filled
            out["spread"] += self.d * (e.touch - e.arr_mid) * e.filled
            out["impact"] += self.d * (e.notional - e.touch * e.filled)
        return out


def _arrive(book: Book, d: int, qty: float, maker: bool) -> Execution:
    """An order of direction d reaching ``book``: rejected unless the book is whole and two-sided; records the
    levels a taker would walk (for the capacity curve) and the arrival mid."""
    ex = Execution(book.t_ns, maker, qty)
    if not book.two_sided:
        ex.rejected = "book not whole" if not book.valid else "book one-sided or crossed"
        return ex
    px, sz = book.side(d > 0)
    ex.taker_px, ex.taker_sz = px.copy(), sz.copy()
    ex.arr_mid = book.mid
    return ex


def market_order(book: Book, d: int, qty: float) -> Execution:
    """A market order of ``qty`` (direction d) against ``book`` (the book at arrival)."""
    ex = _arrive(book, d, qty, maker=False)
    if ex.rejected:
        return ex
    px, sz = ex.taker_px, ex.taker_sz
    ex.touch = px[0]
    ex.filled, ex.notional, ex.levels, _ = walk_book(px, sz, float(qty))
    ex.last_fill_ns = book.t_ns
    return ex


def limit_order(tape: SymbolTape, book: Book, d: int, qty: float, t_end_ns: int) -> Execution:
    """A limit order at our side's best price (bid for a buy) resting from ``book.t_ns`` until ``t_end_ns``."""
    ex = _arrive(book, d, qty, maker=True)
    if ex.rejected:
        return ex
    own_px, own_sz = (book.bid_px, book.bid_sz) if d > 0 else (book.ask_px, book.ask_sz)
    price = own_px[0]
    ex.touch = price
    ev, tr = tape.rows_after(book.t_ns, t_end_ns)
    p_m = int(round(price * tape.pdiv))
    q_m = float(qty) * tape.sdiv
    queue = own_sz[0] * tape.sdiv
    out_ts = np.empty(len(tr) + len(ev) + 1, np.int64)
    out_q = np.empty(len(out_ts), np.float64)
    n, _, _, gap = passive_fills(SIDE_BID if d > 0 else SIDE_ASK, p_m, q_m, queue, queue, t_end_ns,
                                 ev["ts_recv_ns"], ev["kind"], ev["side"], ev["price"], ev["size"], ev["flags"],
                                 tr["ts_recv_ns"], tr["side"], tr["price"], tr["size"], out_ts, out_q)
    ex.filled = float(out_q[:n].sum()) / tape.sdiv
    ex.notional = ex.filled * price
    ex.last_fill_ns = int(out_ts[n - 1]) if n else book.t_ns
    if gap:
        ex.rejected = "gap while resting"
    return ex

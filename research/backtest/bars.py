"""What the strategy sees at each prediction time (its "bars"): the recorded book at the prediction's ``ts_ns``
and the trades received since the previous prediction. One streaming pass over the symbol's bronze data.

A bar i covers (t_{i-1}, t_i]. Its close is the observed mid at t_i; its high/low span the close, the previous
close and every trade price in the bar, so the true range is TR_i = high_i - low_i (Wilder's true range with the
previous close folded in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.backtest.market import SymbolTape


@dataclass
class Bars:
    t_ns: np.ndarray  # int64 (n,)
    mid: np.ndarray  # float64 (n,), NaN where the book is not whole and two-sided
    bid: np.ndarray
    ask: np.ndarray
    high: np.ndarray
    low: np.ndarray

    @property
    def n(self) -> int:
        return len(self.t_ns)

    @property
    def spread(self) -> np.ndarray:
        return self.ask - self.bid


def observe(tape: SymbolTape, t_ns: np.ndarray) -> Bars:
    """Observed book and trade range at each of the increasing times ``t_ns``."""
    n = len(t_ns)
    mid, bid, ask, high, low = (np.full(n, np.nan) for _ in range(5))
    prev_t = int(t_ns[0]) - 1 if n else 0
    prev_close = np.nan
    for i, t in enumerate(t_ns.tolist()):
        book = tape.book(t)
        tr = tape.trades_between(prev_t, t)
        if book.two_sided:
            bid[i], ask[i] = book.bid_px[0], book.ask_px[0]
            mid[i] = 0.5 * (bid[i] + ask[i])
        prices = tr["price"] / tape.pdiv if len(tr) else np.empty(0)
        span = np.concatenate([prices, [mid[i], prev_close]])
        span = span[np.isfinite(span)]
        if len(span):
            high[i], low[i] = span.max(), span.min()
        if np.isfinite(mid[i]):
            prev_close = mid[i]
        prev_t = t
    return Bars(np.asarray(t_ns, np.int64), mid, bid, ask, high, low)

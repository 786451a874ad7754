"""Capacity curve: net PnL of the same trades at k times their size, as taker orders on the recorded arrival books.

For every closed trade with an entry and an exit arrival book (the first execution of each leg): the entry walks
k x (its requested size) through the entry book (filled f_k, fills never beyond the visible depth), the exit walks
f_k through the exit book; an exit remainder beyond the visible depth is valued at the deepest visible price (an
optimistic bound: the flag ``depth_limited`` counts such trades). Fees at the first tier's taker rate. The
decisions (and so the trades) are those of the base run: a larger size would not change when the strategy
trades, only what it costs.
"""

from __future__ import annotations

import numpy as np

from research.backtest.fills import walk_book


def curve(lots: list, multipliers: list[float], taker_bps: float) -> list[dict]:
    out = []
    for k in multipliers:
        net = gross = fees = 0.0
        n = limited = 0
        for lot in lots:
            if lot.state != "closed" or not lot.exits or not lot.entry.execs:
                continue
            e = lot.entry.execs[0]
            x = next((ex for leg in lot.exits for ex in leg.execs if ex.taker_px is not None), None)
            if e.taker_px is None or x is None:
                continue
            f_e, n_e, _, _ = walk_book(e.taker_px, e.taker_sz, k * lot.entry.target)
            if f_e <= 0:
                continue
            f_x, n_x, _, last = walk_book(x.taker_px, x.taker_sz, f_e)
            if f_x < f_e:
                limited += 1
                deepest = x.taker_px[x.taker_sz > 0][-1] if (x.taker_sz > 0).any() else np.nan
                n_x += (f_e - f_x) * deepest
            g = lot.d * (n_x - n_e)
            fee = (n_e + n_x) * taker_bps / 1e4
            gross += g
            fees += fee
            net += g - fee
            n += 1
        out.append({"multiplier": float(k), "net_pnl": net, "gross_pnl": gross, "fees": fees, "trades": n,
                    "depth_limited": limited})
    return out

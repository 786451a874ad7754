"""Fill rules against the rebuilt L2 book (numba kernels; pure-Python twins live in the tests).

Market orders (taker)
    A buy of q walks the asks best first at the book the order meets on arrival (never the book the strategy saw
    when it decided): level k fills min(remaining, size_k) at price_k. The fill never exceeds the displayed
    volume of the visible levels; what is left is unfilled (a partial fill). VWAP = sum(p_k x f_k) / sum(f_k).

Passive limit orders (maker), the queue model
    A buy limit at price P joins **behind** the displayed bid size at P (queue_ahead = that size on arrival;
    0 if P is not in the book). Then, in receive order (trades before book rows at equal times):

    * a trade that hits our side at P (a taker sell at P for a bid) of size v first consumes the queue ahead:
      used = min(queue, v); we fill min(v - used, remaining);
    * a trade through P (a taker sell below P) means every order at P was taken: we fill min(v, remaining) and
      the queue ahead is 0;
    * a book row at P on our side that lowers the displayed size by d: the part not explained by trades at P
      since the last row is a cancellation c; cancellations are spread evenly over the level, so the queue ahead
      shrinks by c x queue / displayed; the queue never exceeds the new displayed size. Increases join behind us.
    * a book row on the other side at a price that crosses P (an ask <= P for a bid) adds size that would have
      traded with the level at P: after the queue ahead we fill min(added - queue, remaining), where ``added`` is
      the increase over the last crossing row at the same price (the whole size for a new price);
    * an ``L2_GAP`` ends the order (its queue position is unknown): the rest is cancelled.

    The order rests until ``t_end``; fills are stamped with the receive time of the row that caused them (when the
    strategy learns of them). Fills are at P. Sizes are exact integer mantissas; the queue is kept as a float
    because proportional cancellation divides.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from l2lab.schema import FLAG_DUPLICATE, L2_DELETE, L2_GAP, SIDE_ASK, SIDE_BID


@njit(cache=True)
def walk_book(px, sz, qty):
    """Market order of ``qty`` against one side's levels (best first; size 0 = no level).

    Returns (filled, notional, levels_touched, last_price)."""
    remaining = qty
    notional = 0.0
    filled = 0.0
    k = 0
    last = np.nan
    while remaining > 0.0 and k < px.shape[0] and sz[k] > 0.0:
        f = min(remaining, sz[k])
        notional += f * px[k]
        filled += f
        remaining -= f
        last = px[k]
        k += 1
    return filled, notional, k, last


@njit(cache=True)
def passive_fills(side, price, qty, queue, displayed, t_end,
                  ev_ts, ev_kind, ev_side, ev_price, ev_size, ev_flags, tr_ts, tr_side, tr_price, tr_size,
                  out_ts, out_qty):
    """Simulate a resting limit order (see the module docstring). ``side``: SIDE_BID for a buy, SIDE_ASK for a
    sell. ``queue`` / ``displayed``: size ahead and displayed size at ``price`` on arrival. The event arrays start
    just after arrival. Returns (n_fills, remaining, queue_left, ended_by_gap); fills in out_ts / out_qty."""
    i = 0
    j = 0
    n = 0
    remaining = float(qty)
    q = float(queue)
    disp = float(displayed)
    traded_at_p = 0.0  # traded volume at P not yet matched by a book row
    other_p = -1  # the last crossing opposite level seen and its size (so only additions count)
    other_s = 0.0
    hit_side = SIDE_ASK if side == SIDE_BID else SIDE_BID  # the taker side that trades against us
    gap = False
    while remaining > 0.0 and (i < ev_ts.shape[0] or j < tr_ts.shape[0]):
        f = 0.0  # our fill caused by this trade or book row
        take_trade = j < tr_ts.shape[0] and (i >= ev_ts.shape[0] or tr_ts[j] <= ev_ts[i])
        if take_trade:
            t = tr_ts[j]
            if t > t_end:
                break
            if tr_side[j] == hit_side:
                p = tr_price[j]
                v = float(tr_size[j])
                through = p < price if side == SIDE_BID else p > price
                if p == price:
                    used = min(q, v)
                    q -= used
                    f = min(v - used, remaining)
                    traded_at_p += v - f
                elif through:
                    f = min(v, remaining)
                    q = 0.0
            j += 1
        else:
            t = ev_ts[i]
            if t > t_end:
                break
            if ev_flags[i] & FLAG_DUPLICATE:
                i += 1
                continue
            if ev_kind[i] == L2_GAP:
                gap = True
                break
            s = 0.0 if ev_kind[i] == L2_DELETE else float(ev_size[i])
            p = ev_price[i]
            if ev_side[i] == side and p == price:
                d = disp - s
                if d > 0.0:
                    explained = min(d, traded_at_p)
                    traded_at_p -= explained
                    c = d - explained
                    if c > 0.0 and disp > 0.0:
                        q -= c * q / disp
                disp = s
                if q > disp:
                    q = disp
            elif ev_side[i] != side:
                crosses = p <= price if side == SIDE_BID else p >= price
                if crosses:
                    added = s - other_s if p == other_p else s
                    other_p = p
                    other_s = s
                    if added > 0.0:
                        used = min(q, added)
                        q -= used
                        f = min(added - used, remaining)
            i += 1
        if f > 0.0:
            out_ts[n] = t
            out_qty[n] = f
            n += 1
            remaining -= f
    return n, remaining, q, gap

"""Exact price ladder for one book (two sides): a dense window of ticks plus a sorted overflow store.

Side keys
    Both sides are stored the same way under a *side key*, ``key = price`` for asks and ``key = -price`` for
    bids (price mantissas), so "better" is always "smaller key" and the best level is the minimum key.

Placement (the one rule every function keeps)
    A level with price p on side s lives in exactly one place:
    * the **ladder** ``lad[s, i]`` (its size, 0 = empty) when p is a multiple of the tick and its key in ticks
      ``kt = key // tick`` falls in the window ``base[s] <= kt < base[s] + W`` (``i = kt - base[s]``);
    * otherwise the **overflow**: ``ovk[s, :n_ov]`` (side keys, strictly increasing) / ``ovs[s, :n_ov]``
      (sizes > 0). Far levels and off-grid prices (an input error, kept exactly) go there.
    So a lookup is a pure function of (price, base) and nothing is ever dropped.

Window bookkeeping per side (scalars ``sc``, see the ``S_*`` offsets): ``lo`` is the smallest occupied ladder
index (W if none), ``hi`` an upper bound of the largest (-1 if none), ``n_win`` the occupied ladder cells,
``n_ov`` the overflow count. Recentering re-places every level under a new base so the touch sits at W/4:
it happens when a new level lands on the grid *better* than the window, when the ladder's best drifts past
W/2, or when the ladder empties while the overflow holds levels. Output never depends on the base.

The overflow arrays may be reallocated (doubled) by any mutating function, which therefore returns
``(ovk, ovs)``; callers must use the returned arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# scalar state layout (int64). Per-side entries are at offset + side.
S_TICK = 0
S_WIDTH = 1
S_BASE = 2  # +side
S_LO = 4  # +side
S_HI = 6  # +side
S_NWIN = 8  # +side
S_NOV = 10  # +side
S_RECENTERS = 12
S_MISSING_DELETES = 13
S_OFF_GRID = 14
N_LADDER_SCALARS = 15


def new_ladder(tick: int, width: int, overflow_capacity: int = 256):
    """Allocate (lad, ovk, ovs, sc) for one book: ``2 * width`` int64 ladder cells (allocate once, reuse)."""
    if tick <= 0:
        raise ValueError(f"tick mantissa must be > 0, got {tick}")
    if width < 64:
        raise ValueError(f"ladder width must be >= 64 ticks, got {width}")
    lad = np.zeros((2, width), dtype=np.int64)
    ovk = np.zeros((2, overflow_capacity), dtype=np.int64)
    ovs = np.zeros((2, overflow_capacity), dtype=np.int64)
    sc = np.zeros(N_LADDER_SCALARS, dtype=np.int64)
    sc[S_TICK] = tick
    sc[S_WIDTH] = width
    for s in range(2):
        sc[S_LO + s] = width
        sc[S_HI + s] = -1
    return lad, ovk, ovs, sc


@njit(cache=True)
def side_key(s, price):
    """Side key of a price: ask -> price, bid -> -price (best = smallest key on both sides)."""
    return price if s == 1 else -price


@njit(cache=True)
def _grow(ovk, ovs, need):
    """Overflow arrays with room for ``need`` entries per side (doubling), contents kept."""
    cap = ovk.shape[1]
    if need <= cap:
        return ovk, ovs
    new_cap = max(2 * cap, need, 16)
    k2 = np.zeros((2, new_cap), dtype=np.int64)
    s2 = np.zeros((2, new_cap), dtype=np.int64)
    k2[:, :cap] = ovk
    s2[:, :cap] = ovs
    return k2, s2


@njit(cache=True)
def clear_side(lad, sc, s):
    """Empty side s (ladder cells in [lo, hi] zeroed, overflow count 0). The base is kept."""
    w = sc[S_WIDTH]
    lo = sc[S_LO + s]
    hi = sc[S_HI + s]
    if sc[S_NWIN + s] > 0:
        for i in range(lo, hi + 1):
            lad[s, i] = 0
    sc[S_LO + s] = w
    sc[S_HI + s] = -1
    sc[S_NWIN + s] = 0
    sc[S_NOV + s] = 0


@njit(cache=True)
def recenter(lad, ovk, ovs, sc, s, new_base):
    """Re-place every level of side s under ``new_base`` (merge ladder and overflow in key order, then split).

    Invariants kept: placement rule, overflow strictly increasing, lo/hi/n_win/n_ov exact. O(hi - lo + n_ov).
    """
    w = sc[S_WIDTH]
    tick = sc[S_TICK]
    base = sc[S_BASE + s]
    nwin = sc[S_NWIN + s]
    nov = sc[S_NOV + s]
    total = nwin + nov
    tk = np.empty(total, dtype=np.int64)
    ts = np.empty(total, dtype=np.int64)
    # merge: ladder cells ascending = keys ascending
    i = sc[S_LO + s]
    hi = sc[S_HI + s]
    j = 0
    n = 0
    while n < total:
        while i <= hi and lad[s, i] == 0:
            i += 1
        if i <= hi and (j >= nov or (base + i) * tick < ovk[s, j]):
            tk[n] = (base + i) * tick
            ts[n] = lad[s, i]
            lad[s, i] = 0
            i += 1
        else:
            tk[n] = ovk[s, j]
            ts[n] = ovs[s, j]
            j += 1
        n += 1
    ovk, ovs = _grow(ovk, ovs, total)
    sc[S_BASE + s] = new_base
    lo = w
    hi = -1
    nwin = 0
    nov = 0
    for n in range(total):
        key = tk[n]
        idx = -1
        if key % tick == 0:
            idx = key // tick - new_base
        if 0 <= idx < w:
            lad[s, idx] = ts[n]
            nwin += 1
            if idx < lo:
                lo = idx
            hi = idx
        else:
            ovk[s, nov] = key
            ovs[s, nov] = ts[n]
            nov += 1
    sc[S_LO + s] = lo
    sc[S_HI + s] = hi
    sc[S_NWIN + s] = nwin
    sc[S_NOV + s] = nov
    sc[S_RECENTERS] += 1
    return ovk, ovs


@njit(cache=True)
def _first_on_grid_overflow(ovk, sc, s):
    """Smallest on-grid overflow key in ticks, and whether there is one."""
    tick = sc[S_TICK]
    for j in range(sc[S_NOV + s]):
        if ovk[s, j] % tick == 0:
            return ovk[s, j] // tick, True
    return 0, False


@njit(cache=True)
def _overflow_set(ovk, ovs, sc, s, key, size):
    """Set (size > 0) or delete (size == 0) ``key`` in the sorted overflow of side s. Returns (ovk, ovs, found)."""
    nov = sc[S_NOV + s]
    pos = np.searchsorted(ovk[s, :nov], key)
    found = pos < nov and ovk[s, pos] == key
    if size > 0:
        if found:
            ovs[s, pos] = size
        else:
            ovk, ovs = _grow(ovk, ovs, nov + 1)
            for m in range(nov, pos, -1):
                ovk[s, m] = ovk[s, m - 1]
                ovs[s, m] = ovs[s, m - 1]
            ovk[s, pos] = key
            ovs[s, pos] = size
            sc[S_NOV + s] = nov + 1
    elif found:
        for m in range(pos, nov - 1):
            ovk[s, m] = ovk[s, m + 1]
            ovs[s, m] = ovs[s, m + 1]
        sc[S_NOV + s] = nov - 1
    return ovk, ovs, found


@njit(cache=True)
def set_level(lad, ovk, ovs, sc, s, price, size):
    """Set the level ``price`` of side s to ``size`` (> 0), or delete it (``size == 0``).

    Exact: the stored size is the given integer. A delete of a missing level changes nothing and is counted in
    ``sc[S_MISSING_DELETES]``; an off-grid price is counted in ``sc[S_OFF_GRID]`` and stored in the overflow.
    Returns ``(ovk, ovs)`` (possibly reallocated).
    """
    w = sc[S_WIDTH]
    tick = sc[S_TICK]
    key = price if s == 1 else -price
    on_grid = key % tick == 0
    if not on_grid:
        sc[S_OFF_GRID] += 1
    else:
        kt = key // tick
        if size > 0 and sc[S_NWIN + s] == 0:
            idx = kt - sc[S_BASE + s]
            if idx < 0 or idx >= w:
                if sc[S_NOV + s] == 0:
                    sc[S_BASE + s] = kt - w // 4  # empty side: free re-anchor
                else:
                    ovk, ovs = recenter(lad, ovk, ovs, sc, s, kt - w // 4)
        elif size > 0 and kt < sc[S_BASE + s]:
            # the touch moved past the window's good edge
            ovk, ovs = recenter(lad, ovk, ovs, sc, s, kt - w // 4)
        idx = kt - sc[S_BASE + s]
        if 0 <= idx < w:
            old = lad[s, idx]
            if size > 0:
                lad[s, idx] = size
                if old == 0:
                    sc[S_NWIN + s] += 1
                    if idx < sc[S_LO + s]:
                        sc[S_LO + s] = idx
                    if idx > sc[S_HI + s]:
                        sc[S_HI + s] = idx
                return ovk, ovs
            if old == 0:
                sc[S_MISSING_DELETES] += 1
                return ovk, ovs
            lad[s, idx] = 0
            nwin = sc[S_NWIN + s] - 1
            sc[S_NWIN + s] = nwin
            if nwin == 0:
                sc[S_LO + s] = w
                sc[S_HI + s] = -1
                t, ok = _first_on_grid_overflow(ovk, sc, s)
                if ok:
                    ovk, ovs = recenter(lad, ovk, ovs, sc, s, t - w // 4)
                return ovk, ovs
            if idx == sc[S_LO + s]:
                i = idx + 1
                while lad[s, i] == 0:
                    i += 1
                sc[S_LO + s] = i
                if i >= w // 2:
                    # the touch drifted deep into the window
                    ovk, ovs = recenter(lad, ovk, ovs, sc, s, sc[S_BASE + s] + i - w // 4)
            elif idx == sc[S_HI + s]:
                i = idx - 1
                while lad[s, i] == 0:
                    i -= 1
                sc[S_HI + s] = i
            return ovk, ovs
    ovk, ovs, found = _overflow_set(ovk, ovs, sc, s, key, size)
    if size == 0 and not found:
        sc[S_MISSING_DELETES] += 1
    return ovk, ovs


@njit(cache=True)
def best_level(lad, ovk, ovs, sc, s):
    """(price, size) of the best level of side s, or (0, 0) if the side is empty. O(1)."""
    tick = sc[S_TICK]
    has_lad = sc[S_NWIN + s] > 0
    has_ov = sc[S_NOV + s] > 0
    if has_lad:
        lo = sc[S_LO + s]
        key = (sc[S_BASE + s] + lo) * tick
        if has_ov and ovk[s, 0] < key:
            key = ovk[s, 0]
            return (key if s == 1 else -key), ovs[s, 0]
        return (key if s == 1 else -key), lad[s, lo]
    if has_ov:
        key = ovk[s, 0]
        return (key if s == 1 else -key), ovs[s, 0]
    return 0, 0


@njit(cache=True)
def top_levels(lad, ovk, ovs, sc, s, out_px, out_sz):
    """Write the best ``len(out_px)`` levels of side s, best first; empty slots get price 0, size 0.

    Merges the ladder (walked from lo) with the overflow (walked from its start) in key order. Returns the
    number of levels written.
    """
    n_want = out_px.shape[0]
    tick = sc[S_TICK]
    base = sc[S_BASE + s]
    i = sc[S_LO + s]
    left = sc[S_NWIN + s]
    nov = sc[S_NOV + s]
    j = 0
    n = 0
    while n < n_want and (left > 0 or j < nov):
        if left > 0:
            while lad[s, i] == 0:
                i += 1
            key = (base + i) * tick
            if j < nov and ovk[s, j] < key:
                key = ovk[s, j]
                size = ovs[s, j]
                j += 1
            else:
                size = lad[s, i]
                i += 1
                left -= 1
        else:
            key = ovk[s, j]
            size = ovs[s, j]
            j += 1
        out_px[n] = key if s == 1 else -key
        out_sz[n] = size
        n += 1
    for m in range(n, n_want):
        out_px[m] = 0
        out_sz[m] = 0
    return n


@njit(cache=True)
def n_levels(sc, s):
    """Number of levels on side s."""
    return sc[S_NWIN + s] + sc[S_NOV + s]

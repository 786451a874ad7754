"""Exact price ladder for one book (two sides): a dense window of ticks plus a sorted overflow store.

Side keys
    Both sides are stored the same way under a *side key*, ``key = price`` for asks and ``key = -price`` for
    bids (price mantissas), so "better" is always "smaller key" and the best level is the minimum key.

Placement (the one rule every function keeps)
    A level with price p on side s lives in exactly one place:
    * the **ladder** ``lad[s, i]`` (its size, 0 = empty) when p is a multiple of the tick and its key in ticks
      ``kt = key // tick`` falls in the window ``base[s] <= kt < base[s] + W`` (``i = kt - base[s]``);
    * otherwise the **overflow**: ``ovk[s, :n_ov]`` (side keys, strictly increasing) / ``ovs[s, :n_ov]``
      (sizes > 0). Far levels and off-grid prices (an input error, kept exactly) go there. Row 2 of
      ``ovk``/``ovs`` is scratch space for recentering.
    So a lookup is a pure function of (price, base) and nothing is ever dropped.

Occupancy bitmaps
    ``bits[s, i >> 6]`` has bit ``i & 63`` set iff ``lad[s, i] != 0``; ``summ[s, w >> 6]`` has bit ``w & 63``
    set iff ``bits[s, w] != 0``. They make "next occupied cell" cost O(1) words for any gap up to 4096 ticks,
    so sparse books (levels many ticks apart) walk as fast as dense ones.

Window bookkeeping per side (scalars ``sc``, see the ``S_*`` offsets): ``lo`` is the smallest occupied ladder
index (W if none), ``n_win`` the occupied ladder cells, ``n_ov`` the overflow count. Recentering re-places
every level under a new base so the touch sits at W/4: it happens when a new level lands on the grid *better*
than the window, when the ladder's best drifts past W/2, or when the ladder empties while the overflow holds
levels. Samples never depend on the base.

No allocation, no reference counting
    The kernels never allocate, so the hot loops can be compiled without numba's reference-counting runtime
    (``_nrt=False``): with it, the increments/decrements of the array arguments cost ~6x the ladder work
    (66 vs 11 ns per level change, measured). Callers keep ``ovk.shape[1] > n_win + n_ov + 1`` for each side
    before a mutation (a set adds at most one level; a recenter moves at most all of them through the scratch
    row), growing the arrays with :meth:`Ladder.reserve` outside numba; ``process_rows`` stops and asks for
    that when it gets close.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# scalar state layout (int64). Per-side entries are at offset + side.
S_TICK = 0
S_WIDTH = 1
S_BASE = 2  # +side
S_LO = 4  # +side
S_NWIN = 6  # +side
S_NOV = 8  # +side
S_RECENTERS = 10
S_MISSING_DELETES = 11
S_OFF_GRID = 12
N_LADDER_SCALARS = 13

_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_CTZ = np.array([0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45,
                 39, 33, 30, 24, 18, 12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46,
                 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6], dtype=np.int64)


class Ladder:
    """The arrays of one book's ladder: ``lad, bits, summ, ovk, ovs, sc`` (see the module docstring)."""

    def __init__(self, tick: int, width: int, overflow_capacity: int = 256):
        if tick <= 0:
            raise ValueError(f"tick mantissa must be > 0, got {tick}")
        if width < 64 or width % 64:
            raise ValueError(f"ladder width must be a positive multiple of 64 ticks, got {width}")
        words = width // 64
        self.lad = np.zeros((2, width), dtype=np.int64)
        self.bits = np.zeros((2, words), dtype=np.uint64)
        self.summ = np.zeros((2, (words + 63) // 64), dtype=np.uint64)
        self.ovk = np.zeros((3, overflow_capacity), dtype=np.int64)  # rows: bid, ask, scratch
        self.ovs = np.zeros((3, overflow_capacity), dtype=np.int64)
        self.sc = np.zeros(N_LADDER_SCALARS, dtype=np.int64)
        self.sc[S_TICK] = tick
        self.sc[S_WIDTH] = width
        self.sc[S_LO:S_LO + 2] = width

    def reserve(self, levels: int) -> None:
        """Make room for ``levels`` levels per side in the overflow (doubling)."""
        cap = self.ovk.shape[1]
        if levels <= cap:
            return
        new = max(2 * cap, levels)
        k = np.zeros((3, new), dtype=np.int64)
        v = np.zeros((3, new), dtype=np.int64)
        k[:, :cap] = self.ovk
        v[:, :cap] = self.ovs
        self.ovk, self.ovs = k, v

    def set(self, s: int, price: int, size: int) -> None:
        """Python-side single set (reserving room first), for loading state."""
        self.reserve(int(n_levels(self.sc, s)) + 2)
        set_level(self.lad, self.bits, self.summ, self.ovk, self.ovs, self.sc, s, price, size)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.lad, self.bits, self.summ, self.ovk, self.ovs, self.sc))


@njit(cache=True, inline="always")
def _ctz(x):
    """Index of the lowest set bit of a non-zero uint64."""
    return _CTZ[((x & (~x + _ONE)) * _DEBRUIJN) >> np.uint64(58)]


@njit(cache=True, inline="always")
def next_occupied(bits, summ, s, i):
    """Smallest occupied ladder index >= i on side s, or the width if there is none."""
    nwords = bits.shape[1]
    wi = i >> 6
    if wi >= nwords:
        return nwords << 6
    x = bits[s, wi] & (_ALL << np.uint64(i & 63))
    if x:
        return (wi << 6) + _ctz(x)
    wj = wi + 1
    if wj >= nwords:
        return nwords << 6
    si = wj >> 6
    y = summ[s, si] & (_ALL << np.uint64(wj & 63))
    while y == 0:
        si += 1
        if si >= summ.shape[1]:
            return nwords << 6
        y = summ[s, si]
    wj = (si << 6) + _ctz(y)
    return (wj << 6) + _ctz(bits[s, wj])


@njit(cache=True, inline="always")
def _mark(bits, summ, s, i):
    wi = i >> 6
    bits[s, wi] |= _ONE << np.uint64(i & 63)
    summ[s, wi >> 6] |= _ONE << np.uint64(wi & 63)


@njit(cache=True, inline="always")
def _unmark(bits, summ, s, i):
    wi = i >> 6
    x = bits[s, wi] & ~(_ONE << np.uint64(i & 63))
    bits[s, wi] = x
    if x == 0:
        summ[s, wi >> 6] &= ~(_ONE << np.uint64(wi & 63))


@njit(cache=True)
def clear_side(lad, bits, summ, sc, s):
    """Empty side s: O(levels) (occupied cells found through the bitmaps). The base is kept."""
    i = sc[S_LO + s]
    for _ in range(sc[S_NWIN + s]):
        i = next_occupied(bits, summ, s, i)
        lad[s, i] = 0
        _unmark(bits, summ, s, i)
        i += 1
    sc[S_LO + s] = sc[S_WIDTH]
    sc[S_NWIN + s] = 0
    sc[S_NOV + s] = 0


@njit(cache=True)
def recenter(lad, bits, summ, ovk, ovs, sc, s, new_base):
    """Re-place every level of side s under ``new_base`` (merge ladder and overflow in key order, then split).

    Invariants kept: placement rule, bitmaps, overflow strictly increasing, lo/n_win/n_ov exact.
    O(levels + words walked).
    """
    w = sc[S_WIDTH]
    tick = sc[S_TICK]
    base = sc[S_BASE + s]
    nwin = sc[S_NWIN + s]
    nov = sc[S_NOV + s]
    total = nwin + nov
    tk = ovk[2]
    ts = ovs[2]
    i = next_occupied(bits, summ, s, sc[S_LO + s]) if nwin > 0 else w
    left = nwin
    j = 0
    for n in range(total):
        if left > 0 and (j >= nov or (base + i) * tick < ovk[s, j]):
            tk[n] = (base + i) * tick
            ts[n] = lad[s, i]
            lad[s, i] = 0
            _unmark(bits, summ, s, i)
            left -= 1
            if left > 0:
                i = next_occupied(bits, summ, s, i + 1)
        else:
            tk[n] = ovk[s, j]
            ts[n] = ovs[s, j]
            j += 1
    sc[S_BASE + s] = new_base
    lo = w
    nwin = 0
    nov = 0
    for n in range(total):
        key = tk[n]
        q = key // tick
        idx = q - new_base if q * tick == key else -1
        if 0 <= idx < w:
            lad[s, idx] = ts[n]
            _mark(bits, summ, s, idx)
            nwin += 1
            if idx < lo:
                lo = idx
        else:
            ovk[s, nov] = key
            ovs[s, nov] = ts[n]
            nov += 1
    sc[S_LO + s] = lo
    sc[S_NWIN + s] = nwin
    sc[S_NOV + s] = nov
    sc[S_RECENTERS] += 1


@njit(cache=True)
def _first_on_grid_overflow(ovk, sc, s):
    """Smallest on-grid overflow key in ticks, and whether there is one."""
    tick = sc[S_TICK]
    for j in range(sc[S_NOV + s]):
        q = ovk[s, j] // tick
        if q * tick == ovk[s, j]:
            return q, True
    return 0, False


@njit(cache=True, inline="always")
def _overflow_set(ovk, ovs, sc, s, key, size):
    """Set (size > 0) or delete (size == 0) ``key`` in the sorted overflow of side s. Returns whether it was
    there."""
    nov = sc[S_NOV + s]
    pos = 0  # first index with ovk[s, pos] >= key
    hi = nov
    while pos < hi:
        mid = (pos + hi) >> 1
        if ovk[s, mid] < key:
            pos = mid + 1
        else:
            hi = mid
    found = pos < nov and ovk[s, pos] == key
    if size > 0:
        if found:
            ovs[s, pos] = size
        else:
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
    return found


@njit(cache=True, inline="always")
def set_level(lad, bits, summ, ovk, ovs, sc, s, price, size):
    """Set the level ``price`` of side s to ``size`` (> 0), or delete it (``size == 0``).

    Exact: the stored size is the given integer. A delete of a missing level changes nothing and is counted in
    ``sc[S_MISSING_DELETES]``; an off-grid price is counted in ``sc[S_OFF_GRID]`` and stored in the overflow.
    Needs ``ovk.shape[1] > n_levels(sc, s)``.
    """
    w = sc[S_WIDTH]
    tick = sc[S_TICK]
    key = price if s == 1 else -price
    if tick == 1:  # the usual case (price exponent = tick decimals): skip a 64-bit division
        kt = key
    else:
        kt = key // tick
    if kt * tick != key:
        sc[S_OFF_GRID] += 1
    else:
        if size > 0 and sc[S_NWIN + s] == 0:
            idx = kt - sc[S_BASE + s]
            if idx < 0 or idx >= w:
                if sc[S_NOV + s] == 0:
                    sc[S_BASE + s] = kt - w // 4  # empty side: free re-anchor
                else:
                    recenter(lad, bits, summ, ovk, ovs, sc, s, kt - w // 4)
        elif size > 0 and kt < sc[S_BASE + s]:
            # the touch moved past the window's good edge
            recenter(lad, bits, summ, ovk, ovs, sc, s, kt - w // 4)
        idx = kt - sc[S_BASE + s]
        if 0 <= idx < w:
            old = lad[s, idx]
            if size > 0:
                lad[s, idx] = size
                if old == 0:
                    _mark(bits, summ, s, idx)
                    sc[S_NWIN + s] += 1
                    if idx < sc[S_LO + s]:
                        sc[S_LO + s] = idx
                return
            if old == 0:
                sc[S_MISSING_DELETES] += 1
                return
            lad[s, idx] = 0
            _unmark(bits, summ, s, idx)
            nwin = sc[S_NWIN + s] - 1
            sc[S_NWIN + s] = nwin
            if nwin == 0:
                sc[S_LO + s] = w
                t, ok = _first_on_grid_overflow(ovk, sc, s)
                if ok:
                    recenter(lad, bits, summ, ovk, ovs, sc, s, t - w // 4)
            elif idx == sc[S_LO + s]:
                i = next_occupied(bits, summ, s, idx + 1)
                sc[S_LO + s] = i
                if i >= w // 2:
                    # the touch drifted deep into the window
                    recenter(lad, bits, summ, ovk, ovs, sc, s, sc[S_BASE + s] + i - w // 4)
            return
    found = _overflow_set(ovk, ovs, sc, s, key, size)
    if size == 0 and not found:
        sc[S_MISSING_DELETES] += 1


@njit(cache=True, inline="always")
def best_level(lad, ovk, ovs, sc, s):
    """(price, size) of the best level of side s, or (0, 0) if the side is empty. O(1)."""
    tick = sc[S_TICK]
    if sc[S_NWIN + s] > 0:
        lo = sc[S_LO + s]
        key = (sc[S_BASE + s] + lo) * tick
        if sc[S_NOV + s] > 0 and ovk[s, 0] < key:
            key = ovk[s, 0]
            return (key if s == 1 else -key), ovs[s, 0]
        return (key if s == 1 else -key), lad[s, lo]
    if sc[S_NOV + s] > 0:
        key = ovk[s, 0]
        return (key if s == 1 else -key), ovs[s, 0]
    return 0, 0


@njit(cache=True, inline="always")
def top_levels(lad, bits, summ, ovk, ovs, sc, s, out_px, out_sz):
    """Write the best ``len(out_px)`` levels of side s, best first; empty slots get price 0, size 0.

    Merges the ladder (walked from lo one occupancy word at a time) with the overflow (walked from its start)
    in key order. Returns the number of levels written.
    """
    n_want = out_px.shape[0]
    tick = sc[S_TICK]
    base = sc[S_BASE + s]
    left = sc[S_NWIN + s]
    nov = sc[S_NOV + s]
    i = sc[S_LO + s]
    wi = i >> 6
    x = np.uint64(0)  # occupied cells of word wi not yet consumed
    if left > 0:
        x = bits[s, wi] & (_ALL << np.uint64(i & 63))
    lkey = 0
    j = 0
    n = 0
    while n < n_want and (left > 0 or j < nov):
        if left > 0:
            if x == 0:
                i = next_occupied(bits, summ, s, (wi + 1) << 6)
                wi = i >> 6
                x = bits[s, wi] & (_ALL << np.uint64(i & 63))
            i = (wi << 6) + _ctz(x)
            lkey = (base + i) * tick
        if left > 0 and (j >= nov or lkey < ovk[s, j]):
            key = lkey
            out_sz[n] = lad[s, i]
            left -= 1
            x &= x - _ONE
        else:
            key = ovk[s, j]
            out_sz[n] = ovs[s, j]
            j += 1
        out_px[n] = key if s == 1 else -key
        n += 1
    for m in range(n, n_want):
        out_px[m] = 0
        out_sz[m] = 0
    return n


@njit(cache=True, inline="always")
def n_levels(sc, s):
    """Number of levels on side s."""
    return sc[S_NWIN + s] + sc[S_NOV + s]

"""Order-book event engine (numba): turns one symbol's latent block into venue events.

Per latent step i (length dt, efficient price F_i in ticks, signal s_i, regime activity a_i):

1. Stale quotes. Every ask below F_i and every bid above F_i is stale. With probability ``p_pickoff`` an
   informed taker takes the whole level (a trade flagged FLAG_INFORMED, then a level delete); otherwise the
   maker cancels it first (a level delete).
2. Market orders. Count ~ Poisson((mu_m a_i + x_i) dt), Hawkes clustering through the excitation x, which
   decays as exp(-dt / tau) and jumps by n / tau per market order (kernel (n/tau) e^{-t/tau}, branching n).
   P(buy | s) = (1 + tanh(gamma s_i)) / 2. Size ~ lognormal; the order walks the opposite side from the touch,
   one trade and one level change per level touched. Never trades more than is displayed.
3. Limit orders. Count ~ Poisson((lambda_L a_i + b x_i) dt). P(bid | s) = (1 + tanh(gamma_L s_i)) / 2.
   Near the touch (probability ``near_fraction``) the offset from F is 1 + Geometric(mean near_offset_ticks)
   ticks beyond the minimum half-spread; deeper orders sit Exponential(deep_offset_bps) bps away. A limit
   order never crosses the opposite best. Sizes are lognormal, growing with distance (a depth profile).
4. Cancels. Count ~ Poisson(h (n_bid + n_ask) dt + b x_i dt); each picks a uniform random level, deletes it
   (p=1/2) or removes a uniform fraction of it.
5. Levels farther than ``max_offset_bps`` from F are deleted; a side over capacity drops its worst level.

Events inside a step get non-decreasing times t_i + (k + u_k) dt / n. Randomness is a splitmix64 stream
whose state is carried explicitly, so results depend only on the seed, never on global RNG state.

Book storage: per side a sorted key array with the best level last (key = price for bids, -price for asks),
so touch updates shift few elements.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator.events import FLAG_INFORMED, KIND_L2, KIND_TRADE

# parameter vector layout (float64) for run_block
P_MU_MARKET, P_LIMIT_RATE, P_CANCEL_HAZARD, P_BRANCHING, P_DECAY_S, P_BURST = 0, 1, 2, 3, 4, 5
P_MKT_SIZE_LOTS, P_LIM_SIZE_LOTS, P_NEAR_FRACTION, P_NEAR_TICKS, P_DEEP_BPS, P_MAX_BPS = 6, 7, 8, 9, 10, 11
P_MIN_HALF_TICKS, P_GAMMA_M, P_GAMMA_L, P_PICKOFF, P_DT_S, P_TICK = 12, 13, 14, 15, 16, 17
N_PARAMS = 18

# scalar state layout (float64): hawkes excitation, next trade id
S_EXCITATION, S_TRADE_ID = 0, 1


class BookState:
    """Carried engine state of one symbol: two sorted sides, RNG state, excitation, trade id counter."""

    def __init__(self, capacity: int, seed: int):
        self.keys = np.zeros((2, capacity), dtype=np.int64)
        self.sizes = np.zeros((2, capacity), dtype=np.int64)
        self.counts = np.zeros(2, dtype=np.int64)
        self.rng = np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
        self.scalars = np.array([0.0, 1.0])

    def copy(self) -> "BookState":
        out = BookState.__new__(BookState)
        out.keys, out.sizes, out.counts = self.keys.copy(), self.sizes.copy(), self.counts.copy()
        out.rng, out.scalars = self.rng.copy(), self.scalars.copy()
        return out

    def side(self, side: int) -> np.ndarray:
        """Levels of one side, best first, as int64 (n, 2): (price ticks, size lots)."""
        n = int(self.counts[side])
        keys = self.keys[side, :n][::-1]
        prices = keys if side == 0 else -keys
        return np.column_stack((prices, self.sizes[side, :n][::-1])).astype(np.int64)


@njit(cache=True, inline="always")
def _next_u64(rng):
    rng[0] += np.uint64(0x9E3779B97F4A7C15)
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(rng):
    """Uniform on the open interval (0, 1)."""
    return (float(_next_u64(rng) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal(rng):
    return math.sqrt(-2.0 * math.log(_uniform(rng))) * math.cos(2.0 * math.pi * _uniform(rng))


@njit(cache=True)
def _poisson(rng, lam):
    if lam <= 0.0:
        return 0
    if lam > 30.0:
        return max(0, int(round(lam + math.sqrt(lam) * _normal(rng))))
    limit = math.exp(-lam)
    k = 0
    p = _uniform(rng)
    while p > limit:
        k += 1
        p *= _uniform(rng)
    return k


@njit(cache=True)
def _lognormal_lots(rng, mean_lots, shape):
    """Lognormal with the given mean (sigma = shape), at least one lot."""
    mu = math.log(mean_lots) - 0.5 * shape * shape
    return max(1, int(math.exp(mu + shape * _normal(rng))))


@njit(cache=True)
def _find(keys, n, key):
    """Index of ``key`` in ascending keys[:n], or -(insertion point) - 1."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and keys[lo] == key:
        return lo
    return -lo - 1


@njit(cache=True)
def _remove(keys, sizes, counts, side, idx):
    n = counts[side]
    for j in range(idx, n - 1):
        keys[side, j] = keys[side, j + 1]
        sizes[side, j] = sizes[side, j + 1]
    counts[side] = n - 1


@njit(cache=True)
def _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m, ts, kind, side, px, sz, tid, flags):
    out_ts[m] = ts
    out_kind[m] = kind
    out_side[m] = side
    out_px[m] = px
    out_sz[m] = sz
    out_tid[m] = tid
    out_flags[m] = flags
    return m + 1


@njit(cache=True)
def run_block(t_ns, dt_ns, log_price, signal, activity, params, keys, sizes, counts, rng, scalars,
              out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, top_bid, top_ask):
    """Run one latent block; returns the number of events written, or -1 if the output buffers are full
    (the caller then retries the block with larger buffers from a saved state copy). ``top_bid[i]`` and
    ``top_ask[i]`` receive the best prices at the end of step i (-1 for an empty side)."""
    cap_out = out_ts.shape[0]
    cap_book = keys.shape[1]
    dt_s = params[P_DT_S]
    tick = params[P_TICK]
    decay = math.exp(-dt_s / params[P_DECAY_S])
    jump = params[P_BRANCHING] / params[P_DECAY_S]
    half = params[P_MIN_HALF_TICKS]
    m = 0
    for i in range(t_ns.shape[0]):
        if m + 4 * cap_book + 4096 > cap_out:
            return -1
        t0 = t_ns[i]
        fair = math.exp(log_price[i]) / tick  # efficient price in ticks
        s = signal[i]
        act = activity[i]
        # 1. stale quotes: asks below fair, bids above fair
        for side in range(2):
            while counts[side] > 0:
                best = counts[side] - 1
                key = keys[side, best]
                px = key if side == 0 else -key
                stale = px > fair if side == 0 else px < fair
                if not stale:
                    break
                if _uniform(rng) < params[P_PICKOFF]:
                    tid = np.int64(scalars[S_TRADE_ID])
                    scalars[S_TRADE_ID] += 1.0
                    taker = 1 - side  # taker sells into a bid, buys an ask
                    m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                              t0, KIND_TRADE, taker, px, sizes[side, best], tid, FLAG_INFORMED)
                m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                          t0, KIND_L2, side, px, 0, -1, 0)
                counts[side] = best
        # 2-4. counts of each action in this step
        x = scalars[S_EXCITATION]
        n_mkt = _poisson(rng, (params[P_MU_MARKET] * act + x) * dt_s)
        n_lim = _poisson(rng, (params[P_LIMIT_RATE] * act + params[P_BURST] * x) * dt_s)
        n_can = _poisson(rng, (params[P_CANCEL_HAZARD] * (counts[0] + counts[1]) + params[P_BURST] * x) * dt_s)
        total = n_mkt + n_lim + n_can
        x *= decay
        rem_m, rem_l = n_mkt, n_lim
        for k in range(total):
            ts = t0 + np.int64((k + _uniform(rng)) * dt_ns / total)
            # pick the action kind uniformly among the remaining ones (random interleaving)
            u = _uniform(rng) * (total - k)
            if u < rem_m:
                rem_m -= 1
                x += jump
                side_taker = 0 if _uniform(rng) < 0.5 * (1.0 + math.tanh(params[P_GAMMA_M] * s)) else 1
                book_side = 1 - side_taker
                want = _lognormal_lots(rng, params[P_MKT_SIZE_LOTS], 1.0)
                while want > 0 and counts[book_side] > 0:
                    best = counts[book_side] - 1
                    key = keys[book_side, best]
                    px = key if book_side == 0 else -key
                    avail = sizes[book_side, best]
                    fill = want if want < avail else avail
                    tid = np.int64(scalars[S_TRADE_ID])
                    scalars[S_TRADE_ID] += 1.0
                    m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                              ts, KIND_TRADE, side_taker, px, fill, tid, 0)
                    want -= fill
                    if fill == avail:
                        counts[book_side] = best
                        m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                                  ts, KIND_L2, book_side, px, 0, -1, 0)
                    else:
                        sizes[book_side, best] = avail - fill
                        m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                                  ts, KIND_L2, book_side, px, avail - fill, -1, 0)
            elif u < rem_m + rem_l:
                rem_l -= 1
                side = 0 if _uniform(rng) < 0.5 * (1.0 + math.tanh(params[P_GAMMA_L] * s)) else 1
                if _uniform(rng) < params[P_NEAR_FRACTION]:
                    q = 1.0 / params[P_NEAR_TICKS]
                    off = half + 1.0 + math.floor(math.log(_uniform(rng)) / math.log(1.0 - q)) if q < 1.0 else half + 1.0
                    dist_bps = off / fair * 1e4
                else:
                    dist_bps = -params[P_DEEP_BPS] * math.log(_uniform(rng))
                    off = half + 1.0 + dist_bps * 1e-4 * fair
                if side == 0:
                    px = np.int64(math.floor(fair - off))
                    if counts[1] > 0:
                        best_ask = -keys[1, counts[1] - 1]
                        if px >= best_ask:
                            px = best_ask - 1
                    key = px
                else:
                    px = np.int64(math.ceil(fair + off))
                    if counts[0] > 0:
                        best_bid = keys[0, counts[0] - 1]
                        if px <= best_bid:
                            px = best_bid + 1
                    key = -px
                if px <= 0:
                    continue
                lots = _lognormal_lots(rng, params[P_LIM_SIZE_LOTS] * (1.0 + dist_bps / 4.0), 0.9)
                idx = _find(keys[side], counts[side], key)
                if idx >= 0:
                    sizes[side, idx] += lots
                    new_size = sizes[side, idx]
                else:
                    ins = -idx - 1
                    if counts[side] == cap_book:
                        # drop the worst level (index 0) to make room
                        wkey = keys[side, 0]
                        m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                                  ts, KIND_L2, side, wkey if side == 0 else -wkey, 0, -1, 0)
                        _remove(keys, sizes, counts, side, 0)
                        ins -= 1
                        if ins < 0:
                            continue
                    n = counts[side]
                    for j in range(n, ins, -1):
                        keys[side, j] = keys[side, j - 1]
                        sizes[side, j] = sizes[side, j - 1]
                    keys[side, ins] = key
                    sizes[side, ins] = lots
                    counts[side] = n + 1
                    new_size = lots
                m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                          ts, KIND_L2, side, px, new_size, -1, 0)
            else:
                nb, na = counts[0], counts[1]
                if nb + na == 0:
                    continue
                side = 0 if _uniform(rng) * (nb + na) < nb else 1
                idx = min(counts[side] - 1, int(_uniform(rng) * counts[side]))
                key = keys[side, idx]
                px = key if side == 0 else -key
                if _uniform(rng) < 0.5:
                    new_size = 0
                else:
                    new_size = int(sizes[side, idx] * _uniform(rng))
                if new_size <= 0:
                    _remove(keys, sizes, counts, side, idx)
                    new_size = 0
                else:
                    sizes[side, idx] = new_size
                m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                          ts, KIND_L2, side, px, new_size, -1, 0)
        scalars[S_EXCITATION] = x
        # 5. far levels
        limit_ticks = params[P_MAX_BPS] * 1e-4 * fair
        t_end = t0 + dt_ns - 1
        for side in range(2):
            while counts[side] > 0:
                key = keys[side, 0]
                px = key if side == 0 else -key
                if abs(px - fair) <= limit_ticks:
                    break
                m = _emit(out_ts, out_kind, out_side, out_px, out_sz, out_tid, out_flags, m,
                          t_end, KIND_L2, side, px, 0, -1, 0)
                _remove(keys, sizes, counts, side, 0)
        top_bid[i] = keys[0, counts[0] - 1] if counts[0] > 0 else -1
        top_ask[i] = -keys[1, counts[1] - 1] if counts[1] > 0 else -1
    return m

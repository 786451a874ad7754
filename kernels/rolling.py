"""Rolling features: realized volatility, spread, volatility regime, event intensity, burstiness and trade
arrival over clock windows (forward reach 0).

Windows are in seconds and become W = round(w / step) grid rows (the grid of a :class:`kernels.frame.MarketFrame`
is regular, one row per step, so a window of W rows is exactly the last w seconds: rows i-W+1..i). The state
carried between calls (``new_state()``) holds a ring buffer per input series, the running window sums, the row
count and the previous mid, so a partition-by-partition or row-by-row run gives the batch values bit for bit.

Inputs per row i (m_i the mid (b_0 + a_0)/2, NaN when the row is invalid or a side is empty):

* r_i = ln(m_i / m_{i-1}): the mid log return, **defined only when rows i-1 and i both have a mid** (a return
  into or out of an invalid row, or across an empty side, contributes nothing: its path is unknown).
* s_i = 1e4 (a_0 - b_0) / m_i, the spread in bps (negative when crossed: the book as received).
* e_i = ``book_rows`` (L2 rows received in the bucket) and c_i = ``buy_count + sell_count`` (trades).

**Invalid rows** (``valid == False``) contribute nothing to any window (not their spread, returns, event or
trade counts); rates divide by the valid time in the window (n_valid rows x step), means by the number of
contributions. A value is NaN until W rows have been seen since the start of the data (the window is full:
never a partial window at the data start) and NaN when the window holds no contribution.

Features (window w in seconds, n = number of contributions in the window):

* ``rv_mid_{w}s`` = sqrt(sum r_j^2), realized volatility of the mid (Andersen, Bollerslev, Diebold & Labys
  2003), not annualized, unit: log return.
* ``spread_bps_mean_{w}s`` = sum s_j / n.
* ``vol_regime_frac_{w}s``: share of the rows j in the window at which the short-window realized variance per
  return exceeded the long one, I_j = 1[ sum_{10 s} r^2 / n_{10 s} > sum_{300 s} r^2 / n_{300 s} ] (i.e. the
  10 s volatility above the 300 s volatility on a per-time basis); rows where I_j is undefined (either window not
  full or empty) are skipped. 1 = persistently high-volatility regime, 0 = persistently calm.
* ``book_event_rate_{w}s`` = sum e_j / (n step_s): L2 rows per second of valid time.
* ``book_event_burstiness_{w}s`` = (sigma - mu) / (sigma + mu) of the per-row event counts e_j (population
  sigma, Goh & Barabasi 2008, "Burstiness and memory in complex systems"): -1 regular, 0 Poisson-like, -> 1
  bursty; NaN with fewer than 2 contributions or when sigma + mu = 0.
* ``trade_arrival_rate_{w}s`` = sum c_j / (n step_s): trades per second of valid time.

Running sums are updated by adding the new value and subtracting the one leaving; each window sum is recomputed
from its ring buffer every W rows (so rounding drift is bounded by W steps) and is exactly 0 when every value in
the window is 0 (counts of non-zero values are tracked), so constant prices give exactly 0 volatility.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.catalog import FeatureSpec
from kernels.frame import MarketFrame

KERNEL = "kernels.rolling.compute"
RV_WINDOWS_S = (10, 30, 60, 300)
SPREAD_WINDOWS_S = (10, 60, 300)
REGIME_SHORT_S, REGIME_LONG_S = 10, 300
REGIME_WINDOWS_S = (60, 300)
EVENT_WINDOWS_S = (10, 60, 300)
BURST_WINDOWS_S = (60, 300)
TRADE_WINDOWS_S = (10, 60, 300)


def _spec(name, unit, window_s, description, reference="", params=None):
    return FeatureSpec(name=name, family="rolling", kernel=KERNEL, table="book", unit=unit, window=f"{window_s} s",
                       description=description, reference=reference, params={"window_s": window_s, **(params or {})})


FEATURES: list[FeatureSpec] = []
FEATURES += [_spec(f"rv_mid_{w}s", "log return", w, f"realized volatility sqrt(sum r^2) of mid log returns over {w} s",
                   "Andersen, Bollerslev, Diebold & Labys (2003), Modeling and forecasting realized volatility")
             for w in RV_WINDOWS_S]
FEATURES += [_spec(f"spread_bps_mean_{w}s", "bps", w, f"mean spread in bps over the valid rows of the last {w} s")
             for w in SPREAD_WINDOWS_S]
FEATURES += [_spec(f"vol_regime_frac_{w}s", "1", w + REGIME_LONG_S,
                   f"share of the last {w} s in which {REGIME_SHORT_S} s realized variance per return exceeded the "
                   f"{REGIME_LONG_S} s one", params={"short_s": REGIME_SHORT_S, "long_s": REGIME_LONG_S})
             for w in REGIME_WINDOWS_S]
FEATURES += [_spec(f"book_event_rate_{w}s", "1/s", w, f"L2 rows received per second of valid time over {w} s")
             for w in EVENT_WINDOWS_S]
FEATURES += [_spec(f"book_event_burstiness_{w}s", "1", w,
                   f"burstiness (sigma - mu) / (sigma + mu) of per-row L2 row counts over {w} s",
                   "Goh & Barabasi (2008), Burstiness and memory in complex systems") for w in BURST_WINDOWS_S]
FEATURES += [_spec(f"trade_arrival_rate_{w}s", "1/s", w, f"trades per second of valid time over {w} s")
             for w in TRADE_WINDOWS_S]


def window_rows(window_s: float, step_ns: int) -> int:
    """Rows in a window of ``window_s`` seconds on a grid of ``step_ns`` (at least 1)."""
    return max(1, int(round(window_s * 1e9 / step_ns)))


# -- the generic multi-window rolling sum ---------------------------------------------------------------------
# State of one input series with windows wins[0..m-1] (rows), ring length L = max(wins):
#   buf (L,) float64, NaN = no contribution;  ist (1 + 3 m,) int64: [seen, cnt_k..., nnz_k..., since_k...];
#   fst (m,) float64: running sums.


@njit(cache=True)
def roll_sums(x, wins, buf, ist, fst, out_sum, out_cnt):
    """Running sum and count of the non-NaN values of ``x`` over the last ``wins[k]`` rows, for every k.

    out_sum[i, k] = sum_{j = i-W_k+1..i, x_j not NaN} x_j;  out_cnt[i, k] = #{those j}, or -1 while fewer than
    W_k rows have been seen (window not full). Add/subtract updates; exact recompute from ``buf`` every W_k rows;
    a window whose values are all 0 sums to exactly 0. Window: max(wins) rows. Forward reach: 0.
    """
    L = buf.shape[0]
    m = wins.shape[0]
    for i in range(x.shape[0]):
        seen = ist[0]
        v = x[i]
        for k in range(m):
            w = wins[k]
            if seen - w >= 0:  # the value leaving window k
                old = buf[(seen - w) % L]
                if not math.isnan(old):
                    fst[k] -= old
                    ist[1 + k] -= 1
                    if old != 0.0:
                        ist[1 + m + k] -= 1
            if not math.isnan(v):
                fst[k] += v
                ist[1 + k] += 1
                if v != 0.0:
                    ist[1 + m + k] += 1
        buf[seen % L] = v
        seen += 1
        ist[0] = seen
        for k in range(m):
            w = wins[k]
            ist[1 + 2 * m + k] += 1
            if ist[1 + 2 * m + k] >= w:  # exact recompute from the ring
                ist[1 + 2 * m + k] = 0
                s = 0.0
                for j in range(max(0, seen - w), seen):
                    b = buf[j % L]
                    if not math.isnan(b):
                        s += b
                fst[k] = s
            if ist[1 + m + k] == 0:
                fst[k] = 0.0
            out_sum[i, k] = fst[k]
            out_cnt[i, k] = ist[1 + k] if seen >= w else -1


def _series_state(wins: np.ndarray) -> dict:
    m = len(wins)
    return {"wins": wins, "buf": np.full(int(wins.max()), np.nan), "ist": np.zeros(1 + 3 * m, np.int64),
            "fst": np.zeros(m)}


def _roll(x: np.ndarray, st: dict) -> tuple[np.ndarray, np.ndarray]:
    n, m = len(x), len(st["wins"])
    s, c = np.empty((n, m)), np.empty((n, m), np.int64)
    roll_sums(np.ascontiguousarray(x, dtype=np.float64), st["wins"], st["buf"], st["ist"], st["fst"], s, c)
    return s, c


@njit(cache=True)
def mid_returns(mid, prev_mid, out):
    """r_i = ln(m_i / m_{i-1}) when both are finite and > 0, else NaN; ``prev_mid[0]`` carries m_{-1} in and the
    last mid out. Window: 1 row. Forward reach: 0."""
    p = prev_mid[0]
    for i in range(mid.shape[0]):
        m = mid[i]
        if m > 0.0 and p > 0.0 and not math.isnan(m) and not math.isnan(p):
            out[i] = math.log(m / p)
        else:
            out[i] = np.nan
        p = m
    prev_mid[0] = p


def _wins(seconds, step_ns) -> np.ndarray:
    return np.array([window_rows(w, step_ns) for w in seconds], np.int64)


def new_state(step_ns: int | None = None) -> dict:
    """Empty carried state; the ring buffers are sized on the first call (they depend on the grid step)."""
    return {"step_ns": step_ns, "prev_mid": np.array([np.nan])}


def _init(state: dict, step_ns: int) -> None:
    if state.get("step_ns") not in (None, step_ns):
        raise ValueError(f"rolling state was built for step {state['step_ns']} ns, frame has {step_ns} ns")
    state["step_ns"] = step_ns
    if "r2" in state:
        return
    state["r2"] = _series_state(_wins(sorted({*RV_WINDOWS_S, REGIME_SHORT_S, REGIME_LONG_S}), step_ns))
    state["spread"] = _series_state(_wins(SPREAD_WINDOWS_S, step_ns))
    state["regime"] = _series_state(_wins(REGIME_WINDOWS_S, step_ns))
    ev_w = sorted({*EVENT_WINDOWS_S, *BURST_WINDOWS_S})
    state["events"] = _series_state(_wins(ev_w, step_ns))
    state["events2"] = _series_state(_wins(ev_w, step_ns))
    state["trades"] = _series_state(_wins(TRADE_WINDOWS_S, step_ns))


def _div(num, den):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def compute(f: MarketFrame, state: dict | None = None) -> dict[str, np.ndarray]:
    """Every rolling feature for every row of ``f`` (formulas in the module docstring)."""
    state = new_state() if state is None else state
    _init(state, int(f.step_ns))
    step_s = f.step_ns / 1e9
    valid = f.valid.astype(bool)
    b0, a0 = f.bid_px[:, 0], f.ask_px[:, 0]
    mid = np.where(valid, (b0 + a0) / 2.0, np.nan)
    r = np.empty(f.n)
    mid_returns(mid, state["prev_mid"], r)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(mid != 0, 1e4 * (a0 - b0) / mid, np.nan)
    out: dict[str, np.ndarray] = {}

    wr = [int(w) for w in (sorted({*RV_WINDOWS_S, REGIME_SHORT_S, REGIME_LONG_S}))]
    s, c = _roll(r * r, state["r2"])
    for w in RV_WINDOWS_S:
        k = wr.index(w)
        out[f"rv_mid_{w}s"] = np.where(c[:, k] > 0, np.sqrt(s[:, k]), np.nan)
    ks, kl = wr.index(REGIME_SHORT_S), wr.index(REGIME_LONG_S)
    short, long_ = _div(s[:, ks], c[:, ks]), _div(s[:, kl], c[:, kl])
    ind = np.where(np.isnan(short) | np.isnan(long_), np.nan, (short > long_).astype(np.float64))
    s, c = _roll(ind, state["regime"])
    for k, w in enumerate(REGIME_WINDOWS_S):
        out[f"vol_regime_frac_{w}s"] = _div(s[:, k], c[:, k])

    s, c = _roll(spread, state["spread"])
    for k, w in enumerate(SPREAD_WINDOWS_S):
        out[f"spread_bps_mean_{w}s"] = _div(s[:, k], c[:, k])

    e = np.where(valid, f.book_rows.astype(np.float64), np.nan)
    ew = sorted({*EVENT_WINDOWS_S, *BURST_WINDOWS_S})
    s1, c1 = _roll(e, state["events"])
    s2, _ = _roll(e * e, state["events2"])
    for w in EVENT_WINDOWS_S:
        k = ew.index(w)
        out[f"book_event_rate_{w}s"] = _div(s1[:, k], c1[:, k] * step_s)
    for w in BURST_WINDOWS_S:
        k = ew.index(w)
        n = c1[:, k].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = s1[:, k] / n
            sigma = np.sqrt(np.maximum(n * s2[:, k] - s1[:, k] * s1[:, k], 0.0)) / n  # exact for integer counts
            b = (sigma - mu) / (sigma + mu)
        out[f"book_event_burstiness_{w}s"] = np.where((n >= 2) & (sigma + mu > 0), b, np.nan)

    tr = np.where(valid, (f.buy_count + f.sell_count).astype(np.float64), np.nan)
    s, c = _roll(tr, state["trades"])
    for k, w in enumerate(TRADE_WINDOWS_S):
        out[f"trade_arrival_rate_{w}s"] = _div(s[:, k], c[:, k] * step_s)
    return {spec.name: np.ascontiguousarray(out[spec.name], dtype=np.float64) for spec in FEATURES}

"""Advanced microstructure estimators: price impact (Kyle's lambda), flow toxicity (VPIN with bulk-volume
classification; the realized price impact of trades), illiquidity (Amihud). Forward reach 0 everywhere.

Per row i: m_i the mid (NaN on invalid rows or a one-sided book), x_i = B_i - S_i the signed taker volume of
the bucket (t_{i-1}, t_i], V_i = B_i + S_i, N_i its notional, p_i the last trade price at or before t_i.

* ``kyle_lambda_{W}s``: OLS slope (with intercept) of dm_j = m_j - m_{j-1} on x_j over the rows j with t_j in
  (t - W, t] whose dm_j is defined (rows with an invalid book are left out of the regression, not zero-filled):
  lambda = (S_xy - S_x S_y / n) / (S_xx - S_x^2 / n). NaN with fewer than 10 observations or a degenerate
  regressor (S_xx - S_x^2/n <= 1e-12 S_xx, e.g. no trades). Price per base unit.
  Kyle (1985), Continuous auctions and insider trading; Hasbrouck (2009), Trading costs and returns for U.S.
  equities: estimating effective costs from daily data (the regression form).
* ``vpin_bvc``: VPIN (Easley, Lopez de Prado & O'Hara 2012, Flow toxicity and liquidity in a high-frequency
  world) with bulk-volume classification: each row is a bar; its volume V_i is split V^B = V_i Phi(dp_i /
  sigma_i), V^S = V_i - V^B, where dp_i = p_i - p_{i-1} and sigma_i the sample std of dp over the rows in
  (t_i - 600 s, t_i] (Phi(.) taken as 1/2 when dp or sigma is undefined or sigma = 0). The bars' volume fills
  volume buckets in order (a bar's volume is split across bucket boundaries with its own buy fraction). A
  bucket opened during row i has size V_b = (volume over (t_{i-1} - 600 s, t_{i-1}]) / 50, so 50 buckets are
  about ten minutes of recent volume; buckets are only opened once the stream has 600 s of history before the
  row (t_{i-1} - t_first >= 600 s), and volume arriving while no bucket can be opened is not bucketed.
  VPIN = sum_{last 50 buckets} |V^S - V^B| / sum_{last 50} V_b, updated when a bucket completes, NaN until 50
  buckets are complete. A row with an invalid book may have lost trades (``kernels.trade_flow``): its volume
  is in no bucket and no bucket size, and its dp in no sigma.
* ``toxicity_impact_5s_bps``: the order-flow toxicity measure chosen here is the realized (permanent) price
  impact of the taker flow at a 5 s horizon, volume weighted (Huang & Stoll 1996; Hendershott, Jones &
  Menkveld 2011 use 2 x this per trade):  sum_j x_j r_j / sum_j V_j  with r_j = 1e4 (m_{k(j)} - m_{j-1}) /
  m_{j-1}, m_{j-1} the mid before the bucket's trades and k(j) the first row with t_k >= t_j + 5 s, over the
  rows j with trades and a valid book (an invalid row's trades may be incomplete), m_{j-1} and m_{k(j)}
  defined and t_j + 5 s in (t - 300 s, t]. Positive when liquidity
  takers are informed (prices keep moving their way). Only mids up to t are read, so forward reach is 0;
  the last 5 s of trades are not in the value yet. bps.
* ``amihud_{W}s``: Amihud (2002) illiquidity: the mean over rows j in (t - W, t] with N_j > 0 and defined
  mids of |r_j| / N_j, r_j = 1e4 ln(m_j / m_{j-1}), scaled to bps per million of quote currency.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.special import ndtr

from kernels.catalog import FeatureSpec
from kernels.dynamic import NS, check_clock, mid_of, new_window, run_window, win_evict, win_push
from kernels.frame import MarketFrame

KYLE_WINDOWS_S = (60, 300)
KYLE_MIN_OBS = 10
KYLE_DEGENERATE = 1e-12
AMIHUD_WINDOWS_S = (60, 300)
AMIHUD_SCALE = 1e6
VPIN_ADV_S = 600  # sigma and bucket-size window
VPIN_BUCKETS_PER_ADV = 50
VPIN_N_BUCKETS = 50
IMPACT_HORIZON_S = 5
IMPACT_WINDOW_S = 300
KERNEL = "kernels.advanced.compute"


def _spec(name, unit, window, description, reference, params):
    return FeatureSpec(name=name, family="advanced", kernel=KERNEL, table="book", unit=unit, window=window,
                       description=description, reference=reference, params=params)


FEATURES: list[FeatureSpec] = [
    _spec(f"kyle_lambda_{w}s", "price/base unit", f"{w} s",
          f"OLS slope of mid changes on signed taker volume over (t - {w} s, t]",
          "Kyle (1985); Hasbrouck (2009)", {"window_s": w, "min_obs": KYLE_MIN_OBS})
    for w in KYLE_WINDOWS_S
]
FEATURES += [
    _spec("vpin_bvc", "1", f"{VPIN_N_BUCKETS} volume buckets (about {VPIN_ADV_S} s) + {VPIN_ADV_S} s sizing",
          "volume-synchronized probability of informed trading, bulk-volume classified",
          "Easley, Lopez de Prado & O'Hara (2012), Flow toxicity and liquidity in a high-frequency world",
          {"sigma_window_s": VPIN_ADV_S, "size_window_s": VPIN_ADV_S, "buckets_per_window": VPIN_BUCKETS_PER_ADV,
           "n_buckets": VPIN_N_BUCKETS}),
    _spec("toxicity_impact_5s_bps", "bps", f"{IMPACT_WINDOW_S + IMPACT_HORIZON_S} s",
          f"volume-weighted {IMPACT_HORIZON_S} s realized price impact of taker flow, trades matured in the last "
          f"{IMPACT_WINDOW_S} s", "Huang & Stoll (1996); Hendershott, Jones & Menkveld (2011)",
          {"horizon_s": IMPACT_HORIZON_S, "window_s": IMPACT_WINDOW_S}),
]
FEATURES += [
    _spec(f"amihud_{w}s", "bps per 1e6 quote", f"{w} s", f"mean |mid return| / notional over rows in (t - {w} s, t]",
          "Amihud (2002), Illiquidity and stock returns", {"window_s": w, "scale": AMIHUD_SCALE})
    for w in AMIHUD_WINDOWS_S
]


# --------------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------------
@njit(cache=True)
def ols_slope(sums, min_obs, degenerate, out):
    """OLS slope from window sums [n, S_x, S_y, S_xx, S_xy] (Kyle 1985; Hasbrouck 2009):

        lambda = (S_xy - S_x S_y / n) / (S_xx - S_x^2 / n)

    NaN if n < min_obs or S_xx - S_x^2 / n <= degenerate * S_xx. Window: that of the sums. Forward reach: 0.
    """
    for i in range(sums.shape[0]):
        n = sums[i, 0]
        sxx = sums[i, 3] - sums[i, 1] * sums[i, 1] / n if n > 0 else 0.0
        if n < min_obs or not sxx > degenerate * sums[i, 3]:
            out[i] = np.nan
        else:
            out[i] = (sums[i, 4] - sums[i, 1] * sums[i, 2] / n) / sxx


@njit(cache=True)
def _complete(ring, rst, imbalance, size, val):
    """Record a complete bucket; VPIN = sum |V^S - V^B| / sum V_b over the ring once it is full."""
    nb = ring.shape[0]
    ring[rst[0], 0] = imbalance
    ring[rst[0], 1] = size
    rst[0] = (rst[0] + 1) % nb
    rst[1] = min(rst[1] + 1, nb)
    if rst[1] == nb:
        num = 0.0
        den = 0.0
        for j in range(nb):
            num += ring[j, 0]
            den += ring[j, 1]
        val[0] = num / den


@njit(cache=True)
def vpin_buckets(vol, z, size_vol, warm, per_window, bst, bopen, ring, rst, val, out):
    """VPIN over volume buckets with bulk-volume classification (Easley, Lopez de Prado & O'Hara 2012):

        bucket sizes V_b = size_vol_i / per_window (fixed when the bucket opens in row i)
        V^B += z_i v, V^S += (1 - z_i) v for the part v of row i's volume that falls in the bucket
        VPIN = sum_{last n} |V^S - V^B| / sum_{last n} V_b  (n = ring rows), once n buckets are complete

    A row first fills the open bucket; whenever it then opens buckets (with its own V_b), whole ones
    (floor(rest / V_b), each |1 - 2 z_i| V_b) are recorded at once and a partial one holds the remainder.
    No bucket is opened in a row with ``warm`` false or ``size_vol`` <= 0; that volume is not bucketed. State: bst = [V_b, filled, V^B, V^S] of the open bucket, bopen, ring (n, 2)
    of the last complete buckets (|V^S - V^B|, V_b), rst = [next position, count], val = current VPIN.

    Window: the last n volume buckets. Forward reach: 0.
    """
    nb = ring.shape[0]
    for i in range(vol.shape[0]):
        rem = vol[i]
        zi = z[i]
        while rem > 0.0:
            if bopen[0] == 0:
                if not warm[i] or not size_vol[i] > 0.0:
                    break
                size = size_vol[i] / per_window
                whole = math.floor(rem / size)
                if whole > 0:  # whole buckets of this row at once (bounded work for a huge bar)
                    for _ in range(min(whole, nb)):
                        _complete(ring, rst, abs(1.0 - 2.0 * zi) * size, size, val)
                    rem = max(rem - whole * size, 0.0)
                    if rem <= 0.0:
                        break
                bst[0] = size
                bst[1] = 0.0
                bst[2] = 0.0
                bst[3] = 0.0
                bopen[0] = 1
            room = bst[0] - bst[1]
            if rem < room:
                bst[1] += rem
                bst[2] += zi * rem
                bst[3] += (1.0 - zi) * rem
                break
            rem -= room
            bst[2] += zi * room
            bst[3] += (1.0 - zi) * room
            _complete(ring, rst, abs(bst[3] - bst[2]), bst[0], val)
            bopen[0] = 0
        out[i] = val[0]


@njit(cache=True)
def price_impact(t, mid, sv, vol, horizon_ns, width_ns, pt, pv, pi, prev_mid, wt, wv, wi, ws, wnz, out):
    """Volume-weighted realized price impact at horizon H over a window W (Huang & Stoll 1996; Hendershott,
    Jones & Menkveld 2011), an order-flow toxicity measure:

        out_i = sum_j x_j r_j / sum_j V_j,  r_j = 1e4 (m_{k(j)} - m_{j-1}) / m_{j-1}

    over rows j with trades, m_{j-1} and m_{k(j)} finite, k(j) = the first row with t_k >= t_j + H, and
    t_j + H in (t_i - W, t_i]; NaN when no such volume. State: pending rows (t_j, m_{j-1}, x_j, V_j) in the
    ring ``pt``/``pv``/``pi`` = [head, count]; ``prev_mid`` = [m_{i-1}]; the matured ones in a window ring
    (``kernels.dynamic.window_sums``) stamped t_j + H.

    Window: W + H (time). Forward reach: 0 (row j's impact enters at row k(j), after t_j + H).
    """
    cap = pt.shape[0]
    vals = np.empty(2)
    for i in range(t.shape[0]):
        while pi[1] > 0 and pt[pi[0]] + horizon_ns <= t[i]:
            h = pi[0]
            if not math.isnan(mid[i]):
                r = 1e4 * (mid[i] - pv[h, 0]) / pv[h, 0]
                vals[0] = pv[h, 1] * r
                vals[1] = pv[h, 2]
                win_push(pt[h] + horizon_ns, vals, wt, wv, wi, ws, wnz)
            pi[0] = (h + 1) % cap
            pi[1] -= 1
        if vol[i] > 0.0 and not math.isnan(prev_mid[0]) and prev_mid[0] > 0.0:
            if pi[1] == cap:  # cannot happen with rows >= one step apart: drop the oldest
                pi[0] = (pi[0] + 1) % cap
                pi[1] -= 1
            p = (pi[0] + pi[1]) % cap
            pt[p] = t[i]
            pv[p, 0] = prev_mid[0]
            pv[p, 1] = sv[i]
            pv[p, 2] = vol[i]
            pi[1] += 1
        prev_mid[0] = mid[i]
        win_evict(t[i] - width_ns, wt, wv, wi, ws, wnz)
        out[i] = ws[0] / ws[1] if ws[1] > 0.0 else np.nan


# --------------------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------------------
def new_state() -> dict:
    return {}


def _init(state: dict, step: int) -> None:
    if "kyle" in state:
        return
    state["prev_mid"] = np.array([np.nan])
    state["prev_price"] = np.nan
    state["t_first"] = None
    state["kyle"] = {w: new_window(w, step, 5) for w in KYLE_WINDOWS_S}
    state["amihud"] = {w: new_window(w, step, 2) for w in AMIHUD_WINDOWS_S}
    state["sigma"] = new_window(VPIN_ADV_S, step, 3)
    state["adv"] = new_window(VPIN_ADV_S, step, 1)
    state["adv_prev"] = 0.0
    state["vpin"] = {"bst": np.zeros(4), "bopen": np.zeros(1, np.int64), "ring": np.zeros((VPIN_N_BUCKETS, 2)),
                     "rst": np.zeros(2, np.int64), "val": np.array([np.nan])}
    cap = IMPACT_HORIZON_S * NS // step + 1
    state["impact"] = {"pt": np.zeros(cap, np.int64), "pv": np.zeros((cap, 3)), "pi": np.zeros(2, np.int64),
                       "prev_mid": np.array([np.nan]), "win": new_window(IMPACT_WINDOW_S, step, 2)}


def _shift(x: np.ndarray, first) -> np.ndarray:
    """x_{i-1} (the first row from the carried value)."""
    out = np.empty_like(x)
    if len(x):
        out[0] = first
        out[1:] = x[:-1]
    return out


def compute(f: MarketFrame, state: dict | None = None) -> dict[str, np.ndarray]:
    """Every advanced feature for every row of ``f`` (formulas: module docstring and the kernels)."""
    state = {} if state is None else state
    check_clock(f, state)
    _init(state, state["step_ns"])
    n = f.n
    t = np.ascontiguousarray(f.t_ns, dtype=np.int64)
    mid = mid_of(f)
    prev_mid = _shift(mid, state["prev_mid"][0])
    x = f.buy_volume - f.sell_volume
    vol = f.buy_volume + f.sell_volume
    out: dict[str, np.ndarray] = {}

    # Kyle's lambda
    dm = mid - prev_mid
    ok = ~np.isnan(dm)
    xo, yo = np.where(ok, x, 0.0), np.where(ok, dm, 0.0)
    cols = np.stack([ok.astype(np.float64), xo, yo, xo * xo, xo * yo], axis=1)
    for w in KYLE_WINDOWS_S:
        out[f"kyle_lambda_{w}s"] = np.empty(n)
        ols_slope(run_window(state["kyle"][w], t, cols), KYLE_MIN_OBS, KYLE_DEGENERATE, out[f"kyle_lambda_{w}s"])

    # Amihud
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.abs(1e4 * np.log(mid / prev_mid))
        ratio = r / f.notional * AMIHUD_SCALE
    ok = (f.notional > 0) & np.isfinite(ratio)
    cols = np.stack([ok.astype(np.float64), np.where(ok, ratio, 0.0)], axis=1)
    for w in AMIHUD_WINDOWS_S:
        s = run_window(state["amihud"][w], t, cols)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"amihud_{w}s"] = np.where(s[:, 0] > 0, s[:, 1] / np.where(s[:, 0] > 0, s[:, 0], 1.0), np.nan)

    # VPIN with bulk-volume classification (rows with an invalid book left out: their trades may be incomplete)
    valid = np.asarray(f.valid, dtype=bool)
    vol_v = np.where(valid, vol, 0.0)
    dp = f.last_price - _shift(f.last_price, state["prev_price"])
    okp = ~np.isnan(dp) & valid
    s = run_window(state["sigma"], t, np.stack([okp.astype(np.float64), np.where(okp, dp, 0.0),
                                                 np.where(okp, dp * dp, 0.0)], axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s[:, 2] - s[:, 1] * s[:, 1] / s[:, 0]) / (s[:, 0] - 1.0)
        sigma = np.where(s[:, 0] >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
        z = np.where(okp & (sigma > 0), ndtr(dp / sigma), 0.5)
    adv = run_window(state["adv"], t, vol_v[:, None])[:, 0]
    size_vol = _shift(adv, state["adv_prev"])
    if state["t_first"] is None and n:
        state["t_first"] = int(t[0])
    t_prev = _shift(t, t[0] if state["last_t"] is None else state["last_t"]) if n else t
    warm = (t_prev - (state["t_first"] or 0) >= VPIN_ADV_S * NS)
    if n and state["last_t"] is None:
        warm[0] = False
    v = state["vpin"]
    out["vpin_bvc"] = np.empty(n)
    vpin_buckets(np.ascontiguousarray(vol_v), np.ascontiguousarray(z), size_vol, warm, float(VPIN_BUCKETS_PER_ADV),
                 v["bst"], v["bopen"], v["ring"], v["rst"], v["val"], out["vpin_bvc"])

    # realized price impact (toxicity)
    im = state["impact"]
    w = im["win"]
    out["toxicity_impact_5s_bps"] = np.empty(n)
    price_impact(t, np.ascontiguousarray(mid), np.where(valid, x, 0.0), vol_v,
                 IMPACT_HORIZON_S * NS, w["width_ns"], im["pt"], im["pv"], im["pi"], im["prev_mid"], w["t"], w["v"],
                 w["i"], w["s"], w["nz"], out["toxicity_impact_5s_bps"])

    if n:
        state["prev_mid"][0] = mid[-1]
        state["prev_price"] = float(f.last_price[-1])
        state["adv_prev"] = float(adv[-1])
        state["last_t"] = int(t[-1])
    return out

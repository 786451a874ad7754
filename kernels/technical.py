"""Technical-analysis and return-distribution features on the mid (forward reach 0).

**The series.** These indicators are bar indicators: they run on the series of mids m_1, m_2, ... of the rows that
have one (``valid`` and both sides non-empty), one bar per such row; rows without a mid are dropped from the
series (their output is NaN and the state is untouched), so a return bridges them: r_t = ln(m_t / m_{t-1}) with
m_{t-1} the previous mid in the series. Windows count bars (rows with a mid), not seconds: on a 100 ms grid
``ta_rsi_14`` spans 1.4 s, on a 1 s grid 14 s (clock windows are in ``kernels.rolling``). A rolling-window
value is NaN until the window is full. The carried state (``new_state()``) holds the EWMA states, the last mid,
ring buffers of the last 100 mids and returns and the CUSUM sums, so batch, partition-by-partition and
row-by-row runs agree bit for bit; window statistics are recomputed from the ring (oldest to newest, two-pass)
at every row, so no rounding drift accumulates.

Formulas (EWMA with smoothing a: y_1 = x_1, y_t = (1 - a) y_{t-1} + a x_t, i.e. pandas ``ewm(adjust=False)``):

* ``ta_log_return`` = r_t (window: 1 bar)
* ``ta_ema_mid_{s}``: EWMA of m with a = 2 / (s + 1), s = 10, 50
* ``ta_zscore_mid_{w}`` = (m_t - mean_w) / std_w (sample std, ddof 1) over the last w mids, w = 20, 100;
  NaN when the w mids are all equal
* ``ta_rsi_14`` (Wilder 1978): d_t = m_t - m_{t-1}; G, L = Wilder-smoothed (a = 1/14) max(d, 0), max(-d, 0),
  seeded with the first change; RSI = 100 G / (G + L); NaN before 14 changes or when G + L = 0
* ``ta_macd`` = EMA_12(m) - EMA_26(m); ``ta_macd_signal`` = EMA_9(macd); ``ta_macd_hist`` = macd - signal
  (Appel 1979), in price units
* ``ta_bb_upper_20`` / ``ta_bb_lower_20`` = mean_20 +- 2 sigma_20 (population sigma); ``ta_bb_pctb_20`` =
  (m - lower) / (upper - lower), NaN when sigma = 0 (Bollinger 2001)
* ``ta_realized_var_{w}`` = sum of r^2 over the last w returns, w = 20, 100
* ``ta_bipower_var_{w}`` = (pi / 2) sum_{j=2..w} |r_j| |r_{j-1}| over the last w returns (Barndorff-Nielsen &
  Shephard 2004, "Power and bipower variation with stochastic volatility and jumps"; mu_1^-2 = pi / 2)
* ``ta_riskmetrics_vol`` = sqrt(v_t), v_t = lambda v_{t-1} + (1 - lambda) r_t^2, lambda = 0.94, v_1 = r_1^2
  (J.P. Morgan RiskMetrics 1996)
* ``ta_autocorr1_100``: Pearson correlation of the 99 adjacent pairs (r_{j-1}, r_j) within the last 100 returns;
  NaN when either member series is constant
* ``ta_cusum_pos`` / ``ta_cusum_neg`` / ``ta_cusum_alarm`` (Page 1954, two-sided CUSUM on standardized returns):
  z_t = r_t / sqrt(v_{t-1}) (standardized by the RiskMetrics variance *before* r_t; no update while v is
  undefined or 0), S+_t = max(0, S+_{t-1} + z_t - k), S-_t = max(0, S-_{t-1} - z_t - k), drift k = 0.5,
  threshold h = 5; alarm = +1 if S+_t > h, -1 if S-_t > h, else 0; the sums are reported, then both restart at
  0 after an alarm
* ``ta_var95_100`` / ``ta_cvar95_100``: historical value at risk and expected shortfall at 95 % over the last
  100 returns: with r_(1) <= ... <= r_(100) and k = ceil(0.05 * 100) = 5, VaR = -r_(k), CVaR = -mean(r_(1..k))
  (positive = loss)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.catalog import FeatureSpec
from kernels.frame import MarketFrame

KERNEL = "kernels.technical.compute"
EMA_SPANS = (10, 50)
Z_WINDOWS = (20, 100)
RSI_N = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_N, BB_K = 20, 2.0
RV_WINDOWS = (20, 100)
RM_LAMBDA = 0.94
AC_WINDOW = 100
CUSUM_K, CUSUM_H = 0.5, 5.0
VAR_WINDOW, VAR_ALPHA = 100, 0.05
RING = 100  # longest window (mids and returns)


def _spec(name, unit, window, description, reference="", params=None):
    return FeatureSpec(name=name, family="technical", kernel=KERNEL, table="book", unit=unit, window=window,
                       description=description, reference=reference, params=params or {})


FEATURES: list[FeatureSpec] = [
    _spec("ta_log_return", "log return", "1 row with a mid", "ln(m_t / m_{t-1}) between consecutive rows with a mid"),
    *[_spec(f"ta_ema_mid_{s}", "price", f"EWMA span {s} rows", f"EWMA of the mid, alpha = 2 / ({s} + 1)",
            params={"span": s}) for s in EMA_SPANS],
    *[_spec(f"ta_zscore_mid_{w}", "1", f"{w} rows", f"(mid - rolling mean) / rolling sample std over {w} mids",
            params={"window": w}) for w in Z_WINDOWS],
    _spec("ta_rsi_14", "1 (0..100)", "EWMA alpha 1/14", "relative strength index with Wilder smoothing",
          "Wilder (1978), New Concepts in Technical Trading Systems", {"n": RSI_N}),
    _spec("ta_macd", "price", "EWMA spans 12, 26", "EMA_12(mid) - EMA_26(mid)", "Appel (1979)",
          {"fast": MACD_FAST, "slow": MACD_SLOW}),
    _spec("ta_macd_signal", "price", "EWMA spans 12, 26, 9", "EMA_9 of the MACD line", "Appel (1979)",
          {"signal": MACD_SIGNAL}),
    _spec("ta_macd_hist", "price", "EWMA spans 12, 26, 9", "MACD - signal", "Appel (1979)"),
    _spec("ta_bb_upper_20", "price", "20 rows", "rolling mean + 2 population std of the mid",
          "Bollinger (2001), Bollinger on Bollinger Bands", {"n": BB_N, "k": BB_K}),
    _spec("ta_bb_lower_20", "price", "20 rows", "rolling mean - 2 population std of the mid", "Bollinger (2001)",
          {"n": BB_N, "k": BB_K}),
    _spec("ta_bb_pctb_20", "1", "20 rows", "%b = (mid - lower) / (upper - lower)", "Bollinger (2001)",
          {"n": BB_N, "k": BB_K}),
    *[_spec(f"ta_realized_var_{w}", "log return^2", f"{w} returns", f"sum of squared mid log returns, last {w}",
            "Andersen & Bollerslev (1998)", {"window": w}) for w in RV_WINDOWS],
    *[_spec(f"ta_bipower_var_{w}", "log return^2", f"{w} returns",
            f"(pi/2) sum |r_j||r_(j-1)| over the last {w} returns",
            "Barndorff-Nielsen & Shephard (2004), Power and bipower variation with stochastic volatility and jumps",
            {"window": w}) for w in RV_WINDOWS],
    _spec("ta_riskmetrics_vol", "log return", "EWMA lambda 0.94", "sqrt of the EWMA of r^2, lambda = 0.94",
          "J.P. Morgan/Reuters (1996), RiskMetrics Technical Document", {"lambda": RM_LAMBDA}),
    _spec("ta_autocorr1_100", "1", "100 returns", "lag-1 autocorrelation (Pearson over 99 adjacent pairs)",
          params={"window": AC_WINDOW, "lag": 1}),
    _spec("ta_cusum_pos", "1", "since the last alarm", "upper CUSUM sum of standardized returns (k = 0.5)",
          "Page (1954), Continuous inspection schemes", {"k": CUSUM_K, "h": CUSUM_H}),
    _spec("ta_cusum_neg", "1", "since the last alarm", "lower CUSUM sum of standardized returns (k = 0.5)",
          "Page (1954)", {"k": CUSUM_K, "h": CUSUM_H}),
    _spec("ta_cusum_alarm", "1 (-1, 0, 1)", "since the last alarm", "+1 / -1 when the upper / lower sum exceeds h = 5",
          "Page (1954)", {"k": CUSUM_K, "h": CUSUM_H}),
    _spec("ta_var95_100", "log return", "100 returns", "historical 95 % VaR: minus the 5th smallest of 100 returns",
          "Jorion (2006), Value at Risk", {"window": VAR_WINDOW, "alpha": VAR_ALPHA}),
    _spec("ta_cvar95_100", "log return", "100 returns", "historical 95 % expected shortfall: minus the mean of the "
          "5 smallest of 100 returns", "Acerbi & Tasche (2002)", {"window": VAR_WINDOW, "alpha": VAR_ALPHA}),
]
NAMES = [s.name for s in FEATURES]
COL = {name: k for k, name in enumerate(NAMES)}

# output columns (compile-time constants for the kernel)
C_RET, C_EMA10, C_EMA50, C_Z20, C_Z100, C_RSI, C_MACD, C_SIG, C_HIST, C_BBU, C_BBL, C_BBP = range(12)
C_RV20, C_RV100, C_BV20, C_BV100, C_RM, C_AC, C_CPOS, C_CNEG, C_ALARM, C_VAR, C_CVAR = range(12, 23)
assert len(NAMES) == 23 and NAMES[C_RM] == "ta_riskmetrics_vol" and NAMES[C_AC] == "ta_autocorr1_100"
assert NAMES[C_Z20 + 1] == "ta_zscore_mid_100" and NAMES[C_RV20 + 1] == "ta_realized_var_100"
assert NAMES[C_BV20 + 1] == "ta_bipower_var_100" and NAMES[C_CVAR] == "ta_cvar95_100" and NAMES[C_BBP] == "ta_bb_pctb_20"

# scalar state slots
F_PREV, F_EMA10, F_EMA50, F_EMA12, F_EMA26, F_SIG, F_GAIN, F_LOSS, F_RMV, F_CPOS, F_CNEG = range(11)
I_NMIDS, I_NRETS = range(2)


def new_state() -> dict:
    return {"f": np.zeros(11), "i": np.zeros(2, np.int64), "mids": np.zeros(RING), "rets": np.zeros(RING)}


@njit(cache=True)
def _last(ring, count, w, tmp):
    """Copy the last w values pushed (oldest first) into tmp[:w]."""
    L = ring.shape[0]
    for j in range(w):
        tmp[j] = ring[(count - w + j) % L]


@njit(cache=True)
def _mean_std(x, w, ddof):
    s = 0.0
    for j in range(w):
        s += x[j]
    mean = s / w
    ss = 0.0
    lo, hi = x[0], x[0]
    for j in range(w):
        d = x[j] - mean
        ss += d * d
        lo = min(lo, x[j])
        hi = max(hi, x[j])
    if hi == lo:  # all values equal: exactly that value and 0 (not rounding noise)
        return lo, 0.0
    return mean, math.sqrt(ss / (w - ddof))


@njit(cache=True)
def technical_kernel(mid, sf, si, mids, rets, out):
    """Every technical feature, row by row, from the carried state (formulas in the module docstring).

    mid: (n,) the mid, NaN where the row has none; sf, si: scalar states; mids, rets: rings of the last 100
    mids / returns; out: (n, 23) in ``NAMES`` order. Windows: up to 100 mids / returns, EWMAs. Forward reach: 0.
    """
    n = mid.shape[0]
    L = mids.shape[0]
    tmp = np.empty(L)
    tmp2 = np.empty(L)
    a10, a50 = 2.0 / 11.0, 2.0 / 51.0
    a12, a26, a9 = 2.0 / 13.0, 2.0 / 27.0, 2.0 / 10.0
    aw = 1.0 / 14.0
    for i in range(n):
        m = mid[i]
        if math.isnan(m) or not m > 0.0:
            for k in range(out.shape[1]):
                out[i, k] = np.nan
            continue
        first = si[I_NMIDS] == 0
        has_r = not first
        r = 0.0
        d = 0.0
        if has_r:
            r = math.log(m / sf[F_PREV])
            d = m - sf[F_PREV]
        sf[F_PREV] = m
        mids[si[I_NMIDS] % L] = m
        si[I_NMIDS] += 1
        nm = si[I_NMIDS]
        # EWMAs
        if first:
            sf[F_EMA10] = m
            sf[F_EMA50] = m
            sf[F_EMA12] = m
            sf[F_EMA26] = m
            sf[F_SIG] = 0.0
        else:
            sf[F_EMA10] = (1.0 - a10) * sf[F_EMA10] + a10 * m
            sf[F_EMA50] = (1.0 - a50) * sf[F_EMA50] + a50 * m
            sf[F_EMA12] = (1.0 - a12) * sf[F_EMA12] + a12 * m
            sf[F_EMA26] = (1.0 - a26) * sf[F_EMA26] + a26 * m
            macd0 = sf[F_EMA12] - sf[F_EMA26]
            sf[F_SIG] = (1.0 - a9) * sf[F_SIG] + a9 * macd0
        macd = sf[F_EMA12] - sf[F_EMA26]
        out[i, C_RET] = r if has_r else np.nan
        out[i, C_EMA10] = sf[F_EMA10]
        out[i, C_EMA50] = sf[F_EMA50]
        for q in range(2):
            w = 20 if q == 0 else 100
            out[i, C_Z20 + q] = np.nan
            if nm >= w:
                _last(mids, nm, w, tmp)
                mean, std = _mean_std(tmp, w, 1)
                if std > 0.0:
                    out[i, C_Z20 + q] = (m - mean) / std
        # RSI (seeded with the first change)
        if has_r:
            g = d if d > 0.0 else 0.0
            lo = -d if d < 0.0 else 0.0
            if nm == 2:
                sf[F_GAIN] = g
                sf[F_LOSS] = lo
            else:
                sf[F_GAIN] = (1.0 - aw) * sf[F_GAIN] + aw * g
                sf[F_LOSS] = (1.0 - aw) * sf[F_LOSS] + aw * lo
        den = sf[F_GAIN] + sf[F_LOSS]
        out[i, C_RSI] = 100.0 * sf[F_GAIN] / den if (nm - 1 >= 14 and den > 0.0) else np.nan
        out[i, C_MACD] = macd
        out[i, C_SIG] = sf[F_SIG]
        out[i, C_HIST] = macd - sf[F_SIG]
        out[i, C_BBU] = np.nan
        out[i, C_BBL] = np.nan
        out[i, C_BBP] = np.nan
        if nm >= 20:
            _last(mids, nm, 20, tmp)
            mean, std = _mean_std(tmp, 20, 0)
            up = mean + 2.0 * std
            dn = mean - 2.0 * std
            out[i, C_BBU] = up
            out[i, C_BBL] = dn
            if std > 0.0:
                out[i, C_BBP] = (m - dn) / (up - dn)
        # returns: CUSUM on r standardized by the variance before r, then RiskMetrics, then windows
        nr = si[I_NRETS]
        alarm = 0.0
        if has_r:
            if nr > 0 and sf[F_RMV] > 0.0:
                z = r / math.sqrt(sf[F_RMV])
                sf[F_CPOS] = max(0.0, sf[F_CPOS] + z - 0.5)
                sf[F_CNEG] = max(0.0, sf[F_CNEG] - z - 0.5)
                if sf[F_CPOS] > 5.0:
                    alarm = 1.0
                elif sf[F_CNEG] > 5.0:
                    alarm = -1.0
            sf[F_RMV] = r * r if nr == 0 else 0.94 * sf[F_RMV] + 0.06 * (r * r)
            rets[nr % L] = r
            nr += 1
            si[I_NRETS] = nr
        out[i, C_CPOS] = sf[F_CPOS]
        out[i, C_CNEG] = sf[F_CNEG]
        out[i, C_ALARM] = alarm
        if alarm != 0.0:
            sf[F_CPOS] = 0.0
            sf[F_CNEG] = 0.0
        out[i, C_RM] = math.sqrt(sf[F_RMV]) if nr > 0 else np.nan
        for q in range(2):
            w = 20 if q == 0 else 100
            out[i, C_RV20 + q] = np.nan
            out[i, C_BV20 + q] = np.nan
            if nr >= w:
                _last(rets, nr, w, tmp)
                rv = 0.0
                for j in range(w):
                    rv += tmp[j] * tmp[j]
                bv = 0.0
                for j in range(1, w):
                    bv += abs(tmp[j]) * abs(tmp[j - 1])
                out[i, C_RV20 + q] = rv
                out[i, C_BV20 + q] = (math.pi / 2.0) * bv
        out[i, C_AC] = np.nan
        out[i, C_VAR] = np.nan
        out[i, C_CVAR] = np.nan
        if nr >= 100:
            _last(rets, nr, 100, tmp)
            mx, sx = _mean_std(tmp[:99], 99, 0)
            my, sy = _mean_std(tmp[1:100], 99, 0)
            if sx > 0.0 and sy > 0.0:
                c = 0.0
                vx = 0.0
                vy = 0.0
                for j in range(99):
                    dx = tmp[j] - mx
                    dy = tmp[j + 1] - my
                    c += dx * dy
                    vx += dx * dx
                    vy += dy * dy
                out[i, C_AC] = c / math.sqrt(vx * vy)
            k = 5  # ceil(0.05 * 100): the 5 smallest, ascending, by insertion (no full sort)
            for j in range(k):
                tmp2[j] = np.inf
            for j in range(100):
                v = tmp[j]
                if v < tmp2[k - 1]:
                    p = k - 1
                    while p > 0 and tmp2[p - 1] > v:
                        tmp2[p] = tmp2[p - 1]
                        p -= 1
                    tmp2[p] = v
            out[i, C_VAR] = -tmp2[k - 1]
            s = 0.0
            for j in range(k):
                s += tmp2[j]
            out[i, C_CVAR] = -s / k


def compute(f: MarketFrame, state: dict | None = None) -> dict[str, np.ndarray]:
    """Every technical feature for every row of ``f`` (formulas in the module docstring)."""
    state = new_state() if state is None else state
    valid = f.valid.astype(bool)
    mid = np.where(valid, (f.bid_px[:, 0] + f.ask_px[:, 0]) / 2.0, np.nan)
    out = np.empty((f.n, len(NAMES)))
    technical_kernel(np.ascontiguousarray(mid), state["f"], state["i"], state["mids"], state["rets"], out)
    return {name: np.ascontiguousarray(out[:, k]) for k, name in enumerate(NAMES)}

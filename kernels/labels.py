"""Labels: what happens *after* a row (forward reach > 0). Labels are never features: they live in their own
tables (``silver/labels_<grid>``), their names start with ``fwd_`` or ``label_``, and the catalog refuses
them as features (``catalog.check_not_label``).

All horizons are **time-based**: for row i at grid time t_i and horizon h, the label reads the row
j(i, h) = the first row with t_j >= t_i + h (the same instant on a 100 ms and on a 1 s grid; on the regular
grids of ``kernels.pipeline`` with h a multiple of the step, t_j = t_i + h exactly, which is the declared
``forward_reach_ns``). **Never partial**: when the data end before t_i + h (no such row), the label is NaN; it is
also NaN when row i or the row it needs has no price. Prices per row (NaN when ``valid`` is False or a side is
empty): m = (b_0 + a_0)/2, the mid; mp = (a_0 q^b_0 + b_0 q^a_0) / (q^b_0 + q^a_0), the microprice.

* ``fwd_ret_mid_{h}s`` = ln(m_{j(i,h)} / m_i); ``fwd_ret_micro_{h}s`` the same for the microprice;
  h in 1, 5, 30, 60, 300 s.
* ``label_dir_mid_{h}s`` = 1 if fwd_ret_mid > 0 else 0 (up vs not up).
* ``label_3c_mid_{h}s`` = +1 if fwd_ret_mid > d_i, -1 if < -d_i, else 0, with the dead zone
  d_i = ``dead_zone_spreads`` x max(a_0 - b_0, 0) / m_i (default half a spread: the cost of crossing it) or, if
  ``dead_zone_bps`` is given, d = dead_zone_bps / 1e4 for every row.
* Triple barrier (Lopez de Prado 2018, *Advances in Financial Machine Learning*, ch. 3) with time limit T in
  30, 300 s: trailing volatility sigma_i = sqrt(sum r_j^2) over the mid log returns in (t_i - 60 s, t_i] (r_j =
  ln(m_j / m_{j-1}) when rows j-1 and j both have a mid; the same quantity as the feature ``rv_mid_60s``), NaN
  until the data hold the whole 60 s. Barrier b_i = ``tb_k`` x sigma_i x sqrt(T / 60 s) (k = 2: two trailing
  standard deviations scaled to the horizon). Walking j = i+1 .. j(i, T) over rows with a mid, with the barriers
  in price (x_j = ln(m_j / m_i) >= b_i  <=>  m_j >= m_i e^{b_i}, compared in price to avoid a log per row):
  ``label_tb_{T}s`` = +1 if m_j >= m_i e^{b_i} first, -1 if m_j <= m_i e^{-b_i} first, 0 if neither by
  j(i, T) (the vertical barrier); ``label_tb_hit_s_{T}s`` = t_j - t_i in seconds at the hit (at j(i, T) for 0);
  ``fwd_tb_ret_{T}s`` = x at the hit (at the last row with a mid up to j(i, T) for 0). NaN when sigma_i is NaN
  or 0 (no scale), when m_i is NaN, or when the data end before t_i + T.
* ``fwd_rv_{h}s`` = sqrt(sum r_j^2) over j = i+1 .. j(i, h) (the returns strictly after t_i up to t_i + h, same
  r_j as above), h in 60, 300 s; NaN when m_i is NaN or the window holds no return.
* ``label_vol_regime_{h}s`` in {0, 1, 2} (calm, normal, turbulent): fwd_rv_{h}s <= q_lo -> 0, <= q_hi -> 1, else
  2, with (q_lo, q_hi) the 1/3 and 2/3 quantiles of fwd_rv **on the training rows only**:
  ``fit_regime_thresholds(train_forward_rv)`` then ``apply_regime_thresholds`` (or ``compute_labels(...,
  regime_thresholds={h: thresholds})``). The training forward RVs must themselves not read past the train split:
  compute them on the train frame alone (the end rows become NaN) or drop rows with t + h > split
  (``purge_train_rows``). Without thresholds ``compute_labels`` omits these columns (they cannot exist before a
  split is chosen).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.catalog import LabelSpec
from kernels.frame import MarketFrame

S = 1_000_000_000
KERNEL = "kernels.labels.compute_labels"
HORIZONS_S = (1, 5, 30, 60, 300)
TB_LIMITS_S = (30, 300)
TB_VOL_WINDOW_S = 60
TB_K = 2.0
RV_HORIZONS_S = (60, 300)
DEAD_ZONE_SPREADS = 0.5
REGIME_QUANTILES = (1 / 3, 2 / 3)


def _label(name, unit, h, description, params=None):
    return LabelSpec(name=name, kernel=KERNEL, table="book", unit=unit, horizon=f"{h} s", forward_reach_ns=h * S,
                     description=description, params={"horizon_s": h, **(params or {})})


LABELS: list[LabelSpec] = []
for _h in HORIZONS_S:
    LABELS += [
        _label(f"fwd_ret_mid_{_h}s", "log return", _h, f"ln(mid at the first grid time >= t + {_h} s / mid at t)"),
        _label(f"fwd_ret_micro_{_h}s", "log return", _h, f"forward log return of the microprice over {_h} s"),
        _label(f"label_dir_mid_{_h}s", "class (0, 1)", _h, f"1 if the {_h} s forward mid return > 0, else 0"),
        _label(f"label_3c_mid_{_h}s", "class (-1, 0, 1)", _h,
               f"sign of the {_h} s forward mid return outside a dead zone of half a spread",
               {"dead_zone_spreads": DEAD_ZONE_SPREADS}),
    ]
for _t in TB_LIMITS_S:
    _p = {"k": TB_K, "vol_window_s": TB_VOL_WINDOW_S, "time_limit_s": _t}
    LABELS += [
        _label(f"label_tb_{_t}s", "class (-1, 0, 1)", _t,
               f"triple barrier: which of +-{TB_K} trailing-vol barriers is hit first within {_t} s (0: neither)", _p),
        _label(f"label_tb_hit_s_{_t}s", "s", _t, f"seconds from t to the triple-barrier exit ({_t} s limit)", _p),
        _label(f"fwd_tb_ret_{_t}s", "log return", _t, f"mid log return at the triple-barrier exit ({_t} s limit)", _p),
    ]
for _h in RV_HORIZONS_S:
    LABELS += [
        _label(f"fwd_rv_{_h}s", "log return", _h, f"forward realized volatility of the mid over {_h} s"),
        _label(f"label_vol_regime_{_h}s", "class (0, 1, 2)", _h,
               f"tercile of the {_h} s forward realized volatility, thresholds fitted on training rows only",
               {"quantiles": REGIME_QUANTILES}),
    ]
REGIME_NAMES = {f"label_vol_regime_{h}s" for h in RV_HORIZONS_S}


def prices(f: MarketFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mid, microprice, spread) per row; NaN where the row is invalid or a side is empty."""
    valid = f.valid.astype(bool)
    b0, a0, qb, qa = f.bid_px[:, 0], f.ask_px[:, 0], f.bid_sz[:, 0], f.ask_sz[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mid = np.where(valid, (b0 + a0) / 2.0, np.nan)
        den = qb + qa
        micro = np.where(valid & (den > 0), (a0 * qb + b0 * qa) / np.where(den > 0, den, 1.0), np.nan)
    mid = np.where(mid > 0, mid, np.nan)
    micro = np.where(micro > 0, micro, np.nan)
    return mid, micro, np.where(valid, a0 - b0, np.nan)


def ahead_index(t_ns: np.ndarray, h_ns: int) -> np.ndarray:
    """j(i, h): the first row with t_j >= t_i + h, or n when the data end before (searchsorted, t sorted)."""
    return np.searchsorted(t_ns, t_ns + np.int64(h_ns), side="left")


@njit(cache=True)
def one_step_returns(mid, out):
    """r_j = ln(m_j / m_{j-1}) when rows j-1 and j both have a mid, else NaN (r_0 = NaN)."""
    out[0] = np.nan
    for j in range(1, mid.shape[0]):
        a, b = mid[j - 1], mid[j]
        out[j] = math.log(b / a) if (not math.isnan(a) and not math.isnan(b)) else np.nan


BLOCK_ROWS = 64  # block length (grid steps) of the partial sums behind window sums


@njit(cache=True)
def blocks(t_ns, r, blk_ns):
    """Partial sums of r^2 (NaN skipped) over blocks of rows aligned on absolute time, t // blk_ns, in row
    order: (block of each row, first row, last row, sum, count) per block. Because blocks are fixed in absolute
    time, a window sum assembled from them is the same float whatever row the frame starts at."""
    n = t_ns.shape[0]
    kb = np.empty(n, np.int64)
    bs = np.empty(n, np.int64)
    be = np.empty(n, np.int64)
    bsum = np.zeros(n)
    bcnt = np.zeros(n, np.int64)
    k = -1
    prev = np.int64(-1)
    for j in range(n):
        b = t_ns[j] // blk_ns
        if k < 0 or b != prev:
            k += 1
            bs[k] = j
            prev = b
        be[k] = j
        kb[j] = k
        if not math.isnan(r[j]):
            bsum[k] += r[j] * r[j]
            bcnt[k] += 1
    return kb, bs, be, bsum, bcnt


@njit(cache=True)
def range_sum_sq(lo, hi, r, kb, bs, be, bsum, bcnt):
    """(sum r_j^2, count) over rows lo..hi (NaN skipped): the rows of the first and last block directly, the
    whole blocks between from their partial sums, in row order."""
    s = 0.0
    c = 0
    if lo > hi:
        return s, c
    ka, kz = kb[lo], kb[hi]
    if kz - ka <= 1:
        for j in range(lo, hi + 1):
            if not math.isnan(r[j]):
                s += r[j] * r[j]
                c += 1
        return s, c
    for j in range(lo, be[ka] + 1):
        if not math.isnan(r[j]):
            s += r[j] * r[j]
            c += 1
    for k in range(ka + 1, kz):
        s += bsum[k]
        c += bcnt[k]
    for j in range(bs[kz], hi + 1):
        if not math.isnan(r[j]):
            s += r[j] * r[j]
            c += 1
    return s, c


@njit(cache=True)
def forward_rv(t_ns, mid, r, jh, blk_ns, out):
    """fwd_rv_i = sqrt(sum_{j = i+1..jh_i} r_j^2); NaN when jh_i = n (beyond the data), m_i is NaN or no r_j is
    defined. Forward reach: h."""
    n = mid.shape[0]
    kb, bs, be, bsum, bcnt = blocks(t_ns, r, blk_ns)
    for i in range(n):
        out[i] = np.nan
        if jh[i] >= n or math.isnan(mid[i]):
            continue
        s, c = range_sum_sq(i + 1, jh[i], r, kb, bs, be, bsum, bcnt)
        if c > 0:
            out[i] = math.sqrt(s)


@njit(cache=True)
def trailing_rv(t_ns, r, window_ns, blk_ns, out):
    """sigma_i = sqrt(sum r_j^2) over rows with t_i - window < t_j <= t_i; NaN until t_0 <= t_i - window (the
    whole window, and the base row of its first return, are in the data) or when no r_j is defined.
    Window: ``window_ns`` back. Forward reach: 0."""
    n = t_ns.shape[0]
    kb, bs, be, bsum, bcnt = blocks(t_ns, r, blk_ns)
    lo = 0
    for i in range(n):
        out[i] = np.nan
        while t_ns[lo] <= t_ns[i] - window_ns:
            lo += 1
        if t_ns[0] > t_ns[i] - window_ns:
            continue
        s, c = range_sum_sq(lo, i, r, kb, bs, be, bsum, bcnt)
        if c > 0:
            out[i] = math.sqrt(s)


@njit(cache=True)
def triple_barrier(t_ns, mid, sigma, scale, jT, lab, hit_s, ret):
    """Triple-barrier label (Lopez de Prado 2018, ch. 3): barrier b_i = scale x sigma_i; walk j = i+1..jT_i over
    rows with a mid: +1 at the first m_j >= m_i e^b, -1 at the first m_j <= m_i e^-b, else 0 at jT_i (hit
    time t_{jT} - t_i, return at the last mid up to jT). NaN if jT_i = n, m_i or sigma_i is NaN, or sigma_i = 0.
    Window: the trailing sigma (past) and T ahead. Forward reach: T."""
    n = mid.shape[0]
    for i in range(n):
        lab[i] = np.nan
        hit_s[i] = np.nan
        ret[i] = np.nan
        m0 = mid[i]
        sg = sigma[i]
        if jT[i] >= n or math.isnan(m0) or math.isnan(sg) or not sg > 0.0:
            continue
        b = scale * sg
        up = m0 * math.exp(b)  # the barriers in price: x >= b  <=>  m >= m0 e^b (compared without a log per row)
        dn = m0 * math.exp(-b)
        last = np.nan
        done = False
        for j in range(i + 1, jT[i] + 1):
            m = mid[j]
            if math.isnan(m):
                continue
            last = m
            if m >= up or m <= dn:
                lab[i] = 1.0 if m >= up else -1.0
                hit_s[i] = (t_ns[j] - t_ns[i]) / 1e9
                ret[i] = math.log(m / m0)
                done = True
                break
        if not done:
            lab[i] = 0.0
            hit_s[i] = (t_ns[jT[i]] - t_ns[i]) / 1e9
            ret[i] = math.log(last / m0) if not math.isnan(last) else np.nan


def fit_regime_thresholds(train_forward_rv: np.ndarray, quantiles=REGIME_QUANTILES) -> np.ndarray:
    """(q_lo, q_hi): the quantiles of the finite training forward RVs (numpy's linear interpolation). Pass only
    training rows whose forward window ends inside the training period (see ``purge_train_rows``)."""
    x = np.asarray(train_forward_rv, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        raise ValueError("no finite forward volatility in the training rows")
    return np.quantile(x, np.asarray(quantiles, dtype=np.float64))


def apply_regime_thresholds(forward_rv: np.ndarray, thresholds) -> np.ndarray:
    """0 where rv <= q_lo, 1 where q_lo < rv <= q_hi, 2 where rv > q_hi; NaN where rv is NaN."""
    rv = np.asarray(forward_rv, dtype=np.float64)
    lo, hi = float(thresholds[0]), float(thresholds[1])
    out = np.where(rv <= lo, 0.0, np.where(rv <= hi, 1.0, 2.0))
    return np.where(np.isnan(rv), np.nan, out)


def purge_train_rows(t_ns: np.ndarray, split_ns: int, reach_ns: int) -> np.ndarray:
    """Mask of the rows whose label window (t, t + reach] ends at or before the split: the only training rows
    whose labels read nothing of the test period."""
    return np.asarray(t_ns) + np.int64(reach_ns) <= np.int64(split_ns)


def compute_labels(f: MarketFrame, *, dead_zone_spreads: float = DEAD_ZONE_SPREADS,
                   dead_zone_bps: float | None = None, tb_k: float = TB_K,
                   regime_thresholds: dict | None = None,
                   trailing_sigma: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every label for every row of ``f`` (formulas in the module docstring). ``regime_thresholds``: {h seconds:
    (q_lo, q_hi)} fitted on training rows; without it the regime labels are omitted. ``trailing_sigma``: the
    60 s trailing volatility for the triple barrier when the caller has it over a longer history (e.g. the
    carried feature ``rv_mid_60s``); by default it is computed from ``f`` (NaN for its first 60 s)."""
    t = np.ascontiguousarray(f.t_ns, dtype=np.int64)
    n = len(t)
    mid, micro, spread = prices(f)
    out: dict[str, np.ndarray] = {}
    for h in HORIZONS_S:
        j = ahead_index(t, h * S)
        inside = j < n
        jj = np.minimum(j, n - 1) if n else j
        with np.errstate(invalid="ignore", divide="ignore"):
            rm = np.where(inside, np.log(mid[jj] / mid), np.nan) if n else np.empty(0)
            rp = np.where(inside, np.log(micro[jj] / micro), np.nan) if n else np.empty(0)
            if dead_zone_bps is not None:
                dz = np.full(n, dead_zone_bps / 1e4)
            else:
                dz = dead_zone_spreads * np.maximum(spread, 0.0) / mid
        out[f"fwd_ret_mid_{h}s"] = rm
        out[f"fwd_ret_micro_{h}s"] = rp
        out[f"label_dir_mid_{h}s"] = np.where(np.isnan(rm), np.nan, (rm > 0).astype(np.float64))
        three = np.where(rm > dz, 1.0, np.where(rm < -dz, -1.0, 0.0))
        out[f"label_3c_mid_{h}s"] = np.where(np.isnan(rm) | np.isnan(dz), np.nan, three)
    blk = np.int64(BLOCK_ROWS * int(f.step_ns))
    r = np.empty(n)
    if n:
        one_step_returns(mid, r)
    if trailing_sigma is None:
        sigma = np.empty(n)
        trailing_rv(t, r, np.int64(TB_VOL_WINDOW_S * S), blk, sigma)
    else:
        sigma = np.ascontiguousarray(trailing_sigma, dtype=np.float64)
    for T in TB_LIMITS_S:
        lab, hit, ret = np.empty(n), np.empty(n), np.empty(n)
        triple_barrier(t, mid, sigma, tb_k * math.sqrt(T / TB_VOL_WINDOW_S), ahead_index(t, T * S), lab, hit, ret)
        out[f"label_tb_{T}s"], out[f"label_tb_hit_s_{T}s"], out[f"fwd_tb_ret_{T}s"] = lab, hit, ret
    for h in RV_HORIZONS_S:
        rv = np.empty(n)
        forward_rv(t, mid, r, ahead_index(t, h * S), blk, rv)
        out[f"fwd_rv_{h}s"] = rv
        if regime_thresholds is not None and h in regime_thresholds:
            out[f"label_vol_regime_{h}s"] = apply_regime_thresholds(rv, regime_thresholds[h])
    order = [s.name for s in LABELS if s.name in out]
    return {name: np.ascontiguousarray(out[name], dtype=np.float64) for name in order}

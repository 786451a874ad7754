"""Cross-asset features: a follower symbol against a leader on the same clock grid (table ``cross_asset``).

``compute(frame, leader_frame, state=None)`` takes two :class:`kernels.frame.MarketFrame` on the same grid (equal
``t_ns``) and returns one value per row. Row i reads rows <= i of both frames only (forward reach 0). The carried
state (``new_state()``) holds ring buffers, running sums and the last observations of both series, so a
partition-by-partition or row-by-row run gives the batch values bit for bit.

Inputs per row i: m^f_i, m^l_i the follower's and the leader's mids (b_0 + a_0) / 2, NaN when the row is
invalid or a side is empty; x_i = ln m^l_i, y_i = ln m^f_i; one-row log returns r^l_i = x_i - x_{i-1},
r^f_i = y_i - y_{i-1}, defined only when both rows have a mid. Windows of w seconds are W = round(w / step)
rows (i - W + 1 .. i); a window statistic is NaN until W rows have been seen and when fewer than W / 2 of its
rows contribute. A variance n S_xx - S_x^2 below 1e-9 n S_xx is taken as 0 (a constant series in the window:
the ratio is rounding, not information), which makes the correlation, beta or z-score NaN. Lags are in grid rows: a lag of tau seconds is k = tau / step rows, defined only when tau is a
multiple of the step (otherwise the column is NaN).

* ``xa_leader_ret_{tau}`` for tau = 500 ms, 1 s, 2 s, 3 s: x_i - x_{i-k}, the leader's log return over the
  last tau (the information a follower that lags by tau has not yet priced).
* ``xa_xcorr_lag{tau}ms`` for tau = 0, 500, ..., 3000 ms: rolling Pearson correlation over the last 300 s of
  the pairs (r^f_j, r^l_{j-k}), j = i-W+1..i, both defined:
  rho_k = (n S_xy - S_x S_y) / sqrt((n S_xx - S_x^2)(n S_yy - S_y^2)).
* ``xa_leadlag_s`` = step * argmax_{k = 0..K} |rho_k| over every lag k from 0 to 4 s (K = 4 s / step; the first
  on ties), the estimated time by which the follower lags the leader; ``xa_peak_xcorr`` = rho at that lag.
  (Lead-lag by the lagged cross-correlation, e.g. de Jong & Nijman 1997; Huth & Abergel 2014.)
* ``xa_hy_cov_300s`` / ``xa_hy_corr_300s``: Hayashi-Yoshida (2005) covariance of the asynchronous log-mid
  series over the last 300 s. Each series is observed at its *ticks* (rows where its mid changed; the first mid
  is its first observation); its intervals are I = (tau_{k-1}, tau_k] with increments d = y(tau_k) - y(tau_{k-1})
  (invalid rows are skipped, not observations). HY = sum over pairs (I of the leader, J of the follower) with
  I and J overlapping of d_I d_J. A pair is complete (known) at max(end I, end J); the rolling value sums the
  pairs completed in the window, so only intervals that have ended are used (point in time). Correlation:
  HY / sqrt(sum d_I^2 sum d_J^2) over the intervals completed in the window. Computed in O(1) per row from
  the identity sum_{J ending in (a, b]} d_J = y(last tick <= b) - y(last tick <= a).
* ``xa_beta_300s``: rolling OLS slope of y on x over 300 s (levels of log mids, rows where both have a mid):
  beta = (n S_xy - S_x S_y) / (n S_xx - S_x^2).
* ``xa_divergence_z_300s`` = (s_i - mean(s)) / std(s), s_j = y_j - beta_i x_j over the same window, beta_i the
  current rolling beta (pair-trading z-score; Gatev, Goetzmann & Rouwenhorst 2006). x and y are taken relative to
  the first mid seen (a constant shift that keeps the sums small).

:func:`hayashi_yoshida` is the standalone estimator on two tick series (t1, p1), (t2, p2).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.catalog import FeatureSpec
from kernels.frame import MarketFrame

KERNEL = "kernels.cross_asset.compute"
LEADER_RET_MS = (500, 1000, 2000, 3000)
XCORR_LAGS_MS = (0, 500, 1000, 1500, 2000, 2500, 3000)
MAX_LAG_S = 4.0
WINDOW_S = 300.0  # xcorr, HY, beta and divergence window
MIN_SHARE = 0.5  # a window statistic needs this share of its rows to contribute
REL_VAR_FLOOR = 1e-9  # n S_xx - S_x^2 below this share of n S_xx is rounding: the series is constant there


def _ret_name(ms: int) -> str:
    return f"xa_leader_ret_{ms // 1000}s" if ms % 1000 == 0 else f"xa_leader_ret_{ms}ms"


def _spec(name, unit, window, description, reference="", params=None):
    return FeatureSpec(name=name, family="cross_asset", kernel=KERNEL, table="cross_asset", unit=unit,
                       window=window, description=description, reference=reference, params=params or {})


_W = f"{int(WINDOW_S)} s"
FEATURES: list[FeatureSpec] = [
    *[_spec(_ret_name(ms), "log return", f"{ms} ms", f"leader mid log return over the last {ms} ms",
            params={"lag_ms": ms}) for ms in LEADER_RET_MS],
    *[_spec(f"xa_xcorr_lag{ms}ms", "1", f"{_W} + {ms} ms",
            f"rolling correlation of follower mid returns with leader mid returns {ms} ms earlier",
            "de Jong & Nijman (1997), High frequency analysis of lead-lag relationships",
            {"lag_ms": ms, "window_s": WINDOW_S}) for ms in XCORR_LAGS_MS],
    _spec("xa_leadlag_s", "s", f"{_W} + {MAX_LAG_S:g} s",
          "lag (0..4 s, grid resolution) maximizing |rolling cross-correlation|: the follower's estimated delay",
          "Huth & Abergel (2014), High frequency lead/lag relationships: empirical facts",
          {"max_lag_s": MAX_LAG_S, "window_s": WINDOW_S}),
    _spec("xa_peak_xcorr", "1", f"{_W} + {MAX_LAG_S:g} s", "the rolling cross-correlation at the estimated lag",
          params={"max_lag_s": MAX_LAG_S, "window_s": WINDOW_S}),
    _spec("xa_hy_cov_300s", "log return^2", _W,
          "Hayashi-Yoshida covariance of leader and follower log mids over intervals completed in the window",
          "Hayashi & Yoshida (2005), On covariance estimation of non-synchronously observed diffusion processes",
          {"window_s": WINDOW_S}),
    _spec("xa_hy_corr_300s", "1", _W, "Hayashi-Yoshida correlation HY / sqrt(sum d1^2 sum d2^2) over the window",
          "Hayashi & Yoshida (2005)", {"window_s": WINDOW_S}),
    _spec("xa_beta_300s", "1", _W, "rolling OLS slope of follower log mid on leader log mid",
          params={"window_s": WINDOW_S}),
    _spec("xa_divergence_z_300s", "1", _W, "z-score of log p_f - beta log p_l within the window (rolling beta)",
          "Gatev, Goetzmann & Rouwenhorst (2006), Pairs trading", {"window_s": WINDOW_S}),
]
COLUMNS = [s.name for s in FEATURES]


def window_rows(seconds: float, step_ns: int) -> int:
    return max(1, int(round(seconds * 1e9 / step_ns)))


def lag_rows(ms: int, step_ns: int) -> int:
    """Rows in ``ms`` milliseconds, or -1 if ``ms`` is not a whole number of grid steps."""
    ns = ms * 1_000_000
    return ns // step_ns if ns % step_ns == 0 else -1


# -- numba kernels ----------------------------------------------------------------------------------------------

@njit(cache=True)
def roll_columns(X, W, buf, ist, sums, cnt, nnz, out_sum, out_cnt):
    """Running sums and counts of the non-NaN values of each column of X over the last W rows.

    out_sum[i, c] = sum_{j=i-W+1..i, X_jc not NaN} X_jc; out_cnt[i, c] = #{those j}, or -1 while fewer than W rows
    have been seen. ``buf`` (W, C) ring, ``ist`` = [rows seen, rows since the last exact recompute]; sums are
    recomputed exactly from the ring every W rows, so rounding drift is bounded, and are exactly 0 when every value
    in the window is 0 (``nnz`` counts the non-zero ones). Window W rows; forward reach 0.
    """
    C = X.shape[1]
    for i in range(X.shape[0]):
        seen = ist[0]
        slot = seen % W
        for c in range(C):
            if seen >= W:
                old = buf[slot, c]
                if not math.isnan(old):
                    sums[c] -= old
                    cnt[c] -= 1
                    if old != 0.0:
                        nnz[c] -= 1
            v = X[i, c]
            if not math.isnan(v):
                sums[c] += v
                cnt[c] += 1
                if v != 0.0:
                    nnz[c] += 1
            buf[slot, c] = v
        seen += 1
        ist[0] = seen
        ist[1] += 1
        if ist[1] >= W:
            ist[1] = 0
            for c in range(C):
                s = 0.0
                for j in range(W):
                    b = buf[(seen + j) % W, c]  # oldest first
                    if not math.isnan(b):
                        s += b
                sums[c] = s
        for c in range(C):
            if nnz[c] == 0:
                sums[c] = 0.0
            out_sum[i, c] = sums[c]
            out_cnt[i, c] = cnt[c] if seen >= W else -1


@njit(cache=True)
def hy_increments(x1, x2, st, out):
    """Per-row Hayashi-Yoshida contributions of two log-price series on one grid (NaN = no observation).

    out[i, 0] = sum of d1_I d2_J over the overlapping pairs completed at row i (max of the ends = i);
    out[i, 1] = d1^2 if series 1 completed an interval at i (else NaN); out[i, 2] = d2^2 likewise.
    With L1, L2 the last observed values (a tick is a row whose value differs from the last one):
      tick of 1 at i closing (a1, i]:  d1 (L2(i) - L2(a1)),      L2(i) including a tick of 2 at i;
      tick of 2 at i closing (a2, i]:  d2 (L1(i - 1) - L1(a2)),  excluding a tick of 1 at i (counted above);
    where L(t) before the series' first observation is its first observation.
    st = [L1, L2, first1, first2, L2 at the last tick of 1, L1 at the last tick of 2]. Forward reach 0.
    """
    L1, L2, f1, f2, l2a, l1a = st[0], st[1], st[2], st[3], st[4], st[5]
    for i in range(x1.shape[0]):
        v1, v2 = x1[i], x2[i]
        t1 = (not math.isnan(v1)) and (math.isnan(L1) or v1 != L1)
        t2 = (not math.isnan(v2)) and (math.isnan(L2) or v2 != L2)
        L1_prev = L1
        c = 0.0
        out[i, 1] = np.nan
        out[i, 2] = np.nan
        if t1:
            if not math.isnan(L1):
                d1 = v1 - L1
                L2_now = v2 if t2 else L2
                base = l2a if not math.isnan(l2a) else f2
                if not math.isnan(L2_now) and not math.isnan(base):
                    c += d1 * (L2_now - base)
                out[i, 1] = d1 * d1
            else:
                f1 = v1
            L1 = v1
        if t2:
            if not math.isnan(L2):
                d2 = v2 - L2
                base = l1a if not math.isnan(l1a) else f1
                if not math.isnan(L1_prev) and not math.isnan(base):
                    c += d2 * (L1_prev - base)
                out[i, 2] = d2 * d2
            else:
                f2 = v2
            L2 = v2
        if t1:
            l2a = L2
        if t2:
            l1a = L1
        out[i, 0] = c
    st[0], st[1], st[2], st[3], st[4], st[5] = L1, L2, f1, f2, l2a, l1a


# -- the standalone estimator --------------------------------------------------------------------------------------

def hayashi_yoshida(t1, p1, t2, p2) -> tuple[float, float]:
    """Hayashi-Yoshida (2005) covariance and correlation of two asynchronously observed series.

    Observations (t1[k], p1[k]) and (t2[k], p2[k]) with strictly increasing times (pass log prices for returns).
    Intervals I_k = (t1[k-1], t1[k]] with d1_k = p1[k] - p1[k-1], likewise J for series 2.

        HY = sum_{k, l} d1_k d2_l 1[I_k and J_l overlap],     corr = HY / sqrt(sum d1_k^2 sum d2_l^2)

    (I = (a, b] and J = (c, d] overlap iff a < d and c < b.) For each I the overlapping J form a run, whose
    increments sum to p2 at the run's end minus p2 at its start, so this is O((n + m) log m).
    """
    t1, p1, t2, p2 = (np.asarray(a) for a in (t1, p1, t2, p2))
    p1, p2 = p1.astype(np.float64), p2.astype(np.float64)
    if len(t1) < 2 or len(t2) < 2:
        return math.nan, math.nan
    if np.any(np.diff(t1) <= 0) or np.any(np.diff(t2) <= 0):
        raise ValueError("observation times must be strictly increasing")
    a, b, d1 = t1[:-1], t1[1:], np.diff(p1)
    m = len(t2)
    k_lo = np.maximum(np.searchsorted(t2, a, side="right"), 1)  # first J_k (k >= 1) with t2[k] > a
    k_hi = np.minimum(np.searchsorted(t2, b, side="left"), m - 1)  # last J_k with t2[k-1] < b
    has = k_lo <= k_hi
    run = np.where(has, p2[np.minimum(k_hi, m - 1)] - p2[np.maximum(k_lo - 1, 0)], 0.0)
    cov = float(np.sum(d1 * run))
    den = math.sqrt(float(np.sum(d1 * d1)) * float(np.sum(np.diff(p2) ** 2)))
    return cov, (cov / den if den > 0 else math.nan)


# -- state and the kernel --------------------------------------------------------------------------------------------

def new_state() -> dict:
    """Empty carried state; buffers are sized on the first call (they depend on the grid step)."""
    return {}


def _roll_state(W: int, C: int) -> dict:
    return {"W": W, "buf": np.full((W, C), np.nan), "ist": np.zeros(2, np.int64), "sums": np.zeros(C),
            "cnt": np.zeros(C, np.int64), "nnz": np.zeros(C, np.int64)}


def _roll(X: np.ndarray, st: dict) -> tuple[np.ndarray, np.ndarray]:
    n, C = X.shape
    s, c = np.empty((n, C)), np.empty((n, C), np.int64)
    roll_columns(np.ascontiguousarray(X, dtype=np.float64), st["W"], st["buf"], st["ist"], st["sums"], st["cnt"],
                 st["nnz"], s, c)
    return s, c


def _init(state: dict, step_ns: int, window_s: float) -> None:
    if state.get("step_ns") is not None:
        if (state["step_ns"], state["window_s"]) != (step_ns, window_s):
            raise ValueError("cross_asset state was built for another grid step or window")
        return
    K = int(MAX_LAG_S * 1e9) // step_ns
    W = window_rows(window_s, step_ns)
    R = max(lag_rows(ms, step_ns) for ms in LEADER_RET_MS)
    state.update(step_ns=step_ns, window_s=window_s, K=K, W=W,
                 tail_rl=np.full(K, np.nan), tail_xl=np.full(max(R, 0), np.nan),
                 prev=np.array([np.nan, np.nan]), ref=np.array([np.nan, np.nan]),
                 hy=np.full(6, np.nan),
                 xcorr=_roll_state(W, 5 * (K + 1)), hy_roll=_roll_state(W, 3), lvl=_roll_state(W, 5))


def _mid(f: MarketFrame) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        m = (f.bid_px[:, 0] + f.ask_px[:, 0]) / 2.0
    return np.where(f.valid.astype(bool) & (m > 0), m, np.nan)


def _lagged(tail: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """x_{i-k} for each row i, reading the carried tail for rows before this call."""
    ext = np.concatenate([tail, x])
    return ext[len(tail) - k: len(ext) - k]


def _has_var(v, n, sq):
    """n S_xx - S_x^2 is a variance, not rounding: above REL_VAR_FLOOR n S_xx (else the window is constant)."""
    return v > REL_VAR_FLOOR * n * sq


def _corr(sx, sy, sxx, syy, sxy, n):
    with np.errstate(invalid="ignore", divide="ignore"):
        vx, vy = n * sxx - sx * sx, n * syy - sy * sy
        return np.where(_has_var(vx, n, sxx) & _has_var(vy, n, syy), (n * sxy - sx * sy) / np.sqrt(vx * vy), np.nan)


def compute(f: MarketFrame, leader: MarketFrame, state: dict | None = None, *,
            window_s: float = WINDOW_S) -> dict[str, np.ndarray]:
    """Every cross-asset feature of follower ``f`` against ``leader`` for every row (see the module docstring).
    ``window_s`` overrides the 300 s window (tests use short ones; the catalog names describe the default)."""
    if f.n != leader.n or not np.array_equal(f.t_ns, leader.t_ns) or f.step_ns != leader.step_ns:
        raise ValueError("follower and leader frames must be on the same grid (equal t_ns and step)")
    state = new_state() if state is None else state
    step = int(f.step_ns)
    _init(state, step, float(window_s))
    K, W = state["K"], state["W"]
    need = max(1, int(math.ceil(MIN_SHARE * W)))
    n = f.n
    with np.errstate(invalid="ignore", divide="ignore"):
        xl, yf = np.log(_mid(leader)), np.log(_mid(f))
    # one-row returns (both rows must have a mid), carrying the previous log mids
    prev = state["prev"]
    xl_prev = np.concatenate([[prev[0]], xl[:-1]])
    yf_prev = np.concatenate([[prev[1]], yf[:-1]])
    rl, rf = xl - xl_prev, yf - yf_prev
    if n:
        prev[0], prev[1] = xl[-1], yf[-1]
    out: dict[str, np.ndarray] = {}

    # leader returns over the last tau
    tail_xl = state["tail_xl"]
    for ms in LEADER_RET_MS:
        k = lag_rows(ms, step)
        out[_ret_name(ms)] = xl - _lagged(tail_xl, xl, k) if k > 0 else np.full(n, np.nan)
    if len(tail_xl):
        state["tail_xl"] = np.concatenate([tail_xl, xl])[-len(tail_xl):]

    # lagged cross-correlations: columns (x, y, x^2, y^2, xy) per lag, pairs where both are defined
    tail_rl = state["tail_rl"]
    X = np.empty((n, 5 * (K + 1)))
    for k in range(K + 1):
        lagged = _lagged(tail_rl, rl, k) if k else rl
        ok = ~(np.isnan(lagged) | np.isnan(rf))
        x = np.where(ok, lagged, np.nan)
        y = np.where(ok, rf, np.nan)
        X[:, 5 * k: 5 * k + 5] = np.column_stack([x, y, x * x, y * y, x * y])
    if K:
        state["tail_rl"] = np.concatenate([tail_rl, rl])[-K:]
    s, c = _roll(X, state["xcorr"])
    rho = np.full((n, K + 1), np.nan)
    for k in range(K + 1):
        cnt = c[:, 5 * k]
        r = _corr(*(s[:, 5 * k + j] for j in range(5)), cnt.astype(np.float64))
        rho[:, k] = np.where(cnt >= need, r, np.nan)
    for ms in XCORR_LAGS_MS:
        k = lag_rows(ms, step)
        out[f"xa_xcorr_lag{ms}ms"] = rho[:, k].copy() if 0 <= k <= K else np.full(n, np.nan)
    absr = np.where(np.isnan(rho), -1.0, np.abs(rho))
    best = np.argmax(absr, axis=1)
    anyv = (absr >= 0).any(axis=1)
    out["xa_leadlag_s"] = np.where(anyv, best * step / 1e9, np.nan)
    out["xa_peak_xcorr"] = np.where(anyv, rho[np.arange(n), best], np.nan)

    # Hayashi-Yoshida on the tick series of the two log mids
    inc = np.empty((n, 3))
    hy_increments(np.ascontiguousarray(xl), np.ascontiguousarray(yf), state["hy"], inc)
    s, c = _roll(inc, state["hy_roll"])
    full = c[:, 0] >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(s[:, 1] * s[:, 2])
        out["xa_hy_cov_300s"] = np.where(full, s[:, 0], np.nan)
        out["xa_hy_corr_300s"] = np.where(full & (c[:, 1] > 0) & (c[:, 2] > 0) & (den > 0), s[:, 0] / den, np.nan)

    # rolling beta of the levels and the divergence z-score
    ref = state["ref"]
    for j, v in enumerate((xl, yf)):
        if math.isnan(ref[j]):
            fin = v[~np.isnan(v)]
            if len(fin):
                ref[j] = fin[0]
    ok = ~(np.isnan(xl) | np.isnan(yf))
    x = np.where(ok, xl - ref[0], np.nan)
    y = np.where(ok, yf - ref[1], np.nan)
    s, c = _roll(np.column_stack([x, y, x * x, y * y, x * y]), state["lvl"])
    sx, sy, sxx, syy, sxy = (s[:, j] for j in range(5))
    cnt = c[:, 0].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        vx = cnt * sxx - sx * sx
        cxy = cnt * sxy - sx * sy
        vy = cnt * syy - sy * sy
        beta = cxy / vx
        var_s = (vy - 2 * beta * cxy + beta * beta * vx) / (cnt * cnt)
        z = ((y - beta * x) - (sy - beta * sx) / cnt) / np.sqrt(var_s)
    enough = c[:, 0] >= need
    hv = _has_var(vx, cnt, sxx)
    out["xa_beta_300s"] = np.where(enough & hv, beta, np.nan)
    out["xa_divergence_z_300s"] = np.where(enough & hv & _has_var(var_s * cnt * cnt, cnt, syy) & ok, z, np.nan)
    return {name: np.ascontiguousarray(out[name], dtype=np.float64) for name in COLUMNS}

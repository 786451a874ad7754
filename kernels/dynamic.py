"""Dynamic features: how the book changed from the previous row (order-flow imbalance, velocities, depth and
queue changes), and their time-window and exponentially decayed aggregates. Forward reach 0 everywhere.

Notation: row i of a :class:`kernels.frame.MarketFrame` at time t_i; b^m_i, a^m_i the m-th best bid/ask
price (m = 0 is the touch), q^b_m,i, q^a_m,i their sizes; dt_i = (t_i - t_{i-1}) in seconds.

Missing levels and invalid rows (the rule)
    * A missing level (size 0 or price NaN: an empty side or a short book) is treated as bid price -inf /
      ask price +inf with size 0. That is the limit of the Cont-Kukanov-Stoikov definition: a bid side that
      empties contributes -q^b_{i-1}, one that reappears +q^b_i; two empty rows contribute 0.
    * A value that reads rows i-k..i is NaN unless every one of those rows is valid (``valid == True``, the
      book is whole). So the OFI, changes and velocities are NaN on an invalid row and on the first valid row
      after it (and on the first row of the stream: there is no previous row); accelerations need 3 rows.
      Price-based values are also NaN when the price itself is (e.g. the mid of a one-sided book).
    * Time-window sums over (t - W, t] are NaN while any row in the window has a NaN input: a sum over a
      partly unknown interval would be biased. After a gap they come back once the gap has left the window.
    * Exponentially decayed sums restart from 0 after a NaN input: they are sums over the current run of
      whole-book rows (NaN on the rows whose OFI is NaN).

Features
    * ``ofi_L{m}`` (m = 0..9): per-level OFI of the m-th level, e^m_i (Cont, Kukanov & Stoikov 2014 at m = 0;
      the multi-level OFI of Xu, Gould & Howison 2018), base units
    * ``ofi_depth5`` / ``ofi_depth10``: sum over the top 5 / 10 levels of e^m_i (integrated multi-level OFI)
    * ``ofi_sum_1s`` / ``ofi_sum_10s``: sum of e^0 over rows with t in (t_i - W, t_i]
    * ``ofi_ewm_1s`` / ``ofi_ewm_10s``: S_i = S_{i-1} 2^(-dt_i / H) + e^0_i with half-life H
    * ``mid_velocity`` (m_i - m_{i-1}) / dt_i, ``mid_accel`` (v_i - v_{i-1}) / dt_i; same for the microprice
    * ``spread_change`` s_i - s_{i-1}; ``bid_depth5_change`` / ``ask_depth5_change``: change of the size on
      the top 5 levels
    * ``bid_queue_depletion`` / ``ask_queue_depletion``: touch queue depleted per second (see
      :func:`ofi_levels`: the negative part of the bid-side OFI term, the positive part of the ask-side
      term), and ``*_1s``: depleted size over (t - 1 s, t] per second
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.catalog import FeatureSpec
from kernels.frame import MarketFrame

LEVELS = 10
OFI_WINDOWS_S = (1, 10)
OFI_HALF_LIVES_S = (1, 10)
DEPLETION_WINDOW_S = 1
KERNEL = "kernels.dynamic.compute"
NS = 1_000_000_000
CKS = "Cont, Kukanov & Stoikov (2014), The price impact of order book events, J. Financial Econometrics"
XGH = "Xu, Gould & Howison (2018), Multi-level order-flow imbalance in a limit order book, arXiv:1907.06230"


# --------------------------------------------------------------------------------------------------------
# Time-window machinery, shared by the dynamic, trade_flow and advanced families
# --------------------------------------------------------------------------------------------------------
@njit(cache=True)
def win_evict(lim, wt, wv, wi, ws, wnz):
    """Drop the ring's rows with time <= ``lim`` (see :func:`window_sums`)."""
    cap = wt.shape[0]
    k = wv.shape[1]
    while wi[1] > 0 and wt[wi[0]] <= lim:
        head = wi[0]
        for c in range(k):
            v = wv[head, c]
            if v != 0.0:
                ws[c] -= v
                wnz[c] -= 1
        wi[0] = (head + 1) % cap
        wi[1] -= 1
    for c in range(k):
        if wnz[c] == 0:
            ws[c] = 0.0


@njit(cache=True)
def win_push(t, x, wt, wv, wi, ws, wnz):
    """Append a row (time ``t`` >= every time in the ring, finite values ``x``) to the ring of
    :func:`window_sums`; a full ring first drops its oldest row (which is out of the window whenever rows are
    at least one grid step apart). Every ``cap`` pushes the sums are recomputed exactly from the ring."""
    cap = wt.shape[0]
    k = wv.shape[1]
    if wi[1] == cap:
        win_evict(wt[wi[0]], wt, wv, wi, ws, wnz)
    pos = (wi[0] + wi[1]) % cap
    wt[pos] = t
    for c in range(k):
        v = x[c]
        wv[pos, c] = v
        if v != 0.0:
            ws[c] += v
            wnz[c] += 1
    wi[1] += 1
    wi[2] += 1
    if wi[2] >= cap:
        wi[2] = 0
        for c in range(k):
            s = 0.0
            for j in range(wi[1]):
                s += wv[(wi[0] + j) % cap, c]
            ws[c] = s if wnz[c] > 0 else 0.0


@njit(cache=True)
def window_sums(t, x, width_ns, wt, wv, wi, ws, wnz, out):
    """Column sums of ``x`` over the rows with time in (t_i - W, t_i], row by row with carried state.

        out[i, c] = sum_{j : t_i - W < t_j <= t_i} x[j, c]

    State (a FIFO ring of the rows in the window): ``wt`` times, ``wv`` values (cap x k), ``wi`` = [head,
    count, pushes since the last exact recompute], ``ws`` running sums, ``wnz`` nonzero counts per column.
    A running sum whose column holds no nonzero value is exactly 0, and every ``cap`` pushes the sums are
    recomputed from the ring in order, so the drift of the running sums is bounded by one window of
    additions; all of it is deterministic in the row sequence, so batch, chunks and one row at a time give
    the same bits. ``x`` must be finite. Rows must be at least W / (cap - 1) apart (one grid step; the caller
    checks).

    Window: W (time). Forward reach: 0.
    """
    k = wv.shape[1]
    for i in range(t.shape[0]):
        win_evict(t[i] - width_ns, wt, wv, wi, ws, wnz)
        win_push(t[i], x[i], wt, wv, wi, ws, wnz)
        for c in range(k):
            out[i, c] = ws[c]


def new_window(width_s: float, step_ns: int, k: int) -> dict:
    width_ns = int(round(width_s * NS))
    cap = width_ns // step_ns + 1
    return {"width_ns": width_ns, "t": np.zeros(cap, np.int64), "v": np.zeros((cap, k)),
            "i": np.zeros(3, np.int64), "s": np.zeros(k), "nz": np.zeros(k, np.int64)}


def run_window(w: dict, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Window sums of the columns of ``x`` (n, k) for the rows ``t``, carrying the window ``w``."""
    out = np.empty(x.shape)
    window_sums(t, np.ascontiguousarray(x, dtype=np.float64), w["width_ns"], w["t"], w["v"], w["i"], w["s"],
                w["nz"], out)
    return out


def check_clock(f: MarketFrame, state: dict) -> None:
    """Fix the grid step on first use and refuse rows closer than one step (the window rings rely on it)."""
    if "step_ns" not in state:
        state["step_ns"] = int(f.step_ns)
        state["last_t"] = None
    if int(f.step_ns) != state["step_ns"]:
        raise ValueError(f"frame step {f.step_ns} ns differs from the state's {state['step_ns']} ns")
    t = f.t_ns
    if len(t) and ((np.diff(t) < f.step_ns).any()
                   or (state["last_t"] is not None and t[0] - state["last_t"] < f.step_ns)):
        raise ValueError("grid times must increase by at least one step")


def dt_seconds(t: np.ndarray, last_t) -> np.ndarray:
    """t_i - t_{i-1} in seconds (the first row against ``last_t``, NaN without one)."""
    d = np.diff(t, prepend=t[:1] if last_t is None else np.array([last_t], np.int64)).astype(np.float64) / NS
    if last_t is None and len(t):
        d[0] = np.nan
    return d


def nan_where_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, x, np.nan)


def mid_of(f: MarketFrame) -> np.ndarray:
    """(b_0 + a_0) / 2, NaN on invalid rows or a one-sided book (the structural family's ``mid``)."""
    return nan_where_invalid((f.bid_px[:, 0] + f.ask_px[:, 0]) / 2.0, f.valid)


# --------------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------------
@njit(cache=True)
def ofi_levels(bid_px, bid_sz, ask_px, ask_sz, valid, prev, prev_ok, out, eb0, ea0):
    """Per-level order-flow imbalance (Cont, Kukanov & Stoikov 2014; multi-level: Xu, Gould & Howison 2018).

        e^m_i = 1[b^m_i >= b^m_{i-1}] q^b_m,i - 1[b^m_i <= b^m_{i-1}] q^b_m,i-1
              - 1[a^m_i <= a^m_{i-1}] q^a_m,i + 1[a^m_i >= a^m_{i-1}] q^a_m,i-1

    A missing level is (b = -inf, q = 0) on the bid side and (a = +inf, q = 0) on the ask side. e^m_i is NaN
    unless rows i-1 and i are both valid. Also returns the touch's bid term eb0 = 1[b_i >= b_{i-1}] q^b_i -
    1[b_i <= b_{i-1}] q^b_{i-1} and ask term ea0 = -1[a_i <= a_{i-1}] q^a_i + 1[a_i >= a_{i-1}] q^a_{i-1}
    (e^0 = eb0 + ea0). State: ``prev`` (4, L) = the previous row's (b, q^b, a, q^a) per level, ``prev_ok``.

    Window: 1 row back. Forward reach: 0.
    """
    n = bid_px.shape[0]
    depth = bid_px.shape[1]
    levels = out.shape[1]
    for i in range(n):
        ok = valid[i] and prev_ok[0] != 0
        for m in range(levels):
            b = -np.inf
            qb = 0.0
            a = np.inf
            qa = 0.0
            if m < depth:
                if bid_sz[i, m] > 0.0 and not math.isnan(bid_px[i, m]):
                    b = bid_px[i, m]
                    qb = bid_sz[i, m]
                if ask_sz[i, m] > 0.0 and not math.isnan(ask_px[i, m]):
                    a = ask_px[i, m]
                    qa = ask_sz[i, m]
            if ok:
                pb = prev[0, m]
                pqb = prev[1, m]
                pa = prev[2, m]
                pqa = prev[3, m]
                eb = 0.0
                if b >= pb:
                    eb += qb
                if b <= pb:
                    eb -= pqb
                ea = 0.0
                if a <= pa:
                    ea -= qa
                if a >= pa:
                    ea += pqa
                out[i, m] = eb + ea
                if m == 0:
                    eb0[i] = eb
                    ea0[i] = ea
            else:
                out[i, m] = np.nan
                if m == 0:
                    eb0[i] = np.nan
                    ea0[i] = np.nan
            prev[0, m] = b
            prev[1, m] = qb
            prev[2, m] = a
            prev[3, m] = qa
        prev_ok[0] = 1 if valid[i] else 0


@njit(cache=True)
def level_sums(e, upto, out):
    """Integrated multi-level OFI: out_i = sum_{m < upto} e^m_i (NaN if any term is; Xu, Gould & Howison
    2018). Window: 1 row back (through e). Forward reach: 0."""
    for i in range(e.shape[0]):
        s = 0.0
        for m in range(upto):
            s += e[i, m]
        out[i] = s


@njit(cache=True)
def ewm_sum(t, x, half_life_ns, st, tst, out):
    """Exponentially decayed sum with a half-life in time (Cont, Kukanov & Stoikov 2014 aggregate OFI over
    intervals; this is its decayed form):

        S_i = S_{i-1} * 2^(-(t_i - t_{i-1}) / H) + x_i ;   S = 0 and out NaN where x_i is NaN

    State: ``st[0]`` = S, ``tst[0]`` = t of the previous row. Window: the current run of non-NaN rows
    (weight 1/2 per H). Forward reach: 0.
    """
    for i in range(t.shape[0]):
        if math.isnan(x[i]):
            st[0] = 0.0
            out[i] = np.nan
        else:
            decay = math.exp(-math.log(2.0) * (t[i] - tst[0]) / half_life_ns)
            st[0] = st[0] * decay + x[i]
            out[i] = st[0]
        tst[0] = t[i]


@njit(cache=True)
def velocity(t, x, st, tst, vel, acc):
    """Velocity and acceleration of a price per second:

        v_i = (x_i - x_{i-1}) / dt_i ;   a_i = (v_i - v_{i-1}) / dt_i ;   dt_i = (t_i - t_{i-1}) / 1e9

    NaN propagates (x NaN on invalid rows). State: st = [x_{i-1}, v_{i-1}], tst = [t_{i-1}].
    Window: 1 row back (v), 2 rows back (a). Forward reach: 0.
    """
    for i in range(t.shape[0]):
        dt = (t[i] - tst[0]) / 1e9
        v = (x[i] - st[0]) / dt
        acc[i] = (v - st[1]) / dt
        vel[i] = v
        st[0] = x[i]
        st[1] = v
        tst[0] = t[i]


@njit(cache=True)
def row_change(x, st, out):
    """out_i = x_i - x_{i-1} (NaN if either is). State: st = [x_{i-1}]. Window: 1 row back. Forward reach: 0."""
    for i in range(x.shape[0]):
        out[i] = x[i] - st[0]
        st[0] = x[i]


@njit(cache=True)
def top_depth(sz, valid, k, out):
    """out_i = sum_{m < k} q_m,i (missing levels have size 0), NaN on invalid rows. Window: 0. Forward reach: 0."""
    kk = min(k, sz.shape[1])
    for i in range(sz.shape[0]):
        if not valid[i]:
            out[i] = np.nan
            continue
        s = 0.0
        for m in range(kk):
            s += sz[i, m]
        out[i] = s


# --------------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------------
def _spec(name, unit, window, description, reference="", params=None):
    return FeatureSpec(name=name, family="dynamic", kernel=KERNEL, table="book", unit=unit, window=window,
                       description=description, reference=reference, params=params or {})


FEATURES: list[FeatureSpec] = [
    _spec(f"ofi_L{m}", "base units", "1 row",
          f"order-flow imbalance of level {m} since the previous row" + (" (touch OFI)" if m == 0 else ""),
          CKS if m == 0 else XGH, {"level": m})
    for m in range(LEVELS)
]
FEATURES += [
    _spec(f"ofi_depth{k}", "base units", "1 row", f"sum of the level OFIs over the top {k} levels", XGH, {"levels": k})
    for k in (5, LEVELS)
]
FEATURES += [
    _spec(f"ofi_sum_{w}s", "base units", f"{w} s", f"touch OFI summed over rows in (t - {w} s, t]", CKS,
          {"window_s": w})
    for w in OFI_WINDOWS_S
]
FEATURES += [
    _spec(f"ofi_ewm_{h}s", "base units", f"run since the last NaN (half-life {h} s)",
          f"touch OFI, exponentially decayed sum with half-life {h} s", CKS, {"half_life_s": h})
    for h in OFI_HALF_LIVES_S
]
FEATURES += [
    _spec("mid_velocity", "price/s", "1 row", "(mid_i - mid_{i-1}) / dt"),
    _spec("mid_accel", "price/s^2", "2 rows", "(mid_velocity_i - mid_velocity_{i-1}) / dt"),
    _spec("microprice_velocity", "price/s", "1 row", "(microprice_i - microprice_{i-1}) / dt",
          "Stoikov (2018), The micro-price"),
    _spec("microprice_accel", "price/s^2", "2 rows", "(microprice_velocity_i - microprice_velocity_{i-1}) / dt",
          "Stoikov (2018)"),
    _spec("spread_change", "price", "1 row", "spread_i - spread_{i-1}"),
    _spec("bid_depth5_change", "base units", "1 row", "change of the total size on the top 5 bid levels"),
    _spec("ask_depth5_change", "base units", "1 row", "change of the total size on the top 5 ask levels"),
    _spec("bid_queue_depletion", "base units/s", "1 row",
          "best-bid queue depleted per second: q_{i-1} if the bid fell, max(q_{i-1} - q_i, 0) if unchanged, 0 if it rose",
          CKS),
    _spec("ask_queue_depletion", "base units/s", "1 row",
          "best-ask queue depleted per second: q_{i-1} if the ask rose, max(q_{i-1} - q_i, 0) if unchanged, 0 if it fell",
          CKS),
    _spec(f"bid_queue_depletion_{DEPLETION_WINDOW_S}s", "base units/s", f"{DEPLETION_WINDOW_S} s",
          f"best-bid queue depleted over (t - {DEPLETION_WINDOW_S} s, t], per second", CKS,
          {"window_s": DEPLETION_WINDOW_S}),
    _spec(f"ask_queue_depletion_{DEPLETION_WINDOW_S}s", "base units/s", f"{DEPLETION_WINDOW_S} s",
          f"best-ask queue depleted over (t - {DEPLETION_WINDOW_S} s, t], per second", CKS,
          {"window_s": DEPLETION_WINDOW_S}),
]


# --------------------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------------------
def new_state() -> dict:
    """Carried state (filled on first use, when the grid step is known)."""
    return {}


def _init(state: dict, step_ns: int) -> None:
    if "prev" in state:
        return
    state["prev"] = np.zeros((4, LEVELS))
    state["prev_ok"] = np.zeros(1, np.int64)
    state["ewm"] = {h: (np.zeros(1), np.zeros(1, np.int64)) for h in OFI_HALF_LIVES_S}
    state["vel"] = {k: (np.array([np.nan, np.nan]), np.zeros(1, np.int64)) for k in ("mid", "micro")}
    state["chg"] = {k: np.array([np.nan]) for k in ("spread", "bid5", "ask5")}
    state["win"] = {w: new_window(w, step_ns, 2) for w in OFI_WINDOWS_S}
    state["depl"] = new_window(DEPLETION_WINDOW_S, step_ns, 4)


def _nan_split(x: np.ndarray) -> np.ndarray:
    """(n, k) -> (n, 2k): the values with NaN as 0, then NaN indicators (for window sums that must know)."""
    bad = np.isnan(x)
    return np.concatenate([np.where(bad, 0.0, x), bad.astype(np.float64)], axis=1)


def _window_or_nan(sums: np.ndarray, k: int) -> np.ndarray:
    return np.where(sums[:, k:] > 0, np.nan, sums[:, :k])


def compute(f: MarketFrame, state: dict | None = None) -> dict[str, np.ndarray]:
    """Every dynamic feature for every row of ``f`` (formulas: module docstring and the kernels)."""
    state = {} if state is None else state
    check_clock(f, state)
    _init(state, state["step_ns"])
    n = f.n
    t = np.ascontiguousarray(f.t_ns, dtype=np.int64)
    valid = np.ascontiguousarray(f.valid, dtype=np.bool_)
    e = np.empty((n, LEVELS))
    eb0, ea0 = np.empty(n), np.empty(n)
    ofi_levels(np.ascontiguousarray(f.bid_px), np.ascontiguousarray(f.bid_sz), np.ascontiguousarray(f.ask_px),
               np.ascontiguousarray(f.ask_sz), valid, state["prev"], state["prev_ok"], e, eb0, ea0)
    out: dict[str, np.ndarray] = {f"ofi_L{m}": e[:, m].copy() for m in range(LEVELS)}
    for k in (5, LEVELS):
        out[f"ofi_depth{k}"] = np.empty(n)
        level_sums(e, k, out[f"ofi_depth{k}"])
    e0 = e[:, 0].copy()
    for w in OFI_WINDOWS_S:
        out[f"ofi_sum_{w}s"] = _window_or_nan(run_window(state["win"][w], t, _nan_split(e0[:, None])), 1)[:, 0]
    for h in OFI_HALF_LIVES_S:
        out[f"ofi_ewm_{h}s"] = np.empty(n)
        ewm_sum(t, e0, h * NS, *state["ewm"][h], out[f"ofi_ewm_{h}s"])

    b0, a0, qb0, qa0 = f.bid_px[:, 0], f.ask_px[:, 0], f.bid_sz[:, 0], f.ask_sz[:, 0]
    mid = mid_of(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = qb0 + qa0
        micro = nan_where_invalid(np.where(den > 0, (a0 * qb0 + b0 * qa0) / np.where(den > 0, den, 1.0), np.nan),
                                  valid)
        for key, x in (("mid", mid), ("micro", micro)):
            name = "mid" if key == "mid" else "microprice"
            out[f"{name}_velocity"], out[f"{name}_accel"] = np.empty(n), np.empty(n)
            velocity(t, np.ascontiguousarray(x), *state["vel"][key], out[f"{name}_velocity"], out[f"{name}_accel"])
    spread = nan_where_invalid(a0 - b0, valid)
    d5b, d5a = np.empty(n), np.empty(n)
    top_depth(np.ascontiguousarray(f.bid_sz), valid, 5, d5b)
    top_depth(np.ascontiguousarray(f.ask_sz), valid, 5, d5a)
    for name, key, x in (("spread_change", "spread", spread), ("bid_depth5_change", "bid5", d5b),
                         ("ask_depth5_change", "ask5", d5a)):
        out[name] = np.empty(n)
        row_change(np.ascontiguousarray(x), state["chg"][key], out[name])

    # queue depletion at the touch: the negative part of the bid term, the positive part of the ask term
    depl = np.stack([np.where(eb0 < 0, -eb0, 0.0), np.where(ea0 > 0, ea0, 0.0)], axis=1)
    depl[np.isnan(eb0), 0] = np.nan
    depl[np.isnan(ea0), 1] = np.nan
    dt = dt_seconds(t, state["last_t"])
    with np.errstate(invalid="ignore", divide="ignore"):
        out["bid_queue_depletion"] = depl[:, 0] / dt
        out["ask_queue_depletion"] = depl[:, 1] / dt
    sums = _window_or_nan(run_window(state["depl"], t, _nan_split(depl)), 2) / DEPLETION_WINDOW_S
    out[f"bid_queue_depletion_{DEPLETION_WINDOW_S}s"] = sums[:, 0].copy()
    out[f"ask_queue_depletion_{DEPLETION_WINDOW_S}s"] = sums[:, 1].copy()
    if n:
        state["last_t"] = int(t[-1])
    return out

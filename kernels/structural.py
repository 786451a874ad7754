"""Structural features: the shape of the book at one instant (no memory, forward reach 0).

All are functions of row i of a :class:`kernels.frame.MarketFrame` alone, so the batch form applied to a
one-row frame is also the incremental (live) form, bit for bit. Rows whose book is not whole
(``valid == False``) get NaN. Notation: b_k, a_k prices and q^b_k, q^a_k sizes of the k-th best bid/ask
(k = 0 is the touch); m = (b_0 + a_0) / 2.

* levels: ``bid_px_L{k}``, ``bid_sz_L{k}``, ``ask_px_L{k}``, ``ask_sz_L{k}`` for k = 0..19
* ``mid`` = m; ``spread`` = a_0 - b_0; ``spread_bps`` = 1e4 (a_0 - b_0) / m
* ``microprice`` = (a_0 q^b_0 + b_0 q^a_0) / (q^b_0 + q^a_0)  (Stoikov 2018 uses this as its first-order form)
* ``weighted_mid_k5`` = (VWAP of the top-5 bids + VWAP of the top-5 asks) / 2
* ``imbalance_l1`` = (q^b_0 - q^a_0) / (q^b_0 + q^a_0); ``imbalance_top{k}`` the same with sizes summed over
  the top k levels (Cao, Hansch & Wang 2009, "order imbalance")
* ``bid_depth_{w}bps`` / ``ask_depth_{w}bps``: size within w bps of m (b_k >= m (1 - w/1e4), resp.
  a_k <= m (1 + w/1e4)) among the top 20 levels; ``depth_imbalance_{w}bps`` = (bid - ask) / (bid + ask)
* ``smart_imbalance_{l}bps``: distance-weighted imbalance, weights exp(-d_k / l) with d_k the level's distance
  from m in bps: sum_k w q^b_k - sum_k w q^a_k over their sum
* ``bid_slope`` / ``ask_slope``: least-squares slope of cumulative size on distance from m (bps) over the top
  10 levels (Naes & Skjeltorp 2006, "book slope"), in base units per bps
* ``bid_levels`` / ``ask_levels``: non-empty levels among the top 20; ``bid_depth_top20`` / ``ask_depth_top20``
"""

from __future__ import annotations

import numpy as np

from kernels.catalog import FeatureSpec
from kernels.frame import MarketFrame

DEPTH = 20
TOPK = (2, 3, 5, 10, 20)
BANDS_BPS = (5, 10, 25, 50)
SMART_LAMBDAS_BPS = (5, 25)
SLOPE_LEVELS = 10
KERNEL = "kernels.structural.compute"


def _spec(name, unit, description, reference="", params=None):
    return FeatureSpec(name=name, family="structural", kernel=KERNEL, table="book", unit=unit, window="0",
                       description=description, reference=reference, params=params or {})


FEATURES: list[FeatureSpec] = []
for _k in range(DEPTH):
    FEATURES += [
        _spec(f"bid_px_L{_k}", "price", f"price of the {_k}-th best bid (0 = touch)"),
        _spec(f"bid_sz_L{_k}", "base units", f"size at the {_k}-th best bid"),
        _spec(f"ask_px_L{_k}", "price", f"price of the {_k}-th best ask"),
        _spec(f"ask_sz_L{_k}", "base units", f"size at the {_k}-th best ask"),
    ]
FEATURES += [
    _spec("mid", "price", "(best bid + best ask) / 2"),
    _spec("spread", "price", "best ask - best bid"),
    _spec("spread_bps", "bps", "spread / mid * 1e4"),
    _spec("microprice", "price", "size-weighted mid at the touch: (a q_b + b q_a) / (q_b + q_a)",
          "Stoikov (2018), The micro-price"),
    _spec("weighted_mid_k5", "price", "mean of the top-5 bid VWAP and the top-5 ask VWAP", params={"k": 5}),
    _spec("imbalance_l1", "1", "(q_b - q_a) / (q_b + q_a) at the touch", "Cao, Hansch & Wang (2009)"),
]
FEATURES += [_spec(f"imbalance_top{k}", "1", f"size imbalance over the top {k} levels", "Cao, Hansch & Wang (2009)",
                   {"k": k}) for k in TOPK]
for _w in BANDS_BPS:
    FEATURES += [
        _spec(f"bid_depth_{_w}bps", "base units", f"bid size within {_w} bps of mid (top 20 levels)", params={"bps": _w}),
        _spec(f"ask_depth_{_w}bps", "base units", f"ask size within {_w} bps of mid (top 20 levels)", params={"bps": _w}),
        _spec(f"depth_imbalance_{_w}bps", "1", f"(bid - ask) / (bid + ask) depth within {_w} bps", params={"bps": _w}),
    ]
FEATURES += [_spec(f"smart_imbalance_{l}bps", "1", f"distance-weighted imbalance, weight exp(-d / {l} bps)",
                   params={"lambda_bps": l}) for l in SMART_LAMBDAS_BPS]
FEATURES += [
    _spec("bid_slope", "base units/bps", "slope of cumulative bid size on distance from mid, top 10 levels",
          "Naes & Skjeltorp (2006), Order book characteristics and the volume-volatility relation"),
    _spec("ask_slope", "base units/bps", "slope of cumulative ask size on distance from mid, top 10 levels",
          "Naes & Skjeltorp (2006)"),
    _spec("bid_levels", "count", "non-empty bid levels among the top 20"),
    _spec("ask_levels", "count", "non-empty ask levels among the top 20"),
    _spec("bid_depth_top20", "base units", "total bid size over the top 20 levels"),
    _spec("ask_depth_top20", "base units", "total ask size over the top 20 levels"),
]


def _ratio(num, den):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _slope(dist: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Row-wise least-squares slope of cum on dist, ignoring NaN pairs; NaN with fewer than 2 points."""
    ok = ~np.isnan(dist) & ~np.isnan(cum)
    cnt = ok.sum(axis=1)
    d = np.where(ok, dist, 0.0)
    c = np.where(ok, cum, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        md = d.sum(axis=1) / cnt
        mc = c.sum(axis=1) / cnt
        cov = (np.where(ok, (d - md[:, None]) * (c - mc[:, None]), 0.0)).sum(axis=1)
        var = (np.where(ok, (d - md[:, None]) ** 2, 0.0)).sum(axis=1)
        return np.where((cnt >= 2) & (var > 0), cov / np.where(var > 0, var, 1.0), np.nan)


def new_state() -> None:
    return None  # stateless: every value is a function of its own row


def compute(f: MarketFrame, state=None) -> dict[str, np.ndarray]:
    """Every structural feature for every row of ``f`` (see the module docstring for the formulas)."""
    depth = min(DEPTH, f.depth)
    bp, bq, ap, aq = f.bid_px[:, :depth], f.bid_sz[:, :depth], f.ask_px[:, :depth], f.ask_sz[:, :depth]
    out: dict[str, np.ndarray] = {}
    n = f.n
    for k in range(DEPTH):
        if k < depth:
            out[f"bid_px_L{k}"], out[f"bid_sz_L{k}"] = bp[:, k].copy(), bq[:, k].copy()
            out[f"ask_px_L{k}"], out[f"ask_sz_L{k}"] = ap[:, k].copy(), aq[:, k].copy()
        else:
            for name in ("bid_px", "ask_px"):
                out[f"{name}_L{k}"] = np.full(n, np.nan)
            for name in ("bid_sz", "ask_sz"):
                out[f"{name}_L{k}"] = np.zeros(n)
    b0, a0, qb0, qa0 = bp[:, 0], ap[:, 0], bq[:, 0], aq[:, 0]
    mid = (b0 + a0) / 2.0
    out["mid"] = mid
    out["spread"] = a0 - b0
    out["spread_bps"] = _ratio(a0 - b0, mid) * 1e4
    out["microprice"] = _ratio(a0 * qb0 + b0 * qa0, qb0 + qa0)
    k5 = min(5, depth)
    vb = _ratio(np.nansum(bp[:, :k5] * bq[:, :k5], axis=1), bq[:, :k5].sum(axis=1))
    va = _ratio(np.nansum(ap[:, :k5] * aq[:, :k5], axis=1), aq[:, :k5].sum(axis=1))
    out["weighted_mid_k5"] = (vb + va) / 2.0
    out["imbalance_l1"] = _ratio(qb0 - qa0, qb0 + qa0)
    cb, ca = np.cumsum(bq, axis=1), np.cumsum(aq, axis=1)
    for k in TOPK:
        kk = min(k, depth) - 1
        out[f"imbalance_top{k}"] = _ratio(cb[:, kk] - ca[:, kk], cb[:, kk] + ca[:, kk])
    with np.errstate(invalid="ignore"):
        dist_b = (mid[:, None] - bp) / mid[:, None] * 1e4  # bps below mid (>= 0 unless crossed)
        dist_a = (ap - mid[:, None]) / mid[:, None] * 1e4
    for w in BANDS_BPS:
        inb = np.where(dist_b <= w, bq, 0.0)
        ina = np.where(dist_a <= w, aq, 0.0)
        db, da = inb.sum(axis=1), ina.sum(axis=1)
        out[f"bid_depth_{w}bps"], out[f"ask_depth_{w}bps"] = db, da
        out[f"depth_imbalance_{w}bps"] = _ratio(db - da, db + da)
    for lam in SMART_LAMBDAS_BPS:
        with np.errstate(invalid="ignore"):
            wb = np.where(np.isnan(dist_b), 0.0, np.exp(-np.abs(dist_b) / lam)) * bq
            wa = np.where(np.isnan(dist_a), 0.0, np.exp(-np.abs(dist_a) / lam)) * aq
        sb, sa = wb.sum(axis=1), wa.sum(axis=1)
        out[f"smart_imbalance_{lam}bps"] = _ratio(sb - sa, sb + sa)
    m = min(SLOPE_LEVELS, depth)
    out["bid_slope"] = _slope(np.where(bq[:, :m] > 0, dist_b[:, :m], np.nan), np.where(bq[:, :m] > 0, cb[:, :m], np.nan))
    out["ask_slope"] = _slope(np.where(aq[:, :m] > 0, dist_a[:, :m], np.nan), np.where(aq[:, :m] > 0, ca[:, :m], np.nan))
    out["bid_levels"] = (bq > 0).sum(axis=1).astype(np.float64)
    out["ask_levels"] = (aq > 0).sum(axis=1).astype(np.float64)
    out["bid_depth_top20"] = cb[:, -1].copy()
    out["ask_depth_top20"] = ca[:, -1].copy()
    invalid = ~f.valid
    if invalid.any():
        for v in out.values():
            v[invalid] = np.nan
    return out

"""Integrity checks on the simulator: what the notebooks achieve beside what the planted truth allows.

* Oracle direction AUC per symbol and horizon from ``truth.json`` (closed form for the leader, Monte Carlo with
  its standard error for followers): the AUC of E[r_h | latent state] for the sign of the *efficient* return. A
  model of the observed mid sees less than the latent state, so its AUC should sit between 0.5 and the oracle.
* Shuffled-label control: the same model fitted on permuted training labels; its out-of-sample AUC must be
  about 0.5 (a leak or a look-ahead would show up here).
* Volatility regime: the planted regime path (truth.json ``regimes.path``) sampled at each row's time, against
  a classifier's predictions: macro-F1 (mean over classes of 2 PR / (P + R)).
* Lead-lag: the lag at which the follower's returns correlate most with the leader's past returns, beside the
  planted lag.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def oracle_auc(truth: dict, symbol: str, horizon_s: float) -> tuple[float, float]:
    """(oracle AUC, its standard error; 0 for the closed form) for ``symbol`` at ``horizon_s``."""
    key = f"{horizon_s:g}s"
    o = truth["oracle_direction_auc"]
    closed = o.get("closed_form_leaders", {}).get(symbol, {})
    if key in closed:
        return float(closed[key]), 0.0
    mc = o.get("monte_carlo", {}).get(symbol, {})
    if key not in mc:
        raise KeyError(f"truth.json: no oracle AUC for {symbol} at {key} (horizons: {sorted(mc)})")
    return float(mc[key]["auc"]), float(mc[key]["se"])


def auc_beside_oracle(predictions: pd.DataFrame, truth: dict, horizon_s: float) -> pd.DataFrame:
    """Per symbol: achieved out-of-sample AUC of ``score`` for ``y``, the oracle, and the achieved share of
    the oracle's edge over 0.5."""
    from research.models import roc_auc

    rows = []
    for sym, d in predictions.groupby("symbol"):
        got = roc_auc(d["y"], d["score"])
        ora, se = oracle_auc(truth, sym, horizon_s)
        rows.append({"symbol": sym, "horizon_s": horizon_s, "achieved_auc": got, "oracle_auc": ora, "oracle_se": se,
                     "edge_share": (got - 0.5) / (ora - 0.5) if ora > 0.5 else np.nan, "rows": len(d)})
    return pd.DataFrame(rows)


def shuffled_labels(y, seed: int) -> np.ndarray:
    """A permutation of ``y`` (the control's training labels)."""
    return np.random.default_rng(seed).permutation(np.asarray(y))


def planted_regime_at(truth: dict, ts_ns) -> np.ndarray:
    """The planted regime (0 calm, 1 normal, 2 stressed) in force at each time (the last switch at or before)."""
    path = truth["regimes"]["path"]
    if not path:
        raise ValueError("truth.json: empty regime path")
    starts = np.array([p["start_ns"] for p in path], np.int64)
    regimes = np.array([p["regime"] for p in path], np.int64)
    idx = np.searchsorted(starts, np.asarray(ts_ns, np.int64), side="right") - 1
    return regimes[np.clip(idx, 0, None)]


def macro_f1(y_true, y_pred, labels=(0, 1, 2)) -> float:
    """Mean over ``labels`` present in y_true or y_pred of F1 = 2 TP / (2 TP + FP + FN)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in labels:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def lead_lag_xcorr(leader_ret, follower_ret, max_lag: int) -> pd.Series:
    """corr(follower_t, leader_{t-l}) for l = 0..max_lag steps (finite pairs only); the peak is the lead-lag."""
    a, b = np.asarray(leader_ret, float), np.asarray(follower_ret, float)
    out = {}
    for lag in range(max_lag + 1):
        x, y = (a[:len(a) - lag], b[lag:]) if lag else (a, b)
        ok = np.isfinite(x) & np.isfinite(y)
        out[lag] = float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 else np.nan
    return pd.Series(out, name="xcorr")


def planted_lead_lag(truth: dict) -> pd.DataFrame:
    return pd.DataFrame([{"symbol": s, "leader": v["leader"], "planted_lag_s": v["lag_s"], "planted_beta": v["beta"]}
                         for s, v in truth["lead_lag"].items()])


def regime_vol_ratios(trailing_vol, planted, truth: dict, normal: int = 1) -> pd.DataFrame:
    """Per planted regime present: rows, the median trailing volatility and its ratio to the median in the
    ``normal`` regime, beside the planted volatility multipliers' ratio (truth.json ``regimes.vol_multiplier``).
    A feature that tracks the planted regimes recovers the planted ratios (e.g. calm / normal = 0.6)."""
    v = np.asarray(trailing_vol, float)
    r = np.asarray(planted)
    ok = np.isfinite(v)
    names, mult = truth["regimes"]["names"], truth["regimes"]["vol_multiplier"]
    med = {k: float(np.median(v[ok & (r == k)])) for k in np.unique(r[ok])}
    base = med.get(normal, np.nan)
    return pd.DataFrame([{"regime": names[k], "rows": int((ok & (r == k)).sum()), "median_vol": m,
                          "ratio_to_normal": m / base if base > 0 else np.nan,
                          "planted_ratio": mult[k] / mult[normal]} for k, m in sorted(med.items())])

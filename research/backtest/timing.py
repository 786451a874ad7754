"""Liquidity-adjusted execution timing: the predicted cost of executing Q now versus in k seconds, from the current
book and a simple fitted model, evaluated against the realized cost.

Liquidity cost of size Q at time t (direction neutral, bps of mid; drift cancels between the two sides)
    c_t(Q) = (VWAP_buy(Q) - VWAP_sell(Q)) / (2 mid_t) x 1e4
    (half the round-trip cost of walking both sides of the rebuilt book; = half spread for Q within the touch)

Model (ordinary least squares, fitted on the first half of the sample times, evaluated on the second)
    c_{t+k} = b0 + b1 c_t + b2 spread_t + b3 log(depth_t) + e,   spread in bps of mid, depth = size within the
    best ``depth`` levels of both sides
    Baseline: "no change", c_{t+k} = c_t.

Decision: wait iff predicted c_{t+k} < c_t. Evaluated on the held-out half: mean realized saving of the policy
against always executing now (bps; liquidity only), and the price risk of waiting, sd((mid_{t+k} - mid_t) / mid_t)
in bps, which a risk-averse trader weighs against the saving.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from research.backtest.fills import walk_book
from research.backtest.market import SymbolTape, find_exchange


def liquidity_costs(tape: SymbolTape, times: np.ndarray, qty: float) -> pd.DataFrame:
    """c_t(Q), spread and depth at each increasing time (NaN where the book is not whole or too thin)."""
    rows = []
    for t in times.tolist():
        b = tape.book(t)
        if not b.two_sided:
            rows.append((t, np.nan, np.nan, np.nan, np.nan))
            continue
        mid = b.mid
        fb, nb, _, _ = walk_book(b.ask_px, b.ask_sz, qty)
        fs, ns, _, _ = walk_book(b.bid_px, b.bid_sz, qty)
        cost = ((nb / fb - ns / fs) / (2 * mid) * 1e4) if fb >= qty and fs >= qty else np.nan
        rows.append((t, mid, cost, (b.ask_px[0] - b.bid_px[0]) / mid * 1e4, b.ask_sz.sum() + b.bid_sz.sum()))
    return pd.DataFrame(rows, columns=["ts_ns", "mid", "cost_bps", "spread_bps", "depth"])


def _design(df: pd.DataFrame) -> np.ndarray:
    return np.column_stack([np.ones(len(df)), df["cost_bps"], df["spread_bps"], np.log(df["depth"])])


def execution_timing(data_root, symbol: str, qty: float, wait_s: float = 5.0, step_s: float = 1.0, *,
                     exchange: str | None = None, depth: int = 20, start_ns: int | None = None,
                     end_ns: int | None = None) -> dict:
    """Fit and evaluate the timing model on ``symbol`` (see the module docstring); returns a JSON-able dict."""
    k = int(round(wait_s / step_s))
    if k < 1 or abs(k * step_s - wait_s) > 1e-9:
        raise ValueError(f"wait_s ({wait_s}) must be a positive multiple of step_s ({step_s})")
    tape = SymbolTape(data_root, find_exchange(data_root, symbol, exchange), symbol, depth)
    step = int(round(step_s * 1e9))
    lo = start_ns if start_ns is not None else tape.ev_first_ns()
    hi = end_ns if end_ns is not None else tape.ev_last_ns()
    times = np.arange(-(-lo // step) * step, hi, step, dtype=np.int64)
    df = liquidity_costs(tape, times, qty)
    df["cost_wait_bps"] = df["cost_bps"].shift(-k)
    df["drift_bps"] = (df["mid"].shift(-k) / df["mid"] - 1.0) * 1e4
    df = df.dropna().reset_index(drop=True)
    if len(df) < 20:
        raise ValueError(f"{symbol}: only {len(df)} usable sample times for the timing model")
    half = len(df) // 2
    fit, test = df.iloc[:half], df.iloc[half:]
    beta, *_ = np.linalg.lstsq(_design(fit), fit["cost_wait_bps"].to_numpy(), rcond=None)
    pred = _design(test) @ beta
    real = test["cost_wait_bps"].to_numpy()
    now = test["cost_bps"].to_numpy()
    ss_tot = float(((real - real.mean()) ** 2).sum())
    wait = pred < now
    return {
        "symbol": symbol, "qty": qty, "wait_s": wait_s, "samples_fit": int(half), "samples_test": int(len(test)),
        "coef": dict(zip(["const", "cost_now", "spread", "log_depth"], map(float, beta))),
        "mae_model_bps": float(np.abs(pred - real).mean()), "mae_no_change_bps": float(np.abs(now - real).mean()),
        "r2_model": 1.0 - float(((pred - real) ** 2).sum()) / ss_tot if ss_tot > 0 else None,
        "mean_cost_now_bps": float(now.mean()), "mean_cost_wait_bps": float(real.mean()),
        "wait_fraction": float(wait.mean()),
        "policy_saving_bps": float(np.where(wait, now - real, 0.0).mean()),
        "oracle_saving_bps": float(np.maximum(now - real, 0.0).mean()),
        "drift_sd_bps": float(test["drift_bps"].std(ddof=1)),
    }

"""Entry gates and sizing, computed for every bar from the predictions and the observed bars, past only.

Volatility (per sqrt-second, log mid returns r_k over bar spacings dt_k, last ``sigma_window`` bars incl. i)
    sigma_i = max( sqrt( sum r_k^2 / sum dt_k ),  sigma_floor ),   sigma_h = sigma_i sqrt(h)

Edge (expected log return over the horizon h)
    score_kind "return":  edge = score - c,                     c = score_center (default 0)
    score_kind "prob":    edge = 2 (p - c) sigma_h sqrt(2 / pi),   c = score_center (default 0.5)
      (E[r | up] - E[r | down] weights for a Gaussian return of sd sigma_h: E|r| = sigma_h sqrt(2 / pi))
    z-edge: z = edge / sigma_h

Gates (a bar may enter only if all pass)
    warmup:      i >= warmup_bars and the bar's mid is known
    z:           |z| >= z_threshold
    ev:          |edge| mid >= ev_multiple x round-trip cost per unit
                 (market: 2 taker fee + full spread; passive: 2 maker fee)
    quantile:    |z_i| > the ``quantile`` quantile of |z| over the previous ``quantile_window`` bars
    persistence: sign(z) agreed in at least ``persistence_min`` of the last ``persistence`` bars (incl. i)
    direction:   z != 0 (and z > 0 when long_only)

ATR (for stops): mean true range over the last ``atr_window`` bars (see research.backtest.bars).

Sizing
    q = q0 x min(|z| / z_ref, edge_cap) x min(sigma_ref / sigma, vol_cap),   q0 = base_size, or base_notional / mid
    q = min(q, max_size, max_notional / mid);  q < min_size -> 0 (no trade)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from research.backtest.bars import Bars
from research.backtest.config import BacktestConfig

GATES = ("warmup", "z", "ev", "quantile", "persistence", "direction", "size")


@dataclass
class Signals:
    direction: np.ndarray  # int8 (n,): +1 long, -1 short, 0 no entry
    size: np.ndarray  # float64 (n,): base units for an entry at this bar (0 if none)
    z: np.ndarray
    edge: np.ndarray
    sigma: np.ndarray
    atr: np.ndarray
    passed: dict  # gate -> bool array (n,)

    def blocked_counts(self) -> dict[str, int]:
        """Bars blocked by each gate (a bar can be blocked by several)."""
        return {g: int((~m).sum()) for g, m in self.passed.items()}


def realized_sigma(bars: Bars, window: int, floor: float) -> np.ndarray:
    mid = bars.mid
    lr = np.diff(np.log(mid), prepend=np.nan)
    dt = np.diff(bars.t_ns, prepend=bars.t_ns[0] if bars.n else 0) / 1e9
    ok = np.isfinite(lr) & (dt > 0)
    r2 = pd.Series(np.where(ok, lr * lr, 0.0)).rolling(window, min_periods=1).sum().to_numpy()
    tt = pd.Series(np.where(ok, dt, 0.0)).rolling(window, min_periods=1).sum().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(r2 / tt)
    sigma[~np.isfinite(sigma)] = 0.0
    return np.maximum(sigma, floor)


def atr(bars: Bars, window: int) -> np.ndarray:
    tr = bars.high - bars.low
    return pd.Series(tr).rolling(window, min_periods=1).mean().to_numpy()


def compute(score: np.ndarray, bars: Bars, horizon_s: float, cfg: BacktestConfig) -> Signals:
    g, sz = cfg.gates, cfg.sizing
    n = bars.n
    score = np.asarray(score, dtype=np.float64)
    sigma = realized_sigma(bars, g.sigma_window, g.sigma_floor)
    sigma_h = sigma * math.sqrt(horizon_s)
    if g.score_kind == "prob":
        center = 0.5 if g.score_center is None else g.score_center
        edge = 2.0 * (score - center) * sigma_h * math.sqrt(2.0 / math.pi)
    else:
        edge = score - (0.0 if g.score_center is None else g.score_center)
    with np.errstate(invalid="ignore"):
        z = edge / sigma_h
    z = np.where(np.isfinite(z), z, 0.0)
    sign = np.sign(z).astype(np.int8)
    absz = np.abs(z)
    passed = {}
    passed["warmup"] = (np.arange(n) >= g.warmup_bars) & np.isfinite(bars.mid)
    passed["z"] = absz >= g.z_threshold
    tier = cfg.fees.tiers[0]
    if cfg.execution.style == "market":
        cost = bars.mid * 2.0 * tier.taker_bps / 1e4 + bars.spread
    else:
        cost = bars.mid * 2.0 * tier.maker_bps / 1e4
    with np.errstate(invalid="ignore"):
        passed["ev"] = (np.abs(edge) * bars.mid >= g.ev_multiple * cost) if g.ev_multiple > 0 else np.ones(n, bool)
    if g.quantile > 0:
        past = pd.Series(absz).shift(1).rolling(g.quantile_window, min_periods=min(g.quantile_window, 20))
        thr = past.quantile(g.quantile).to_numpy()
        passed["quantile"] = np.isfinite(thr) & (absz > np.nan_to_num(thr, nan=np.inf))
    else:
        passed["quantile"] = np.ones(n, bool)
    if g.persistence > 1:
        ups = pd.Series((sign > 0).astype(float)).rolling(g.persistence, min_periods=1).sum().to_numpy()
        downs = pd.Series((sign < 0).astype(float)).rolling(g.persistence, min_periods=1).sum().to_numpy()
        agree = np.where(sign > 0, ups, np.where(sign < 0, downs, 0))
        passed["persistence"] = agree >= g.persistence_min
    else:
        passed["persistence"] = np.ones(n, bool)
    passed["direction"] = (sign > 0) if g.long_only else (sign != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        size = np.full(n, sz.base_size) if sz.base_size > 0 else sz.base_notional / bars.mid
    if sz.z_ref > 0:
        size *= np.minimum(absz / sz.z_ref, sz.edge_cap)
    if sz.sigma_ref > 0:
        size *= np.minimum(sz.sigma_ref / sigma, sz.vol_cap)
    with np.errstate(invalid="ignore", divide="ignore"):
        size = np.minimum(np.minimum(size, sz.max_size), sz.max_notional / bars.mid)
    size = np.where(np.isfinite(size), size, 0.0)
    passed["size"] = (size >= sz.min_size) & (size > 0)
    ok = np.logical_and.reduce([passed[k] for k in GATES])
    direction = np.where(ok, sign, 0).astype(np.int8)
    return Signals(direction, np.where(ok, size, 0.0), z, edge, sigma, atr(bars, cfg.exits.atr_window), passed)

"""Performance metrics after costs.

PnL series
    The equity curve (quote currency, marked to the observed mid at every bar) is sampled at the end of every
    ``period_s`` bucket (UTC epoch aligned; a bucket with no bar carries the last equity forward) and differenced:
    x_1..x_T are per-period PnL. Crypto trades around the clock, so a year has P = 365 x 86400 / period_s periods.

    Sharpe  = mean(x) / std(x, ddof=1) x sqrt(P)       (undefined when std(x) is 0 or only rounding noise)
    Sortino = mean(x) / sqrt(mean(min(x, 0)^2)) x sqrt(P)       (target 0, downside deviation over all periods)
    max drawdown = max_t (max_{s<=t} E_s - E_t) on the bar-level equity E (quote currency)

    These are ratios of PnL, not of returns on capital: they do not depend on a capital figure.

    ``trade_t_stat`` = mean / standard error of per-trade net PnL treats trades as independent: overlapping trades
    (horizon mode with overlap) share returns and inflate it. ``period_t_stat`` is the same statistic of the
    per-period PnL, which counts every period once whatever the trades overlap.

Deflated Sharpe ratio (Bailey & Lopez de Prado 2014, "The Deflated Sharpe Ratio")
    With the non-annualized per-period Sharpe SR, T periods, skewness g3, kurtosis g4 (not excess), N trials and
    V the variance of the trials' Sharpe ratios (per period):
        SR0 = sqrt(V) ((1 - gamma) Z^-1(1 - 1/N) + gamma Z^-1(1 - 1/(N e))),   gamma = 0.5772... (Euler-Mascheroni)
        DSR = Z( (SR - SR0) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )
    N = 1 gives SR0 = 0: the probabilistic Sharpe ratio against 0. Without a variance across trials (a single
    run) V defaults to the estimation variance of SR itself, (1 - g3 SR + (g4 - 1)/4 SR^2) / (T - 1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

EULER_GAMMA = 0.5772156649015329
SECONDS_PER_YEAR = 365.0 * 86400.0


def period_pnl(t_ns: np.ndarray, equity: np.ndarray, period_s: float) -> np.ndarray:
    """PnL per ``period_s`` bucket from an equity curve sampled at times ``t_ns`` (see the module docstring)."""
    if len(t_ns) == 0:
        return np.empty(0)
    step = int(round(period_s * 1e9))
    bucket = np.asarray(t_ns, np.int64) // step
    s = pd.Series(np.asarray(equity, float), index=bucket).groupby(level=0).last()
    full = s.reindex(np.arange(bucket[0], bucket[-1] + 1)).ffill()
    return np.diff(np.r_[0.0, full.to_numpy()])


def _sd(x: np.ndarray, ddof: int = 1) -> float:
    """Standard deviation, 0 when it is only floating-point noise: a constant series whose mean does not round
    exactly (0.1 repeated) gives ~1e-17, which would turn a flat PnL into a Sharpe of 1e18."""
    sd = float(x.std(ddof=ddof))
    return sd if sd > 1e-12 * float(np.abs(x).max()) else 0.0


def sharpe(x: np.ndarray, periods_per_year: float) -> float:
    x = np.asarray(x, float)
    if len(x) < 2:
        return float("nan")
    sd = _sd(x)
    return float(x.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else float("nan")


def sortino(x: np.ndarray, periods_per_year: float) -> float:
    x = np.asarray(x, float)
    if len(x) < 2:
        return float("nan")
    dd = math.sqrt(np.mean(np.minimum(x, 0.0) ** 2))
    return float(x.mean() / dd * math.sqrt(periods_per_year)) if dd > 0 else float("nan")


def max_drawdown(equity: np.ndarray) -> float:
    e = np.asarray(equity, float)
    if len(e) == 0:
        return 0.0
    return float(np.max(np.maximum.accumulate(e) - e))


def deflated_sharpe(sr: float, t: int, skew: float, kurt: float, n_trials: int,
                    sr_var: float | None = None) -> dict:
    """Deflated Sharpe ratio of a per-period Sharpe ``sr`` over ``t`` periods (see the module docstring)."""
    if not (np.isfinite(sr) and t > 1):
        return {"dsr": float("nan"), "sr0": float("nan"), "n_trials": int(n_trials)}
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    denom = max(denom, 1e-12)
    var = sr_var if sr_var is not None and np.isfinite(sr_var) and sr_var > 0 else denom / (t - 1)
    n = max(int(n_trials), 1)
    if n == 1:
        sr0 = 0.0
    else:
        sr0 = math.sqrt(var) * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1.0 / n)
                                + EULER_GAMMA * stats.norm.ppf(1 - 1.0 / (n * math.e)))
    dsr = float(stats.norm.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(denom)))
    return {"dsr": dsr, "sr0": float(sr0), "n_trials": n, "sr_var": float(var)}


def moments(x: np.ndarray) -> tuple[float, float]:
    """Skewness and (non-excess) kurtosis, population estimates (0 and 3 for fewer than 3 points)."""
    x = np.asarray(x, float)
    if len(x) < 3 or _sd(x, 0) == 0:
        return 0.0, 3.0
    return float(stats.skew(x)), float(stats.kurtosis(x, fisher=False))


def trade_t_stat(pnl: np.ndarray) -> float:
    """mean / (sd / sqrt(n)) of per-trade PnL, as if trades were independent (overlapping trades are not)."""
    x = np.asarray(pnl, float)
    sd = _sd(x) if len(x) >= 2 else 0.0
    return float(x.mean() / (sd / math.sqrt(len(x)))) if sd > 0 else float("nan")


def summarize(t_ns: np.ndarray, equity: np.ndarray, gross_equity: np.ndarray, trades: pd.DataFrame,
              period_s: float, n_trials: int = 1, sr_var: float | None = None) -> dict:
    """The headline metrics (see the module docstring); ``trades`` is the trade log of research.backtest.run."""
    ppy = SECONDS_PER_YEAR / period_s
    x = period_pnl(t_ns, equity, period_s)
    sr_ann = sharpe(x, ppy)
    sr = sr_ann / math.sqrt(ppy) if np.isfinite(sr_ann) else float("nan")
    skew, kurt = moments(x)
    n = len(trades)
    net = trades["net_pnl"].to_numpy() if n else np.empty(0)
    span_days = (t_ns[-1] - t_ns[0]) / 86400e9 if len(t_ns) > 1 else float("nan")
    notional = float(trades["entry_notional"].sum() + trades["exit_notional"].sum()) if n else 0.0
    out = {
        "net_pnl": float(equity[-1]) if len(equity) else 0.0,
        "gross_pnl": float(gross_equity[-1]) if len(gross_equity) else 0.0,
        "fees": float(trades["fees"].sum()) if n else 0.0,
        "sharpe": sr_ann,
        "sharpe_annualization": f"per-{period_s:g}s PnL, x sqrt({ppy:.0f}) (365 x 24 h)",
        "sortino": sortino(x, ppy),
        "max_drawdown": max_drawdown(equity),
        "periods": int(len(x)),
        "trades": int(n),
        "hit_rate": float((net > 0).mean()) if n else float("nan"),
        "hit_rate_gross": float((trades["gross_pnl"].to_numpy() > 0).mean()) if n else float("nan"),
        "mean_trade_net": float(net.mean()) if n else float("nan"),
        "trade_t_stat": trade_t_stat(net),
        "period_t_stat": trade_t_stat(x),
        "traded_notional": notional,
        "turnover_per_day": notional / span_days if span_days and span_days > 0 else float("nan"),
        "deflated_sharpe": deflated_sharpe(sr, len(x), skew, kurt, n_trials, sr_var),
    }
    if n:
        out["costs"] = {k: float(trades[k].sum()) for k in ("fees", "spread", "impact", "latency")}
        out["costs"]["mid_pnl"] = float(trades["mid_pnl"].sum())
    return out

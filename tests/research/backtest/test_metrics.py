"""Metrics against slow references: pandas for Sharpe / Sortino / drawdown / period PnL, a direct transcription
of Bailey & Lopez de Prado (2014) for the deflated Sharpe ratio."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from research.backtest import metrics as M

PPY = 365 * 1440  # one-minute periods


def series_cases():
    rng = np.random.default_rng(3)
    yield rng.normal(0.1, 1.0, 500)
    yield rng.standard_t(3, 200) - 0.2
    yield np.r_[np.zeros(50), 1.0, -2.0, np.zeros(20)]  # mostly flat, ties
    yield np.array([1.0, -1.0])
    yield np.array([0.5, 0.5, 0.5])  # zero variance


@pytest.mark.parametrize("x", list(series_cases()))
def test_sharpe_sortino_drawdown_match_pandas(x):
    s = pd.Series(x)
    want_sr = s.mean() / s.std() * math.sqrt(PPY) if s.std() > 0 else float("nan")
    got = M.sharpe(x, PPY)
    assert (math.isnan(got) and math.isnan(want_sr)) or got == pytest.approx(want_sr)
    down = np.sqrt((s.clip(upper=0) ** 2).mean())
    want_so = s.mean() / down * math.sqrt(PPY) if down > 0 else float("nan")
    got = M.sortino(x, PPY)
    assert (math.isnan(got) and math.isnan(want_so)) or got == pytest.approx(want_so)
    eq = s.cumsum()
    assert M.max_drawdown(eq.to_numpy()) == pytest.approx((eq.cummax() - eq).max())


def test_edge_cases():
    assert math.isnan(M.sharpe(np.array([1.0]), PPY))
    # a constant PnL whose mean does not round exactly has a float-noise sd (~1e-17): no Sharpe, not 1e18
    flat = np.full(72, 0.1)
    assert flat.std(ddof=1) > 0
    assert math.isnan(M.sharpe(flat, PPY)) and math.isnan(M.trade_t_stat(flat)) and M.moments(flat) == (0.0, 3.0)
    assert M.max_drawdown(np.empty(0)) == 0.0
    assert M.period_pnl(np.empty(0, np.int64), np.empty(0), 60).size == 0


def test_period_pnl_matches_pandas_resample():
    rng = np.random.default_rng(5)
    t0 = 1_767_600_000_000_000_000
    t = np.sort(t0 + rng.integers(0, 3600, 300) * 1_000_000_000 + rng.integers(0, 999, 300))
    t = np.unique(t)
    eq = np.cumsum(rng.normal(0, 1, len(t)))
    got = M.period_pnl(t, eq, 60)
    s = pd.Series(eq, index=pd.to_datetime(t, utc=True)).resample("60s").last().ffill()
    want = np.diff(np.r_[0.0, s.to_numpy()])
    np.testing.assert_allclose(got, want)


def dsr_direct(sr, t, skew, kurt, n, var):
    """Bailey & Lopez de Prado (2014), eq. for SR0 and the PSR, written out with the standard library only."""
    z = NormalDist()
    gamma = 0.5772156649015329
    sr0 = 0.0 if n == 1 else math.sqrt(var) * ((1 - gamma) * z.inv_cdf(1 - 1 / n) + gamma * z.inv_cdf(1 - 1 / (n * math.e)))
    return z.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr ** 2)), sr0


@pytest.mark.parametrize("sr, t, skew, kurt, n, var", [
    (0.1, 250, 0.0, 3.0, 1, 0.01), (0.1, 250, -0.5, 6.0, 100, 0.002), (0.05, 1000, 0.3, 4.0, 10, 0.0005),
    (-0.02, 100, 0.0, 3.0, 50, 0.001), (0.3, 30, -1.2, 9.0, 1000, 0.02),
])
def test_deflated_sharpe_matches_direct_formula(sr, t, skew, kurt, n, var):
    got = M.deflated_sharpe(sr, t, skew, kurt, n, var)
    want, sr0 = dsr_direct(sr, t, skew, kurt, n, var)
    assert got["dsr"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert got["sr0"] == pytest.approx(sr0)
    assert got["n_trials"] == n


def test_more_trials_deflate_more():
    vals = [M.deflated_sharpe(0.1, 500, 0.0, 3.0, n, 0.003)["dsr"] for n in (1, 10, 100, 1000)]
    assert vals == sorted(vals, reverse=True) and vals[0] > vals[-1]


def test_trade_t_stat_is_mean_over_standard_error():
    x = np.array([1.0, 2.0, -0.5, 0.7])
    assert M.trade_t_stat(x) == pytest.approx(x.mean() / (x.std(ddof=1) / 2.0))

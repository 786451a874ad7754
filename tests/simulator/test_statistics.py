"""Simulated statistics against the planted parameters, with stated tolerances."""

import math

import numpy as np
import pytest

from simulator.config import load_config
from simulator.events import FLAG_INFORMED, KIND_TRADE, SIDE_BID
from simulator.latent import LatentProcess
from simulator.stats import session_stats
from simulator.truth import HORIZONS_S, g, leader_oracle_auc, monte_carlo_oracle_auc


def test_update_rates_bursts_and_spreads(twenty_minutes):
    sim, events, path = twenty_minutes
    stats = session_stats(events, path, sim.products, 1200.0)
    btc = stats["BTC-USD"]
    # BTC-USD: level changes of order 10^2 - 10^3 per second, with bursts well above the mean
    assert 200 <= btc["level_changes_per_s"] <= 2000
    assert btc["busiest_second_per_s"] >= 1.5 * btc["level_changes_per_s"]
    assert btc["busiest_100ms_per_s"] >= 2 * btc["level_changes_per_s"]
    for sym, row in stats.items():
        assert row["crossed_samples"] == 0, sym
        assert row["one_sided_samples"] == 0, sym
        assert row["spread_ticks_median"] >= 1, sym
        assert row["spread_bps_median"] < 5, sym
        # the mid tracks the efficient price closely: well under one bps of noise for the large names
        assert row["mid_minus_efficient_bps_sd"] < (1.0 if sym != "SOL-USD" else 2.0), sym
        assert 1 <= row["trades_per_s"] <= 200, sym


def mid_returns(path, sym, tick=0.01):
    mid = (path[f"best_bid__{sym}"] + path[f"best_ask__{sym}"]) / 2 * tick
    return np.diff(np.log(mid))


@pytest.mark.parametrize("follower", ["ETH-USD", "SOL-USD"])
def test_lead_lag_peaks_at_planted_lag_with_planted_beta(twenty_minutes, follower):
    sim, _, path = twenty_minutes
    leader = sim.config.product(follower).leader
    rb, rf = mid_returns(path, "BTC-USD"), mid_returns(path, follower)
    lags = np.arange(0, 41)  # 0 .. 4 s in 100 ms samples
    xcorr = [np.corrcoef(rf[k:], rb[: len(rb) - k])[0, 1] for k in lags]
    peak = int(lags[int(np.argmax(xcorr))])
    assert peak == round(leader.lag_s / 0.1)
    # beta from 1 s returns: at 100 ms a wide-spread book lags the efficient price by part of a sample
    b, f = np.cumsum(np.r_[0, rb]), np.cumsum(np.r_[0, rf])
    idx = np.arange(peak, len(b) - 10, 10)
    slope = np.polyfit(b[idx - peak + 10] - b[idx - peak], f[idx + 10] - f[idx], 1)[0]
    assert slope == pytest.approx(leader.beta, rel=0.12)


def test_market_order_side_follows_signal_at_planted_gamma(twenty_minutes):
    """P(buy | s) = (1 + tanh(gamma s)) / 2 = sigmoid(2 gamma s): a logistic fit recovers 2 gamma."""
    import statsmodels.api as sm

    sim, events, path = twenty_minutes
    gamma = sim.config.signal.market_flow_loading
    slopes = []
    for k, sym in enumerate(sim.symbols):
        tr = events[(events["symbol"] == k) & (events["kind"] == KIND_TRADE) & ((events["flags"] & FLAG_INFORMED) == 0)]
        # one row per market order (a sweep prints several trades with one timestamp)
        _, first = np.unique(tr["ts_ns"], return_index=True)
        tr = tr[first]
        idx = np.searchsorted(path["t_ns"], tr["ts_ns"], "right") - 1
        s = path[f"signal__{sym}"][idx]
        y = (tr["side"] == SIDE_BID).astype(float)
        fit = sm.Logit(y, sm.add_constant(s)).fit(disp=0)
        slopes.append((fit.params[1], fit.bse[1]))
    est = sum(b / se**2 for b, se in slopes) / sum(1 / se**2 for _, se in slopes)
    se = 1 / math.sqrt(sum(1 / se**2 for _, se in slopes))
    assert abs(est - 2 * gamma) < max(4 * se, 0.1 * 2 * gamma)


def test_signal_drives_drift_at_planted_strength():
    """E[r_h | s_t] / sigma = alpha g(h) s_t: the regression slope of r_5s / sigma on s recovers alpha g(5)."""
    cfg = load_config(overrides={"latent_dt_ms": 100})
    proc = LatentProcess(cfg, np.random.SeedSequence(99))
    block = proc.block(12 * 36_000)  # 12 hours at 100 ms
    kappa = math.log(2) / cfg.signal.half_life_s
    expected = cfg.signal.drift_loading * g(kappa, 5.0)
    x, s, sig = block.log_price[0], block.signal[0], block.sigma[0]
    r = (x[50:] - x[:-50]) / sig[:-50]
    slope = np.polyfit(s[:-50], r, 1)[0]
    assert slope == pytest.approx(expected, rel=0.12)


def test_observed_flow_predicts_observed_return(twenty_minutes):
    """Observable order flow (signed trade count over the last second) predicts the next 5 s of mid return."""
    sim, events, path = twenty_minutes
    sym, k = "BTC-USD", 0
    tr = events[(events["symbol"] == k) & (events["kind"] == KIND_TRADE)]
    signed = np.where(tr["side"] == SIDE_BID, 1.0, -1.0)
    t = path["t_ns"]
    bucket = np.searchsorted(t, tr["ts_ns"], "right") - 1
    flow100 = np.bincount(bucket, weights=signed, minlength=len(t))
    flow_1s = np.convolve(flow100, np.ones(10))[: len(t)]
    mid = (path[f"best_bid__{sym}"] + path[f"best_ask__{sym}"]) / 2
    fwd = np.log(mid[50:] / mid[:-50])
    x = flow_1s[:-50][::10]
    y = fwd[::10]
    slope, _ = np.polyfit(x, y, 1)
    resid = y - np.polyval(np.polyfit(x, y, 1), x)
    t_stat = slope / (resid.std() / (x.std() * math.sqrt(len(x))))
    assert slope > 0 and t_stat > 3


def test_regime_durations_match_planted_means():
    cfg = load_config(overrides={"latent_dt_ms": 1000})
    proc = LatentProcess(cfg, np.random.SeedSequence(5))
    proc.regime_path(3_000 * 3600)  # 3000 hours of regime chain at 1 s steps
    sw = proc.switches
    starts = np.array([t for t, _ in sw], dtype=float)
    regimes = np.array([r for _, r in sw])
    durations = np.diff(starts) / 1e9
    for r, mean in enumerate(cfg.regimes.mean_duration_s):
        d = durations[regimes[:-1] == r]
        assert len(d) > 100
        assert d.mean() == pytest.approx(mean, rel=4 / math.sqrt(len(d)))


def test_monte_carlo_oracle_matches_closed_form_for_the_leader():
    cfg = load_config()
    kappa = math.log(2) / cfg.signal.half_life_s
    mc = monte_carlo_oracle_auc(cfg, hours=4.0, seed=3, horizons=(1.0, 5.0, 30.0))["BTC-USD"]
    for h in (1.0, 5.0, 30.0):
        exact = leader_oracle_auc(cfg.signal.drift_loading, kappa, h)
        got = mc[f"{h:g}s"]
        assert abs(got["auc"] - exact) < 3 * got["se"] + 0.01, (h, got, exact)


def test_oracle_auc_shape():
    cfg = load_config()
    kappa = math.log(2) / cfg.signal.half_life_s
    aucs = [leader_oracle_auc(cfg.signal.drift_loading, kappa, h) for h in HORIZONS_S]
    assert all(0.5 < a < 1 for a in aucs)
    assert leader_oracle_auc(0.0, kappa, 5.0) == pytest.approx(0.5)

"""CUSUM and the VaR kill-switch against slow, obviously-right references, on random and adversarial series."""

import math

import numpy as np
import pytest

from l2lab.live.alarms import Cusum, SymbolRisk, VarKillSwitch, position


def cusum_reference(r, k, h, warmup):
    """Page's CUSUM through the cumulative-sum identity S+_t = G_t - min(0, min_{j<=t} G_j), restarted (new
    baseline from the next ``warmup`` returns) after each alarm. Returns the alarm indices and kinds."""
    alarms, i, n = [], 0, len(r)
    r = [x for x in r if math.isfinite(x)]
    n = len(r)
    while i + warmup <= n:
        base = np.abs(np.array(r[i:i + warmup]))
        mu, sd = base.mean(), base.std()
        i += warmup
        if not sd > 0:
            continue
        gp = gn = 0.0
        min_gp = min_gn = 0.0
        while i < n:
            z = (abs(r[i]) - mu) / sd
            gp += z - k
            gn += -z - k
            min_gp, min_gn = min(min_gp, gp), min(min_gn, gn)
            sp, sn = gp - min_gp, gn - min_gn
            i += 1
            if sp > h or sn > h:
                alarms.append((i - 1, "vol_up" if sp > h else "vol_down"))
                break
    return alarms


def finite_index_alarms(r, **kw):
    c = Cusum(**kw)
    out, j = [], 0
    for x in r:
        a = c.update(x)
        if math.isfinite(x):
            if a:
                out.append((j, a))
            j += 1
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cusum_equals_the_cumulative_sum_reference(seed):
    rng = np.random.default_rng(seed)
    vol = np.r_[np.full(300, 1e-4), np.full(200, 3e-4), np.full(300, 0.5e-4), np.full(200, 1e-4)]
    r = rng.normal(0, vol)
    r[rng.random(len(r)) < 0.05] = np.nan  # invalid rows are skipped
    got = finite_index_alarms(r, k=0.5, h=8.0, warmup=60)
    want = cusum_reference(r, 0.5, 8.0, 60)
    assert got == want
    kinds = [a for _, a in got]
    assert "vol_up" in kinds and "vol_down" in kinds  # the planted regime shifts are found


def test_cusum_adversarial_inputs():
    # constant returns: no baseline can be standardized, never an alarm, never a division by zero
    assert finite_index_alarms([1e-4] * 500, warmup=20) == []
    # all NaN, empty
    assert finite_index_alarms([math.nan] * 100) == [] and finite_index_alarms([]) == []
    # one huge outlier after a calm baseline: an up alarm right there, as the reference says
    r = [1e-4 * (1 + 0.1 * (i % 3)) for i in range(60)] + [1.0]
    assert finite_index_alarms(r, warmup=60) == cusum_reference(r, 0.5, 12.0, 60) == [(60, "vol_up")]


def test_cusum_defaults_rarely_false_alarm_and_find_a_volatility_jump():
    rng = np.random.default_rng(5)
    assert len(finite_index_alarms(rng.normal(0, 1e-4, 20_000))) <= 2  # about 0.5 expected (ARL ~ 44k rows)
    r = np.r_[rng.normal(0, 1e-4, 600), rng.normal(0, 3e-4, 100)]
    got = finite_index_alarms(r)
    assert got and got[0][1] == "vol_up" and 600 <= got[0][0] < 630


def kill_reference(pnl, alpha, window, min_obs, multiple, dd_multiple, cooldown):
    """Brute force: at every step, the quantile of the previous window recomputed from scratch."""
    trips, cum, peak, killed_for, hist = [], 0.0, 0.0, 0, []
    for t, x in enumerate(pnl):
        if killed_for > 0:
            killed_for -= 1
        if not math.isfinite(x):
            continue
        prev = hist[-window:]
        v = -np.quantile(prev, 1 - alpha) if len(prev) >= min_obs else math.nan
        cum += x
        peak = max(peak, cum)
        hist.append(x)
        if not v > 0 or killed_for > 0:
            continue
        if -x > multiple * v or peak - cum > dd_multiple * v:
            trips.append(t)
            killed_for = cooldown
            peak = cum
    return trips


@pytest.mark.parametrize("seed", [3, 4])
def test_kill_switch_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    pnl = rng.standard_t(3, 3000) * 1e-4
    pnl[1500:1550] -= 8e-4  # a losing streak
    pnl[rng.random(len(pnl)) < 0.02] = np.nan
    ks = VarKillSwitch(alpha=0.99, window=400, min_obs=100, multiple=3.0, dd_multiple=10.0, cooldown=50)
    got = [t for t, x in enumerate(pnl) if ks.update(x)]
    want = kill_reference(pnl, 0.99, 400, 100, 3.0, 10.0, 50)
    assert got == want and any(1500 <= t < 1560 for t in got)
    assert ks.trips == len(got)


def test_kill_switch_adversarial():
    ks = VarKillSwitch(min_obs=10, window=50)
    assert [ks.update(0.0) for _ in range(100)] == [None] * 100  # VaR 0: nothing to compare against
    assert ks.update(-1.0) is None and not ks.killed
    ks = VarKillSwitch(min_obs=10, window=50, cooldown=3)
    for x in np.linspace(-1e-4, 1e-4, 30):
        ks.update(float(x))
    assert ks.update(-1.0).startswith("step loss") and ks.killed
    assert [ks.update(0.0) for _ in range(3)] == [None] * 3 and not ks.killed  # re-armed after the cooldown


def test_positions_and_symbol_risk():
    assert position(0.7, "binary") == 1 and position(0.3, "binary") == -1 and position(0.5, "binary") == 0
    assert position(-0.2, "regression") == -1 and position(math.nan, "binary") == 0
    risk = SymbolRisk(Cusum(warmup=5), VarKillSwitch())
    step = 1_000_000_000
    r, _, _ = risk.step(0, step, 100.0, True)
    assert math.isnan(r)
    r, _, _ = risk.step(step, step, 101.0, True)
    assert r == pytest.approx(math.log(101 / 100))
    r, _, _ = risk.step(3 * step, step, 102.0, True)  # a skipped row breaks the series
    assert math.isnan(r)
    r, _, _ = risk.step(4 * step, step, 103.0, False)  # invalid rows have no return
    assert math.isnan(r)

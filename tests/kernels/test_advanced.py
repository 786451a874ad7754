"""Advanced features against slow, obviously-right references: statsmodels OLS for Kyle's lambda, plain
Python bucket filling for VPIN, explicit loops for the realized price impact and Amihud; chunked = batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from kernel_frames import assert_chunked_equals_batch, random_frame
from scipy.stats import norm

from kernels import advanced as A

nan = math.nan
NS = 10**9


def mids(f):
    ok = f.valid & (f.bid_sz[:, 0] > 0) & (f.ask_sz[:, 0] > 0)
    return np.where(ok, (f.bid_px[:, 0] + f.ask_px[:, 0]) / 2, nan)


def in_window(f, i, seconds):
    return np.flatnonzero((f.t_ns[: i + 1] > f.t_ns[i] - seconds * NS))


def ref_kyle(f, seconds):
    m = mids(f)
    dm = np.r_[nan, np.diff(m)]
    x = f.buy_volume - f.sell_volume
    out = np.full(f.n, nan)
    for i in range(f.n):
        rows = [j for j in in_window(f, i, seconds) if not math.isnan(dm[j])]
        if len(rows) < A.KYLE_MIN_OBS:
            continue
        xs, ys = x[rows], dm[rows]
        if ((xs - xs.mean()) ** 2).sum() <= A.KYLE_DEGENERATE * (xs**2).sum():
            continue
        out[i] = sm.OLS(ys, sm.add_constant(xs, has_constant="add")).fit().params[1]
    return out


def ref_amihud(f, seconds):
    m = mids(f)
    out = np.full(f.n, nan)
    for i in range(f.n):
        vals = [abs(1e4 * math.log(m[j] / m[j - 1])) / f.notional[j] * A.AMIHUD_SCALE
                for j in in_window(f, i, seconds)
                if j > 0 and f.notional[j] > 0 and not math.isnan(m[j]) and not math.isnan(m[j - 1])]
        out[i] = sum(vals) / len(vals) if vals else nan
    return out


def ref_impact(f, horizon_s=A.IMPACT_HORIZON_S, window_s=A.IMPACT_WINDOW_S):
    m = mids(f)
    x = f.buy_volume - f.sell_volume
    v = f.buy_volume + f.sell_volume
    out = np.full(f.n, nan)
    for i in range(f.n):
        num = den = 0.0
        for j in range(1, i + 1):
            mature = f.t_ns[j] + horizon_s * NS
            if not (f.t_ns[i] - window_s * NS < mature <= f.t_ns[i]) or v[j] <= 0 or math.isnan(m[j - 1]) \
                    or not f.valid[j]:
                continue
            k = int(np.searchsorted(f.t_ns, mature, side="left"))  # first row at or after t_j + H
            if math.isnan(m[k]):
                continue
            num += x[j] * 1e4 * (m[k] - m[j - 1]) / m[j - 1]
            den += v[j]
        out[i] = num / den if den > 0 else nan
    return out


def ref_vpin(f, adv_s=A.VPIN_ADV_S, per=A.VPIN_BUCKETS_PER_ADV, nb=A.VPIN_N_BUCKETS):
    """Rows with an invalid book count as having no volume and no price change."""
    p = f.last_price
    ok = np.asarray(f.valid, bool)
    dp = np.where(ok, np.r_[nan, np.diff(p)], nan)
    vol = np.where(ok, f.buy_volume + f.sell_volume, 0.0)
    buckets, open_ = [], None
    out = np.full(f.n, nan)
    for i in range(f.n):
        w = [d for d in dp[in_window(f, i, adv_s)] if not math.isnan(d)]
        sigma = np.std(w, ddof=1) if len(w) >= 2 else nan
        z = norm.cdf(dp[i] / sigma) if (not math.isnan(dp[i]) and sigma > 0) else 0.5
        if i > 0:
            size = vol[in_window(f, i - 1, adv_s)].sum() / per
            warm = f.t_ns[i - 1] - f.t_ns[0] >= adv_s * NS
        else:
            size, warm = 0.0, False
        rem = vol[i]
        while rem > 0:
            if open_ is None:
                if not warm or size <= 0:
                    break
                open_ = {"size": size, "filled": 0.0, "buy": 0.0, "sell": 0.0}
            take = min(rem, open_["size"] - open_["filled"])
            open_["buy"] += z * take
            open_["sell"] += (1 - z) * take
            open_["filled"] += take
            rem -= take
            if open_["filled"] >= open_["size"] * (1 - 1e-12):
                buckets.append((abs(open_["sell"] - open_["buy"]), open_["size"]))
                open_ = None
        if len(buckets) >= nb:
            last = buckets[-nb:]
            out[i] = sum(a for a, _ in last) / sum(s for _, s in last)
    return out


def assert_close(got, want, name, rtol=1e-8, atol=1e-10):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("seed,adversarial,step_ms,n", [(0, False, 100, 800), (1, True, 100, 800),
                                                       (2, True, 1000, 700)])
def test_kyle_amihud_impact_match_reference(seed, adversarial, step_ms, n):
    f = random_frame(n, seed=seed, adversarial=adversarial, step_ns=step_ms * 1_000_000)
    got = A.compute(f)
    assert set(got) == {s.name for s in A.FEATURES} and len(A.FEATURES) >= 4
    for w in A.KYLE_WINDOWS_S:
        want = ref_kyle(f, w)
        assert_close(got[f"kyle_lambda_{w}s"], want, f"kyle {w}", rtol=1e-7, atol=1e-12)
        assert (~np.isnan(want)).sum() > n // 3
    for w in A.AMIHUD_WINDOWS_S:
        assert_close(got[f"amihud_{w}s"], ref_amihud(f, w), f"amihud {w}")
    want = ref_impact(f)
    assert_close(got["toxicity_impact_5s_bps"], want, "impact")
    assert (~np.isnan(want)).sum() > n // 2


def test_vpin_matches_reference_on_a_long_frame():
    """50 min on a 1 s grid: 10 min of sizing history, then 50 buckets of about 12 s each."""
    f = random_frame(3000, seed=3, adversarial=True, step_ns=NS)
    assert ((~f.valid) & (f.buy_volume + f.sell_volume > 0)).sum() > 50  # the invalid-row rule is exercised
    got = A.compute(f)["vpin_bvc"]
    want = ref_vpin(f)
    assert_close(got, want, "vpin", rtol=1e-9)
    first = int(np.flatnonzero(~np.isnan(want))[0])
    assert 1100 < first < 1400 and np.all((want[first:] >= 0) & (want[first:] <= 1))


def test_vpin_extremes():
    """All volume classified as buys (prices only rise, so Phi -> 1) gives VPIN near 1; constant prices split
    every bar evenly (Phi = 1/2 when sigma = 0), so VPIN = 0."""
    f = random_frame(1500, seed=8, step_ns=NS)
    f.buy_volume[:], f.sell_volume[:] = 1.0, 0.0
    f.last_price[:] = 100.0
    assert np.nanmax(np.abs(A.compute(f)["vpin_bvc"])) == 0.0
    g = random_frame(1500, seed=8, step_ns=NS)
    g.buy_volume[:], g.sell_volume[:] = 1.0, 0.0
    g.last_price[:] = 100.0 + np.where(np.arange(g.n) % 2, 1.0, 0.02) .cumsum()
    v = A.compute(g)["vpin_bvc"]
    assert np.nanmin(v) > 0.3 and (~np.isnan(v)).sum() > 200
    assert_close(v, ref_vpin(g), "vpin rising")


def test_one_huge_bar_fills_many_buckets_quickly():
    """A bar 10^6 times the recent volume completes many buckets at once (bulk path), bounded work."""
    f = random_frame(1300, seed=9, step_ns=NS)
    f.buy_volume[1250] = 1e6
    got = A.compute(f)["vpin_bvc"]
    assert got[1250] == pytest.approx(ref_vpin(f)[1250], rel=1e-9) or np.isnan(got[1250])
    assert np.isfinite(got[1250])


def test_long_frame_chunked_equals_batch():
    f = random_frame(3200, seed=10, adversarial=True, step_ns=500_000_000)
    batch, _ = assert_chunked_equals_batch(A, f, [0, 1, 2, 1200, 1201, 2500, 3200])
    assert (~np.isnan(batch["vpin_bvc"])).sum() > 100

"""Rolling features against a slow, obviously-right reference: plain loops over each row's window."""

import math

import numpy as np
import pytest
from kernel_frames import assert_chunked_equals_batch, random_frame

from kernels import rolling as R


def ref_mid(f, i):
    if not f.valid[i]:
        return math.nan
    return (f.bid_px[i, 0] + f.ask_px[i, 0]) / 2


def reference(f) -> dict:
    """Every rolling feature by brute force: for each row, loop over the rows of its window."""
    n, step_s = f.n, f.step_ns / 1e9
    mids = [ref_mid(f, i) for i in range(n)]
    ret = [math.nan] * n
    for i in range(1, n):
        a, b = mids[i - 1], mids[i]
        if not (math.isnan(a) or math.isnan(b)) and a > 0 and b > 0:
            ret[i] = math.log(b / a)
    spread = [1e4 * (f.ask_px[i, 0] - f.bid_px[i, 0]) / mids[i] if not math.isnan(mids[i]) else math.nan
              for i in range(n)]

    def window(i, w_s):
        W = R.window_rows(w_s, f.step_ns)
        return None if i + 1 < W else range(i - W + 1, i + 1)

    out = {s.name: np.full(n, np.nan) for s in R.FEATURES}
    indicator = [math.nan] * n
    for i in range(n):
        def mean_sq(w_s):
            rows = window(i, w_s)
            vals = [ret[j] ** 2 for j in rows if not math.isnan(ret[j])] if rows is not None else []
            return sum(vals) / len(vals) if vals else math.nan
        a, b = mean_sq(R.REGIME_SHORT_S), mean_sq(R.REGIME_LONG_S)
        if not (math.isnan(a) or math.isnan(b)):
            indicator[i] = 1.0 if a > b else 0.0
    for i in range(n):
        for w in R.RV_WINDOWS_S:
            rows = window(i, w)
            vals = [ret[j] for j in rows if not math.isnan(ret[j])] if rows else []
            if vals:
                out[f"rv_mid_{w}s"][i] = math.sqrt(sum(v * v for v in vals))
        for w in R.SPREAD_WINDOWS_S:
            rows = window(i, w)
            vals = [spread[j] for j in rows if not math.isnan(spread[j])] if rows else []
            if vals:
                out[f"spread_bps_mean_{w}s"][i] = sum(vals) / len(vals)
        for w in R.REGIME_WINDOWS_S:
            rows = window(i, w)
            vals = [indicator[j] for j in rows if not math.isnan(indicator[j])] if rows else []
            if vals:
                out[f"vol_regime_frac_{w}s"][i] = sum(vals) / len(vals)
        for w in R.EVENT_WINDOWS_S:
            rows = window(i, w)
            vals = [f.book_rows[j] for j in rows if f.valid[j]] if rows else []
            if vals:
                out[f"book_event_rate_{w}s"][i] = sum(vals) / (len(vals) * step_s)
        for w in R.BURST_WINDOWS_S:
            rows = window(i, w)
            vals = np.array([f.book_rows[j] for j in rows if f.valid[j]] if rows else [], float)
            if len(vals) >= 2:
                mu, sigma = vals.mean(), vals.std()
                if sigma + mu > 0:
                    out[f"book_event_burstiness_{w}s"][i] = (sigma - mu) / (sigma + mu)
        for w in R.TRADE_WINDOWS_S:
            rows = window(i, w)
            vals = [f.buy_count[j] + f.sell_count[j] for j in rows if f.valid[j]] if rows else []
            if vals:
                out[f"trade_arrival_rate_{w}s"][i] = sum(vals) / (len(vals) * step_s)
    return out


def assert_close(got, want, name, rel=1e-9, abs_=1e-12):
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    bad = np.flatnonzero(nan_g != nan_w)
    assert not len(bad), f"{name}: NaN pattern differs at rows {bad[:10]} got {got[bad[:3]]} want {want[bad[:3]]}"
    np.testing.assert_allclose(got[~nan_g], want[~nan_w], rtol=rel, atol=abs_, err_msg=name)


FRAMES = [
    dict(n=500, seed=0, adversarial=False, step_ns=1_000_000_000),
    dict(n=500, seed=1, adversarial=True, step_ns=1_000_000_000),
    dict(n=400, seed=2, adversarial=True, step_ns=2_500_000_000),
    dict(n=1200, seed=3, adversarial=True, step_ns=500_000_000),
]


@pytest.mark.parametrize("kw", FRAMES)
def test_rolling_matches_reference(kw):
    f = random_frame(kw["n"], depth=5, seed=kw["seed"], adversarial=kw["adversarial"], step_ns=kw["step_ns"])
    got = R.compute(f)
    want = reference(f)
    assert set(got) == set(want) and len(R.FEATURES) >= 13
    for name in want:
        assert_close(got[name], want[name], name)
        assert np.isfinite(got[name]).any(), f"{name}: never defined on this frame"


def test_constant_prices_give_exactly_zero_volatility_and_equal_values():
    f = random_frame(700, depth=3, seed=5, step_ns=1_000_000_000)
    f.bid_px[:] = f.bid_px[0]
    f.ask_px[:] = f.ask_px[0]
    f.book_rows[:] = 7  # equal counts: sigma = 0 -> burstiness -1
    out = R.compute(f)
    for w in R.RV_WINDOWS_S:
        v = out[f"rv_mid_{w}s"]
        assert np.all(v[~np.isnan(v)] == 0.0) and not np.isnan(v[-1])
    assert np.all(out["vol_regime_frac_60s"][-10:] == 0.0)  # 0 > 0 never holds
    assert np.all(out["book_event_burstiness_60s"][60:] == -1.0)
    assert np.all(out["book_event_rate_10s"][10:] == 7.0)


def test_no_trades_and_all_invalid():
    f = random_frame(400, depth=3, seed=6, step_ns=1_000_000_000)
    f.buy_count[:] = 0
    f.sell_count[:] = 0
    f.book_rows[:] = 0
    out = R.compute(f)
    assert np.all(out["trade_arrival_rate_60s"][59:] == 0.0)
    assert np.all(np.isnan(out["book_event_burstiness_60s"]))  # sigma + mu = 0
    f.valid[:] = False
    out = R.compute(f)
    for name, v in out.items():
        assert np.all(np.isnan(v)), name


def test_invalid_rows_do_not_contribute():
    """A window containing invalid rows equals the same window with those rows' inputs replaced by anything."""
    f = random_frame(500, depth=3, seed=7, adversarial=True, step_ns=1_000_000_000)
    base = R.compute(f)
    g = f.take(slice(None))
    bad = ~g.valid
    g.bid_px[bad] *= 1.5
    g.ask_px[bad] *= 0.5
    g.book_rows[bad] += 1000
    g.buy_count[bad] += 50
    for name in base:
        np.testing.assert_array_equal(R.compute(g)[name], base[name], err_msg=name)


def test_hand_values():
    """A 1 s grid, mid path 100, 101, 100, ...: every return is +-ln(1.01) or ln(100/101)."""
    n = 400
    f = random_frame(n, depth=1, seed=8, step_ns=1_000_000_000)
    mid = np.where(np.arange(n) % 2 == 0, 100.0, 101.0)
    f.bid_px[:, 0], f.ask_px[:, 0] = mid - 0.5, mid + 0.5
    f.valid[:] = True
    f.book_rows[:] = np.where(np.arange(n) % 2 == 0, 0, 4)  # mean 2, sigma 2 -> burstiness 0
    f.buy_count[:], f.sell_count[:] = 1, 2
    out = R.compute(f)
    r2 = math.log(101 / 100) ** 2  # = ln(100/101)^2
    assert out["rv_mid_10s"][20] == pytest.approx(math.sqrt(10 * r2), rel=1e-12)
    assert np.isnan(out["rv_mid_10s"][8]) and not np.isnan(out["rv_mid_10s"][9])  # full at 10 rows
    assert out["spread_bps_mean_10s"][20] == pytest.approx((1e4 / 100 + 1e4 / 101) / 2, rel=1e-12)
    assert out["book_event_burstiness_60s"][100] == pytest.approx(0.0, abs=1e-15)
    assert out["trade_arrival_rate_10s"][50] == 3.0 and out["book_event_rate_60s"][100] == 2.0


def test_state_refuses_another_grid():
    st = R.new_state()
    R.compute(random_frame(5, seed=0, step_ns=100_000_000), st)
    with pytest.raises(ValueError):
        R.compute(random_frame(5, seed=0, step_ns=1_000_000_000), st)


def test_rows_and_chunks_equal_batch_where_windows_are_full():
    """The catalog test runs on a 100 ms grid where the long windows never fill; here every feature is defined."""
    f = random_frame(420, depth=3, seed=9, adversarial=True, step_ns=2_000_000_000)
    batch, _ = assert_chunked_equals_batch(R, f, [0, 3, 150, 151, 299, 420], rows=True)
    for name in batch:
        assert np.isfinite(batch[name]).sum() > 100, name


def test_no_feature_reads_the_future_with_full_windows():
    """The catalog's leakage test runs on a 100 ms grid where the 300 s windows never fill; repeat it where they do."""
    f = random_frame(400, depth=5, seed=10, adversarial=True, step_ns=2_000_000_000)
    base = R.compute(f)
    rng = np.random.default_rng(11)
    for t in (160, 310, 398):
        g = f.take(slice(None))
        later = slice(t + 1, None)
        g.bid_px[later] *= 1 + rng.normal(0, 0.01, g.bid_px[later].shape)
        g.book_rows[later] += 5
        g.buy_count[later] += 3
        g.valid[later] = rng.random(g.valid[later].shape) < 0.7
        out = R.compute(g)
        for name in base:
            assert np.isfinite(base[name][: 399]).any(), name
            np.testing.assert_array_equal(out[name][: t + 1], base[name][: t + 1], err_msg=f"{name} at {t}")

"""Technical features against slow references: pandas rolling / ewm on the series of mids, plain loops for
bipower variation, autocorrelation, CUSUM and VaR."""

import math

import numpy as np
import pandas as pd
import pytest
from kernel_frames import assert_chunked_equals_batch, random_frame

from kernels import technical as T


def mid_series(f):
    mid = np.where(f.valid, (f.bid_px[:, 0] + f.ask_px[:, 0]) / 2, np.nan)
    ok = ~np.isnan(mid) & (mid > 0)
    return mid, ok


def reference(f) -> dict:
    mid, ok = mid_series(f)
    s = pd.Series(mid[ok])
    r = np.log(s / s.shift(1))
    d = s.diff()
    ref = {"ta_log_return": r}
    for span in T.EMA_SPANS:
        ref[f"ta_ema_mid_{span}"] = s.ewm(span=span, adjust=False).mean()
    for w in T.Z_WINDOWS:
        sd = s.rolling(w).std()
        equal = s.rolling(w).max() == s.rolling(w).min()
        ref[f"ta_zscore_mid_{w}"] = ((s - s.rolling(w).mean()) / sd).where(~equal)
    g = d.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    lo = (-d).clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    ref["ta_rsi_14"] = (100 * g / (g + lo)).where(g + lo > 0)
    macd = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
    sig = macd.ewm(span=9, adjust=False).mean()
    ref["ta_macd"], ref["ta_macd_signal"], ref["ta_macd_hist"] = macd, sig, macd - sig
    ma, sd = s.rolling(20).mean(), s.rolling(20).std(ddof=0)
    equal = s.rolling(20).max() == s.rolling(20).min()
    ref["ta_bb_upper_20"] = ma + 2 * sd.where(~equal, 0.0)
    ref["ta_bb_lower_20"] = ma - 2 * sd.where(~equal, 0.0)
    ref["ta_bb_pctb_20"] = ((s - (ma - 2 * sd)) / (4 * sd)).where(~equal)
    rv = r.to_numpy()
    n = len(rv)
    for w in T.RV_WINDOWS:
        ref[f"ta_realized_var_{w}"] = (r**2).rolling(w).sum()
        bv = np.full(n, np.nan)
        for t in range(w, n):  # returns rv[t-w+1..t]; rv[0] is NaN
            win = rv[t - w + 1:t + 1]
            bv[t] = math.pi / 2 * sum(abs(win[j]) * abs(win[j - 1]) for j in range(1, w))
        ref[f"ta_bipower_var_{w}"] = bv
    rm = (r**2).ewm(alpha=0.06, adjust=False).mean()
    ref["ta_riskmetrics_vol"] = np.sqrt(rm)
    ac = np.full(n, np.nan)
    var95, cvar95 = np.full(n, np.nan), np.full(n, np.nan)
    for t in range(100, n):
        win = rv[t - 99:t + 1]
        x, y = win[:-1], win[1:]
        if x.max() > x.min() and y.max() > y.min():
            ac[t] = np.corrcoef(x, y)[0, 1]
        srt = sorted(win)
        var95[t], cvar95[t] = -srt[4], -sum(srt[:5]) / 5
    ref["ta_autocorr1_100"], ref["ta_var95_100"], ref["ta_cvar95_100"] = ac, var95, cvar95
    # CUSUM: plain loop, z standardized by the RiskMetrics variance before the return
    pos, neg, alarm = np.zeros(n), np.zeros(n), np.zeros(n)
    sp = sn = 0.0
    v = math.nan
    for t in range(n):
        a = 0.0
        if t >= 1:
            if not math.isnan(v) and v > 0:
                z = rv[t] / math.sqrt(v)
                sp, sn = max(0.0, sp + z - 0.5), max(0.0, sn - z - 0.5)
                a = 1.0 if sp > 5 else (-1.0 if sn > 5 else 0.0)
            v = rv[t] ** 2 if math.isnan(v) else 0.94 * v + 0.06 * rv[t] ** 2
        pos[t], neg[t], alarm[t] = sp, sn, a
        if a:
            sp = sn = 0.0
    ref["ta_cusum_pos"], ref["ta_cusum_neg"], ref["ta_cusum_alarm"] = pos, neg, alarm
    out = {}
    for name, vals in ref.items():
        full = np.full(f.n, np.nan)
        full[ok] = np.asarray(vals, dtype=float)
        out[name] = full
    return out


def assert_close(got, want, name, rel=1e-9, abs_=1e-12):
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    bad = np.flatnonzero(nan_g != nan_w)
    assert not len(bad), f"{name}: NaN pattern differs at rows {bad[:10]} got {got[bad[:3]]} want {want[bad[:3]]}"
    np.testing.assert_allclose(got[~nan_g], want[~nan_w], rtol=rel, atol=abs_, err_msg=name)


@pytest.mark.parametrize("seed,adversarial", [(0, False), (1, True), (2, True), (3, True)])
def test_technical_matches_reference(seed, adversarial):
    f = random_frame(600, depth=3, seed=seed, adversarial=adversarial)
    got = T.compute(f)
    want = reference(f)
    assert set(got) == set(want) == set(T.NAMES) and len(T.FEATURES) == 23
    for name in T.NAMES:
        # z-scores and %b divide a small deviation by a small std: a relative 1e-9 needs an absolute slack
        atol = 1e-8 if name in ("ta_zscore_mid_20", "ta_zscore_mid_100", "ta_bb_pctb_20") else 1e-12
        assert_close(got[name], want[name], name, abs_=atol)
        assert np.isfinite(got[name]).any(), name


def test_rows_and_chunks_equal_batch():
    f = random_frame(400, depth=20, seed=5, adversarial=True)
    batch, _ = assert_chunked_equals_batch(T, f, [0, 2, 103, 104, 250, 400], rows=True)
    for name in batch:
        assert np.isfinite(batch[name]).sum() > 100, name


def test_constant_prices():
    f = random_frame(300, depth=2, seed=6)
    f.bid_px[:] = f.bid_px[0]
    f.ask_px[:] = f.ask_px[0]
    out = T.compute(f)
    m = (f.bid_px[0, 0] + f.ask_px[0, 0]) / 2
    assert np.all(out["ta_log_return"][1:] == 0.0) and np.isnan(out["ta_log_return"][0])
    assert np.all(out["ta_ema_mid_50"] == m) and np.all(out["ta_macd"] == 0.0)
    for name in ("ta_zscore_mid_20", "ta_zscore_mid_100", "ta_rsi_14", "ta_bb_pctb_20", "ta_autocorr1_100"):
        assert np.all(np.isnan(out[name])), name  # undefined, not 0 / 0 noise
    assert np.all(out["ta_bb_upper_20"][19:] == m) and np.all(out["ta_realized_var_100"][100:] == 0.0)
    assert np.all(out["ta_cusum_alarm"] == 0.0) and np.all(out["ta_var95_100"][100:] == 0.0)


def test_invalid_rows_are_dropped_from_the_series():
    """Invalid rows get NaN and leave the state untouched: deleting them gives the same values elsewhere."""
    f = random_frame(400, depth=2, seed=7, adversarial=True)
    full = T.compute(f)
    keep = np.flatnonzero(f.valid)
    sub = T.compute(f.take(keep))
    for name in full:
        assert np.all(np.isnan(full[name][~f.valid])), name
        np.testing.assert_array_equal(full[name][keep], sub[name], err_msg=name)


def test_hand_values():
    """Alternating mids 100, 101: known RSI, bipower and VaR; a level shift fires the upper CUSUM alarm."""
    n = 200
    f = random_frame(n, depth=1, seed=8)
    f.valid[:] = True
    mid = np.where(np.arange(n) % 2 == 0, 100.0, 101.0)
    f.bid_px[:, 0], f.ask_px[:, 0] = mid - 0.5, mid + 0.5
    out = T.compute(f)
    a, b = math.log(1.01), math.log(100 / 101)
    assert out["ta_realized_var_20"][150] == pytest.approx(10 * a * a + 10 * b * b, rel=1e-12)
    assert out["ta_bipower_var_20"][150] == pytest.approx(math.pi / 2 * 19 * abs(a * b), rel=1e-12)
    assert out["ta_var95_100"][150] == pytest.approx(-b, rel=1e-12)
    assert out["ta_cvar95_100"][150] == pytest.approx(-b, rel=1e-12)
    assert out["ta_autocorr1_100"][150] == pytest.approx(-1.0, rel=1e-12)
    assert 40 < out["ta_rsi_14"][151] < 60
    g = random_frame(60, depth=1, seed=9)
    g.valid[:] = True
    path = 100 * np.exp(np.r_[np.cumsum(np.tile([1e-4, -1e-4], 20)), 0.01 + np.zeros(20)])
    g.bid_px[:, 0], g.ask_px[:, 0] = path - 0.005, path + 0.005
    out = T.compute(g)
    assert out["ta_cusum_alarm"][40] == 1.0 and out["ta_cusum_pos"][40] > 5
    assert out["ta_cusum_pos"][41] < out["ta_cusum_pos"][40]  # restarted after the alarm
    assert np.all(out["ta_cusum_alarm"][:40] == 0.0)

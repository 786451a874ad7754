"""Labels against a slow reference (plain loops that scan forward in time), triple-barrier hand cases, regime
thresholds fitted on the training split only, and the forward reach of every label."""

import math

import numpy as np
import pytest
from kernel_frames import random_frame

from kernels import catalog
from kernels import labels as L

S = 1_000_000_000


def ref_prices(f, i):
    if not f.valid[i]:
        return math.nan, math.nan, math.nan
    b, a, qb, qa = f.bid_px[i, 0], f.ask_px[i, 0], f.bid_sz[i, 0], f.ask_sz[i, 0]
    mid = (b + a) / 2
    micro = (a * qb + b * qa) / (qb + qa) if qb + qa > 0 and not (math.isnan(a) or math.isnan(b)) else math.nan
    return mid, micro, a - b


def first_at_or_after(f, i, h_ns):
    for j in range(i, f.n):
        if f.t_ns[j] >= f.t_ns[i] + h_ns:
            return j
    return None


def reference(f, thresholds=None, dead_zone_bps=None) -> dict:
    n = f.n
    px = [ref_prices(f, i) for i in range(n)]
    mid = [p[0] for p in px]
    nan = math.nan

    def ret(j):  # one-step return, only between two rows with a mid
        if j == 0 or math.isnan(mid[j]) or math.isnan(mid[j - 1]):
            return nan
        return math.log(mid[j] / mid[j - 1])

    out = {s.name: np.full(n, nan) for s in L.LABELS if thresholds is not None or s.name not in L.REGIME_NAMES}
    for i in range(n):
        for h in L.HORIZONS_S:
            j = first_at_or_after(f, i, h * S)
            if j is None or math.isnan(mid[i]) or math.isnan(mid[j]):
                continue
            r = math.log(mid[j] / mid[i])
            out[f"fwd_ret_mid_{h}s"][i] = r
            if not (math.isnan(px[i][1]) or math.isnan(px[j][1])):
                out[f"fwd_ret_micro_{h}s"][i] = math.log(px[j][1] / px[i][1])
            out[f"label_dir_mid_{h}s"][i] = 1.0 if r > 0 else 0.0
            dz = dead_zone_bps / 1e4 if dead_zone_bps is not None else 0.5 * max(px[i][2], 0.0) / mid[i]
            out[f"label_3c_mid_{h}s"][i] = 1.0 if r > dz else (-1.0 if r < -dz else 0.0)
        # trailing 60 s volatility, only with the whole window in the data
        sigma = nan
        if f.t_ns[0] <= f.t_ns[i] - 60 * S:
            rs = [ret(j) for j in range(i + 1) if f.t_ns[j] > f.t_ns[i] - 60 * S]
            rs = [x for x in rs if not math.isnan(x)]
            sigma = math.sqrt(sum(x * x for x in rs)) if rs else nan
        for T in L.TB_LIMITS_S:
            jT = first_at_or_after(f, i, T * S)
            if jT is None or math.isnan(mid[i]) or math.isnan(sigma) or sigma == 0:
                continue
            b = 2.0 * sigma * math.sqrt(T / 60)
            lab, hit, x_at, last = 0.0, (f.t_ns[jT] - f.t_ns[i]) / 1e9, nan, nan
            for j in range(i + 1, jT + 1):
                if math.isnan(mid[j]):
                    continue
                x = math.log(mid[j] / mid[i])
                last = x
                if mid[j] >= mid[i] * math.exp(b) or mid[j] <= mid[i] * math.exp(-b):
                    lab, hit, x_at = (1.0 if x > 0 else -1.0), (f.t_ns[j] - f.t_ns[i]) / 1e9, x
                    break
            out[f"label_tb_{T}s"][i], out[f"label_tb_hit_s_{T}s"][i] = lab, hit
            out[f"fwd_tb_ret_{T}s"][i] = x_at if lab != 0 else last
        for h in L.RV_HORIZONS_S:
            j = first_at_or_after(f, i, h * S)
            if j is None or math.isnan(mid[i]):
                continue
            rs = [ret(k) for k in range(i + 1, j + 1)]
            rs = [x for x in rs if not math.isnan(x)]
            if rs:
                rv = math.sqrt(sum(x * x for x in rs))
                out[f"fwd_rv_{h}s"][i] = rv
                if thresholds is not None:
                    lo, hi = thresholds[h]
                    out[f"label_vol_regime_{h}s"][i] = 0.0 if rv <= lo else (1.0 if rv <= hi else 2.0)
    return out


def assert_close(got, want, name, rel=1e-10, abs_=1e-13):
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    bad = np.flatnonzero(nan_g != nan_w)
    assert not len(bad), f"{name}: NaN pattern differs at rows {bad[:10]} got {got[bad[:3]]} want {want[bad[:3]]}"
    np.testing.assert_allclose(got[~nan_g], want[~nan_w], rtol=rel, atol=abs_, err_msg=name)


def test_label_specs():
    specs = catalog.labels()
    assert [s.name for s in specs] == [s.name for s in L.LABELS] and len(specs) == 30
    for s in specs:
        assert s.name.startswith(("fwd_", "label_")) and s.forward_reach_ns > 0
        with pytest.raises(ValueError):
            catalog.check_not_label(s.name)
    feature_names = {s.name for s in catalog.features()}
    assert not feature_names & {s.name for s in specs}


@pytest.mark.parametrize("n,seed,adversarial,step_ns", [(500, 0, False, 1 * S), (500, 1, True, 1 * S),
                                                        (400, 2, True, 5 * S), (900, 3, True, S // 2)])
def test_labels_match_reference(n, seed, adversarial, step_ns):
    f = random_frame(n, depth=3 if adversarial else 20, seed=seed, adversarial=adversarial, step_ns=step_ns)
    thr = {60: (1e-4, 3e-4), 300: (3e-4, 6e-4)}
    got = L.compute_labels(f, regime_thresholds=thr)
    want = reference(f, thr)
    assert list(got) == [s.name for s in L.LABELS]
    for name in want:
        assert_close(got[name], want[name], name)
        if not name.startswith("label_vol_regime") and not (step_ns == 5 * S and "_300s" in name):
            assert np.isfinite(got[name]).any(), name
    bps = L.compute_labels(f, dead_zone_bps=1.0)
    want = reference(f, None, dead_zone_bps=1.0)
    assert set(bps) == set(want) and not set(bps) & L.REGIME_NAMES
    for h in L.HORIZONS_S:
        assert_close(bps[f"label_3c_mid_{h}s"], want[f"label_3c_mid_{h}s"], f"3c bps {h}")


def test_time_based_not_tick_based():
    """The same market sampled on a 100 ms and on a 1 s grid gives the same forward returns at common times."""
    f = random_frame(3000, depth=20, seed=4, adversarial=True, step_ns=S // 10)
    coarse = f.take(slice(9, None, 10))
    coarse.step_ns = S
    fine, crs = L.compute_labels(f), L.compute_labels(coarse)
    for h in L.HORIZONS_S:
        for kind in ("mid", "micro"):
            name = f"fwd_ret_{kind}_{h}s"
            np.testing.assert_array_equal(fine[name][9::10], crs[name], err_msg=name)
            assert np.isfinite(crs[name]).sum() > 50 or h == 300


def test_end_of_data_is_nan_never_partial():
    f = random_frame(400, depth=20, seed=5, step_ns=S)
    f.valid[:] = True
    out = L.compute_labels(f)
    t_end = f.t_ns[-1]
    for spec in L.LABELS:
        if spec.name not in out:
            continue
        v = out[spec.name]
        late = f.t_ns + spec.forward_reach_ns > t_end
        assert np.all(np.isnan(v[late])), spec.name
        assert np.all(np.isfinite(v[~late][70:])), spec.name  # past the 60 s trailing window everything exists


@pytest.mark.parametrize("adversarial", [False, True])
def test_labels_read_the_future_only_up_to_their_reach(adversarial):
    """Changing every input after t_i + reach (and before t_i - 60 s - step, the trailing window) never changes
    a label at row i; so the declared forward reach bounds what each label reads."""
    f = random_frame(800, depth=5, seed=6, adversarial=adversarial, step_ns=S)
    base = L.compute_labels(f, regime_thresholds={60: (1e-4, 3e-4), 300: (3e-4, 6e-4)})
    rng = np.random.default_rng(7)
    reach = {s.name: s.forward_reach_ns for s in L.LABELS}
    for i in (0, 100, 333, 450, 700):
        for name, r in reach.items():
            g = f.take(slice(None))
            later = f.t_ns > f.t_ns[i] + r
            for a in (g.bid_px, g.ask_px):
                a[later] *= 1 + rng.normal(0, 0.02, a[later].shape)
            for a in (g.bid_sz, g.ask_sz):
                a[later] *= rng.uniform(0.1, 3, a[later].shape)
            g.valid[later] = rng.random(later.sum()) < 0.6
            out = L.compute_labels(g, regime_thresholds={60: (1e-4, 3e-4), 300: (3e-4, 6e-4)})
            np.testing.assert_array_equal(out[name][: i + 1], base[name][: i + 1], err_msg=f"{name} at {i}")
    # and the reach is not overstated for the plain returns: the row at exactly t + h matters
    g = f.take(slice(None))
    g.bid_px[5 + 5, 0] *= 1.01
    assert L.compute_labels(g)["fwd_ret_mid_5s"][5] != base["fwd_ret_mid_5s"][5] or not g.valid[10]


def tb_frame(mids, step_ns=S, trailing=0.001):
    """A 1 s frame: 61 s of alternating +-trailing/sqrt(60) returns (trailing 60 s vol = ``trailing``), then
    ``mids`` relative to 100."""
    k = trailing / math.sqrt(60)
    pre = 100 * np.exp(np.cumsum(np.r_[0.0, np.tile([k, -k], 30)]))
    path = np.r_[pre, 100 * np.asarray(mids, float)]
    f = random_frame(len(path), depth=1, seed=0, step_ns=step_ns)
    f.valid[:] = True
    f.bid_px[:, 0], f.ask_px[:, 0] = path - 0.001, path + 0.001
    f.bid_sz[:, 0] = f.ask_sz[:, 0] = 1.0
    return f, 60  # the row with the full trailing window; its mid is 100


def test_triple_barrier_hand_cases():
    b = 2 * 0.001 * math.sqrt(30 / 60)  # barrier for T = 30 s
    # upper hit at +3 s
    f, i = tb_frame([1.0, 1.0, math.exp(b * 1.01)] + [1.0] * 40)
    out = L.compute_labels(f)
    assert out["label_tb_30s"][i] == 1.0 and out["label_tb_hit_s_30s"][i] == 3.0
    assert out["fwd_tb_ret_30s"][i] == pytest.approx(b * 1.01, rel=1e-9)
    # lower first (even though the upper comes later)
    f, i = tb_frame([1.0, math.exp(-b * 1.2), math.exp(b * 2)] + [1.0] * 40)
    out = L.compute_labels(f)
    assert out["label_tb_30s"][i] == -1.0 and out["label_tb_hit_s_30s"][i] == 2.0
    # neither: vertical barrier at 30 s with the return there
    f, i = tb_frame([math.exp(b * 0.5)] * 45)
    out = L.compute_labels(f)
    assert out["label_tb_30s"][i] == 0.0 and out["label_tb_hit_s_30s"][i] == 30.0
    assert out["fwd_tb_ret_30s"][i] == pytest.approx(b * 0.5, rel=1e-9)
    # a hit exactly at the vertical barrier counts as a hit; one after it does not
    f, i = tb_frame([1.0] * 29 + [math.exp(b * 1.01)] + [1.0] * 20)
    assert L.compute_labels(f)["label_tb_30s"][i] == 1.0
    f, i = tb_frame([1.0] * 30 + [math.exp(b * 1.01)] + [1.0] * 20)
    out = L.compute_labels(f)
    assert out["label_tb_30s"][i] == 0.0 and out["fwd_tb_ret_30s"][i] == 0.0
    # the barrier-crossing row invalid: skipped, so no hit
    f, i = tb_frame([1.0, math.exp(b * 1.5)] + [1.0] * 40)
    f.valid[i + 2] = False
    assert L.compute_labels(f)["label_tb_30s"][i] == 0.0
    # not enough data for the time limit: NaN, even though the barrier was hit
    f, i = tb_frame([1.0, math.exp(b * 1.5)] + [1.0] * 10)
    out = L.compute_labels(f)
    assert np.isnan(out["label_tb_30s"][i]) and np.isnan(out["label_tb_hit_s_30s"][i])
    # no trailing history (frame starts at i) or zero trailing volatility: NaN
    f, i = tb_frame([1.0, math.exp(b * 1.5)] + [1.0] * 40)
    assert np.isnan(L.compute_labels(f.take(slice(i, None)))["label_tb_30s"][0])
    f, i = tb_frame([1.0, math.exp(b * 1.5)] + [1.0] * 40, trailing=0.0)
    assert np.isnan(L.compute_labels(f)["label_tb_30s"][i])
    # a caller-provided trailing sigma (e.g. the carried rv_mid_60s feature) is used as given
    f, i = tb_frame([1.0, math.exp(b * 1.5)] + [1.0] * 40)
    sig = np.full(f.n, 0.001)
    assert L.compute_labels(f.take(slice(i, None)), trailing_sigma=sig[i:])["label_tb_30s"][0] == 1.0


def test_trailing_sigma_equals_the_rolling_feature():
    from kernels import rolling as R

    f = random_frame(400, depth=3, seed=8, adversarial=True, step_ns=S)
    r = np.empty(f.n)
    mid = L.prices(f)[0]
    L.one_step_returns(mid, r)
    sig = np.empty(f.n)
    L.trailing_rv(f.t_ns, r, np.int64(60 * S), np.int64(L.BLOCK_ROWS * S), sig)
    feat = R.compute(f)["rv_mid_60s"]
    assert_close(sig[60:], feat[60:], "trailing sigma vs rv_mid_60s", rel=1e-9)
    assert np.all(np.isnan(sig[:60]))


def test_regime_thresholds_fitted_on_train_only():
    f = random_frame(1500, depth=5, seed=9, adversarial=True, step_ns=S)
    split = 1000
    train = L.compute_labels(f.take(slice(0, split)))  # the train frame alone: end rows NaN, no test data read
    thr = {h: L.fit_regime_thresholds(train[f"fwd_rv_{h}s"]) for h in L.RV_HORIZONS_S}
    # equivalently: labels on the whole data, keeping only the purged training rows
    full = L.compute_labels(f)
    for h in L.RV_HORIZONS_S:
        keep = L.purge_train_rows(f.t_ns[:split], f.t_ns[split - 1], h * S)
        np.testing.assert_array_equal(L.fit_regime_thresholds(full[f"fwd_rv_{h}s"][:split][keep]), thr[h])
        # without the purge the boundary rows read the test period and the thresholds differ
        assert not np.array_equal(L.fit_regime_thresholds(full[f"fwd_rv_{h}s"][:split]), thr[h])
    # changing the test split (more volatile prices after the split) does not move the thresholds
    g = f.take(slice(None))
    shock = np.exp(np.cumsum(np.random.default_rng(10).normal(0, 5e-3, f.n - split)))
    g.bid_px[split:] *= shock[:, None]
    g.ask_px[split:] *= shock[:, None]
    train_g = L.compute_labels(g.take(slice(0, split)))
    for h in L.RV_HORIZONS_S:
        np.testing.assert_array_equal(L.fit_regime_thresholds(train_g[f"fwd_rv_{h}s"]), thr[h])
    test_labels = L.compute_labels(g, regime_thresholds=thr)
    reg = test_labels["label_vol_regime_60s"][split:]
    reg = reg[~np.isnan(reg)]
    assert len(reg) > 100 and np.mean(reg == 2.0) > 0.9  # the shocked test period is turbulent by the train scale
    lo, hi = thr[60]
    rv = full["fwd_rv_60s"]
    np.testing.assert_array_equal(L.apply_regime_thresholds(rv, thr[60]),
                                  np.where(np.isnan(rv), np.nan, np.where(rv <= lo, 0, np.where(rv <= hi, 1, 2))))
    tr = train["fwd_rv_60s"]
    frac = [np.mean(L.apply_regime_thresholds(tr[np.isfinite(tr)], thr[60]) == k) for k in (0, 1, 2)]
    assert all(abs(x - 1 / 3) < 0.02 for x in frac)  # terciles of the training rows
    with pytest.raises(ValueError):
        L.fit_regime_thresholds(np.full(10, np.nan))


def test_labels_of_a_slice_equal_the_whole():
    """Partition invariance: a frame cut at any row (with the future it needs) gives the same labels bit for bit
    wherever the slice holds the label's whole window (60 s back for the triple barrier)."""
    f = random_frame(900, depth=5, seed=11, adversarial=True, step_ns=S)
    whole = L.compute_labels(f)
    aligned = int(np.flatnonzero(f.t_ns % (L.BLOCK_ROWS * S) == 0)[1])  # a cut on a partial-sum block boundary
    for cut in (200, 201, aligned, aligned + 1, aligned - 1):
        part = L.compute_labels(f.take(slice(cut, 900)))
        for name, v in part.items():
            np.testing.assert_array_equal(v[60:], whole[name][cut + 60:], err_msg=f"{name} cut at {cut}")


def test_empty_and_degenerate_frames():
    f = random_frame(0, depth=2, seed=0)
    out = L.compute_labels(f)
    assert all(len(v) == 0 for v in out.values())
    f = random_frame(50, depth=2, seed=1, step_ns=S)
    f.valid[:] = False
    assert all(np.all(np.isnan(v)) for v in L.compute_labels(f).values())
    f = random_frame(400, depth=2, seed=2, step_ns=S)
    f.valid[:] = True
    f.bid_px[:] = f.bid_px[0]
    f.ask_px[:] = f.ask_px[0]
    out = L.compute_labels(f)
    assert np.all(out["fwd_ret_mid_5s"][:-5] == 0.0) and np.all(out["label_dir_mid_5s"][:-5] == 0.0)
    assert np.all(out["label_3c_mid_5s"][:-5] == 0.0) and np.all(out["fwd_rv_60s"][:-60] == 0.0)
    assert np.all(np.isnan(out["label_tb_30s"]))  # zero trailing volatility: no barrier scale

"""Cross-asset family: every feature equals a brute-force reference (random and adversarial frames), the
Hayashi-Yoshida estimator equals the O(n m) pair sum, no row reads the future of either frame, row-by-row and
chunked runs equal the batch bit for bit, and on the simulator the estimated lead-lag is the planted one."""

import math

import numpy as np
import pytest

from kernels import catalog
from kernels import cross_asset as xa
from kernels.frame import MarketFrame
from kernel_frames import random_frame

STEP = 100_000_000
WIN_S = 3.0  # 30 rows: short windows so the references see full windows on small frames


def pair(seed, n=260, adversarial=False):
    f = random_frame(n, seed=seed, adversarial=adversarial)
    leader = random_frame(n, seed=seed + 50, adversarial=adversarial, symbol="LEAD-USD")
    leader.t_ns = f.t_ns.copy()
    return f, leader


def log_mid(fr):
    m = (fr.bid_px[:, 0] + fr.ask_px[:, 0]) / 2
    with np.errstate(invalid="ignore"):
        return np.where(fr.valid & (m > 0), np.log(np.where(m > 0, m, 1.0)), np.nan)


def ticks(x):
    """(rows, values) of the observations of a grid series: rows where it changed (the first value starts it)."""
    rows, vals, last = [], [], math.nan
    for i, v in enumerate(x):
        if not math.isnan(v) and (math.isnan(last) or v != last):
            rows.append(i)
            vals.append(v)
            last = v
    return rows, vals


def has_var(xs):
    n = len(xs)
    m = sum(xs) / n
    return n * sum((x - m) ** 2 for x in xs) > xa.REL_VAR_FLOOR * n * sum(x * x for x in xs)


def reference(f, leader, window_s=WIN_S):
    """Slow twin: per row, collect the window's values and apply the docstring's formulas directly."""
    n, step = f.n, f.step_ns
    W = xa.window_rows(window_s, step)
    need = math.ceil(xa.MIN_SHARE * W)
    K = int(xa.MAX_LAG_S * 1e9) // step
    x, y = log_mid(leader), log_mid(f)
    rl = np.r_[np.nan, np.diff(x)]
    rf = np.r_[np.nan, np.diff(y)]
    out = {c: np.full(n, np.nan) for c in xa.COLUMNS}
    # Hayashi-Yoshida: every overlapping pair of intervals, credited to the row where both have ended
    t1, v1 = ticks(x)
    t2, v2 = ticks(y)
    credit = np.zeros(n)
    d1sq = np.zeros(n)
    d2sq = np.zeros(n)
    n1 = np.zeros(n)
    n2 = np.zeros(n)
    for a in range(1, len(t1)):
        d1sq[t1[a]] += (v1[a] - v1[a - 1]) ** 2
        n1[t1[a]] += 1
        for b in range(1, len(t2)):
            if t1[a - 1] < t2[b] and t2[b - 1] < t1[a]:
                credit[max(t1[a], t2[b])] += (v1[a] - v1[a - 1]) * (v2[b] - v2[b - 1])
    for b in range(1, len(t2)):
        d2sq[t2[b]] += (v2[b] - v2[b - 1]) ** 2
        n2[t2[b]] += 1
    ref_x = x[~np.isnan(x)][0]
    ref_y = y[~np.isnan(y)][0]
    for i in range(n):
        for ms in xa.LEADER_RET_MS:
            k = ms * 1_000_000 // step
            out[xa._ret_name(ms)][i] = x[i] - x[i - k] if i >= k else math.nan
        if i + 1 < W:
            continue
        win = range(i - W + 1, i + 1)
        rho = np.full(K + 1, np.nan)
        for k in range(K + 1):
            ps = [(rl[j - k], rf[j]) for j in win if j - k >= 0 and not math.isnan(rl[j - k]) and not math.isnan(rf[j])]
            if len(ps) >= need:
                a, b = np.array(ps).T
                if has_var(list(a)) and has_var(list(b)):
                    rho[k] = np.corrcoef(a, b)[0, 1]
        for ms in xa.XCORR_LAGS_MS:
            out[f"xa_xcorr_lag{ms}ms"][i] = rho[ms * 1_000_000 // step]
        if not np.all(np.isnan(rho)):
            best = max(range(K + 1), key=lambda k: (abs(rho[k]) if not math.isnan(rho[k]) else -1.0, -k))
            out["xa_leadlag_s"][i] = best * step / 1e9
            out["xa_peak_xcorr"][i] = rho[best]
        lo = i - W + 1
        out["xa_hy_cov_300s"][i] = credit[lo: i + 1].sum()
        s1, s2 = d1sq[lo: i + 1].sum(), d2sq[lo: i + 1].sum()
        if n1[lo: i + 1].sum() and n2[lo: i + 1].sum() and s1 * s2 > 0:
            out["xa_hy_corr_300s"][i] = credit[lo: i + 1].sum() / math.sqrt(s1 * s2)
        ps = [(x[j] - ref_x, y[j] - ref_y) for j in win if not math.isnan(x[j]) and not math.isnan(y[j])]
        if len(ps) >= need:
            a, b = np.array(ps).T
            if has_var(list(a)):
                beta = np.cov(a, b, bias=True)[0, 1] / np.var(a)
                out["xa_beta_300s"][i] = beta
                s = b - beta * a
                if not math.isnan(x[i]) and not math.isnan(y[i]) and has_var(list(s)):
                    out["xa_divergence_z_300s"][i] = ((y[i] - ref_y) - beta * (x[i] - ref_x) - s.mean()) / s.std()
    return out


def test_specs_declare_the_cross_asset_table_and_match_the_columns():
    assert [s.name for s in xa.FEATURES] == xa.COLUMNS
    for s in xa.FEATURES:
        assert s.table == "cross_asset" and s.forward_reach == 0 and s.name.startswith("xa_") and s.unit
    assert set(xa.COLUMNS) <= set(catalog.by_name())
    f, leader = pair(0, 100)
    out = xa.compute(f, leader)
    assert list(out) == xa.COLUMNS
    assert all(v.shape == (100,) and v.dtype == np.float64 for v in out.values())
    with pytest.raises(ValueError):
        xa.compute(f, leader.take(slice(0, 99)))


@pytest.mark.parametrize("seed,adversarial", [(0, False), (1, True), (2, True)])
def test_every_feature_equals_the_brute_force_reference(seed, adversarial):
    f, leader = pair(seed, adversarial=adversarial)
    got = xa.compute(f, leader, window_s=WIN_S)
    ref = reference(f, leader)
    for name in xa.COLUMNS:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-7, atol=1e-13, err_msg=name)
        # adversarial frames have too few return pairs for the 50% rule of the correlations; the rest is finite
        if not adversarial or not name.startswith(("xa_xcorr", "xa_leadlag", "xa_peak")):
            assert np.isfinite(got[name]).sum() > (5 if adversarial else 20), name


def test_sub_step_lags_are_nan_on_a_coarse_grid():
    f, leader = pair(3, 120)
    for fr in (f, leader):
        fr.step_ns = 1_000_000_000
        fr.t_ns = 1_767_571_200_000_000_000 + 1_000_000_000 * np.arange(1, 121, dtype=np.int64)
    leader.t_ns = f.t_ns
    out = xa.compute(f, leader, window_s=30.0)
    assert np.isnan(out["xa_leader_ret_500ms"]).all() and np.isnan(out["xa_xcorr_lag1500ms"]).all()
    assert np.isfinite(out["xa_leader_ret_1s"]).sum() > 100 and np.isfinite(out["xa_xcorr_lag1000ms"]).sum() > 50
    ref = reference(f, leader, window_s=30.0)
    for name in ("xa_leader_ret_2s", "xa_xcorr_lag3000ms", "xa_leadlag_s", "xa_hy_cov_300s", "xa_beta_300s"):
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-7, atol=1e-13, err_msg=name)


def brute_force_hy(t1, p1, t2, p2):
    cov = 0.0
    for k in range(1, len(t1)):
        for j in range(1, len(t2)):
            if t1[k - 1] < t2[j] and t2[j - 1] < t1[k]:
                cov += (p1[k] - p1[k - 1]) * (p2[j] - p2[j - 1])
    den = math.sqrt(sum(d * d for d in np.diff(p1)) * sum(d * d for d in np.diff(p2)))
    return cov, cov / den


@pytest.mark.parametrize("seed", range(6))
def test_hayashi_yoshida_equals_the_pair_sum(seed):
    """Random asynchronous tick series, with shared times (ties) and one series much sparser than the other."""
    rng = np.random.default_rng(seed)
    n, m = rng.integers(2, 200), rng.integers(2, 60)
    t1 = np.unique(rng.integers(0, 500, n))
    t2 = np.unique(np.r_[rng.integers(0, 500, m), t1[: len(t1) // 3]])
    common = np.cumsum(rng.normal(0, 1, 501))
    p1 = common[t1] + rng.normal(0, 0.3, len(t1))
    p2 = 0.7 * common[t2] + rng.normal(0, 0.3, len(t2))
    if len(t1) < 2 or len(t2) < 2:
        return
    got = xa.hayashi_yoshida(t1, p1, t2, p2)
    ref = brute_force_hy(t1, p1, t2, p2)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    # synchronous observations: HY is the realized covariance
    t = np.arange(50)
    cov, _ = xa.hayashi_yoshida(t, common[:50], t, 2 * common[:50])
    assert cov == pytest.approx(2 * np.sum(np.diff(common[:50]) ** 2))


def test_rolling_hy_over_the_whole_sample_is_the_standalone_estimator():
    f, leader = pair(4, 300, adversarial=True)
    out = xa.compute(f, leader, window_s=30.0)  # 300 rows: the last row's window is the whole sample
    t1, v1 = ticks(log_mid(leader))
    t2, v2 = ticks(log_mid(f))
    cov, corr = xa.hayashi_yoshida(t1, v1, t2, v2)
    assert out["xa_hy_cov_300s"][-1] == pytest.approx(cov, rel=1e-9, abs=1e-15)
    assert out["xa_hy_corr_300s"][-1] == pytest.approx(corr, rel=1e-9)


@pytest.mark.parametrize("adversarial", [False, True])
def test_no_feature_reads_the_future_of_either_frame(adversarial):
    f, leader = pair(5, 220, adversarial=adversarial)
    base = xa.compute(f, leader, window_s=WIN_S)
    rng = np.random.default_rng(1)
    for t in (0, 35, 120, 218):
        later = slice(t + 1, None)
        g, lg = f.take(slice(None)), leader.take(slice(None))
        for fr in (g, lg):
            for arr in (fr.bid_px, fr.ask_px):
                arr[later] = arr[later] * (1 + rng.normal(0, 0.01, arr[later].shape))
            fr.valid[later] = rng.random(fr.valid[later].shape) < 0.7
        out = xa.compute(g, lg, window_s=WIN_S)
        for name in base:
            np.testing.assert_array_equal(out[name][: t + 1], base[name][: t + 1], err_msg=f"{name} at t={t}")


def test_incremental_and_chunked_equal_batch():
    f, leader = pair(6, 150, adversarial=True)
    batch = xa.compute(f, leader, window_s=WIN_S)
    st = xa.new_state()
    rows = [xa.compute(f.take(slice(i, i + 1)), leader.take(slice(i, i + 1)), st, window_s=WIN_S) for i in range(f.n)]
    st = xa.new_state()
    bounds = [0, 1, 40, 41, 97, 150]
    chunks = [xa.compute(f.take(slice(a, b)), leader.take(slice(a, b)), st, window_s=WIN_S)
              for a, b in zip(bounds, bounds[1:])]
    for name in batch:
        np.testing.assert_array_equal(np.concatenate([r[name] for r in rows]), batch[name], err_msg=f"{name} rows")
        np.testing.assert_array_equal(np.concatenate([c[name] for c in chunks]), batch[name], err_msg=f"{name} chunks")


def sim_frame(path, sym, tick=0.01):
    """A depth-1 frame from the simulator's recorded top of book at 100 ms."""
    b = path[f"best_bid__{sym}"] * tick
    a = path[f"best_ask__{sym}"] * tick
    n = len(b)
    z = np.zeros(n)
    t = path["t_ns"].astype(np.int64)
    return MarketFrame(sym, STEP, t, t, np.ones(n, bool), b[:, None].astype(float), np.ones((n, 1)),
                       a[:, None].astype(float), np.ones((n, 1)), z, z, z.astype(np.int64), z.astype(np.int64), z, z,
                       np.full(n, np.nan), z.astype(np.int64))


@pytest.fixture(scope="module")
def sim_path():
    from simulator.l2 import MarketSimulator

    sim = MarketSimulator(seed=11)
    sim.advance(sim.config.start_ns + 1200 * 10**9)  # 20 minutes
    return sim, sim.latent_path()


@pytest.mark.parametrize("follower", ["ETH-USD", "SOL-USD"])
def test_estimated_lead_lag_is_the_planted_lag(sim_path, follower):
    sim, path = sim_path
    planted = sim.config.product(follower).leader
    out = xa.compute(sim_frame(path, follower), sim_frame(path, "BTC-USD"))
    ll = out["xa_leadlag_s"]
    est = ll[np.isfinite(ll)]
    assert len(est) > 8000  # every row once the 300 s window is full (20 min at 100 ms)
    share = np.mean(est == planted.lag_s)
    print(f"\n{follower}: planted lag {planted.lag_s} s, estimated median {np.median(est)} s, "
          f"share of rows at the planted lag {share:.4f}, median peak corr {np.nanmedian(out['xa_peak_xcorr']):.3f}")
    assert np.median(est) == planted.lag_s and share >= 0.95
    lag_col = f"xa_xcorr_lag{int(planted.lag_s * 1000)}ms"
    assert np.nanmedian(out[lag_col]) > 0.3 and abs(np.nanmedian(out["xa_xcorr_lag0ms"])) < 0.05


def rebuilt_frames(seconds: int = 900, seed: int = 11):
    """Frames on the 100 ms grid from the exact book rebuild (``kernels.book.BookRebuilder``) of the simulator's
    venue L2 stream as a perfect collector records it (``simulator.normalized``: start marker and snapshot, then
    every delta received 1 ms after the venue time)."""
    from kernels.book import BookRebuilder
    from kernels.frame import build_frame
    from simulator.l2 import MarketSimulator
    from simulator.normalized import event_rows, scales, start_rows

    sim = MarketSimulator(seed=seed, record_latent=False)
    starts = {s: start_rows(sim, s, sim.now_ns) for s in sim.symbols}
    events = sim.advance(sim.now_ns + seconds * 10**9)
    frames = {}
    for name in sim.symbols:
        price_exp, size_exp, tick, _ = scales(sim.products[sim.symbol_index(name)])
        rows, _ = event_rows(sim, events, name)
        b = BookRebuilder(tick, depth=5, grids_ns=(STEP,), width=1 << 16, event_time=False)
        b.process(starts[name])
        grid = b.process(rows).grids[STEP]
        frames[name] = build_frame(name, grid, None, price_exp, size_exp, STEP)
    t = frames[sim.symbols[0]].t_ns
    for fr in frames.values():
        t = np.intersect1d(t, fr.t_ns)
    return sim, {name: fr.take(np.searchsorted(fr.t_ns, t)) for name, fr in frames.items()}


def test_lead_lag_on_rebuilt_books():
    """The same estimate through the whole book path: venue deltas -> exact rebuild -> 100 ms grid frames."""
    sim, frames = rebuilt_frames()
    for follower in ("ETH-USD", "SOL-USD"):
        planted = sim.config.product(follower).leader
        out = xa.compute(frames[follower], frames["BTC-USD"])
        est = out["xa_leadlag_s"][np.isfinite(out["xa_leadlag_s"])]
        share = np.mean(est == planted.lag_s)
        print(f"\nrebuilt books, {follower}: planted {planted.lag_s} s, median estimate {np.median(est)} s, "
              f"share at the planted lag {share:.4f} of {len(est)} rows")
        assert len(est) > 5000 and np.median(est) == planted.lag_s and share >= 0.9

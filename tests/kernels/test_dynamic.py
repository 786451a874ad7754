"""Dynamic features against a slow, obviously-right reference (plain Python loops and pandas rolling), hand
computed OFI, chunked = batch on long and gapped frames, and the planted OFI -> return relation on simulator
output."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from kernel_frames import assert_chunked_equals_batch, random_frame

from kernels import dynamic as D
from kernels import trade_flow as T
from kernels.frame import MarketFrame

nan = math.nan


def level(f, i, m, bid):
    px, sz = (f.bid_px, f.bid_sz) if bid else (f.ask_px, f.ask_sz)
    if m < px.shape[1] and sz[i, m] > 0 and not math.isnan(px[i, m]):
        return px[i, m], sz[i, m]
    return (-math.inf if bid else math.inf), 0.0


def rolling_sum_or_nan(f, x, seconds):
    """Sum over (t - W, t]; NaN if any value in the window is NaN (pandas time-based rolling)."""
    idx = pd.to_datetime(f.t_ns)
    s = pd.Series(x, index=idx)
    total = s.fillna(0.0).rolling(pd.Timedelta(seconds=seconds)).sum().to_numpy()
    bad = s.isna().astype(float).rolling(pd.Timedelta(seconds=seconds)).sum().to_numpy()
    return np.where(bad > 0, nan, total)


def reference(f: MarketFrame) -> dict:
    n = f.n
    out = {}
    e = np.full((n, D.LEVELS), nan)
    for i in range(1, n):
        if not (f.valid[i] and f.valid[i - 1]):
            continue
        for m in range(D.LEVELS):
            b, qb = level(f, i, m, True)
            pb, pqb = level(f, i - 1, m, True)
            a, qa = level(f, i, m, False)
            pa, pqa = level(f, i - 1, m, False)
            e[i, m] = ((qb if b >= pb else 0.0) - (pqb if b <= pb else 0.0)
                       - (qa if a <= pa else 0.0) + (pqa if a >= pa else 0.0))
    for m in range(D.LEVELS):
        out[f"ofi_L{m}"] = e[:, m]
    out["ofi_depth5"] = np.array([sum(e[i, :5]) for i in range(n)])
    out["ofi_depth10"] = np.array([sum(e[i, :10]) for i in range(n)])
    for w in D.OFI_WINDOWS_S:
        out[f"ofi_sum_{w}s"] = rolling_sum_or_nan(f, e[:, 0], w)
    for h in D.OFI_HALF_LIVES_S:
        s, col = 0.0, []
        for i in range(n):
            if math.isnan(e[i, 0]):
                s = 0.0
                col.append(nan)
            else:
                s = s * 0.5 ** ((f.t_ns[i] - f.t_ns[i - 1]) / (h * 1e9)) + e[i, 0]
                col.append(s)
        out[f"ofi_ewm_{h}s"] = np.array(col)

    def touch(i):
        (b, qb), (a, qa) = level(f, i, 0, True), level(f, i, 0, False)
        if not f.valid[i] or qb == 0 or qa == 0:
            return nan, nan, nan
        return (b + a) / 2, (a * qb + b * qa) / (qb + qa), a - b

    mid, micro, spread = (np.array(c) for c in zip(*[touch(i) for i in range(n)]))
    dt = np.r_[nan, np.diff(f.t_ns) / 1e9]
    for name, x in (("mid", mid), ("microprice", micro)):
        v = np.r_[nan, np.diff(x)] / dt
        out[f"{name}_velocity"] = v
        out[f"{name}_accel"] = np.r_[nan, np.diff(v)] / dt
    out["spread_change"] = np.r_[nan, np.diff(spread)]
    for side, bid in (("bid", True), ("ask", False)):
        depth = [sum(level(f, i, m, bid)[1] for m in range(5)) if f.valid[i] else nan for i in range(n)]
        out[f"{side}_depth5_change"] = np.r_[nan, np.diff(depth)]
        depl = np.full(n, nan)
        for i in range(1, n):
            if f.valid[i] and f.valid[i - 1]:
                p, q = level(f, i, 0, bid)
                pp, pq = level(f, i - 1, 0, bid)
                worse = p < pp if bid else p > pp  # the queue's price level was consumed or cancelled away
                depl[i] = max(pq - q, 0.0) if p == pp else (pq if worse else 0.0)
        out[f"{side}_queue_depletion"] = depl / dt
        out[f"{side}_queue_depletion_1s"] = rolling_sum_or_nan(f, depl, 1) / 1.0
    return out


def assert_matches(got: dict, want: dict, rtol=1e-9, atol=1e-9):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("seed,adversarial,depth,step_ms", [(0, False, 20, 100), (1, True, 20, 100),
                                                           (2, True, 3, 100), (3, True, 20, 1000),
                                                           (4, True, 1, 250)])
def test_dynamic_matches_reference(seed, adversarial, depth, step_ms):
    f = random_frame(600, depth=depth, seed=seed, adversarial=adversarial, step_ns=step_ms * 1_000_000)
    got = D.compute(f)
    assert len(D.FEATURES) >= 23 and set(got) == {s.name for s in D.FEATURES}
    assert_matches(got, reference(f))
    assert not np.isnan(got["ofi_sum_10s"]).all() or adversarial  # the windows do produce values


def test_gapped_grid_and_invalid_runs_match_reference():
    """Missing grid rows (time jumps) and a long invalid run: windows are in time, not rows."""
    f = random_frame(900, seed=5)
    f.valid[300:340] = False
    keep = np.r_[0:100, 130:131, 180:600, 605:900]
    g = f.take(keep)
    assert_matches(D.compute(g), reference(g))
    out = D.compute(g)
    i = int(np.searchsorted(g.t_ns, f.t_ns[340]))  # first whole row after the invalid run
    assert np.isnan(out["ofi_L0"][i]) and not np.isnan(out["ofi_L0"][i + 1])
    back = np.searchsorted(g.t_ns, g.t_ns[i] + 10 * 10**9)  # the 10 s window needs the run to leave it
    assert np.isnan(out["ofi_sum_10s"][back - 1]) and not np.isnan(out["ofi_sum_10s"][back])


def one_level_frame(rows, step_ns=100_000_000):
    """rows: (bid_px, bid_sz, ask_px, ask_sz, valid); a size 0 means an empty side."""
    n = len(rows)
    arr = np.array([r[:4] for r in rows], dtype=float)
    f = random_frame(n, depth=2, seed=0, step_ns=step_ns)
    f.bid_px[:] = nan
    f.bid_sz[:] = 0.0
    f.ask_px[:] = nan
    f.ask_sz[:] = 0.0
    for i, (bp, bq, ap, aq) in enumerate(arr):
        if bq > 0:
            f.bid_px[i, 0], f.bid_sz[i, 0] = bp, bq
        if aq > 0:
            f.ask_px[i, 0], f.ask_sz[i, 0] = ap, aq
    f.valid[:] = [r[4] for r in rows]
    return f


def test_ofi_hand_computed():
    f = one_level_frame([
        (100.0, 2, 101.0, 3, True),  # 0: no previous row
        (100.0, 5, 101.0, 1, True),  # 1: bid +5 -2, ask -1 +3            -> 5
        (100.5, 1, 101.0, 1, True),  # 2: bid improved: +1; ask -1 +1       -> 1
        (99.5, 4, 100.0, 2, True),  # 3: bid fell: -1; ask fell: -2         -> -3
        (0, 0, 100.5, 2, True),  # 4: bid side emptied: -4; ask rose: +2    -> -2
        (99.0, 3, 100.5, 2, True),  # 5: bid reappears: +3; ask -2 +2       -> 3
        (99.0, 3, 100.5, 2, False),  # 6: book not whole                    -> NaN
        (99.0, 3, 100.5, 2, True),  # 7: previous row not whole             -> NaN
        (99.0, 3, 100.5, 2, True),  # 8: nothing changed                    -> 0
        (0, 0, 0, 0, True),  # 9: both sides emptied: -3 + 2                -> -1
        (0, 0, 0, 0, True),  # 10: still empty                              -> 0
    ])
    out = D.compute(f)
    want = [nan, 5, 1, -3, -2, 3, nan, nan, 0, -1, 0]
    np.testing.assert_array_equal(out["ofi_L0"], want)
    np.testing.assert_array_equal(out["ofi_L1"], [nan, 0, 0, 0, 0, 0, nan, nan, 0, 0, 0])  # no level 1
    np.testing.assert_array_equal(out["ofi_depth5"], want)
    # depletion at the touch, per second (0.1 s rows): ask queue 3 -> 1 at row 1, bid queue 1 gone at row 3
    np.testing.assert_allclose(out["ask_queue_depletion"][1:6], [20.0, 0.0, 0.0, 20.0, 0.0])
    np.testing.assert_allclose(out["bid_queue_depletion"][1:6], [0.0, 0.0, 10.0, 40.0, 0.0])
    np.testing.assert_allclose(out["mid_velocity"][1:4], [0.0, 2.5, -10.0])  # mids 100.5, 100.5, 100.75, 99.75
    # decayed sum, half-life 1 s over 0.1 s steps: S_2 = 5 * 2^-0.1 + 1
    assert out["ofi_ewm_1s"][2] == pytest.approx(5 * 2 ** -0.1 + 1, rel=1e-14)
    assert out["ofi_sum_1s"][5] == nan or np.isnan(out["ofi_sum_1s"][5])  # row 0 (NaN) is still in the window


def test_long_frame_chunked_equals_batch():
    """Chunked (with carried state, several ring wraps and exact recomputes) equals the batch bit for bit."""
    f = random_frame(2500, seed=6, adversarial=True)
    _, st = assert_chunked_equals_batch(D, f, [0, 7, 700, 701, 1999, 2500])
    with pytest.raises(ValueError):  # a row that goes back in time is refused
        D.compute(f.take(slice(2400, 2401)), st)


# --------------------------------------------------------------------------------------------------------
# The planted OFI -> return relation on simulator output
# --------------------------------------------------------------------------------------------------------
SIM_SECONDS = 1200
SIM_STEP_NS = 1_000_000_000


def simulated_frames(seed: int = 11, seconds: int = SIM_SECONDS, step_ns: int = SIM_STEP_NS) -> list[MarketFrame]:
    """One simulator run -> one MarketFrame per symbol (rows as a perfect collector records them,
    ``simulator.normalized``; book rebuilt by ``kernels.book.BookRebuilder``, framed by ``kernels.frame.build_frame``)."""
    from kernels.book import BookRebuilder, TopN
    from kernels.frame import build_frame
    from simulator.l2 import MarketSimulator
    from simulator.normalized import event_rows, scales, start_rows

    sim = MarketSimulator(seed=seed)
    exps = [scales(p) for p in sim.products]
    rbs = [BookRebuilder(exps[k][2], depth=20, grids_ns=(step_ns,), event_time=False) for k in range(len(exps))]
    tops = [[] for _ in rbs]
    trades = [[] for _ in rbs]
    for k, name in enumerate(sim.symbols):
        rbs[k].process(start_rows(sim, name, sim.now_ns))
    end = sim.now_ns + seconds * 10**9
    while sim.now_ns < end:
        ev = sim.advance(min(end, sim.now_ns + 60 * 10**9))
        for k, name in enumerate(sim.symbols):
            rows, tr = event_rows(sim, ev, name)
            tops[k].append(rbs[k].process(rows).grids[step_ns])
            trades[k].append(tr)
    out = []
    for k, name in enumerate(sim.symbols):
        tops[k].append(rbs[k].flush(end)[step_ns])
        top = TopN.concat([x for x in tops[k] if len(x)])
        out.append(build_frame(name, top, np.concatenate(trades[k]), exps[k][0], exps[k][1], step_ns))
    return out


def hac_t(y, x, lags):
    ok = ~np.isnan(y) & ~np.isnan(x)
    fit = sm.OLS(y[ok], sm.add_constant(x[ok])).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    return fit.params[1], fit.tvalues[1], int(ok.sum())


def test_planted_ofi_predicts_the_next_5s_return_on_simulator_output():
    """The simulator plants a persistent latent signal s (OU, half-life 8 s) that drives the drift of the
    efficient price, the side of market orders (P(buy) = (1 + tanh(0.35 s)) / 2) and of limit orders. So the
    order flow of the last second must predict the mid return of the next 5 s with a positive sign.

    Measured (20 simulated minutes, 1 s grid, seed 11; HAC t, 10 lags):
    OFI-1s t = 2.34 / 1.06 / 2.53 (BTC / ETH / SOL), all positive; signed trade count 1 s t = 3.20 / 3.10 /
    3.91. Signed *volume* is not a reliable predictor in this simulator: stale-quote pick-offs (about half the
    trades, whole-level sizes) trade against the signal, so net signed volume is about flat against it
    (t = -0.93 / -1.57 / -0.33) while the uninformed flow alone is strongly aligned with it. We assert the
    sign per symbol and a combined (Stouffer) t > 3 over the three independent symbols.
    """
    frames = simulated_frames()
    h = 5  # rows of 1 s
    stats = {"ofi_sum_1s": [], "tf_signed_count_1s": [], "tf_signed_volume_1s": []}
    for f in frames:
        assert f.n >= SIM_SECONDS - 5 and f.valid.all()
        cols = {**D.compute(f), **T.compute(f)}
        mid = (f.bid_px[:, 0] + f.ask_px[:, 0]) / 2
        fwd = np.full(f.n, nan)
        fwd[:-h] = 1e4 * (mid[h:] / mid[:-h] - 1)  # the label: next 5 s mid return, bps (test side only)
        for name in stats:
            stats[name].append(hac_t(fwd, cols[name], lags=2 * h))
    for name, rows in stats.items():
        combined = sum(t for _, t, _ in rows) / math.sqrt(len(rows))
        print(f"\n{name}: " + ", ".join(f"{f.symbol} n={n} beta={b:.3g} t={t:.2f}" for f, (b, t, n) in
                                        zip(frames, rows)) + f"; combined t={combined:.2f}")
        if name != "tf_signed_volume_1s":
            assert all(b > 0 for b, _, _ in rows), name
            assert combined > 3, name

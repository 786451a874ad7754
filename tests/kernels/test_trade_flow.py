"""Trade-flow features against a slow, obviously-right reference (plain Python loops over explicit windows),
hand-computed cases, and chunked = batch on long frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kernel_frames import assert_chunked_equals_batch, random_frame

from kernels import trade_flow as T

nan = math.nan


def window_rows(f, i, seconds):
    """Indices j <= i with t_i - W < t_j <= t_i."""
    lo = f.t_ns[i] - seconds * 10**9
    return [j for j in range(i + 1) if f.t_ns[j] > lo]


def ratio(a, b):
    return a / b if b > 0 else nan


def reference(f) -> dict:
    """The module's formulas row by row; the invalid-row rule spelled out: invalid rows are left out of every
    window, a window sum is NaN while its window holds one, and every feature is NaN on an invalid row."""
    n = f.n
    cols = {name: np.full(n, nan) for name in (s.name for s in T.FEATURES)}
    B, S, NB, NS, N = f.buy_volume, f.sell_volume, f.buy_count, f.sell_count, f.notional
    ok = [bool(v) for v in f.valid]

    def rows_of(i, seconds):  # the window's valid rows, and whether it holds an invalid one
        r = window_rows(f, i, seconds)
        return [j for j in r if ok[j]], not all(ok[j] for j in r)

    def mid(i):
        if not ok[i] or f.bid_sz[i, 0] == 0 or f.ask_sz[i, 0] == 0:
            return nan
        return (f.bid_px[i, 0] + f.ask_px[i, 0]) / 2

    def mean_size(rows):
        return ratio(sum(B[j] + S[j] for j in rows), sum(NB[j] + NS[j] for j in rows))

    large = np.zeros(n)
    for i in range(n):
        thr = mean_size(rows_of(i - 1, 60)[0]) if i > 0 else nan  # the window after the previous row
        big = f.max_trade[i] > 0 and f.max_trade[i] >= T.LARGE_K * thr
        large[i] = f.max_trade[i] if ok[i] and big else 0.0
    for i in range(n):
        if not ok[i]:
            continue  # every feature stays NaN
        cols["tf_signed_volume"][i] = B[i] - S[i]
        for w in T.WINDOWS_S:
            r, unknown = rows_of(i, w)
            b, s = sum(B[j] for j in r), sum(S[j] for j in r)
            cols[f"tf_signed_volume_{w}s"][i] = nan if unknown else b - s
            cols[f"tf_volume_{w}s"][i] = nan if unknown else b + s
            cols[f"tf_imbalance_{w}s"][i] = ratio(b - s, b + s)
            cols[f"tf_signed_count_{w}s"][i] = nan if unknown else sum(NB[j] - NS[j] for j in r)
        for w in T.COUNT_WINDOWS_S:
            r, _ = rows_of(i, w)
            nb, ns = sum(NB[j] for j in r), sum(NS[j] for j in r)
            cols[f"tf_count_imbalance_{w}s"][i] = ratio(nb - ns, nb + ns)
        r10, unknown10 = rows_of(i, 10)
        cols["tf_trade_rate_10s"][i] = nan if unknown10 else sum(NB[j] + NS[j] for j in r10) / 10
        r60, _ = rows_of(i, 60)
        cols["tf_avg_trade_size_60s"][i] = mean_size(r60)
        for w in T.VWAP_WINDOWS_S:
            r, _ = rows_of(i, w)
            vwap = ratio(sum(N[j] for j in r), sum(B[j] + S[j] for j in r))
            cols[f"tf_vwap_{w}s"][i] = vwap
            cols[f"tf_mid_vwap_dev_bps_{w}s"][i] = 1e4 * (mid(i) - vwap) / vwap
        cols["tf_large_trade_share_60s"][i] = ratio(sum(large[j] for j in r60), sum(B[j] + S[j] for j in r60))
    return cols


def assert_matches(got, want, rtol=1e-9, atol=1e-9):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


def with_large_trades(f, seed):
    """Make some buckets' largest trade big (the random frames' max_trade is the bucket volume)."""
    rng = np.random.default_rng(seed)
    hit = rng.random(f.n) < 0.05
    f.buy_volume[hit] += 10.0
    f.buy_count[hit] += 1
    f.max_trade[hit] = np.maximum(f.max_trade[hit], 10.0)
    f.notional[hit] += 10.0 * np.nan_to_num(f.last_price[hit], nan=100.0)
    return f


@pytest.mark.parametrize("seed,adversarial,step_ms,n", [(0, False, 100, 900), (1, True, 100, 900),
                                                       (2, True, 1000, 300), (3, True, 500, 400)])
def test_trade_flow_matches_reference(seed, adversarial, step_ms, n):
    f = with_large_trades(random_frame(n, seed=seed, adversarial=adversarial, step_ns=step_ms * 1_000_000), seed)
    got = T.compute(f)
    assert set(got) == {s.name for s in T.FEATURES}
    assert_matches(got, reference(f))
    assert np.nanmax(got["tf_large_trade_share_60s"]) > 0  # the large-trade path is exercised


def test_no_trades_and_gapped_grid():
    f = random_frame(700, seed=4)
    f.buy_volume[200:500] = f.sell_volume[200:500] = f.notional[200:500] = f.max_trade[200:500] = 0.0
    f.buy_count[200:500] = f.sell_count[200:500] = 0
    g = f.take(np.r_[0:150, 170:171, 190:650])
    got = T.compute(g)
    assert_matches(got, reference(g))
    # a window with no trades: exact zeros for sums (no drift residue) and NaN for ratios
    quiet = int(np.searchsorted(g.t_ns, f.t_ns[499]))
    for w in (1, 10):
        assert got[f"tf_volume_{w}s"][quiet] == 0.0 and got[f"tf_signed_volume_{w}s"][quiet] == 0.0
        assert np.isnan(got[f"tf_imbalance_{w}s"][quiet])
    assert np.isnan(got["tf_vwap_10s"][quiet]) and np.isnan(got["tf_mid_vwap_dev_bps_10s"][quiet])


def test_an_invalid_row_blanks_the_sums_of_every_window_that_holds_it():
    f = random_frame(400, seed=9, step_ns=100_000_000)
    f.valid[:] = True
    f.valid[200] = False
    out = T.compute(f)
    assert_matches(out, reference(f))
    for w in T.WINDOWS_S:
        held = (f.t_ns > f.t_ns[200] - 1) & (f.t_ns < f.t_ns[200] + w * 10**9)  # windows (t - W, t] holding row 200
        assert np.isnan(out[f"tf_volume_{w}s"][held]).all() and not np.isnan(out[f"tf_volume_{w}s"][~held]).any()
        assert (~np.isnan(out[f"tf_imbalance_{w}s"][held & f.valid])).any()  # ratios go on over the valid rows
    assert all(np.isnan(out[name][200]) for name in out)


def test_hand_computed():
    f = random_frame(4, seed=0, step_ns=1_000_000_000)
    f.buy_volume[:] = [1.0, 0.0, 2.0, 0.0]
    f.sell_volume[:] = [0.0, 3.0, 0.0, 0.0]
    f.buy_count[:] = [1, 0, 1, 0]
    f.sell_count[:] = [0, 1, 0, 0]
    f.max_trade[:] = [1.0, 3.0, 2.0, 0.0]
    f.notional[:] = [100.0, 303.0, 198.0, 0.0]
    out = T.compute(f)
    np.testing.assert_array_equal(out["tf_signed_volume"], [1.0, -3.0, 2.0, 0.0])
    np.testing.assert_array_equal(out["tf_signed_volume_1s"], [1.0, -3.0, 2.0, 0.0])  # 1 s = one row here
    np.testing.assert_allclose(out["tf_signed_volume_10s"], [1.0, -2.0, 0.0, 0.0])
    np.testing.assert_allclose(out["tf_imbalance_10s"], [1.0, -0.5, 0.0, 0.0])
    np.testing.assert_allclose(out["tf_vwap_10s"], [100.0, 403 / 4, 601 / 6, 601 / 6])
    np.testing.assert_allclose(out["tf_signed_count_10s"], [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(out["tf_imbalance_1s"], [1.0, -1.0, 1.0, nan])
    # row 1: 3 >= 4 x mean size 1 of the history before it? no. Row 2: 2 >= 4 x 2? no.
    np.testing.assert_array_equal(out["tf_large_trade_share_60s"], [0.0, 0.0, 0.0, 0.0])


def test_long_frame_chunked_equals_batch():
    """Long enough for the 60 s ring to wrap and recompute several times."""
    f = with_large_trades(random_frame(2600, seed=7, adversarial=True), 7)
    assert_chunked_equals_batch(T, f, [0, 1, 601, 602, 1800, 2600])

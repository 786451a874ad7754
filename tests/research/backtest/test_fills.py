"""The numba fill kernels against pure-Python references, on hand cases, random and adversarial inputs."""

from __future__ import annotations

import numpy as np
import pytest

from l2lab.schema import FLAG_DUPLICATE, FLAG_FRAME_END, L2_DELETE, L2_GAP, L2_UPDATE, SIDE_ASK, SIDE_BID
from research.backtest.fills import passive_fills, walk_book


# -- references ------------------------------------------------------------------------------------------------
def ref_walk(px, sz, qty):
    fills = []
    for p, s in zip(px.tolist(), sz.tolist()):
        if s <= 0 or qty <= 0:
            break
        f = min(qty, s)
        fills.append((p, f))
        qty -= f
    filled = sum(f for _, f in fills)
    return filled, sum(p * f for p, f in fills), len(fills)


def ref_passive(side, price, qty, queue, displayed, t_end, events, trades):
    """The queue model of research.backtest.fills, written as a plain merge of two event lists."""
    merged = [(t, 0, ("trade", s, p, v)) for t, s, p, v in trades]
    merged += [(t, 1, ("book", k, sd, p, v, fl)) for t, k, sd, p, v, fl in events]
    merged.sort(key=lambda x: (x[0], x[1]))  # trades before book rows at equal times; stable otherwise
    fills, rem, q, disp, traded, gap = [], float(qty), float(queue), float(displayed), 0.0, False
    last_cross = (None, 0.0)
    hit = SIDE_ASK if side == SIDE_BID else SIDE_BID
    better = (lambda a, b: a < b) if side == SIDE_BID else (lambda a, b: a > b)
    for t, _, ev in merged:
        if rem <= 0 or t > t_end:
            break
        if ev[0] == "trade":
            _, s, p, v = ev
            if s != hit:
                continue
            if p == price:
                used = min(q, v)
                q -= used
                f = min(v - used, rem)
                traded += v - f
            elif better(p, price):
                f = min(v, rem)
                q = 0.0
            else:
                f = 0.0
            if f > 0:
                fills.append((t, f))
                rem -= f
        else:
            _, k, sd, p, v, fl = ev
            if fl & FLAG_DUPLICATE:
                continue
            if k == L2_GAP:
                gap = True
                break
            s = 0.0 if k == L2_DELETE else float(v)
            if sd == side and p == price:
                d = disp - s
                if d > 0:
                    explained = min(d, traded)
                    traded -= explained
                    if d - explained > 0 and disp > 0:
                        q -= (d - explained) * q / disp
                disp = s
                q = min(q, disp)
            elif sd != side and (p <= price if side == SIDE_BID else p >= price):
                added = s - last_cross[1] if last_cross[0] == p else s
                last_cross = (p, s)
                if added > 0:
                    used = min(q, added)
                    q -= used
                    f = min(added - used, rem)
                    if f > 0:
                        fills.append((t, f))
                        rem -= f
    return fills, rem, q, gap


def run_kernel(side, price, qty, queue, displayed, t_end, events, trades):
    ev = np.array(events, dtype=[("ts", "i8"), ("kind", "i1"), ("side", "i1"), ("price", "i8"), ("size", "i8"),
                                 ("flags", "u1")]) if events else None
    tr = np.array(trades, dtype=[("ts", "i8"), ("side", "i1"), ("price", "i8"), ("size", "i8")]) if trades else None
    e = lambda name, dt: ev[name].copy() if ev is not None else np.empty(0, dt)  # noqa: E731
    r = lambda name, dt: tr[name].copy() if tr is not None else np.empty(0, dt)  # noqa: E731
    out_ts = np.empty(len(events) + len(trades) + 1, np.int64)
    out_q = np.empty(len(out_ts))
    n, rem, q, gap = passive_fills(side, price, float(qty), float(queue), float(displayed), t_end,
                                   e("ts", np.int64), e("kind", np.int8), e("side", np.int8), e("price", np.int64),
                                   e("size", np.int64), e("flags", np.uint8), r("ts", np.int64), r("side", np.int8),
                                   r("price", np.int64), r("size", np.int64), out_ts, out_q)
    return list(zip(out_ts[:n].tolist(), out_q[:n].tolist())), rem, q, gap


# -- market orders ---------------------------------------------------------------------------------------------
def test_walk_three_levels_by_hand():
    px = np.array([100.00, 100.01, 100.02, 0.0])
    sz = np.array([1.0, 2.0, 3.0, 0.0])
    filled, notional, levels, last = walk_book(px, sz, 4.0)
    assert (filled, levels, last) == (4.0, 3, 100.02)
    assert notional == pytest.approx(400.04)
    assert walk_book(px, sz, 10.0)[0] == 6.0  # never beyond the displayed volume
    assert walk_book(px, sz, 0.0)[0] == 0.0
    assert walk_book(np.zeros(3), np.zeros(3), 1.0)[0] == 0.0  # empty side


def test_walk_matches_reference_on_random_books():
    rng = np.random.default_rng(1)
    for _ in range(500):
        n = int(rng.integers(0, 8))
        px = np.r_[100 + np.cumsum(rng.integers(1, 4, n)) * 0.01, np.zeros(3)]
        sz = np.r_[rng.choice([0.5, 1.0, 1.5, 2.0, 7.0], n), np.zeros(3)]
        qty = float(rng.choice([0.0, 0.5, 1.0, 3.0, 100.0]))
        got = walk_book(px, sz, qty)
        want = ref_walk(px, sz, qty)
        assert got[0] == pytest.approx(want[0]) and got[1] == pytest.approx(want[1]) and got[2] == want[2]


# -- resting orders --------------------------------------------------------------------------------------------
def test_fills_only_after_the_queue_ahead_traded():
    # buy at 9999 joins behind 5; trades at the bid: 3, 2 (queue done), then 2 fills 1 of our 1.5, then 1 fills 0.5
    trades = [(10, SIDE_ASK, 9999, 3), (20, SIDE_ASK, 9999, 2), (30, SIDE_ASK, 9999, 1), (40, SIDE_ASK, 9999, 2)]
    fills, rem, q, gap = run_kernel(SIDE_BID, 9999, 1.5, 5, 5, 100, [], trades)
    assert fills == [(30, 1.0), (40, 0.5)] and rem == 0 and q == 0 and not gap


def test_trades_on_the_other_side_or_worse_prices_do_not_fill():
    trades = [(10, SIDE_BID, 10000, 9), (20, SIDE_ASK, 10000, 9)]  # a taker buy; a taker sell above our bid
    fills, rem, q, _ = run_kernel(SIDE_BID, 9999, 1, 0, 0, 100, [], trades)
    assert fills == [] and rem == 1


def test_trade_through_fills_regardless_of_queue():
    fills, rem, q, _ = run_kernel(SIDE_BID, 9999, 4, 5, 5, 100, [], [(10, SIDE_ASK, 9998, 3)])
    assert fills == [(10, 3.0)] and rem == 1 and q == 0


def test_cancellations_ahead_advance_the_queue_proportionally():
    # joined behind 8 (displayed 8); 4 join behind us (12); 6 cancelled without trades: 6 x 8/12 = 4 were ahead
    events = [(10, L2_UPDATE, SIDE_BID, 9999, 12, FLAG_FRAME_END), (20, L2_UPDATE, SIDE_BID, 9999, 6, FLAG_FRAME_END)]
    fills, rem, q, _ = run_kernel(SIDE_BID, 9999, 2, 8, 8, 100, events, [])
    assert fills == [] and q == pytest.approx(4.0)
    # a trade of 5 at our price then fills 1 of our 2
    fills, rem, q, _ = run_kernel(SIDE_BID, 9999, 2, 8, 8, 100, events, [(30, SIDE_ASK, 9999, 5)])
    assert fills == [(30, 1.0)] and rem == pytest.approx(1.0)


def test_decrease_explained_by_trades_is_not_a_cancellation():
    # a trade of 1 at our price (queue 4 -> 3) and the book row that reflects it (4 -> 3): no cancellation
    events = [(10, L2_UPDATE, SIDE_BID, 9999, 3, FLAG_FRAME_END)]
    _, _, q, _ = run_kernel(SIDE_BID, 9999, 1, 4, 4, 100, events, [(10, SIDE_ASK, 9999, 1)])
    assert q == pytest.approx(3.0)


def test_crossing_liquidity_on_the_other_side_fills_and_gap_ends_the_order():
    events = [(10, L2_UPDATE, SIDE_ASK, 9999, 1, FLAG_FRAME_END), (20, L2_UPDATE, SIDE_ASK, 9999, 3, FLAG_FRAME_END),
              (30, L2_GAP, 0, 0, 0, FLAG_FRAME_END), (40, L2_UPDATE, SIDE_ASK, 9998, 9, FLAG_FRAME_END)]
    fills, rem, q, gap = run_kernel(SIDE_BID, 9999, 5, 0, 0, 100, events, [])
    assert fills == [(10, 1.0), (20, 2.0)] and rem == 2 and gap


def test_ttl_and_duplicates():
    events = [(10, L2_UPDATE, SIDE_ASK, 9999, 1, FLAG_FRAME_END | FLAG_DUPLICATE)]
    fills, rem, _, _ = run_kernel(SIDE_BID, 9999, 1, 0, 0, 100, events, [(200, SIDE_ASK, 9999, 5)])
    assert fills == [] and rem == 1  # the duplicate is skipped, the trade comes after t_end


@pytest.mark.parametrize("seed", range(6))
def test_passive_kernel_matches_reference_on_random_streams(seed):
    rng = np.random.default_rng(seed)
    for case in range(60):
        side = int(rng.integers(0, 2))
        price = 10_000
        near = [price - 2, price - 1, price, price + 1, price + 2]
        n_ev, n_tr = int(rng.integers(0, 40)), int(rng.integers(0, 40))
        t_ev = np.sort(rng.integers(1, 200, n_ev))
        t_tr = np.sort(rng.choice(np.r_[t_ev, rng.integers(1, 200, n_tr)], n_tr)) if n_tr else []
        kinds = rng.choice([L2_UPDATE, L2_UPDATE, L2_UPDATE, L2_DELETE, L2_GAP], n_ev, p=[.3, .3, .3, .08, .02])
        events = [(int(t), int(k), int(rng.integers(0, 2)), int(rng.choice(near)),
                   0 if k != L2_UPDATE else int(rng.integers(1, 10)),
                   FLAG_FRAME_END | (FLAG_DUPLICATE if rng.random() < 0.05 else 0)) for t, k in zip(t_ev, kinds)]
        trades = [(int(t), int(rng.integers(0, 2)), int(rng.choice(near)), int(rng.integers(1, 6))) for t in t_tr]
        qty, queue = float(rng.integers(1, 12)), float(rng.integers(0, 8))
        displayed = queue + float(rng.integers(0, 3))
        t_end = int(rng.integers(50, 250))
        got = run_kernel(side, price, qty, queue, displayed, t_end, events, trades)
        want = ref_passive(side, price, qty, queue, displayed, t_end, events, trades)
        assert [t for t, _ in got[0]] == [t for t, _ in want[0]], (seed, case)
        np.testing.assert_allclose([f for _, f in got[0]], [f for _, f in want[0]], err_msg=f"{seed}/{case}")
        assert got[1] == pytest.approx(want[1]) and got[2] == pytest.approx(want[2]) and got[3] == want[3]
        filled = sum(f for _, f in got[0])
        traded_at_or_through = sum(v for t, s, p, v in trades if t <= t_end)
        crossing_added = sum(v for t, k, sd, p, v, fl in events if sd != side)
        assert filled <= qty + 1e-9 and filled <= traded_at_or_through + crossing_added + 1e-9

"""Hand-computed scenarios for every fill and cost rule, end to end through run_backtest on tiny bronze markets."""

from __future__ import annotations

import numpy as np
import pytest

from backtest_scenario import MS, S, T0, HandMarket, config, predictions, steady
from l2lab.schema import SIDE_ASK, SIDE_BID
from research.backtest import run_backtest

pytestmark = pytest.mark.timeout(120)

BIDS = [(99.99, 5.0)]
WALK_ASKS = [(100.00, 1.0), (100.01, 2.0), (100.02, 3.0)]


def one_trade(tmp_path, hm: HandMarket, cfg: dict, scores=(0.9, 0.5)):
    root = hm.write(tmp_path / "data", end_t=T0 + 10 * S)
    res = run_backtest(predictions(scores), root, cfg)
    return res


def test_market_buy_walks_three_levels_with_costs_vs_decision_mid(tmp_path):
    hm = HandMarket().snapshot(T0 + MS, BIDS, WALK_ASKS)
    res = one_trade(tmp_path, hm, config(sizing={"base_size": 4.0}))
    t = res.trades.iloc[0]
    assert t.qty == 4.0 and t.direction == 1
    assert t.entry_vwap == pytest.approx((1 * 100.00 + 2 * 100.01 + 1 * 100.02) / 4)  # 100.01
    assert t.exit_vwap == pytest.approx(99.99) and t.exit_reason == "horizon"
    assert t.gross_pnl == pytest.approx((99.99 - 100.01) * 4)
    # decision mid 99.995 for both legs: entry half spread 0.005 x 4, impact (100.01 - 100.00) x 4; exit spread
    assert t.spread == pytest.approx(0.02 + 0.02)
    assert t.impact == pytest.approx(0.04)
    assert t.latency == pytest.approx(0.0)
    assert t.mid_pnl == pytest.approx(0.0)
    assert t.gross_pnl == pytest.approx(t.mid_pnl - t.spread - t.impact - t.latency)


def test_partial_fill_on_thin_book_never_exceeds_displayed(tmp_path):
    hm = HandMarket().snapshot(T0 + MS, BIDS, WALK_ASKS[:2])  # 3 displayed
    res = one_trade(tmp_path, hm, config(sizing={"base_size": 5.0}))
    t = res.trades.iloc[0]
    assert t.requested == 5.0 and t.qty == 3.0
    assert t.entry_vwap == pytest.approx((100.00 + 2 * 100.01) / 3)
    assert t.exit_notional == pytest.approx(3 * 99.99)  # the exit sells what was bought


@pytest.mark.parametrize("order_ms, md_ms, want", [(2, 0, 100.00), (5, 0, 101.00), (2, 2, 101.00)])
def test_latency_makes_the_order_meet_the_post_move_book(tmp_path, order_ms, md_ms, want):
    # decided at T0+1s on ask 100.00; at T0+1s+3ms the ask moves to 101.00
    hm = HandMarket().snapshot(T0 + MS, BIDS, [(100.00, 5.0)])
    hm.frame(T0 + S + 3 * MS, [(SIDE_ASK, 100.00, 0), (SIDE_ASK, 101.00, 5.0)])
    res = one_trade(tmp_path, hm, config(latency={"order_ns": order_ms * MS, "md_ns": md_ms * MS}))
    t = res.trades.iloc[0]
    assert t.entry_vwap == pytest.approx(want)
    assert t.entry_ns == T0 + S + (order_ms + md_ms) * MS
    arr_mid = (99.99 + want) / 2
    assert t.latency == pytest.approx(arr_mid - 99.995)  # entry leg; the exit leg has no latency here
    # the exit at T0+2s sells at the bid 99.99 of the moved book (mid 100.495): its half spread is 0.505
    assert t.spread == pytest.approx((want - arr_mid) + (100.495 - 99.99))


def test_taker_fees_and_fee_tiers(tmp_path):
    hm = HandMarket().snapshot(T0 + MS, BIDS, WALK_ASKS)
    tiers = [{"min_volume": 0, "maker_bps": 0.0, "taker_bps": 10.0},
             {"min_volume": 300.0, "maker_bps": 0.0, "taker_bps": 4.0}]
    res = one_trade(tmp_path, hm, config(sizing={"base_size": 4.0}, fees={"tiers": tiers}))
    t = res.trades.iloc[0]
    # entry 400.04 notional at the first tier (10 bps); the exit after 400.04 of volume at 4 bps
    assert t.fees == pytest.approx(400.04 * 10e-4 + 4 * 99.99 * 4e-4)
    assert t.net_pnl == pytest.approx(t.gross_pnl - t.fees)
    assert res.metrics["net_pnl"] == pytest.approx(t.net_pnl)


def passive_market():
    """Bid 99.99 x 5 and ask 100.00 x 1. Trades at the bid: 5 at +200 ms (exactly the queue ahead of a buy
    that joined at +0), 2 at +300 ms; at the ask: 3 at +2.2 s."""
    hm = HandMarket().snapshot(T0 + MS, [(99.99, 5.0)], [(100.00, 1.0)])
    hm.trade(T0 + S + 200 * MS, SIDE_ASK, 99.99, 5.0).frame(T0 + S + 200 * MS, [(SIDE_BID, 99.99, 0)])
    hm.trade(T0 + S + 300 * MS, SIDE_ASK, 99.99, 2.0)
    hm.frame(T0 + S + 400 * MS, [(SIDE_BID, 99.99, 1.0)])
    hm.trade(T0 + 2 * S + 200 * MS, SIDE_BID, 100.00, 3.0).frame(T0 + 2 * S + 200 * MS, [(SIDE_ASK, 100.00, 0)])
    hm.frame(T0 + 2 * S + 300 * MS, [(SIDE_ASK, 100.01, 1.0)])
    return hm


def test_passive_fill_only_after_queue_ahead_traded_with_maker_fees(tmp_path):
    cfg = config(execution={"style": "passive", "passive_ttl_s": 0.9, "passive_fallback": "cancel"},
                 fees={"tiers": [{"maker_bps": -1.0, "taker_bps": 10.0}]})
    res = one_trade(tmp_path, passive_market(), cfg)
    t = res.trades.iloc[0]
    assert t.qty == 1.0 and t.entry_maker
    assert t.entry_ns == T0 + S + 300 * MS  # not at +200 ms: those 5 were ahead of us
    assert t.entry_vwap == pytest.approx(99.99) and t.exit_vwap == pytest.approx(100.00)
    assert t.exit_ns == T0 + 2 * S + 200 * MS  # the exit joined behind 1 at the ask; 3 traded
    assert t.fees == pytest.approx(-(99.99 + 100.00) * 1e-4)  # maker rebates
    assert t.spread == pytest.approx(-0.005 - 0.005)  # a maker earns the half spread on both legs


def test_passive_unfilled_rest_goes_out_as_market_after_ttl(tmp_path):
    hm = HandMarket().snapshot(T0 + MS, [(99.99, 5.0)], [(100.00, 1.0)])
    hm.trade(T0 + S + 200 * MS, SIDE_ASK, 99.99, 5.5)  # 0.5 beyond the queue ahead
    cfg = config(execution={"style": "passive", "passive_ttl_s": 0.5, "passive_fallback": "market"},
                 sizing={"base_size": 1.0}, latency={"order_ns": 1 * MS, "md_ns": 0})
    res = one_trade(tmp_path, hm, cfg)
    t = res.trades.iloc[0]
    assert t.qty == pytest.approx(1.0)
    assert t.entry_vwap == pytest.approx((0.5 * 99.99 + 0.5 * 100.00) / 1.0)  # half maker, half taker at the ask
    assert t.entry_ns == T0 + S + 200 * MS  # the first (maker) fill
    assert t.entry_maker and t.spread == pytest.approx((99.99 - 99.995) * 0.5 + (100.00 - 99.995) * 0.5
                                                       + (99.995 - 99.99))  # + the exit's half spread


def test_oco_is_armed_one_bar_after_entry(tmp_path):
    # mids by second: 100.00, 100.00, 100.10, 100.10 (entry bar), 100.00, 100.00, 100.00, 100.00
    mids = [100.00, 100.00, 100.10, 100.10, 100.00, 100.00, 100.00, 100.00, 100.00]
    hm = steady(9, mids)
    scores = [0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5]  # bars at 1..7 s; entry at the bar of second 3
    root = hm.write(tmp_path / "data", end_t=T0 + 20 * S)
    out = {}
    for arm in (1, 0):
        cfg = config(exits={"mode": "gated", "stop_atr": 1.0, "atr_window": 2, "oco_arm_bars": arm,
                            "max_hold_s": 100.0})
        res = run_backtest(predictions(scores), root, cfg)
        assert len(res.trades) == 1
        out[arm] = res.trades.iloc[0]
    # ATR at the entry bar = mean(TR 0.10, TR 0) = 0.05; entry at the ask 100.11; stop at mid <= 100.06.
    # The bar of second 4 (mid 100.00) is the first bar after entry: armed with 0, not with 1.
    assert out[0].exit_reason == "stop" and out[0].exit_decision_ns == T0 + 4 * S
    assert out[1].exit_reason == "stop" and out[1].exit_decision_ns == T0 + 5 * S
    assert out[1].entry_vwap == pytest.approx(100.11) and out[1].exit_vwap == pytest.approx(99.99)


def test_cooldown_blocks_entries_after_an_exit(tmp_path):
    hm = steady(10, [100.0] * 10)
    root = hm.write(tmp_path / "data", end_t=T0 + 20 * S)
    entries = {}
    for cooldown in (0.0, 2.5):
        cfg = config(exits={"mode": "gated", "max_hold_s": 1.0, "cooldown_s": cooldown})
        res = run_backtest(predictions([0.9] * 8), root, cfg)  # bars 1..8 s
        entries[cooldown] = ((res.trades["entry_decision_ns"] - T0) // S).tolist()
    # exits are decided (and filled, zero latency) at the bar after entry; that bar cannot enter (busy)
    assert entries[0.0] == [1, 3, 5, 7]
    assert entries[2.5] == [1, 5]  # exit at 2 s: 3 and 4 s are within 2.5 s


def test_hold_to_horizon_non_overlapping_vs_overlapping(tmp_path):
    hm = steady(12, [100.0] * 12)
    root = hm.write(tmp_path / "data", end_t=T0 + 20 * S)
    counts = {}
    for overlap in (False, True):
        cfg = config(exits={"mode": "horizon", "horizon_s": 3.0, "overlap": overlap})
        res = run_backtest(predictions([0.9] * 10), root, cfg)  # bars 1..10 s
        counts[overlap] = ((res.trades["entry_decision_ns"] - T0) // S).tolist()
        if overlap:
            assert res.equity["position"].max() == 3.0  # three one-unit lots open at once
    assert counts[False] == [1, 5, 9]
    assert counts[True] == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_gap_in_the_book_rejects_market_orders(tmp_path):
    hm = HandMarket().snapshot(T0 + MS, BIDS, WALK_ASKS)
    # L2_GAP (with FRAME_END) between the decision at T0+1s and the order's arrival 2 ms later
    hm.rows.append((T0 + S + MS, 0, -1, 3, 0, 0, 0, 2))
    res = one_trade(tmp_path, hm, config(latency={"order_ns": 2 * MS, "md_ns": 0}))
    assert len(res.trades) == 0
    assert res.metrics["per_symbol"]["TEST-USD"]["rejected_orders"] == {"book not whole": 1}
    assert res.metrics["per_symbol"]["TEST-USD"]["void_entries"] == 1


def test_equity_and_metrics_are_consistent(tmp_path):
    hm = HandMarket().snapshot(T0 + MS, BIDS, WALK_ASKS)
    res = one_trade(tmp_path, hm, config(sizing={"base_size": 4.0}, fees={"tiers": [{"taker_bps": 2.0}]}))
    m = res.metrics
    assert m["net_pnl"] == pytest.approx(res.trades["net_pnl"].sum())
    assert m["gross_pnl"] == pytest.approx(res.trades["gross_pnl"].sum())
    assert m["costs"]["fees"] == pytest.approx(m["gross_pnl"] - m["net_pnl"])
    assert np.isfinite(res.equity["equity"]).all()
    out = res.save(tmp_path / "out")
    for name in ("metrics.json", "trades.parquet", "equity.parquet", "equity.png", "costs.png", "capacity.png"):
        assert (out / name).exists(), name


def test_take_profit_leg_of_the_oco(tmp_path):
    mids = [100.00, 100.00, 100.10, 100.10, 100.30, 100.30, 100.30]
    root = steady(7, mids).write(tmp_path / "data", end_t=T0 + 20 * S)
    cfg = config(exits={"mode": "gated", "stop_atr": 1.0, "take_atr": 2.0, "atr_window": 2, "oco_arm_bars": 1,
                        "max_hold_s": 100.0})
    t = run_backtest(predictions([0.5, 0.5, 0.9, 0.5, 0.5, 0.5]), root, cfg).trades.iloc[0]
    # entry 100.11 (ATR 0.05): the take-profit needs mid >= 100.21, first seen at 4 s, the first armed bar is 5 s
    assert t.exit_reason == "take" and t.exit_decision_ns == T0 + 5 * S and t.exit_vwap == pytest.approx(100.29)


def test_capacity_curve_by_hand(tmp_path):
    hm = HandMarket().snapshot(T0 + MS, [(99.99, 2.0), (99.98, 2.0)], WALK_ASKS)
    cfg = config(sizing={"base_size": 1.0}, fees={"tiers": [{"taker_bps": 10.0}]},
                 metrics={"capacity_multipliers": [1.0, 4.0, 8.0]})
    cap = {c["multiplier"]: c for c in one_trade(tmp_path, hm, cfg).metrics["capacity"]}
    assert cap[1.0]["gross_pnl"] == pytest.approx(99.99 - 100.00)
    # x4: buy 1 @ 100.00 + 2 @ 100.01 + 1 @ 100.02, sell 2 @ 99.99 + 2 @ 99.98
    assert cap[4.0]["gross_pnl"] == pytest.approx((2 * 99.99 + 2 * 99.98) - 400.04)
    assert cap[4.0]["fees"] == pytest.approx((400.04 + 399.94) * 1e-3) and cap[4.0]["depth_limited"] == 0
    # x8: the entry fills the 6 displayed; the exit has 4 visible: 2 more valued at the deepest bid 99.98
    assert cap[8.0]["gross_pnl"] == pytest.approx((2 * 99.99 + 4 * 99.98) - (100.00 + 2 * 100.01 + 3 * 100.02))
    assert cap[8.0]["depth_limited"] == 1


def test_a_stale_book_is_not_traded(tmp_path):
    # one snapshot, then silence (a recording that crashed without its stop marker): after 60 s the book is stale
    hm = HandMarket().snapshot(T0 + MS, BIDS, WALK_ASKS)
    root = hm.write(tmp_path / "data")
    fresh = run_backtest(predictions([0.9, 0.5], start_s=59), root, config())
    stale = run_backtest(predictions([0.9, 0.5], start_s=61), root, config())
    assert len(fresh.trades) == 1 and len(stale.trades) == 0
    assert stale.equity["mid"].isna().all()


def test_bars_true_range_includes_trades_and_previous_close(tmp_path):
    from research.backtest.bars import observe
    from research.backtest.market import SymbolTape

    hm = steady(4, [100.0, 100.0, 100.2, 100.2])
    hm.trade(T0 + S + 300 * MS, SIDE_BID, 100.50, 1.0).trade(T0 + S + 600 * MS, SIDE_ASK, 99.80, 1.0)
    root = hm.write(tmp_path / "data", end_t=T0 + 10 * S)
    bars = observe(SymbolTape(root, "test", "TEST-USD", 1), T0 + np.array([1, 2, 3]) * S)
    np.testing.assert_allclose(bars.mid, [100.0, 100.2, 100.2])
    np.testing.assert_allclose(bars.high - bars.low, [0.0, 100.50 - 99.80, 0.0])  # bar 2 spans both trades
    np.testing.assert_allclose(bars.spread, [0.02, 0.02, 0.02])


def test_orders_arriving_together_do_not_take_the_same_liquidity(tmp_path):
    # overlapping lots of 2 entered at 1.0 s and 1.5 s with a 1 s horizon both exit at the bar of 2.5 s: the two
    # sells meet one book (bids 99.99 x 2, 99.98 x 2): the second gets what the first left
    hm = HandMarket().snapshot(T0 + MS, [(99.99, 2.0), (99.98, 2.0), (99.97, 5.0)], WALK_ASKS)
    root = hm.write(tmp_path / "data", end_t=T0 + 10 * S)
    preds = predictions([0.9, 0.9, 0.5]).assign(ts_ns=T0 + np.array([1000, 1500, 2500]) * MS)
    res = run_backtest(preds, root, config(sizing={"base_size": 2.0}, exits={"horizon_s": 1.0, "overlap": True}))
    t = res.trades.sort_values("trade")
    assert list(t.exit_decision_ns) == [T0 + 2500 * MS] * 2
    np.testing.assert_allclose(t.exit_vwap, [99.99, 99.98])
    np.testing.assert_allclose(t.entry_vwap, [100.005, 100.005])  # different times: each sees the recorded book
    from research.backtest.engine import SymbolEngine
    from research.backtest.market import Book

    eng = SymbolEngine.__new__(SymbolEngine)
    eng._taken_t, eng._taken = None, {}
    book = Book(5, np.array([99.99, 0]), np.array([10.0, 0]), np.array([100.00, 100.01, 100.02]),
                np.array([1.0, 2.0, 3.0]), True)
    b1 = eng._less_own_fills(book, 1)
    eng._record_taken(b1, 1, 2.0)  # the first buy took 1 @ 100.00 and 1 @ 100.01
    b2 = eng._less_own_fills(book, 1)
    np.testing.assert_allclose(b2.ask_px[:2], [100.01, 100.02])
    np.testing.assert_allclose(b2.ask_sz[:2], [1.0, 3.0])
    assert eng._less_own_fills(book, -1).bid_sz[0] == 10.0  # the other side is untouched
    later = Book(6, book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, True)
    assert eng._less_own_fills(later, 1).ask_sz[0] == 1.0  # a later time starts afresh

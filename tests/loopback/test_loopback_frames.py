"""Frame builders and the simulator-to-frames feed, without sockets (hand-built SIM_EVENT_DTYPE events)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import ccxt
from loopback import coinbase_frames as cf
from loopback.sim_feed import SimFeed
from loopback.venue_book import VenueBook, VenueState
from simulator.events import KIND_L2, KIND_TRADE, SIM_EVENT_DTYPE
from simulator.products import Product

BTC = Product("BTC-USD", "BTC", "USD", Decimal("0.01"), Decimal("0.00000001"), Decimal("0.00000001"))
ODD = Product("ODD-USD", "ODD", "USD", Decimal("0.25"), Decimal("5"), Decimal("5"))
T0 = 1_767_571_200_000_000_000


@settings(max_examples=300, deadline=None)
@given(units=st.integers(min_value=0, max_value=10**15),
       step=st.sampled_from(["0.01", "0.00000001", "0.25", "5", "0.5", "1", "0.0001", "10", "2.5E-7"]))
def test_decimal_formatter_is_exact(units, step):
    text = cf.DecimalFormatter(Decimal(step))(units)
    assert Decimal(text) == units * Decimal(step)
    if "." in text:
        assert not text.endswith("0") and not text.endswith(".")


@settings(max_examples=200, deadline=None)
@given(ts=st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_rfc3339_nano_matches_go_format_and_ccxt_parses_it(ts):
    fmt = cf.TimeFormatter()
    text = fmt(ts)
    sec, ns = divmod(ts, 10**9)
    assert text.endswith("Z")
    if ns == 0:
        assert "." not in text
    else:
        frac = text[text.index(".") + 1:-1]
        assert not frac.endswith("0") and int(frac.ljust(9, "0")) == ns
    assert ccxt.Exchange.parse8601(text) == ts // 1_000_000


def test_l2_frame_text_is_the_coinbase_envelope():
    codec = cf.ProductCodec(BTC)
    bids = np.array([[9000012, 150000000], [9000000, 2]], dtype=np.int64)
    asks = np.array([[9000100, 100000000]], dtype=np.int64)
    frame = codec.book_snapshot(bids, asks, T0 + 123_400_000)
    msg = orjson.loads(frame.render(7))
    assert list(msg) == ["channel", "client_id", "timestamp", "sequence_num", "events"]
    assert msg["channel"] == "l2_data" and msg["sequence_num"] == 7
    assert msg["timestamp"] == "2026-01-05T00:00:00.1234Z"
    (event,) = msg["events"]
    assert event["type"] == "snapshot" and event["product_id"] == "BTC-USD"
    assert [(u["side"], u["price_level"], u["new_quantity"]) for u in event["updates"]] == [
        ("bid", "90000.12", "1.5"), ("bid", "90000", "0.00000002"), ("offer", "90001", "1")]
    assert frame.channel == "level2" and frame.products == ("BTC-USD",) and frame.kind == "snapshot"


def test_trade_side_is_the_maker_side():
    assert cf.TRADE_SIDE_IS_MAKER
    assert cf.trade_side_text(0) == "SELL"  # taker bought: the resting order was a sell
    assert cf.trade_side_text(1) == "BUY"


def test_heartbeat_subscriptions_and_error_frames():
    hb = orjson.loads(cf.heartbeat_frame(T0 + 2 * 10**9, 2 * 10**9, 5).render(3))
    assert hb["channel"] == "heartbeats" and hb["sequence_num"] == 3
    assert hb["events"][0]["heartbeat_counter"] == "5"
    assert hb["events"][0]["current_time"] == "2026-01-05 00:00:02.000000000 +0000 UTC m=+2.000000000"
    sub = orjson.loads(cf.subscriptions_frame({"level2": ["BTC-USD"]}, T0).render(0))
    assert sub["channel"] == "subscriptions" and sub["events"] == [{"subscriptions": {"level2": ["BTC-USD"]}}]
    err = cf.error_frame("Failed to subscribe", "X is not a valid product")
    assert not err.sequenced
    assert orjson.loads(err.render(None)) == {"type": "error", "message": "Failed to subscribe",
                                             "reason": "X is not a valid product"}


def events(rows) -> np.ndarray:
    out = np.zeros(len(rows), SIM_EVENT_DTYPE)
    for i, (ts, sym, kind, side, price, size, tid) in enumerate(rows):
        out[i] = (ts, sym, kind, side, price, size, tid, 0)
    return out


class FakeSim:
    """Same methods as MarketSimulator, fed from a fixed event array."""

    def __init__(self, products, ev):
        self.products = products
        self.now_ns = T0
        self._ev = ev

    def book(self, symbol):
        return np.empty((0, 2), np.int64), np.empty((0, 2), np.int64)

    def advance(self, until_ns):
        t = self._ev["ts_ns"]
        out = self._ev[(t >= self.now_ns) & (t < until_ns)]
        self.now_ns = until_ns
        return out


class CollectingServer:
    def __init__(self):
        self.frames = []
        self.heartbeats = []
        self.needs_drain = False

    def publish(self, frame):
        self.frames.append(frame)

    def publish_heartbeats(self, ts_ns, uptime_ns):
        self.heartbeats.append(ts_ns)


EV = events([
    (T0 + 10, 0, KIND_L2, 0, 9000000, 100, -1),
    (T0 + 10, 0, KIND_L2, 1, 9000100, 200, -1),
    (T0 + 10, 1, KIND_L2, 0, 400, 10, -1),          # other product, same ts: its own frame
    (T0 + 20, 0, KIND_TRADE, 0, 9000100, 50, 1),    # a trade and the level it consumed: two frames
    (T0 + 20, 0, KIND_TRADE, 0, 9000100, 25, 2),
    (T0 + 20, 0, KIND_L2, 1, 9000100, 125, -1),
    (T0 + 1_500_000_000, 0, KIND_L2, 0, 9000000, 0, -1),  # delete; after a heartbeat boundary
])


def feed_frames(coalesce_ns=0):
    import asyncio

    sim = FakeSim([BTC, ODD], EV)
    state = VenueState(sim.products)
    server = CollectingServer()
    feed = SimFeed(sim, state, server, coalesce_ns=coalesce_ns)
    asyncio.run(feed.advance_to(T0 + 2 * 10**9))
    return feed, state, server


def test_one_frame_per_timestamp_and_product_with_trades_newest_first():
    feed, state, server = feed_frames()
    msgs = [orjson.loads(f.render(i)) for i, f in enumerate(server.frames)]
    kinds = [(m["channel"], m["events"][0].get("product_id") or m["events"][0]["trades"][0]["product_id"])
             for m in msgs]
    assert kinds == [("l2_data", "BTC-USD"), ("l2_data", "ODD-USD"), ("market_trades", "BTC-USD"),
                     ("l2_data", "BTC-USD"), ("l2_data", "BTC-USD")]
    assert [u["new_quantity"] for u in msgs[0]["events"][0]["updates"]] == ["0.000001", "0.000002"]
    assert msgs[1]["events"][0]["updates"][0] == {"side": "bid", "event_time": "2026-01-05T00:00:00.00000001Z",
                                                  "price_level": "100", "new_quantity": "50"}
    trades = msgs[2]["events"][0]["trades"]
    assert [t["trade_id"] for t in trades] == ["2", "1"]  # newest first
    assert [t["side"] for t in trades] == ["SELL", "SELL"]  # taker bought -> maker side SELL
    assert msgs[4]["events"][0]["updates"][0]["new_quantity"] == "0"
    assert server.heartbeats == [T0, T0 + 10**9]  # one per venue second
    assert state.books[0].bids == {} and state.books[0].asks == {9000100: 125}
    assert [t[1] for t in state.trades[0].newest_first()] == [2, 1]
    assert feed.level_changes == 5 and feed.trades == 2 and feed.events == len(EV)


def test_coalescing_merges_a_products_events_within_the_window():
    _, state, server = feed_frames(coalesce_ns=1_000)
    msgs = [orjson.loads(f.render(0)) for f in server.frames]
    btc_l2 = [m for m in msgs if m["channel"] == "l2_data" and m["events"][0]["product_id"] == "BTC-USD"]
    assert len(btc_l2) == 2  # ts 10 and 20 share the first microsecond window; the delete is later
    assert len(btc_l2[0]["events"][0]["updates"]) == 3
    assert btc_l2[0]["timestamp"] == "2026-01-05T00:00:00.00000002Z"  # stamped with its last event
    assert state.books[0].asks == {9000100: 125}


def test_venue_book_matches_a_brute_force_replay():
    rng = np.random.default_rng(1)
    book, ref = VenueBook(), {0: {}, 1: {}}
    for _ in range(5000):
        side, price, size = int(rng.integers(2)), int(rng.integers(100, 140)), int(rng.integers(0, 4))
        book.apply(side, price, size)
        if size:
            ref[side][price] = size
        else:
            ref[side].pop(price, None)
    bids, asks = book.snapshot()
    assert bids.tolist() == sorted(([p, s] for p, s in ref[0].items()), reverse=True)
    assert asks.tolist() == sorted([p, s] for p, s in ref[1].items())

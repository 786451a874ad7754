"""The venue's own consistency: the book the simulator reports equals the book its events build, no trade is
larger than the level it hit, and the book is never crossed."""

import numpy as np

from simulator.events import KIND_L2, KIND_TRADE, SIDE_ASK, SIDE_BID
from simulator.l2 import MarketSimulator


def replay(initial, events, k):
    books = [dict(map(tuple, initial[0].tolist())), dict(map(tuple, initial[1].tolist()))]
    problems = []
    for e in events[events["symbol"] == k]:
        side, price, size = int(e["side"]), int(e["price"]), int(e["size"])
        if e["kind"] == KIND_TRADE:
            maker = SIDE_ASK if side == SIDE_BID else SIDE_BID
            if books[maker].get(price, 0) < size:
                problems.append(("trade larger than displayed", e))
        else:
            if size:
                books[side][price] = size
            else:
                books[side].pop(price, None)
            if books[0] and books[1] and max(books[0]) >= min(books[1]):
                problems.append(("crossed", e))
    return books, problems


def as_book(books):
    bids = np.array(sorted(books[0].items(), reverse=True), dtype=np.int64).reshape(-1, 2)
    asks = np.array(sorted(books[1].items()), dtype=np.int64).reshape(-1, 2)
    return bids, asks


def test_events_rebuild_the_reported_book():
    sim = MarketSimulator(seed=21)
    initial = {s: sim.book(s) for s in sim.symbols}
    # 37.3 s: ends inside a generation block, so book() must apply the partial block
    events = sim.advance(sim.now_ns + 37_300_000_000)
    assert np.all(np.diff(events["ts_ns"]) >= 0)
    for k, s in enumerate(sim.symbols):
        books, problems = replay(initial[s], events, k)
        assert problems == []
        bids, asks = as_book(books)
        got_bids, got_asks = sim.book(s)
        assert np.array_equal(bids, got_bids) and np.array_equal(asks, got_asks)
        assert len(bids) > 10 and len(asks) > 10


def test_trade_ids_increase_by_one_per_symbol():
    sim = MarketSimulator(seed=4)
    ev = sim.advance(sim.now_ns + 20 * 10**9)
    for k in range(len(sim.symbols)):
        ids = ev[(ev["symbol"] == k) & (ev["kind"] == KIND_TRADE)]["trade_id"]
        assert ids[0] == 1 and np.all(np.diff(ids) == 1)
    assert np.all(ev[ev["kind"] == KIND_L2]["trade_id"] == -1)

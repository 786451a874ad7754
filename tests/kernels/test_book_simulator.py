"""The rebuild on simulator output: equals the venue's own book at every partition end and the reference along
the way, through a gap and a resync snapshot, with partitions carried from one to the next."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from book_reference import RefBook
from book_streams import as_rows, ref_event_rows
from kernels.book import BookRebuilder, TopN
from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_GAP, L2_SNAPSHOT, L2_UPDATE,
)
from simulator.events import KIND_L2
from simulator.l2 import MarketSimulator

PRICE_EXP = 4  # two more decimals than the 0.01 tick, so the kernel really divides by a tick of 100
RECV_LATENCY_NS = 1_500_000
DEPTH = 20


def tick_mantissa(tick_size: Decimal) -> int:
    m = tick_size * (10**PRICE_EXP)
    assert m == int(m)
    return int(m)


def snapshot_rows(book, ts: int, tick: int) -> np.ndarray:
    """The venue's book as a snapshot run: reset on the first row, frame end on the last."""
    bids, asks = book
    n = len(bids) + len(asks)
    out = np.zeros(max(n, 1), dtype=L2_EVENT_DTYPE)
    out["ts_recv_ns"] = ts
    out["ts_exch_ns"] = ts
    out["kind"] = L2_SNAPSHOT
    if n:
        out["side"] = np.r_[np.zeros(len(bids), np.int8), np.ones(len(asks), np.int8)]
        out["price"] = np.r_[bids[:, 0], asks[:, 0]] * tick
        out["size"] = np.r_[bids[:, 1], asks[:, 1]]
    out["flags"][0] |= FLAG_BOOK_RESET
    out["flags"][-1] |= FLAG_FRAME_END
    return out


def delta_rows(events: np.ndarray, symbol: int, tick: int) -> np.ndarray:
    """Venue L2 events of one symbol -> normalized rows; one frame per venue timestamp."""
    ev = events[(events["symbol"] == symbol) & (events["kind"] == KIND_L2)]
    out = np.zeros(len(ev), dtype=L2_EVENT_DTYPE)
    out["ts_exch_ns"] = ev["ts_ns"]
    out["ts_recv_ns"] = ev["ts_ns"] + RECV_LATENCY_NS
    out["seq"] = np.arange(len(ev))
    out["kind"] = np.where(ev["size"] == 0, L2_DELETE, L2_UPDATE)
    out["side"] = ev["side"]
    out["price"] = ev["price"] * tick
    out["size"] = ev["size"]
    last_of_frame = np.r_[ev["ts_ns"][1:] != ev["ts_ns"][:-1], True] if len(ev) else np.zeros(0, bool)
    out["flags"][last_of_frame] |= FLAG_FRAME_END
    return out


def venue_top(book, tick: int, depth: int) -> list[list[int]]:
    out = []
    for side in book:
        lv = side[:depth]
        px = (lv[:, 0] * tick).tolist() + [0] * (depth - len(lv))
        sz = lv[:, 1].tolist() + [0] * (depth - len(lv))
        out += [px, sz]
    return out


@pytest.mark.parametrize("width", [4096, 1 << 20])
def test_rebuild_equals_venue_book_across_partitions_gap_and_resync(width):
    sim = MarketSimulator(seed=7)
    symbol = 0
    tick = tick_mantissa(sim.products[symbol].tick_size)
    name = sim.symbols[symbol]
    b = BookRebuilder(tick, depth=DEPTH, width=width)
    ref = RefBook(tick, DEPTH)
    partition_ns = 15 * 10**9
    fed = []
    samples = []

    def feed(rows):
        fed.append(rows)
        out = b.process(rows)
        samples.append(out.events)
        return out

    feed(snapshot_rows(sim.book(name), sim.now_ns, tick))
    for k in range(6):
        if k == 3:  # lose data, then resync from a fresh snapshot
            lost = sim.advance(sim.now_ns + 2 * 10**9)
            gap = np.zeros(1, dtype=L2_EVENT_DTYPE)
            gap[0] = (sim.now_ns, sim.now_ns, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END)
            assert len(delta_rows(lost, symbol, tick))
            assert not feed(gap).events.valid.any()
            assert not b.valid
            feed(snapshot_rows(sim.book(name), sim.now_ns, tick))
            assert b.valid
        out = feed(delta_rows(sim.advance(sim.now_ns + partition_ns), symbol, tick))
        assert out.events.valid.all() and not out.events.crossed.any()
        bids, asks = sim.book(name)
        assert b.levels(0).tolist() == np.c_[bids[:, 0] * tick, bids[:, 1]].tolist()
        assert b.levels(1).tolist() == np.c_[asks[:, 0] * tick, asks[:, 1]].tolist()
        last = out.events
        assert [last.bid_px[-1].tolist(), last.bid_sz[-1].tolist(), last.ask_px[-1].tolist(),
                last.ask_sz[-1].tolist()] == venue_top(sim.book(name), tick, DEPTH)
    stats = b.stats
    assert stats["missing_deletes"] == 0 and stats["crossed_frames"] == 0 and stats["off_grid"] == 0
    assert stats["gaps"] == 1 and stats["snapshots"] == 2
    if width == 4096:
        assert stats["recenters"] > 0 or stats["bid_overflow_levels"] + stats["ask_overflow_levels"] > 0

    # along the way: every event-time sample of the first partitions equals the reference's
    rows = np.concatenate(fed[:3])
    ref.feed(rows)
    events = TopN.concat(samples)
    assert as_rows(events, DEPTH)[: len(ref.samples)] == ref_event_rows(ref.samples)


@pytest.mark.parametrize("event_time", [False, True])
def test_hour_partitions_flushed_and_carried_through_export_state(event_time):
    """The pipeline's pattern: partition by receive time, flush each partition's end, carry export_state."""
    import pickle

    sim = MarketSimulator(seed=9)
    tick = tick_mantissa(sim.products[0].tick_size)
    ev = np.concatenate([snapshot_rows(sim.book(sim.symbols[0]), sim.now_ns, tick),
                         delta_rows(sim.advance(sim.now_ns + 30 * 10**9), 0, tick)])
    g = 10**9
    end = int(ev["ts_recv_ns"][-1])
    one = BookRebuilder(tick, grids_ns=(g,), event_time=event_time)
    whole = TopN.concat([one.process(ev).grids[g], one.flush(end)[g]])
    parts = []
    rb = BookRebuilder(tick, grids_ns=(g,), event_time=event_time)
    bounds = [int(ev["ts_recv_ns"][0]) - 1, *(int(t) for t in np.quantile(ev["ts_recv_ns"], [0.3, 0.7])), end]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = ev[(ev["ts_recv_ns"] > lo) & (ev["ts_recv_ns"] <= hi)]
        parts += [rb.process(part).grids[g], rb.flush(hi)[g]]
        rb = BookRebuilder.from_state(pickle.loads(pickle.dumps(rb.export_state())), width=4096,
                                      event_time=event_time)
    got = TopN.concat(parts)
    for name in ("ts_ns", "ts_avail_ns", "row", "bid_px", "bid_sz", "ask_px", "ask_sz", "valid", "crossed"):
        assert np.array_equal(getattr(whole, name), getattr(got, name)), name

"""kernels/book.py against the dict-per-side reference; batch == incremental == chunked; grid semantics."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.book import BookRebuilder, TopN
from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_DUPLICATE, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_GAP, L2_SNAPSHOT, L2_UPDATE,
)
from book_reference import RefBook, grid_samples
from book_streams import (
    as_rows, assert_topn_equal, ref_event_rows, ref_grid_rows, streams,
)

GRIDS = (100_000_000, 1_000_000_000)
HSET = settings(max_examples=int(os.environ.get("L2LAB_HYPOTHESIS_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.too_slow])

_pool: dict = {}


def rebuilder(tick, depth, width) -> BookRebuilder:
    """One allocation per configuration, reset between examples (as a process would reuse it)."""
    key = (tick, depth, width)
    if key not in _pool:
        _pool[key] = BookRebuilder(tick, depth=depth, grids_ns=GRIDS, width=width)
    b = _pool[key]
    b.reset()
    return b


def run_chunks(b: BookRebuilder, ev: np.ndarray, cuts, through_ns=None):
    ev_parts, grid_parts = [], {g: [] for g in GRIDS}
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(ev))), len(ev)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        out = b.process(ev[lo:hi])
        ev_parts.append(out.events)
        for g in GRIDS:
            grid_parts[g].append(out.grids[g])
    if through_ns is not None:
        fl = b.flush(through_ns)
        for g in GRIDS:
            grid_parts[g].append(fl[g])
    return TopN.concat(ev_parts), {g: TopN.concat(p) for g, p in grid_parts.items()}


def check_against_reference(b, ev, tick, depth, through_ns):
    ref = RefBook(tick, depth)
    ref.feed(ev)
    events, grids = run_chunks(b, ev, [], through_ns)
    assert as_rows(events, depth) == ref_event_rows(ref.samples)
    for g in GRIDS:
        assert as_rows(grids[g], depth) == ref_grid_rows(grid_samples(ref.samples, g, through_ns))
    for side in (0, 1):
        assert b.levels(side).tolist() == [list(x) for x in ref.levels(side)]
    stats = b.stats
    for name, n in ref.counts.items():
        assert stats[name] == n, name
    assert b.valid == (ref.synced and not ref.in_frame)
    return events, grids


@pytest.mark.parametrize("tick,width", [(1, 64), (100, 64), (7, 4096)])
@HSET
@given(data=st.data())
def test_matches_reference(tick, width, data):
    ev = data.draw(streams(tick))
    depth = data.draw(st.sampled_from([1, 3, 20]))
    through = None
    if len(ev) and data.draw(st.booleans()):
        through = int(ev["ts_recv_ns"].max()) + data.draw(st.integers(-10**9, 3 * 10**9))
    check_against_reference(rebuilder(tick, depth, width), ev, tick, depth, through)


@HSET
@given(data=st.data())
def test_batch_equals_chunked_equals_incremental(data):
    tick = data.draw(st.sampled_from([1, 5]))
    ev = data.draw(streams(tick))
    through = int(ev["ts_recv_ns"].max()) + 10**9 if len(ev) else None
    batch_ev, batch_grid = run_chunks(rebuilder(tick, 3, 64), ev, [], through)
    cuts = data.draw(st.lists(st.integers(0, max(len(ev), 1)), max_size=6))
    chunk_ev, chunk_grid = run_chunks(rebuilder(tick, 3, 64), ev, cuts, through)
    one_ev, one_grid = run_chunks(rebuilder(tick, 3, 64), ev, range(len(ev)), through)
    for other_ev, other_grid in ((chunk_ev, chunk_grid), (one_ev, one_grid)):
        assert_topn_equal(batch_ev, other_ev)
        for g in GRIDS:
            assert_topn_equal(batch_grid[g], other_grid[g])


@HSET
@given(data=st.data())
def test_state_carried_to_another_process(data):
    """Partition k in one rebuilder, export_state, partition k+1 in a fresh one (different window): same."""
    ev = data.draw(streams(1))
    cut = data.draw(st.integers(0, len(ev)))
    through = int(ev["ts_recv_ns"].max()) + 1 if len(ev) else None
    whole = rebuilder(1, 3, 64)
    whole_ev, whole_grid = run_chunks(whole, ev, [], through)
    whole_stats = whole.stats
    whole_levels = [whole.levels(0).tolist(), whole.levels(1).tolist()]
    a = rebuilder(1, 3, 64)
    first = a.process(ev[:cut])
    b = BookRebuilder.from_state(a.export_state(), width=128)
    second_ev, second_grid = run_chunks(b, ev[cut:], [], through)
    assert_topn_equal(whole_ev, TopN.concat([first.events, second_ev]))
    for g in GRIDS:
        assert_topn_equal(whole_grid[g], TopN.concat([first.grids[g], second_grid[g]]))
    assert [b.levels(0).tolist(), b.levels(1).tolist()] == whole_levels
    placement = ("recenters", "bid_overflow_levels", "ask_overflow_levels")  # depend on the window only
    assert {k: v for k, v in b.stats.items() if k not in placement} == \
        {k: v for k, v in whole_stats.items() if k not in placement}


def rows(*spec):
    return np.array([tuple(r) for r in spec], dtype=L2_EVENT_DTYPE)


def snap(ts, bids, asks):
    lv = [(0, p, s) for p, s in bids] + [(1, p, s) for p, s in asks] or [(0, 0, 0)]
    out = [[ts, ts, 1, L2_SNAPSHOT, sd, p, s, 0] for sd, p, s in lv]
    out[0][7] |= FLAG_BOOK_RESET
    out[-1][7] |= FLAG_FRAME_END
    return out


def upd(ts, side, price, size, flags=FLAG_FRAME_END):
    kind = L2_UPDATE if size else L2_DELETE
    return [ts, ts, 2, kind, side, price, size, flags]


def test_grid_frame_at_exactly_g_counts_and_nothing_after_leaks():
    g = 1_000_000_000
    ev = rows(*snap(g - 5, [(100, 1)], [(101, 1)]), upd(g, 0, 100, 7), upd(g + 1, 0, 100, 9))
    b = BookRebuilder(1, depth=2, grids_ns=(g,), width=64)
    out = b.process(ev).grids[g]
    assert out.ts_ns.tolist() == [g] and out.bid_sz[:, 0].tolist() == [7]
    assert out.ts_avail_ns.tolist() == [g] and out.row.tolist() == [2]
    assert not len(b.flush(2 * g - 1)[g])  # the state at 2g could still change
    late = b.flush(2 * g)[g]
    assert late.ts_ns.tolist() == [2 * g] and late.bid_sz[:, 0].tolist() == [9]
    assert late.ts_avail_ns.tolist() == [g + 1]


def test_grid_uses_frame_end_time_not_a_later_frame_started_before_g():
    """A frame that starts (first row) before g but ends after g does not count for g."""
    g = 100_000_000
    ev = rows(*snap(10, [(100, 1)], [(101, 1)]),
              [g - 1, 0, 2, L2_UPDATE, 0, 100, 5, 0], [g + 1, 0, 2, L2_UPDATE, 1, 101, 5, FLAG_FRAME_END],
              upd(3 * g, 0, 100, 1))
    out = BookRebuilder(1, depth=1, grids_ns=(g,), width=64).process(ev).grids[g]
    assert out.ts_ns.tolist() == [g, 2 * g]
    assert out.bid_sz[:, 0].tolist() == [1, 5]


def test_validity_gap_resync_and_mid_frame():
    ev = rows(upd(1, 0, 100, 1),  # delta before any snapshot: applied, not valid
              *snap(2, [(100, 2)], [(105, 1)]),
              [3, 3, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END],
              upd(4, 1, 104, 3),  # applied while invalid
              *snap(5, [(99, 1)], []))
    b = BookRebuilder(1, depth=2, width=64)
    out = b.process(ev).events
    assert out.valid.tolist() == [False, True, False, False, True]
    assert out.bid_px[-1].tolist() == [99, 0] and out.ask_sz[-1].tolist() == [0, 0]  # empty ask side
    b.process(rows([6, 6, 3, L2_UPDATE, 0, 98, 1, 0]))
    assert not b.valid and not b.top().valid[0]  # mid-frame
    out = b.process(rows(upd(6, 1, 120, 1))).events
    assert out.valid.tolist() == [True] and out.bid_px[0].tolist() == [99, 98]


def test_crossed_book_kept_as_the_venue_said():
    ev = rows(*snap(1, [(100, 1)], [(101, 1)]), upd(2, 0, 101, 4), upd(3, 0, 102, 4), upd(4, 0, 102, 0),
              upd(5, 0, 101, 0))
    b = BookRebuilder(1, depth=2, width=64)
    out = b.process(ev).events
    assert out.crossed.tolist() == [False, True, True, True, False]  # locked (101 = 101) counts
    assert out.bid_px[2].tolist() == [102, 101] and out.ask_px[2].tolist() == [101, 0]
    assert out.valid.all() and b.stats["crossed_frames"] == 3


def test_far_levels_off_grid_and_missing_deletes_are_kept_or_counted():
    tick = 100
    ev = rows(*snap(1, [(1_000_000, 1), (100, 2)], [(1_000_100, 3), (90_000_000_000, 4)]),
              upd(2, 1, 1_000_150, 5),  # off grid
              upd(3, 0, 500, 0),  # missing delete
              upd(4, 1, 90_000_000_000, 0))
    b = BookRebuilder(tick, depth=3, width=64)
    out = b.process(ev).events
    assert out.ask_px[1].tolist() == [1_000_100, 1_000_150, 90_000_000_000]
    assert out.bid_px[-1].tolist() == [1_000_000, 100, 0]
    assert out.ask_px[-1].tolist() == [1_000_100, 1_000_150, 0]
    st_ = b.stats
    assert (st_["off_grid"], st_["missing_deletes"]) == (1, 1)


def test_recentering_keeps_every_level():
    """The touch walks 10 windows up then down through a 64-tick ladder; every level stays."""
    b = BookRebuilder(1, depth=5, width=64)
    ref = RefBook(1, 5)
    spec = snap(1, [(1000, 1)], [(1002, 1)])
    t = 2
    for p in list(range(1000, 1640, 3)) + list(range(1640, 900, -7)):
        spec.append(upd(t, 0, p, t))
        spec.append(upd(t, 1, p + 2, t))
        if t % 5 == 0:
            spec.append(upd(t, 0, p - 3, 0))
        t += 1
    ev = rows(*spec)
    ref.feed(ev)
    assert as_rows(b.process(ev).events, 5) == ref_event_rows(ref.samples)
    assert b.stats["recenters"] > 5
    assert b.levels(0).tolist() == [list(x) for x in ref.levels(0)]


def test_duplicates_and_equal_timestamps():
    ev = rows(*snap(1, [(100, 1)], [(101, 1)]), upd(1, 0, 100, 3), upd(1, 0, 100, 9, FLAG_FRAME_END | FLAG_DUPLICATE),
              upd(1, 1, 101, 2))
    b = BookRebuilder(1, depth=1, grids_ns=(10,), width=64)
    out = b.process(ev).events
    assert out.ts_ns.tolist() == [1, 1, 1] and out.bid_sz[:, 0].tolist() == [1, 3, 3]
    assert out.row.tolist() == [1, 2, 4] and b.stats["duplicates"] == 1
    assert b.flush(10)[10].ask_sz[:, 0].tolist() == [2]  # the last of the equal-time frames


def test_reset_reuses_allocation_and_forgets_state():
    b = BookRebuilder(1, depth=1, width=64)
    lad = b.ladder.lad
    b.process(rows(*snap(1, [(100, 1)], [(5000, 1)])))
    b.reset()
    assert b.ladder.lad is lad and not lad.any() and not b.ladder.bits.any() and not b.ladder.summ.any()
    assert b.stats["rows"] == 0 and b.levels(0).shape == (0, 2) and not b.valid
    assert not len(b.flush(10**10)[100_000_000])


def test_rejects_bad_configuration():
    with pytest.raises(ValueError):
        BookRebuilder(0)
    with pytest.raises(ValueError):
        BookRebuilder(1, grids_ns=(0,))
    with pytest.raises(ValueError):
        BookRebuilder(1, width=100)
    with pytest.raises(TypeError):
        BookRebuilder(1, width=64).process(np.zeros(3, dtype=[("x", "i8")]))

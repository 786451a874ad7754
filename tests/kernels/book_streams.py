"""Hypothesis strategies for adversarial L2 event streams (L2_EVENT_DTYPE), and sample comparison helpers."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from kernels.book import TopN
from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_DUPLICATE, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_GAP, L2_SNAPSHOT, L2_UPDATE,
)

CENTER_TICKS = 10_000_000


@st.composite
def prices(draw, tick: int, centers):
    """Price mantissas: mostly near one of a few touch centers (drift / jumps force recentering), some far
    from everything, a few off the tick grid."""
    c = draw(st.sampled_from(centers))
    off = draw(st.one_of(st.integers(-12, 12), st.integers(-12, 12), st.integers(-3000, 3000),
                         st.integers(-CENTER_TICKS + 1, 5 * CENTER_TICKS)))
    p = (c + off) * tick
    if tick > 1 and draw(st.integers(0, 30)) == 0:
        p += draw(st.integers(1, tick - 1))  # off-grid: an input error, kept exactly
    return max(p, 1)


@st.composite
def streams(draw, tick: int, max_frames: int = 40):
    """A stream of frames: snapshots (possibly empty or one-sided), delta frames, gaps, duplicated frames,
    junk rows; equal and occasionally backwards receive times; maybe an unfinished frame at the end."""
    centers = [CENTER_TICKS + draw(st.integers(-400, 400)) for _ in range(draw(st.integers(1, 4)))]
    price = prices(tick, centers)
    size = st.integers(1, 10**12)
    rows = []
    ts = draw(st.integers(0, 3 * 10**9))
    frames = []
    for _ in range(draw(st.integers(1, max_frames))):
        ts += draw(st.sampled_from([0, 0, 1, 1_000, 40_000_000, 99_999_999, 100_000_000, 350_000_000,
                                    1_000_000_000, 2_700_000_000, -5_000_000]))
        kind = draw(st.sampled_from(["snap", "delta", "delta", "delta", "delta", "gap", "dup", "junk"]))
        frame = []
        if kind == "snap":
            bids = draw(st.lists(st.tuples(price, size), max_size=12))
            asks = draw(st.lists(st.tuples(price, size), max_size=12))
            lv = [(0, p, s) for p, s in bids] + [(1, p, s) for p, s in asks]
            if not lv:
                lv = [(0, 0, 0)]  # the collector's empty-book marker
            frame = [[ts, ts, 1, L2_SNAPSHOT, sd, p, s, 0] for sd, p, s in lv]
            frame[0][7] |= FLAG_BOOK_RESET
        elif kind == "delta":
            for _ in range(draw(st.integers(1, 8))):
                sd = draw(st.integers(0, 1))
                if draw(st.booleans()):
                    frame.append([ts, ts, 2, L2_UPDATE, sd, draw(price), draw(size), 0])
                else:
                    # deletes: often of an existing level, sometimes of a missing one; some as "update to 0"
                    existing = [r for r in rows if r[4] == sd and r[3] != L2_GAP and r[5] > 0]
                    p = draw(st.sampled_from(existing))[5] if existing and draw(st.booleans()) else draw(price)
                    k = draw(st.sampled_from([L2_DELETE, L2_DELETE, L2_UPDATE]))
                    frame.append([ts, ts, 2, k, sd, p, 0, 0])
        elif kind == "gap":
            frame = [[ts, ts, -1, L2_GAP, 0, 0, 0, 0]]
        elif kind == "dup" and frames:
            frame = [list(r) for r in draw(st.sampled_from(frames))]
            for r in frame:
                r[7] |= FLAG_DUPLICATE
        else:
            junk = draw(st.sampled_from(["side", "size", "kind"]))
            r = [ts, ts, 3, L2_UPDATE, 0, draw(price), 5, 0]
            if junk == "side":
                r[4] = draw(st.sampled_from([2, -1, 7]))
            elif junk == "size":
                r[6] = -draw(size)
            else:
                r[3] = draw(st.sampled_from([4, 9, -2]))
            frame = [r]
        if not frame:
            continue
        frame[-1][7] |= FLAG_FRAME_END
        if kind != "dup":
            frames.append(frame)
        rows.extend(frame)
    if rows and draw(st.integers(0, 4)) == 0:
        rows.append([ts, ts, 9, L2_UPDATE, 1, draw(price), draw(size), 0])  # unfinished frame
    return np.array([tuple(r) for r in rows], dtype=L2_EVENT_DTYPE)


def as_rows(t: TopN, depth: int) -> list[tuple]:
    """TopN -> list of (ts, avail, row, bid_px, bid_sz, ask_px, ask_sz, valid, crossed) with python lists."""
    out = []
    for i in range(len(t)):
        out.append((int(t.ts_ns[i]), int(t.ts_avail_ns[i]), int(t.row[i]), t.bid_px[i].tolist(),
                    t.bid_sz[i].tolist(), t.ask_px[i].tolist(), t.ask_sz[i].tolist(), bool(t.valid[i]),
                    bool(t.crossed[i])))
    return out


def ref_event_rows(samples) -> list[tuple]:
    return [(ts, ts, row, bp, bs, ap, az, v, c) for ts, row, bp, bs, ap, az, v, c in samples]


def ref_grid_rows(rows) -> list[tuple]:
    return [(g, ts, row, bp, bs, ap, az, v, c) for g, ts, row, bp, bs, ap, az, v, c in rows]


def assert_topn_equal(a: TopN, b: TopN) -> None:
    for name in ("ts_ns", "ts_avail_ns", "row", "bid_px", "bid_sz", "ask_px", "ask_sz", "valid", "crossed"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert np.array_equal(x, y), name

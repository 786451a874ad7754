"""Slow, obviously-right twin of kernels/book.py: a dict per side, sorted on every read.

Implements the row semantics written in the kernels/book.py docstring, one rule per line, with no window,
no overflow and no incremental bookkeeping.
"""

from __future__ import annotations

import numpy as np

from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_DUPLICATE, FLAG_FRAME_END, L2_DELETE, L2_GAP, L2_SNAPSHOT, L2_UPDATE,
)


class RefBook:
    def __init__(self, tick: int, depth: int):
        self.tick = tick
        self.depth = depth
        self.sides = [{}, {}]
        self.synced = False
        self.pending = False
        self.in_frame = False
        self.row = 0
        self.samples = []  # (ts, row, bid_px, bid_sz, ask_px, ask_sz, valid, crossed)
        self.counts = dict.fromkeys(
            ["rows", "duplicates", "frames", "snapshots", "gaps", "bad_size", "bad_side", "bad_kind",
             "crossed_frames", "missing_deletes", "off_grid"], 0)

    def levels(self, side: int) -> list[tuple[int, int]]:
        return sorted(self.sides[side].items(), reverse=(side == 0))

    def top(self):
        out = []
        for side in (0, 1):
            lv = self.levels(side)[: self.depth]
            lv += [(0, 0)] * (self.depth - len(lv))
            out.append([p for p, _ in lv])
            out.append([s for _, s in lv])
        bids, asks = self.sides
        crossed = bool(bids) and bool(asks) and max(bids) >= min(asks)
        return out, crossed

    def feed(self, events: np.ndarray) -> None:
        for r in events.tolist():
            ts, _, _, kind, side, price, size, flags = r
            row = self.row
            self.row += 1
            self.counts["rows"] += 1
            if flags & FLAG_DUPLICATE:
                self.counts["duplicates"] += 1
                continue
            if kind == L2_GAP:
                self.counts["gaps"] += 1
                self.synced = False
                self.pending = False
            elif kind in (L2_SNAPSHOT, L2_UPDATE, L2_DELETE):
                if kind == L2_SNAPSHOT and flags & FLAG_BOOK_RESET:
                    self.sides = [{}, {}]
                    self.counts["snapshots"] += 1
                    self.pending = True
                if side not in (0, 1):
                    self.counts["bad_side"] += 1
                elif size < 0:
                    self.counts["bad_size"] += 1
                elif kind == L2_SNAPSHOT and size == 0:
                    pass  # the empty-book marker
                else:
                    if price % self.tick:
                        self.counts["off_grid"] += 1
                    if kind == L2_DELETE or size == 0:
                        if price in self.sides[side]:
                            del self.sides[side][price]
                        else:
                            self.counts["missing_deletes"] += 1
                    else:
                        self.sides[side][price] = size
            else:
                self.counts["bad_kind"] += 1
            if flags & FLAG_FRAME_END:
                self.in_frame = False
                if self.pending:
                    self.synced = True
                    self.pending = False
                self.counts["frames"] += 1
                lv, crossed = self.top()
                self.counts["crossed_frames"] += crossed
                self.samples.append((ts, row, *lv, self.synced, crossed))
            else:
                self.in_frame = True


def grid_samples(samples, step: int, through_ns: int | None):
    """Grid g gets the sample of the last frame received before the first frame with ts > g. Grid times run
    from the first multiple of step >= the first frame's ts; up to through_ns (flush) or below the largest
    frame time (what the stream has proven final), whichever is later."""
    if not samples:
        return []
    ts = np.array([s[0] for s in samples], dtype=np.int64)
    run_max = np.maximum.accumulate(ts)
    g = -((-int(ts[0])) // step) * step
    last = int(run_max[-1]) - 1
    if through_ns is not None:
        last = max(last, through_ns)
    out = []
    while g <= last:
        k = int(np.searchsorted(run_max, g, side="right"))  # first frame with ts > g
        s = samples[k - 1]
        out.append((g, s[0], s[1], *s[2:]))
        g += step
    return out

"""Exact L2 book rebuild from normalized events (:data:`l2lab.schema.L2_EVENT_DTYPE`), sampled as top-N states.

What it computes
    The venue's book, exactly (integer price and size mantissas), after every venue frame, and its best
    ``depth`` levels per side:

    * **event time**: one sample after every ``FLAG_FRAME_END`` row, stamped with that row's ``ts_recv_ns``;
    * **clock grids** (default 100 ms and 1 s): the sample at grid time g is the state after the last frame
      whose ``ts_recv_ns <= g`` (precisely: after the frames received before the first frame with
      ``ts_recv_ns > g``; the same thing when receive times do not go backwards). A frame at exactly g counts;
      nothing after g leaks into g. Grid times are multiples of the step (UTC epoch aligned); the first is the
      first multiple >= the first frame's time. Every sample also carries ``ts_avail_ns``, the receive time of
      the last input used, and ``row``, that frame-end row's index in the stream.

    Empty levels (a side with fewer than ``depth`` levels) are price 0, size 0: a real level always has
    size > 0, so ``size == 0`` is the test for "no level".

Flags per sample
    ``valid``: the book is whole: a snapshot completed (its ``FLAG_FRAME_END``) with no ``L2_GAP`` since.
    Samples are only taken at frame ends, so a sample is never mid-frame. ``crossed``: both sides non-empty and
    best bid >= best ask (locked counts too). A crossed book is kept exactly as the venue said.

Row semantics (decisions, mirrored by the reference in ``tests/kernels/book_reference.py``)
    ``FLAG_DUPLICATE`` rows are skipped entirely (counted). ``L2_GAP``: the book becomes invalid (contents
    kept, later deltas still applied) until a snapshot's frame ends. ``L2_SNAPSHOT`` with ``FLAG_BOOK_RESET``
    clears both sides first; a snapshot row of size 0 is the "empty book" marker and sets nothing.
    ``L2_DELETE`` (or an update to size 0) of a missing level is counted, not an error. A price that is not a
    multiple of the tick is counted (``off_grid``) and still stored exactly. Negative sizes, unknown sides and
    unknown kinds are counted and change nothing. ``FLAG_FRAME_END`` ends the frame whatever the row's kind.

Streaming
    :class:`BookRebuilder` carries the whole state (book, validity, the last sample, the grid cursors) from
    one chunk to the next, so a day is processed partition by partition, and chunk boundaries may fall
    anywhere, even inside a frame. Feeding one frame (or one event) at a time runs the same kernel and gives
    bit-identical samples (the incremental form for live scoring). Grid samples are emitted once a later frame
    proves them final, or by :meth:`BookRebuilder.flush`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numba import njit

from kernels import ladder as L
from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_DUPLICATE, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_GAP, L2_SNAPSHOT, L2_UPDATE,
)

DEFAULT_DEPTH = 20
DEFAULT_GRIDS_NS = (100_000_000, 1_000_000_000)
DEFAULT_WIDTH = 1 << 20  # ticks per side: 8 MB per side

# book scalar layout (int64)
B_SYNCED = 0  # a snapshot completed and no gap since
B_SNAP_PENDING = 1  # a reset snapshot started and its frame has not ended
B_IN_FRAME = 2
B_HAVE_LAST = 3  # at least one frame ended (last_lv holds its sample)
B_LAST_TS = 4
B_LAST_FLAG = 5
B_LAST_ROW = 6
B_ROWS = 7  # rows seen (the next row's stream index)
B_DUPLICATES = 8
B_FRAMES = 9
B_SNAPSHOTS = 10
B_GAPS = 11
B_BAD_SIZE = 12
B_BAD_SIDE = 13
B_BAD_KIND = 14
B_CROSSED_FRAMES = 15
B_TS_BACKWARDS = 16
B_MAX_TS = 17  # largest frame-end ts so far
B_DIRTY = 18  # +side: a change since the last sample may have touched that side's top-N
B_THR = 20  # +side: side key of the last sample's N-th level (INT64_MAX if fewer): deeper changes are invisible
N_BOOK_SCALARS = 22

_KEY_MAX = np.iinfo(np.int64).max

F_VALID = 1
F_CROSSED = 2

_COUNTERS = {  # public stats name -> (array, offset)
    "rows": ("bs", B_ROWS), "duplicates": ("bs", B_DUPLICATES), "frames": ("bs", B_FRAMES),
    "snapshots": ("bs", B_SNAPSHOTS), "gaps": ("bs", B_GAPS), "bad_size": ("bs", B_BAD_SIZE),
    "bad_side": ("bs", B_BAD_SIDE), "bad_kind": ("bs", B_BAD_KIND), "crossed_frames": ("bs", B_CROSSED_FRAMES),
    "ts_backwards": ("bs", B_TS_BACKWARDS), "missing_deletes": ("sc", L.S_MISSING_DELETES),
    "off_grid": ("sc", L.S_OFF_GRID), "recenters": ("sc", L.S_RECENTERS),
}


@njit(cache=True, inline="always")
def apply_event(lad, bits, summ, ovk, ovs, sc, bs, kind, side, price, size, flags):
    """Apply one non-duplicate row to the book and the validity state (no sampling).

    Returns whether the row ended a frame. See the module docstring for the row semantics. Needs room in the
    overflow (see :mod:`kernels.ladder`).
    """
    if kind == L2_GAP:
        bs[B_GAPS] += 1
        bs[B_SYNCED] = 0
        bs[B_SNAP_PENDING] = 0
    elif kind == L2_SNAPSHOT or kind == L2_UPDATE or kind == L2_DELETE:
        if kind == L2_SNAPSHOT and flags & FLAG_BOOK_RESET:
            L.clear_side(lad, bits, summ, sc, 0)
            L.clear_side(lad, bits, summ, sc, 1)
            bs[B_SNAPSHOTS] += 1
            bs[B_SNAP_PENDING] = 1
            bs[B_DIRTY] = 1
            bs[B_DIRTY + 1] = 1
        if side != 0 and side != 1:
            bs[B_BAD_SIDE] += 1
        elif size < 0:
            bs[B_BAD_SIZE] += 1
        elif kind == L2_DELETE or size == 0:
            if kind != L2_SNAPSHOT:
                L.set_level(lad, bits, summ, ovk, ovs, sc, side, price, 0)
                if (price if side == 1 else -price) <= bs[B_THR + side]:
                    bs[B_DIRTY + side] = 1
        else:
            L.set_level(lad, bits, summ, ovk, ovs, sc, side, price, size)
            if (price if side == 1 else -price) <= bs[B_THR + side]:
                bs[B_DIRTY + side] = 1
    else:
        bs[B_BAD_KIND] += 1
    if flags & FLAG_FRAME_END:
        bs[B_IN_FRAME] = 0
        if bs[B_SNAP_PENDING]:
            bs[B_SYNCED] = 1
            bs[B_SNAP_PENDING] = 0
        return True
    bs[B_IN_FRAME] = 1
    return False


@njit(cache=True, inline="always")
def sample_top(lad, bits, summ, ovk, ovs, sc, bs, out):
    """Top-N of the current book into ``out`` (4, N) = (bid_px, bid_sz, ask_px, ask_sz); returns the flags
    (F_VALID if synced and not mid-frame, F_CROSSED if best bid >= best ask with both sides non-empty)."""
    nb = L.top_levels(lad, bits, summ, ovk, ovs, sc, 0, out[0], out[1])
    na = L.top_levels(lad, bits, summ, ovk, ovs, sc, 1, out[2], out[3])
    flag = 0
    if bs[B_SYNCED] and not bs[B_IN_FRAME]:
        flag |= F_VALID
    if nb > 0 and na > 0 and out[0, 0] >= out[2, 0]:
        flag |= F_CROSSED
    return flag


@njit(cache=True, inline="always")
def update_sample(lad, bits, summ, ovk, ovs, sc, bs, out):
    """Bring ``out`` (the previous sample, see :func:`sample_top`) up to date and return its flags.

    Only sides marked dirty are re-read: a change strictly deeper than a side's N-th level (with N levels
    present) cannot alter that side's top-N, so the sample equals a full :func:`sample_top`.
    """
    n_want = out.shape[1]
    for s in range(2):
        if bs[B_DIRTY + s]:
            n = L.top_levels(lad, bits, summ, ovk, ovs, sc, s, out[2 * s], out[2 * s + 1])
            if n == n_want:
                p = out[2 * s, n_want - 1]
                bs[B_THR + s] = p if s == 1 else -p
            else:
                bs[B_THR + s] = _KEY_MAX
            bs[B_DIRTY + s] = 0
    flag = 0
    if bs[B_SYNCED] and not bs[B_IN_FRAME]:
        flag |= F_VALID
    if out[1, 0] > 0 and out[3, 0] > 0 and out[0, 0] >= out[2, 0]:
        flag |= F_CROSSED
    return flag


@njit(cache=True, inline="always")
def _copy_sample(src, dst, k):
    for a in range(src.shape[0]):
        for b in range(src.shape[1]):
            dst[k, a, b] = src[a, b]


@njit(cache=True)
def _emit_grids(bs, last_lv, grid_step, grid_next, limit, g_lv, g_ts, g_avail, g_row, g_flag, g_id, n_g):
    """Emit, for every grid, the last sample at each grid time g < limit not yet emitted."""
    for k in range(grid_step.shape[0]):
        step = grid_step[k]
        while grid_next[k] < limit:
            if n_g >= g_ts.shape[0]:
                raise RuntimeError("grid output capacity exceeded")
            _copy_sample(last_lv, g_lv, n_g)
            g_ts[n_g] = grid_next[k]
            g_avail[n_g] = bs[B_LAST_TS]
            g_row[n_g] = bs[B_LAST_ROW]
            g_flag[n_g] = bs[B_LAST_FLAG]
            g_id[n_g] = k
            n_g += 1
            grid_next[k] += step
    return n_g


@njit(cache=True, _nrt=False)
def process_rows(ev, lad, bits, summ, ovk, ovs, sc, bs, last_lv, grid_step, grid_next,
                 out_lv, out_ts, out_row, out_flag, g_lv, g_ts, g_avail, g_row, g_flag, g_id):
    """Run the rows of one chunk ``ev`` (L2_EVENT_DTYPE, receive order) through the book, with explicit state.

    At every frame end: first every grid time g < ts_recv_ns gets the previous frame's sample (``last_lv``),
    then the new sample is taken into ``last_lv`` and, if ``out_lv`` has room, recorded as an event-time
    sample. State in: ladder (lad, bits, summ, ovk, ovs, sc), book scalars bs, last sample, grid cursors. Event-time
    outputs need room for every non-duplicate frame-end row (or none, to skip them); grid outputs for every
    grid time below the chunk's largest frame-end time. Returns ``(rows_done, n_event_samples, n_grid_rows)``;
    ``rows_done < len(ev)`` means the overflow needs room (``Ladder.reserve``) before the rest is fed.
    """
    n_out = 0
    n_g = 0
    record = out_ts.shape[0] > 0
    cap = ovk.shape[1]
    for i in range(ev.shape[0]):
        if L.n_levels(sc, 0) + 2 > cap or L.n_levels(sc, 1) + 2 > cap:
            return i, n_out, n_g
        r = ev[i]
        row = bs[B_ROWS]
        bs[B_ROWS] = row + 1
        flags = r.flags
        if flags & FLAG_DUPLICATE:
            bs[B_DUPLICATES] += 1
            continue
        if not apply_event(lad, bits, summ, ovk, ovs, sc, bs, r.kind, r.side, r.price, r.size, flags):
            continue
        ts = r.ts_recv_ns
        bs[B_FRAMES] += 1
        if bs[B_HAVE_LAST]:
            if ts < bs[B_MAX_TS]:
                bs[B_TS_BACKWARDS] += 1
            n_g = _emit_grids(bs, last_lv, grid_step, grid_next, ts, g_lv, g_ts, g_avail, g_row, g_flag, g_id,
                              n_g)
        else:
            for k in range(grid_step.shape[0]):
                grid_next[k] = -((-ts) // grid_step[k]) * grid_step[k]  # first multiple >= ts
        if ts > bs[B_MAX_TS] or not bs[B_HAVE_LAST]:
            bs[B_MAX_TS] = ts
        flag = update_sample(lad, bits, summ, ovk, ovs, sc, bs, last_lv)
        if flag & F_CROSSED:
            bs[B_CROSSED_FRAMES] += 1
        bs[B_HAVE_LAST] = 1
        bs[B_LAST_TS] = ts
        bs[B_LAST_FLAG] = flag
        bs[B_LAST_ROW] = row
        if record:
            _copy_sample(last_lv, out_lv, n_out)
            out_ts[n_out] = ts
            out_row[n_out] = row
            out_flag[n_out] = flag
            n_out += 1
    return ev.shape[0], n_out, n_g


@njit(cache=True, _nrt=False)
def flush_grids(bs, last_lv, grid_step, grid_next, through_ns, g_lv, g_ts, g_avail, g_row, g_flag, g_id):
    """Emit every grid time g <= through_ns (the caller has fed all frames with ts_recv_ns <= through_ns)."""
    if not bs[B_HAVE_LAST]:
        return 0
    return _emit_grids(bs, last_lv, grid_step, grid_next, through_ns + 1, g_lv, g_ts, g_avail, g_row, g_flag,
                       g_id, 0)


@dataclasses.dataclass
class TopN:
    """Top-N samples. ``bid_px[i, k]`` is the k-th best bid price mantissa of sample i (0 with size 0 if
    there is no such level). ``ts_ns``: the sample's stamp (event time: the frame's receive time; grid: g);
    ``ts_avail_ns``: receive time of the last input used; ``row``: that frame-end row's stream index."""

    ts_ns: np.ndarray
    ts_avail_ns: np.ndarray
    row: np.ndarray
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    valid: np.ndarray
    crossed: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)

    @classmethod
    def from_arrays(cls, ts, avail, row, lv, flag) -> "TopN":
        return cls(ts, avail, row, lv[:, 0], lv[:, 1], lv[:, 2], lv[:, 3],
                   (flag & F_VALID) != 0, (flag & F_CROSSED) != 0)

    @classmethod
    def concat(cls, parts: list["TopN"]) -> "TopN":
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))

    def to_frame(self):
        """pandas DataFrame with columns ts_ns, ts_avail_ns, row, valid, crossed, bid_px_0.., bid_sz_0.., ..."""
        import pandas as pd

        cols = {"ts_ns": self.ts_ns, "ts_avail_ns": self.ts_avail_ns, "row": self.row, "valid": self.valid,
                "crossed": self.crossed}
        for name in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
            a = getattr(self, name)
            for k in range(a.shape[1]):
                cols[f"{name}_{k}"] = a[:, k]
        return pd.DataFrame(cols)


@dataclasses.dataclass
class BookSamples:
    """What one chunk produced: event-time samples and, per grid step (ns), the grid samples now final."""

    events: TopN
    grids: dict[int, TopN]


class BookRebuilder:
    """Streaming exact book rebuild for one symbol. Allocate once per process and reuse (:meth:`reset`).

    ``tick``: the tick size as a price mantissa (same exponent as prices). ``depth``: levels per side in the
    samples. ``grids_ns``: clock grid steps. ``width``: ladder window in ticks per side, a multiple of 64
    (2 x 8 bytes x width allocated once); levels outside it are kept in the overflow store. ``event_time=False``
    skips the event-time output (grids only).
    """

    def __init__(self, tick: int, *, depth: int = DEFAULT_DEPTH, grids_ns=DEFAULT_GRIDS_NS,
                 width: int = DEFAULT_WIDTH, event_time: bool = True):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        steps = [int(s) for s in grids_ns]
        if any(s <= 0 for s in steps) or len(set(steps)) != len(steps):
            raise ValueError(f"grid steps must be distinct positive ns, got {grids_ns}")
        self.tick = int(tick)
        self.depth = int(depth)
        self.width = int(width)
        self.event_time = bool(event_time)
        self.grid_step = np.array(steps, dtype=np.int64)
        self.ladder = L.Ladder(self.tick, self.width)
        lv, ts, row, flag = _empty_buffers(0, self.depth)
        self._no_events = TopN.from_arrays(ts, ts, row, lv, flag)
        self.reset()

    def reset(self) -> None:
        """Forget everything (book, validity, last sample, grid cursors, counters); keeps the allocation."""
        ld = self.ladder
        for s in range(2):
            L.clear_side(ld.lad, ld.bits, ld.summ, ld.sc, s)
        ld.sc[L.S_RECENTERS:] = 0
        ld.sc[L.S_BASE:L.S_BASE + 2] = 0
        self.bs = np.zeros(N_BOOK_SCALARS, dtype=np.int64)
        self.bs[B_DIRTY:B_DIRTY + 2] = 1
        self.last_lv = np.zeros((4, self.depth), dtype=np.int64)
        self.grid_next = np.zeros(len(self.grid_step), dtype=np.int64)

    # -- streaming; process() on one frame or one row is also the incremental (live) form ------------------
    def process(self, events: np.ndarray) -> BookSamples:
        """Feed the next chunk of rows (any size, even one row or part of a frame); returns its samples."""
        ev = _as_events(events)
        flags = ev["flags"]
        ends = (flags & (FLAG_FRAME_END | FLAG_DUPLICATE)) == FLAG_FRAME_END
        n_ends = int(np.count_nonzero(ends))
        out = _empty_buffers(n_ends if self.event_time else 0, self.depth)
        n_grid = 0
        if n_ends:
            end_ts = ev["ts_recv_ns"][ends]
            n_grid = self._grid_capacity(int(end_ts.min()), int(end_ts.max()))
        g = _grid_buffers(n_grid, self.depth)
        ld = self.ladder
        done = n_out = n_g = 0
        while True:
            d, o, m = process_rows(
                ev[done:], ld.lad, ld.bits, ld.summ, ld.ovk, ld.ovs, ld.sc, self.bs, self.last_lv, self.grid_step,
                self.grid_next, *(a[n_out:] for a in out), *(a[n_g:] for a in g))
            done, n_out, n_g = done + d, n_out + o, n_g + m
            if done == len(ev):
                break
            ld.reserve(2 * int(max(L.n_levels(ld.sc, 0), L.n_levels(ld.sc, 1))) + 16)
        if n_out:
            lv, ts, row, flag = (a[:n_out] for a in out)
            events_out = TopN.from_arrays(ts, ts.copy(), row, lv, flag)
        else:
            events_out = self._no_events
        return BookSamples(events_out, self._split_grids(g, n_g))

    def flush(self, through_ns: int) -> dict[int, TopN]:
        """Grid samples for every grid time <= ``through_ns`` not emitted yet. Call it when every frame with
        ``ts_recv_ns <= through_ns`` has been fed (e.g. at the end of an hour partition)."""
        through_ns = int(through_ns)
        n = self._grid_capacity(through_ns, through_ns) if self.bs[B_HAVE_LAST] else 0
        g = _grid_buffers(n, self.depth)
        n_g = flush_grids(self.bs, self.last_lv, self.grid_step, self.grid_next, through_ns, *g)
        return self._split_grids(g, n_g)

    def top(self) -> TopN:
        """A sample of the book as it is now (valid is 0 mid-frame), stamped with the last frame's time."""
        ld = self.ladder
        lv = np.zeros((1, 4, self.depth), dtype=np.int64)
        flag = sample_top(ld.lad, ld.bits, ld.summ, ld.ovk, ld.ovs, ld.sc, self.bs, lv[0])
        t = np.array([self.bs[B_LAST_TS]], dtype=np.int64)
        return TopN.from_arrays(t, t.copy(), np.array([self.bs[B_ROWS] - 1]), lv, np.array([flag], np.uint8))

    def levels(self, side: int) -> np.ndarray:
        """Every level of a side, best first: int64 array (n, 2) of (price, size) mantissas."""
        ld = self.ladder
        n = int(L.n_levels(ld.sc, side))
        px = np.zeros(n, dtype=np.int64)
        sz = np.zeros(n, dtype=np.int64)
        L.top_levels(ld.lad, ld.bits, ld.summ, ld.ovk, ld.ovs, ld.sc, side, px, sz)
        return np.stack([px, sz], axis=1)

    @property
    def valid(self) -> bool:
        return bool(self.bs[B_SYNCED]) and not self.bs[B_IN_FRAME]

    @property
    def stats(self) -> dict[str, int]:
        """Counters since the last reset (rows, frames, gaps, missing_deletes, off_grid, crossed_frames, ...)
        and the current level counts."""
        arrays = {"bs": self.bs, "sc": self.ladder.sc}
        out = {name: int(arrays[arr][off]) for name, (arr, off) in _COUNTERS.items()}
        for s, name in ((0, "bid"), (1, "ask")):
            out[f"{name}_levels"] = int(L.n_levels(self.ladder.sc, s))
            out[f"{name}_overflow_levels"] = int(self.ladder.sc[L.S_NOV + s])
        return out

    # -- carrying state to another process ----------------------------------------------------------------
    def export_state(self) -> dict[str, np.ndarray]:
        """Compact state (levels, not the ladder) to resume elsewhere with :meth:`from_state`."""
        return {"tick": np.int64(self.tick), "depth": np.int64(self.depth), "grid_step": self.grid_step.copy(),
                "bids": self.levels(0), "asks": self.levels(1), "bs": self.bs.copy(),
                "counters": self.ladder.sc[L.S_RECENTERS:].copy(), "last_lv": self.last_lv.copy(),
                "grid_next": self.grid_next.copy()}

    @classmethod
    def from_state(cls, state: dict, *, width: int = DEFAULT_WIDTH, event_time: bool = True) -> "BookRebuilder":
        self = cls(int(state["tick"]), depth=int(state["depth"]), grids_ns=tuple(state["grid_step"].tolist()),
                   width=width, event_time=event_time)
        ld = self.ladder
        for s, key in ((0, "bids"), (1, "asks")):
            ld.reserve(len(state[key]) + 16)
            for price, size in state[key].tolist():
                ld.set(s, price, size)
        ld.sc[L.S_RECENTERS:] = state["counters"]
        self.bs[:] = state["bs"]
        self.last_lv[:] = state["last_lv"]
        self.grid_next[:] = state["grid_next"]
        return self

    # -- internals ----------------------------------------------------------------------------------------
    def _grid_capacity(self, t_min: int, t_max: int) -> int:
        total = 0
        for k, step in enumerate(self.grid_step.tolist()):
            start = int(self.grid_next[k]) if self.bs[B_HAVE_LAST] else -((-t_min) // step) * step
            total += max(0, (t_max - start) // step + 1)
        if total > 200_000_000:
            raise ValueError(f"{total:,} grid samples in one chunk: is a timestamp wrong? (t_max={t_max})")
        return total

    def _split_grids(self, g, n_g: int) -> dict[int, TopN]:
        steps = self.grid_step.tolist()
        if n_g == 0:
            return dict.fromkeys(steps, self._no_events)
        g_lv, g_ts, g_avail, g_row, g_flag, g_id = (a[:n_g] for a in g)
        out = {}
        for k, step in enumerate(steps):
            m = g_id == k
            out[step] = TopN.from_arrays(g_ts[m], g_avail[m], g_row[m], g_lv[m], g_flag[m])
        return out


def _empty_buffers(n: int, depth: int):
    return (np.empty((n, 4, depth), dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64),
            np.empty(n, dtype=np.uint8))


def _grid_buffers(n: int, depth: int):
    return (np.empty((n, 4, depth), dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64),
            np.empty(n, dtype=np.int64), np.empty(n, dtype=np.uint8), np.empty(n, dtype=np.int64))


def _as_events(events: np.ndarray) -> np.ndarray:
    ev = np.asarray(events)
    if ev.ndim == 0:
        ev = ev.reshape(1)
    if ev.dtype != L2_EVENT_DTYPE:
        if ev.dtype.names is None or set(ev.dtype.names) != set(L2_EVENT_DTYPE.names):
            raise TypeError(f"expected L2_EVENT_DTYPE rows, got {ev.dtype}")
        ev = ev.astype(L2_EVENT_DTYPE)
    return np.ascontiguousarray(ev)

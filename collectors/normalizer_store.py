"""What :class:`collectors.coinbase.CoinbaseNormalizer` keeps between frames, for frames fed one by one (``feed``)
and frames taken in bulk from a scanned capture buffer (``feed_scanned``, :mod:`collectors.frame_scan`).

* :class:`RecentFrames`: the last ``RECENT_FRAMES`` accepted frames of one connection (sequence number -> text), to
  tell a duplicate (identical text) from a late frame. Frames taken in bulk are referenced by their line in their
  scan block, so nothing is copied per frame.
* :class:`RecentTradeIds`: the last ``RECENT_TRADE_IDS`` accepted trade ids of one product, 8 bytes each (an
  ``OrderedDict`` of the same ids took ~26 MB per product at the limit, measured with tracemalloc).
* :class:`ArrivalRows`: per-product rows of one kind (L2 events or trades) in arrival order, mixing row tuples
  and row ranges of scan blocks; ``take`` returns one array per product, ordered exactly as the rows arrived.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import orjson

from collectors.frame_scan import group_runs

RECENT_FRAMES = 4096  # per connection: a duplicate older than this is reported as a late frame
RECENT_TRADE_IDS = 200_000  # per product: trade ids remembered for deduplication (1.6 MB each)


class RecentFrames:
    """Ring of the last ``RECENT_FRAMES`` accepted frames of one connection (their sequence numbers increase).

    A frame fed one by one is kept as its text; a frame taken in bulk as (scan block, line), the block kept alive
    while the ring refers to it (at most ``MAX_BLOCKS``; beyond that the oldest block's frames are copied out)."""

    MAX_BLOCKS = 4

    def __init__(self, size: int | None = None):
        self.size = size = size or RECENT_FRAMES
        self.seq = np.empty(size, np.int64)
        self.slot = np.full(size, -1, np.int64)  # >= 0: line `line` of self.blocks[slot]
        self.line = np.empty(size, np.int64)
        self.text: list = [None] * size  # str (fed one by one) or escaped bytes (copied out of a block)
        self.blocks: dict[int, object] = {}
        self.n = 0  # frames ever added

    def add(self, seq: int, raw: str) -> None:
        p = self.n % self.size
        self.seq[p] = seq
        self.slot[p] = -1
        self.text[p] = raw
        self.n += 1

    def add_block(self, block, first: int, stop: int) -> None:
        """Lines ``first:stop`` of ``block`` (accepted frames)."""
        slot = self._slot_of(block)
        k = min(stop - first, self.size)
        self.n += stop - first - k
        src = stop - k
        while k:  # at most two contiguous pieces of the ring
            p = self.n % self.size
            m = min(k, self.size - p)
            self.seq[p:p + m] = block.lines["seq"][src:src + m]
            self.slot[p:p + m] = slot
            self.line[p:p + m] = np.arange(src, src + m)
            self.n += m
            src += m
            k -= m

    def same_text(self, seq: int, raw: str) -> bool:
        """Whether an accepted frame among the recent ones had ``seq`` and exactly the text ``raw``."""
        valid = min(self.n, self.size)
        hit = np.flatnonzero(self.seq[:valid] == seq)
        if len(hit) == 0:
            return False
        p = int(hit[0])
        if self.slot[p] >= 0:
            return self.blocks[int(self.slot[p])].raw_bytes(int(self.line[p])) == _escaped(raw)
        text = self.text[p]
        return text == raw if isinstance(text, str) else text == _escaped(raw)

    def _slot_of(self, block) -> int:
        for slot, b in self.blocks.items():
            if b is block:
                return slot
        used = set(np.unique(self.slot[:min(self.n, self.size)]).tolist())
        for slot in [s for s in self.blocks if s not in used]:
            del self.blocks[slot]
        while len(self.blocks) >= self.MAX_BLOCKS:
            oldest = min(self.blocks)
            for p in np.flatnonzero(self.slot == oldest).tolist():
                self.text[p] = self.blocks[oldest].raw_bytes(int(self.line[p]))
                self.slot[p] = -1
            del self.blocks[oldest]
        slot = max(self.blocks, default=-1) + 1
        self.blocks[slot] = block
        return slot


class RecentTradeIds:
    """The last ``size`` accepted trade ids of one product, first in first out (a ring of int64).

    Venue trade ids increase, so an id above every id ever added is new without a search; any other id (the
    recent trades a subscription repeats, a replayed frame) is looked up in the ring."""

    def __init__(self, size: int | None = None):
        self.size = size or RECENT_TRADE_IDS
        self.ids = np.empty(self.size, np.int64)
        self.n = 0
        self.top: int | None = None  # the largest id ever added

    def __contains__(self, trade_id: int) -> bool:
        if self.top is None or trade_id > self.top:
            return False
        return bool((self.ids[:min(self.n, self.size)] == trade_id).any())

    def add(self, trade_id: int) -> None:
        self.ids[self.n % self.size] = trade_id
        self.n += 1
        if self.top is None or trade_id > self.top:
            self.top = trade_id

    def add_increasing(self, ids: np.ndarray) -> None:
        """``add`` each of ``ids`` in order; they increase, each above every id added before."""
        k = min(len(ids), self.size)
        self.n += len(ids) - k
        src = len(ids) - k
        while k:  # at most two contiguous pieces of the ring
            p = self.n % self.size
            m = min(k, self.size - p)
            self.ids[p:p + m] = ids[src:src + m]
            self.n += m
            src += m
            k -= m
        if len(ids):
            self.top = int(ids[-1])

    def __len__(self) -> int:
        return min(self.n, self.size)


def _escaped(raw: str) -> bytes:
    """The frame text as a capture line holds it (``orjson`` string escaping, without the quotes)."""
    return orjson.dumps(raw)[1:-1]


class ArrivalRows:
    """Per-product rows of one kind in arrival order: row tuples (``add``) and row ranges of scan blocks
    (``add_block``; a range may hold rows of other kinds too: only rows of lines with scan status ``status`` are
    this store's). ``dtype``: the rows' dtype (``L2_EVENT_DTYPE`` or ``TRADE_DTYPE``).

    Order bookkeeping: ``taken`` counts block rows added so far; a product's tuples remember it (``marks``) when
    it changed since the product's previous tuple, so ``take`` can interleave both kinds exactly (a tuple added
    after ``x`` block rows goes after block row ``x - 1`` and before block row ``x``)."""

    def __init__(self, dtype: np.dtype, status: int):
        self.dtype, self.status = dtype, status
        self.tuples: dict[str, list] = defaultdict(list)
        self.marks: dict[str, list] = defaultdict(list)  # (tuple count, block rows taken before it)
        self.runs: list = []  # (BlockRows of a scan block, first row, stop row)
        self.taken = 0

    def add(self, product: str, rows: list) -> None:
        lst = self.tuples[product]
        if self.taken:
            marks = self.marks[product]
            if (marks[-1][1] if marks else 0) != self.taken:
                marks.append((len(lst), self.taken))
        lst.extend(rows)

    def add_block(self, block, r0: int, r1: int) -> None:
        block = block.block_rows  # the rows only: the block's text may be freed before the store is drained
        if self.runs and self.runs[-1][0] is block and self.runs[-1][2] == r0:
            self.runs[-1] = (block, self.runs[-1][1], r1)
        else:
            self.runs.append((block, r0, r1))
        self.taken += r1 - r0

    def take(self) -> dict[str, np.ndarray]:
        """Every product's rows (``self.dtype``) in arrival order; empties the store."""
        if not self.runs:
            out = {p: np.array(rows, dtype=self.dtype) for p, rows in self.tuples.items() if rows}
        else:
            out = self._merge()
        self.tuples, self.marks, self.runs, self.taken = defaultdict(list), defaultdict(list), [], 0
        return out

    def _merge(self) -> dict[str, np.ndarray]:
        tuples: dict[str, tuple] = {}  # product -> (sort keys, rows) of its row tuples
        for p, rows in self.tuples.items():
            if rows:
                ords = np.zeros(len(rows), np.int64)
                for k, taken in self.marks.get(p, ()):
                    ords[k:] = taken
                tuples[p] = (2 * ords, np.array(rows, dtype=self.dtype))
        blocks: dict[str, list] = defaultdict(list)  # product -> [(sort keys, rows)] in increasing keys
        base = 0
        by_block: dict[int, list] = {}
        for block, r0, r1 in self.runs:
            by_block.setdefault(id(block), [block, []])[1].append((r0, r1, base))
            base += r1 - r0
        for block, runs in by_block.values():  # blocks come in order, so keys keep increasing
            names = block.table_names
            rows, keys, bounds = group_runs(np.array([r[0] for r in runs], np.int64),
                                            np.array([r[1] - r[0] for r in runs], np.int64),
                                            np.array([r[2] for r in runs], np.int64),
                                            block.prod, block.row_status, self.status, len(names))
            rows = block.rows_as(rows, self.dtype)
            for k in np.flatnonzero(np.diff(bounds)).tolist():
                a, b = bounds[k], bounds[k + 1]
                blocks[names[k]].append((keys[a:b], rows[a:b]))
        out, first = {}, {}
        for p in {**tuples, **blocks}:
            pieces = blocks.get(p, [])
            first[p] = min(([int(pieces[0][0][0])] if pieces else []) + ([int(tuples[p][0][0])] if p in tuples else []))
            if p not in tuples:
                out[p] = concat_rows([r for _, r in pieces])
            elif not pieces:
                out[p] = tuples[p][1]
            else:  # a tuple row goes before the first block row with a larger key (block keys increase)
                t_keys, t_rows = tuples[p]
                at = np.searchsorted(np.concatenate([k for k, _ in pieces]), t_keys)
                out[p] = _interleave([r for _, r in pieces], t_rows, at)
        return dict(sorted(out.items(), key=lambda kv: first[kv[0]]))


def _interleave(pieces: list, extra: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The rows of ``pieces`` (concatenated) with ``extra[i]`` inserted before row ``at[i]`` (``at``
    nondecreasing), as ``np.insert`` would, in one copy of raw records (``np.insert`` goes through a boolean mask
    and copies field by field; the pieces are cut where the extra rows go, not concatenated first)."""
    starts = np.cumsum([0] + [len(p) for p in pieces])
    cuts = np.flatnonzero(np.diff(at)) + 1  # runs of extra rows going to the same place
    segments, prev = [], 0
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(at)]):
        here = int(at[a])
        segments += _rows_between(pieces, starts, prev, here) + [extra[a:b]]
        prev = here
    return concat_rows(segments + _rows_between(pieces, starts, prev, int(starts[-1])))


def _rows_between(pieces: list, starts: np.ndarray, a: int, b: int) -> list:
    """Views of rows ``a:b`` of the pieces' concatenation (``starts``: where each piece begins in it)."""
    out = []
    for k in range(int(np.searchsorted(starts, a, side="right")) - 1, len(pieces)):
        if starts[k] >= b:
            break
        out.append(pieces[k][max(a - starts[k], 0):b - starts[k]])
    return out


def concat_rows(arrays: list) -> np.ndarray:
    """``np.concatenate`` of structured arrays of one dtype, copied as raw records: numpy copies packed
    structured rows field by field, about 12x slower (600k L2 rows: 13 ms vs 1 ms)."""
    dtype = arrays[0].dtype
    raw = np.dtype((np.void, dtype.itemsize))
    return np.concatenate([a.view(raw) for a in arrays]).view(dtype)

"""The incremental feature engine: normalized rows in, final grid rows with every catalog feature out.

Per symbol it runs :class:`kernels.stream.SymbolStream`, the same code ``features build`` runs per hour
partition, so a live row equals the silver row of the same frames bit for bit (``tests/live/test_parity.py``).
The batch rules carry over unchanged: a book is invalid from a gap (sequence jump, disconnect, staleness,
recording start/stop) until its next snapshot, a row whose book is older than 60 s is invalid, and after a whole
clock hour with no data the grid restarts at the next frame instead of filling the hole (``features build``
restarts at the next hour partition; the engine applies the same rule to receive-time hours).

Grid semantics (the latency cost): row g holds the book after the last frame received at or before g, so it is
final only once a frame received after g arrives, or once the caller's timer passes g (:meth:`LiveEngine.flush`,
called with the receive time of the last frame of any symbol or channel, heartbeats included). The row is
therefore emitted ``(first frame after g) - g`` late: about a millisecond at BTC-USD's real rate, up to the
heartbeat period (1 s) in a quiet market. The timer never flushes past the end of the clock hour of the last row seen, which keeps the
hole rule identical to the batch one.

Cross-asset features (table ``cross_asset``: follower vs ``leader`` on the common grid) are computed like
``features build`` does from silver: the touch columns of both rows at the same grid time through
``kernels.cross_asset`` with the state carried and restarted wherever the common grid jumps. A follower's row
waits for the leader's row of the same time; a follower row the leader skipped gets none (NaN), as in batch.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from collectors.bronze import HOUR_NS
from kernels.frame import TOUCH_COLUMNS, touch_frame
from kernels.stream import GridRows, SymbolStream, book_families


@dataclass
class LiveRow:
    """One final grid row of one symbol: every book feature, plus cross-asset features when computed."""

    symbol: str
    grid_ms: int
    t_ns: int
    avail_ns: int
    valid: bool
    values: dict[str, float]  # feature name -> value
    xa_avail_ns: int | None = None  # availability of the cross-asset values (max of both symbols' rows)
    trigger: object = None  # the Received item whose frame made the row final (None for a timer flush)
    t_features_perf_ns: int = 0  # perf_counter_ns when its features were done


@dataclass
class _Pair:
    """Cross-asset state of one follower on one grid."""

    state: dict
    last_t: int | None = None
    follower: deque = field(default_factory=deque)  # LiveRow waiting for the leader's row
    leader: deque = field(default_factory=deque)  # leader LiveRow not yet matched


class LiveEngine:
    """``scales``: product -> (price_exp, size_exp) (``collectors.coinbase.ProductScale``). ``grids_ms``: the clock
    grids to compute. ``leader``: compute cross-asset features of every other symbol against it (None: none)."""

    def __init__(self, scales: dict, grids_ms=(1000,), *, leader: str | None = None, depth: int = 20,
                 families: list[str] | None = None):
        """``families``: the book-table family names to compute (default: all). A family's state depends on its
        own past only, so computing a subset gives the same values for those families."""
        self.grids_ms = tuple(int(g) for g in grids_ms)
        families = [m for m in book_families() if families is None or m.__name__.rsplit(".", 1)[1] in families]
        self.streams = {p: SymbolStream(p, s.price_exp, s.size_exp, grids_ms=self.grids_ms, depth=depth,
                                        families=families) for p, s in scales.items()}
        self._last_hour: dict[str, int] = {}
        self.leader = leader if leader in self.streams else None
        self._pairs: dict[tuple[str, int], _Pair] = {}
        if self.leader is not None:
            from kernels import cross_asset as XA

            self._xa = XA
            for p in self.streams:
                if p != self.leader:
                    for g in self.grids_ms:
                        self._pairs[(p, g)] = _Pair(XA.new_state())
        self.restarts = 0

    # -- input ----------------------------------------------------------------------------------------------
    def feed(self, product: str, l2: np.ndarray | None, trades: np.ndarray | None, *, trigger=None,
             timings=None) -> list[LiveRow]:
        """One received frame's rows of one product. Returns the rows that became final (cross-asset rows of
        followers once their leader row is there). ``timings``: a ``LatencyRecorder`` for book/features."""
        stream = self.streams.get(product)
        if stream is None:
            return []
        first = [a["ts_recv_ns"][0] for a in (l2, trades) if a is not None and len(a)]
        if not first:
            return []
        hour = int(min(first)) // HOUR_NS
        last = self._last_hour.get(product)
        out = []
        if last is not None and hour > last + 1:
            # a whole hour without data: like features build, finish the last hour's rows (its partition is
            # flushed through its end) and restart the grid at this frame instead of filling the hole
            if stream.has_book:
                out += self._run(stream, None, None, (last + 1) * HOUR_NS - 1, None, None)
            stream.restart_grid()
            self.restarts += 1
        self._last_hour[product] = max(hour, last if last is not None else hour)
        if trades is not None and len(trades):
            trades = stream.dedupe(trades)
        return out + self._run(stream, l2, trades, None, trigger, timings)

    def flush(self, now_ns: int, timings=None) -> list[LiveRow]:
        """The timer: emit every grid row with g < ``now_ns`` (receive clock), never past the end of the clock
        hour of each symbol's last row. Call it only when every frame received before ``now_ns`` has been fed and
        no row stamped before ``now_ns`` can still come (the session passes the last frame's receive time)."""
        out = []
        for product, stream in self.streams.items():
            last = self._last_hour.get(product)
            if last is None or not stream.has_book:
                continue
            through = min(int(now_ns) - 1, (last + 1) * HOUR_NS - 1)
            out += self._run(stream, None, None, through, None, timings)
        return out

    def _run(self, stream: SymbolStream, l2, trades, through, trigger, timings) -> list[LiveRow]:
        t0 = time.perf_counter_ns()
        samples = stream.book(l2, through)
        t1 = time.perf_counter_ns()
        if timings is not None and trigger is not None:
            timings.add("book", t1 - t0)
        grids = stream.rows(samples, trades)
        if not grids:
            return []
        t2 = time.perf_counter_ns()
        if timings is not None and trigger is not None:
            timings.add("features", t2 - t1)
        out = []
        for g_ms, rows in grids.items():
            out += self._emit(stream.symbol, g_ms, rows, trigger, t2)
        return out

    # -- output ---------------------------------------------------------------------------------------------
    def _emit(self, symbol: str, g_ms: int, rows: GridRows, trigger, t_perf: int) -> list[LiveRow]:
        f, cols = rows.frame, rows.columns
        names = list(cols)
        mat = np.column_stack([cols[k] for k in names]) if names else np.empty((f.n, 0))
        new = [LiveRow(symbol, g_ms, int(f.t_ns[i]), int(f.avail_ns[i]), bool(f.valid[i]),
                       dict(zip(names, mat[i].tolist())), None, trigger, t_perf) for i in range(f.n)]
        if self.leader is None:
            return new
        if symbol == self.leader:
            done = list(new)
            for (fol, g), pair in self._pairs.items():
                if g == g_ms:
                    pair.leader.extend(new)
                    done += self._match(pair, g_ms)
            return done
        pair = self._pairs[(symbol, g_ms)]
        pair.follower.extend(new)
        return self._match(pair, g_ms)

    def _match(self, pair: _Pair, g_ms: int) -> list[LiveRow]:
        """Pair follower and leader rows of equal grid time, in time order; a follower row the leader has
        passed without a row of its time is released without cross-asset values."""
        out = []
        g_ns = g_ms * 1_000_000
        while pair.follower and pair.leader:
            fr, lr = pair.follower[0], pair.leader[0]
            if fr.t_ns < lr.t_ns:
                out.append(pair.follower.popleft())
            elif lr.t_ns < fr.t_ns:
                pair.leader.popleft()
            else:
                pair.follower.popleft()
                pair.leader.popleft()
                if pair.last_t is None or fr.t_ns != pair.last_t + g_ns:
                    pair.state = self._xa.new_state()  # the common grid jumped: windows restart (as in batch)
                pair.last_t = fr.t_ns
                xa = self._xa.compute(_touch(fr, g_ns), _touch(lr, g_ns), pair.state)
                fr.values.update({k: float(v[0]) for k, v in xa.items()})
                fr.xa_avail_ns = max(fr.avail_ns, lr.avail_ns)
                out.append(fr)
        return out


def _touch(row: LiveRow, g_ns: int):
    col = {"ts_ns": np.array([row.t_ns]), "ts_avail_ns": np.array([row.avail_ns]), "valid": np.array([row.valid])}
    for k in TOUCH_COLUMNS[3:]:
        col[k] = np.array([row.values[k]])
    return touch_frame(row.symbol, g_ns, col)

"""One symbol's exact book and book-table features, fed in chunks of any size: the core that ``features build``
(one hour partition per call) and ``l2lab live`` (one received frame per call) share, so both compute the same
numbers by the same code.

A call :meth:`SymbolStream.process` takes the next normalized L2 rows and trades (receive order) and returns,
per clock grid, the grid rows that became final in it (see :mod:`kernels.book`: row g is final once a frame
received after g arrives, or when the caller flushes through g) with every book-table family computed on them.
Everything is carried between calls (:class:`SymbolState`): the book, each family's state, the trades not yet
assigned to a row, the last trade price and the last sample's stream row. Since the book samples do not depend
on where chunks end and every family's ``compute(frame, state)`` gives the same values row by row as in one
batch (``kernels.catalog``), any chunking gives bit-identical rows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from kernels import catalog
from kernels.book import B_HAVE_LAST, BookRebuilder, TopN
from kernels.frame import MarketFrame, build_frame
from l2lab.schema import TRADE_DTYPE

STATE_VERSION = 6
RECENT_IDS = 200_000
_NO_TRADES = np.empty(0, TRADE_DTYPE)


@dataclass
class SymbolState:
    """Everything carried from one chunk (partition) to the next for one symbol."""

    book: dict | None = None  # BookRebuilder.export_state()
    families: dict = field(default_factory=dict)  # grid -> module name -> state
    pending_trades: dict = field(default_factory=dict)  # grid -> trades received after its last grid time
    last_price: dict = field(default_factory=dict)  # grid -> last trade price
    last_row: dict = field(default_factory=dict)  # grid -> last sample's stream row
    last_trade_ns: dict = field(default_factory=dict)  # grid -> receive time of the last trade used
    done: list = field(default_factory=list)  # partitions processed, in order (features build)
    fingerprints: dict = field(default_factory=dict)  # partition -> its bronze files (name, size) when built
    recent_trade_ids: dict = field(default_factory=dict)  # trade id -> None, the last RECENT_IDS (dedupe)
    version: int = STATE_VERSION
    catalog: str = ""


@dataclass
class GridRows:
    """Rows of one grid that became final in one call: the frame and every book-table feature column."""

    frame: MarketFrame
    columns: dict[str, np.ndarray]


def book_families() -> list:
    """Modules of the book-table families present in the catalog, in catalog order."""
    paths = []
    for s in catalog.features():
        mod = s.kernel.rsplit(".", 1)[0]
        if s.table == "book" and mod not in paths:
            paths.append(mod)
    return [importlib.import_module(p) for p in paths]


def compute_families(families: list, frame: MarketFrame, states: dict) -> dict[str, np.ndarray]:
    """Every family's columns for ``frame``, starting from and updating ``states`` (module name -> state)."""
    cols: dict[str, np.ndarray] = {}
    for module in families:
        name = module.__name__
        if name not in states:
            states[name] = module.new_state()
        cols.update(module.compute(frame, states[name]))
    return cols


def dedupe_trades(trades: np.ndarray, recent: dict) -> np.ndarray:
    """Drop trades whose id was already seen (a collector restart re-records the venue's recent trades);
    ``recent`` keeps the last RECENT_IDS ids across calls."""
    keep = np.ones(len(trades), bool)
    for i, tid in enumerate(trades["trade_id"].tolist()):
        if tid in recent:
            keep[i] = False
        else:
            recent[tid] = None
    while len(recent) > RECENT_IDS:
        recent.pop(next(iter(recent)))
    return trades[keep]


class SymbolStream:
    """The incremental book + features of one symbol on clock grids (``grids_ms``), with its state carried.

    ``state``: a :class:`SymbolState` to resume from (default: a fresh one). ``families``: the family modules
    (default: every book-table family of the catalog)."""

    def __init__(self, symbol: str, price_exp: int, size_exp: int, *, grids_ms, depth: int = 20,
                 state: SymbolState | None = None, families: list | None = None):
        self.symbol = symbol
        self.price_exp, self.size_exp = int(price_exp), int(size_exp)
        self.grids_ms = tuple(int(g) for g in grids_ms)
        self.grids_ns = tuple(g * 1_000_000 for g in self.grids_ms)
        self.families = book_families() if families is None else families
        self.state = state if state is not None else SymbolState()
        st = self.state
        self.rb = (BookRebuilder.from_state(st.book, event_time=False) if st.book is not None
                   else BookRebuilder(1, depth=depth, grids_ns=self.grids_ns, event_time=False))

    @property
    def has_book(self) -> bool:
        """At least one frame ended (the grids are running)."""
        return bool(self.rb.bs[B_HAVE_LAST])

    def restart_grid(self) -> None:
        """After a hole with no data at all (hours without bronze, in ``features build``): the grids restart at
        the next frame instead of filling the hole, and trades waiting for a row inside the hole are dropped."""
        self.rb.bs[B_HAVE_LAST] = 0
        self.state.pending_trades.clear()

    def dedupe(self, trades: np.ndarray) -> np.ndarray:
        return dedupe_trades(trades, self.state.recent_trade_ids)

    def process(self, events: np.ndarray | None, trades: np.ndarray | None = None,
                flush_through_ns: int | None = None) -> dict[int, GridRows]:
        """Feed the next L2 rows and (deduplicated) trades; with ``flush_through_ns``, also emit every grid time
        <= it (every frame received by then must have been fed). Returns grid step (ms) -> the rows now final."""
        return self.rows(self.book(events, flush_through_ns), trades)

    def book(self, events: np.ndarray | None, flush_through_ns: int | None = None) -> dict[int, list]:
        """First half of :meth:`process`: the book. Returns grid step (ns) -> the grid samples now final."""
        rb = self.rb
        samples = rb.process(events).grids if events is not None and len(events) else {}
        final = rb.flush(flush_through_ns) if flush_through_ns is not None else {}
        return {g_ns: [x for x in (samples.get(g_ns), final.get(g_ns)) if x is not None and len(x)]
                for g_ns in self.grids_ns}

    def rows(self, samples: dict[int, list], trades: np.ndarray | None = None) -> dict[int, GridRows]:
        """Second half of :meth:`process`: trades assigned to the new grid samples, frames, every family."""
        st = self.state
        trades = _NO_TRADES if trades is None else trades
        out: dict[int, GridRows] = {}
        for g_ms, g_ns in zip(self.grids_ms, self.grids_ns):
            parts = samples.get(g_ns) or []
            if not parts and not len(trades):
                continue
            pending = st.pending_trades.get(g_ms)
            grid_trades = np.concatenate([pending, trades]) if pending is not None else trades
            if not parts:
                st.pending_trades[g_ms] = grid_trades
                continue
            top = parts[0] if len(parts) == 1 else TopN.concat(parts)
            last = int(top.ts_ns[-1])
            used = grid_trades[grid_trades["ts_recv_ns"] <= last]
            # trades after this grid's last time belong to its next row
            st.pending_trades[g_ms] = grid_trades[grid_trades["ts_recv_ns"] > last]
            frame = build_frame(self.symbol, top, used, self.price_exp, self.size_exp, g_ns,
                                st.last_price.get(g_ms, np.nan), st.last_row.get(g_ms),
                                prev_last_trade_ns=st.last_trade_ns.get(g_ms))
            st.last_price[g_ms] = float(frame.last_price[-1])
            st.last_row[g_ms] = int(top.row[-1])
            if len(used):
                st.last_trade_ns[g_ms] = int(used["ts_recv_ns"][-1])
            out[g_ms] = GridRows(frame, compute_families(self.families, frame, st.families.setdefault(g_ms, {})))
        return out

    def export_state(self) -> SymbolState:
        """The state with the book folded in (to save and resume with ``SymbolStream(..., state=...)``)."""
        self.state.book = self.rb.export_state()
        return self.state


__all__ = ["GridRows", "SymbolState", "SymbolStream", "book_families", "compute_families", "dedupe_trades"]

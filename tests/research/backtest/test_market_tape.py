"""The streaming tape: the book at any time equals a one-shot rebuild, across hour partitions, with only the
partitions near the cursor in memory."""

from __future__ import annotations

import numpy as np
import pytest

from collectors.bronze import read_dataset
from kernels.book import BookRebuilder
from l2lab.schema import FLAG_FRAME_END, L2_EVENT_DTYPE
from research.backtest.market import SymbolTape
from simulator.config import load_config as sim_config
from simulator.l2 import MarketSimulator
from simulator.normalized import write_bronze

pytestmark = pytest.mark.timeout(120)
START = 1_767_574_740_000_000_000  # 2026-01-05T00:59:00Z: the session crosses into hour 01


def test_tape_book_equals_one_shot_rebuild_across_partitions(tmp_path):
    write_bronze(MarketSimulator(sim_config(symbols=["ETH-USD", "BTC-USD"]), seed=5, start_ns=START), 150.0,
                 tmp_path, exchange="sim")
    table = read_dataset(tmp_path / "bronze", "l2_events", symbol="ETH-USD")
    ev = np.empty(table.num_rows, L2_EVENT_DTYPE)
    for name in L2_EVENT_DTYPE.names:
        ev[name] = table.column(name).to_numpy()
    ends = np.flatnonzero(ev["flags"] & FLAG_FRAME_END)
    rng = np.random.default_rng(0)
    times = np.sort(rng.integers(ev["ts_recv_ns"][0], ev["ts_recv_ns"][-1], 60))
    times = np.r_[times, ev["ts_recv_ns"][ends[len(ends) // 2]]]  # exactly at a frame's receive time
    times.sort()
    tape = SymbolTape(tmp_path, "sim", "ETH-USD", depth=10)
    ref = BookRebuilder(1, depth=10, grids_ns=(), event_time=False)
    fed = 0
    max_parts = 0
    for t in times.tolist():
        book = tape.book(t)
        upto = int(np.searchsorted(ev["ts_recv_ns"], t, side="right"))
        ref.process(ev[fed:upto])
        fed = upto
        top = ref.top()
        np.testing.assert_allclose(book.bid_px, top.bid_px[0] / 100)
        np.testing.assert_allclose(book.ask_sz, top.ask_sz[0] / 1e8)
        assert book.valid == bool(top.valid[0])
        max_parts = max(max_parts, len(tape._parts))
    assert max_parts <= 2 and len(tape._parts) == 1  # the first hour was dropped once the cursor left it

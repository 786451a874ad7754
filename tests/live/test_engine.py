"""The live engine fed frame by frame equals ``features build`` on the same rows, bit for bit, on both grids,
across an hour boundary, a hole of hours between recordings, and with cross-asset features."""

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pyarrow.parquet as pq
import pytest

from collectors.bronze import read_dataset
from collectors.coinbase import ProductScale
from kernels import catalog
from kernels.pipeline import FeatureBuilder, build_cross_asset
from l2lab.live.engine import LiveEngine
from l2lab.schema import FLAG_FRAME_END, L2_EVENT_DTYPE, TRADE_DTYPE
from simulator.config import load_config
from simulator.l2 import MarketSimulator
from simulator.normalized import write_bronze

SYMBOLS = ["BTC-USD", "ETH-USD"]
BOOK_FEATURES = {s.name for s in catalog.features() if s.table == "book"}
HOUR = 3_600_000_000_000
DAY = 1_767_571_200_000_000_000  # 2026-01-05
pytestmark = pytest.mark.timeout(180)


def as_struct(table, dtype):
    out = np.empty(table.num_rows, dtype)
    for name in dtype.names:
        out[name] = table.column(name).to_numpy()
    return out


def frames_of(root, symbol):
    """Bronze rows of one symbol cut back into received frames, in bronze order (the order the batch reads;
    a recording's stop marker may carry an earlier time than the frame before it), with the trades merged in
    by receive time: (sort key, kind, l2 rows, trades)."""
    ev = as_struct(read_dataset(root / "bronze", "l2_events", symbol=symbol), L2_EVENT_DTYPE)
    tr = as_struct(read_dataset(root / "bronze", "trades", symbol=symbol), TRADE_DTYPE)
    ends = np.flatnonzero(ev["flags"] & FLAG_FRAME_END) + 1
    chunks = [c for c in np.split(ev, ends) if len(c)]
    keys = np.maximum.accumulate([int(c["ts_recv_ns"][0]) for c in chunks])
    out = [(int(k), 0, c, None) for k, c in zip(keys, chunks)]
    for t in np.unique(tr["ts_recv_ns"]):
        out.append((int(t), 1, None, tr[tr["ts_recv_ns"] == t]))
    return sorted(out, key=lambda x: (x[0], x[1]))


def silver(root, table, grid, symbol):
    files = sorted((root / "silver" / f"{table}_{grid}").rglob(f"symbol={symbol}/*/*/part-0.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def run_live(root, grids_ms, leader=None):
    engine = LiveEngine({s: ProductScale(2, 8) for s in SYMBOLS}, grids_ms, leader=leader)
    stream = sorted(((ts, kind, sym, l2, tr) for sym in SYMBOLS for ts, kind, l2, tr in frames_of(root, sym)),
                    key=lambda x: (x[0], x[1], x[2]))
    rows = []
    for i, (ts, _, sym, l2, tr) in enumerate(stream):
        rows += engine.feed(sym, l2, tr)
        if i % 5000 == 0:  # a timer tick now and then: it must not change anything
            rows += engine.flush(ts)
    rows += engine.flush(ts + 1)
    return engine, rows


def assert_live_equals_silver(rows, table, symbol, grid_ms, names):
    live = sorted((r for r in rows if r.symbol == symbol and r.grid_ms == grid_ms), key=lambda r: r.t_ns)
    t = np.array([r.t_ns for r in live])
    # the batch fills the last hour to its end; live stops at the last frame
    table = table.filter(pa.compute.less_equal(table.column("ts_ns"), t[-1]))
    np.testing.assert_array_equal(t, table.column("ts_ns").to_numpy())
    np.testing.assert_array_equal([r.valid for r in live], table.column("valid").to_numpy())
    for name in names:
        want = table.column(name).to_numpy(zero_copy_only=False)
        got = np.array([r.values.get(name, np.nan) for r in live])
        np.testing.assert_array_equal(got, want, err_msg=f"{symbol} {grid_ms} ms {name}")


def test_frame_by_frame_equals_features_build_across_hours_and_a_hole(tmp_path):
    # 01:59:30 -> 01:59:55, then a second recording 03:59:50 -> 04:00:10 (a hole of hours, an hour boundary)
    for start, seconds in ((DAY + 2 * HOUR - 30 * 10**9, 25.0), (DAY + 4 * HOUR - 10 * 10**9, 20.0)):
        sim = MarketSimulator(load_config(symbols=SYMBOLS), seed=3, start_ns=start, record_latent=False)
        write_bronze(sim, seconds, tmp_path)
    FeatureBuilder(tmp_path, grids_ms=(100, 1000), complete_before_ns=DAY + 10 * HOUR).build(SYMBOLS)
    build_cross_asset(tmp_path, grids_ms=(100, 1000))
    engine, rows = run_live(tmp_path, (100, 1000), leader="BTC-USD")
    assert engine.restarts == 2  # both symbols restarted their grid after the hole
    for grid_ms, grid in ((100, "100ms"), (1000, "1s")):
        for sym in SYMBOLS:
            table = silver(tmp_path, "book_features", grid, sym)
            assert table.column("valid").to_numpy().sum() > 0.8 * 40_000 / grid_ms
            names = [c for c in table.column_names if c in BOOK_FEATURES]
            assert len(names) == len(BOOK_FEATURES) > 200
            assert_live_equals_silver(rows, table, sym, grid_ms, names)
        xa = silver(tmp_path, "cross_asset", grid, "ETH-USD")
        xa = xa.filter(pa.compute.less_equal(xa.column("ts_ns"), max(r.t_ns for r in rows)))
        live = {r.t_ns: r for r in rows if r.symbol == "ETH-USD" and r.grid_ms == grid_ms}
        names = [c for c in xa.column_names if c.startswith("xa_")]
        assert len(names) == 17 and xa.num_rows > 0
        for name in names:
            want = xa.column(name).to_numpy(zero_copy_only=False)
            got = np.array([live[t].values[name] for t in xa.column("ts_ns").to_numpy().tolist()])
            np.testing.assert_array_equal(got, want, err_msg=f"{grid} {name}")
        np.testing.assert_array_equal([live[t].xa_avail_ns for t in xa.column("ts_ns").to_numpy().tolist()],
                                      xa.column("ts_avail_ns").to_numpy())

"""The live engine fed in small chunks equals ``features build`` on the same rows, bit for bit, across an hour
boundary and a hole of hours between recordings, cross-asset features included (1 s grid; the 100 ms grid and
one-frame feeding through the real collector are in test_parity.py)."""

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


def run_live(root, grids_ms, leader=None, per_call=8):
    """Every symbol's frames in receive order, ``per_call`` consecutive frames of one symbol per feed (the replay
    test feeds one frame at a time through the real collector), and a timer tick now and then."""
    engine = LiveEngine({s: ProductScale(2, 8) for s in SYMBOLS}, grids_ms, leader=leader)
    stream = sorted(((ts, kind, sym, l2, tr) for sym in SYMBOLS for ts, kind, l2, tr in frames_of(root, sym)),
                    key=lambda x: (x[0], x[1], x[2]))
    rows, batch = [], []

    def feed():
        l2 = [x[3] for x in batch if x[3] is not None]
        tr = [x[4] for x in batch if x[4] is not None]
        out = engine.feed(batch[0][2], np.concatenate(l2) if l2 else None, np.concatenate(tr) if tr else None)
        batch.clear()
        return out

    for i, item in enumerate(stream):
        if batch and (item[2] != batch[0][2] or len(batch) == per_call or item[0] // HOUR != batch[0][0] // HOUR):
            rows += feed()
        batch.append(item)
        if i % 5000 == 0:  # the timer must not change anything
            rows += feed() + engine.flush(item[0])
    rows += feed() + engine.flush(stream[-1][0] + 1)
    return engine, rows


def assert_live_equals_silver(rows, table, symbol, grid_ms, names):
    live = sorted((r for r in rows if r.symbol == symbol and r.grid_ms == grid_ms), key=lambda r: r.t_ns)
    t = np.array([r.t_ns for r in live])
    # the batch fills the last hour to its end; live stops at the last frame
    table = table.filter(pa.compute.less_equal(table.column("ts_ns"), t[-1]))
    np.testing.assert_array_equal(t, table.column("ts_ns").to_numpy())
    np.testing.assert_array_equal([r.valid for r in live], table.column("valid").to_numpy())
    np.testing.assert_array_equal([r.avail_ns for r in live], table.column("ts_avail_ns").to_numpy())
    for name in names:
        want = table.column(name).to_numpy(zero_copy_only=False)
        got = np.array([r.values.get(name, np.nan) for r in live])
        np.testing.assert_array_equal(got, want, err_msg=f"{symbol} {grid_ms} ms {name}")


def test_engine_equals_features_build_across_hours_and_a_hole(tmp_path):
    # 01:59:45 -> 01:59:57, then a second recording 03:59:54 -> 04:00:06 (a hole of hours, an hour boundary)
    for start, seconds in ((DAY + 2 * HOUR - 15 * 10**9, 12.0), (DAY + 4 * HOUR - 6 * 10**9, 12.0)):
        sim = MarketSimulator(load_config(symbols=SYMBOLS), seed=3, start_ns=start, record_latent=False)
        write_bronze(sim, seconds, tmp_path)
    FeatureBuilder(tmp_path, grids_ms=(1000,), complete_before_ns=DAY + 10 * HOUR).build(SYMBOLS)
    build_cross_asset(tmp_path, grids_ms=(1000,))
    engine, rows = run_live(tmp_path, (1000,), leader="BTC-USD")
    assert engine.restarts == 2  # both symbols restarted their grid after the hole
    for grid_ms, grid in ((1000, "1s"),):
        for sym in SYMBOLS:
            table = silver(tmp_path, "book_features", grid, sym)
            assert table.column("valid").to_numpy().sum() > 0.8 * 24_000 / grid_ms
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

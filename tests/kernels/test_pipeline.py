"""features build: bronze -> silver with state carried across hour partitions, resumable, point in time."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.bronze import read_dataset
from kernels.book import BookRebuilder
from kernels.frame import build_frame
from kernels.pipeline import FeatureBuilder
from kernels.stream import book_families, compute_families
from l2lab.schema import L2_EVENT_DTYPE, TRADE_DTYPE
from simulator.l2 import MarketSimulator
from simulator.normalized import write_bronze

START = 1_767_574_680_000_000_000  # 2026-01-05T00:58:00Z: the session crosses into hour 01
pytestmark = pytest.mark.timeout(120)


def silver(root, grid, symbol):
    files = sorted((root / "silver" / f"book_features_{grid}").rglob(f"symbol={symbol}/*/*/part-0.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def assert_tables_equal(a, b):
    """Same columns, and every value equal bit for bit (NaN equals NaN)."""
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name).to_numpy(zero_copy_only=False), b.column(name).to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert np.array_equal(x, y), name


def as_struct(table, dtype):
    out = np.empty(table.num_rows, dtype)
    for name in dtype.names:
        out[name] = table.column(name).to_numpy()
    return out


@pytest.fixture(scope="module")
def bronze_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    sim = MarketSimulator(seed=9, start_ns=START)
    write_bronze(sim, 240.0, root)
    return root


def test_partitions_carry_state_exactly(bronze_root, tmp_path):
    rep = FeatureBuilder(bronze_root, grids_ms=(100, 1000)).build(["BTC-USD"])
    assert rep["partitions"] == 2
    got = silver(bronze_root, "1s", "BTC-USD")
    # the same features computed in one go over the whole session, no partitions
    ev = as_struct(read_dataset(bronze_root / "bronze", "l2_events", symbol="BTC-USD"), L2_EVENT_DTYPE)
    tr = as_struct(read_dataset(bronze_root / "bronze", "trades", symbol="BTC-USD"), TRADE_DTYPE)
    rb = BookRebuilder(1, depth=20, grids_ns=(1_000_000_000,), event_time=False)
    grids = rb.process(ev).grids
    top = grids[1_000_000_000]
    frame = build_frame("BTC-USD", top, tr[tr["ts_recv_ns"] <= top.ts_ns[-1]], 2, 8, 1_000_000_000)
    # every book family of the catalog, fresh state, one pass (trades cross the hour boundary in the silver run)
    want = compute_families(book_families(), frame, {})
    assert len(want) >= 200
    n = frame.n
    assert got.num_rows >= n > 200
    np.testing.assert_array_equal(got.column("ts_ns").to_numpy()[:n], frame.t_ns)
    # availability too: the last trade's time is carried across the hour boundary like its price
    np.testing.assert_array_equal(got.column("ts_avail_ns").to_numpy()[:n], frame.avail_ns)
    for name, v in want.items():
        np.testing.assert_array_equal(got.column(name).to_numpy()[:n], v, err_msg=name)
    assert not got.column("valid").to_numpy()[n:].any()  # after the recording's stop marker
    assert np.all(got.column("ts_avail_ns").to_numpy() <= got.column("ts_ns").to_numpy())


def test_resume_after_interruption_gives_identical_silver(bronze_root, tmp_path):
    import shutil

    full = tmp_path / "full"
    shutil.copytree(bronze_root / "bronze", full / "bronze")
    FeatureBuilder(full, grids_ms=(1000,)).build(["ETH-USD"])
    part = tmp_path / "part"
    shutil.copytree(bronze_root / "bronze", part / "bronze")
    # build only the first hour, as if interrupted: hide the second hour from the first run
    hidden = part / "hidden"
    second = sorted((part / "bronze" / "l2_events").rglob("hour=01"))
    for i, d in enumerate(second):
        shutil.move(str(d), str(hidden / str(i)))
    FeatureBuilder(part, grids_ms=(1000,)).build(["ETH-USD"])
    for i, d in enumerate(second):
        shutil.move(str(hidden / str(i)), str(d))
    rep = FeatureBuilder(part, grids_ms=(1000,)).build(["ETH-USD"])
    assert rep["skipped"] == 1 and rep["partitions"] == 1
    assert_tables_equal(silver(part, "1s", "ETH-USD"), silver(full, "1s", "ETH-USD"))


def test_warehouse_views_over_silver(bronze_root, monkeypatch):
    from l2lab.settings import Settings
    from l2lab.warehouse import connect

    FeatureBuilder(bronze_root, grids_ms=(1000,)).build(["SOL-USD"])
    con = connect(Settings.load(bronze_root))
    n, valid = con.sql("SELECT count(*), sum(valid::int) FROM silver_book_features_1s WHERE symbol = 'SOL-USD'").fetchone()
    assert n > 200 and 0 < valid <= n
    con.close()


def test_labels_cross_asset_and_gold(bronze_root, tmp_path):
    import shutil

    from collectors.bronze import BronzeWriter
    from kernels.gold import build_gold
    from kernels.pipeline import build_cross_asset, build_labels
    from simulator.perps import PerpUniverse

    root = tmp_path / "d"
    shutil.copytree(bronze_root / "bronze", root / "bronze")
    FeatureBuilder(root, grids_ms=(1000,)).build()
    assert build_labels(root, grids_ms=(1000,))["partitions"] == 6
    lab = pa.concat_tables([pq.read_table(f) for f in sorted((root / "silver" / "labels_1s").rglob("symbol=BTC-USD/*/*/*.parquet"))])
    feats = silver(root, "1s", "BTC-USD")
    assert lab.column("ts_ns").equals(feats.column("ts_ns"))
    fwd = lab.column("fwd_ret_mid_5s").to_numpy(zero_copy_only=False)
    mid = feats.column("mid").to_numpy()
    ok = ~np.isnan(fwd)
    idx = np.flatnonzero(ok)[:50]
    np.testing.assert_allclose(fwd[idx], np.log(mid[idx + 5] / mid[idx]), rtol=1e-12)  # 5 s ahead on a 1 s grid
    assert np.isnan(fwd[-5:]).all()  # no future at the end: NaN, never partial
    xa = build_cross_asset(root, grids_ms=(1000,))
    assert xa["partitions"] == 4  # ETH and SOL, two hours each
    # gold from 1-min bars written as a backfill would
    uni = PerpUniverse(seed=7)
    w = BronzeWriter(root / "bronze", "binanceusdm")
    for sym in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        k = uni.klines(sym, uni.start_ms, uni.start_ms + 3 * 86_400_000 - 60_000)
        n = len(k)
        w.write("ohlcv_1m", {"open_time_ms": k["open_time_ms"], "open": k["open"], "high": k["high"],
                             "low": k["low"], "close": k["close"], "volume": k["volume"],
                             "ts_ingest_ns": np.zeros(n, np.int64), "source": ["test"] * n}, sym)
    g = build_gold(root)
    assert g["symbols"] == 3 and g["hourly_rows"] == 3 * 72 and g["cross_sectional_rows"] == 3 * 72
    hourly = pa.concat_tables([pq.read_table(f) for f in sorted((root / "gold" / "hourly").rglob("symbol=BTCUSDT/*/*.parquet"))])
    first = uni.klines("BTCUSDT", uni.start_ms, uni.start_ms + 3_540_000)
    assert hourly.column("h_open")[0].as_py() == first["open"][0] and hourly.column("h_close")[0].as_py() == first["close"][-1]
    assert hourly.column("ts_ns")[0].as_py() == (uni.start_ms + 3_600_000) * 1_000_000 + 1_000_000  # close + 1 ms
    # Feast's timestamp column is the stamp, as timestamp[ns, UTC], in every feature table (never in labels)
    xs = pq.read_table(next((root / "gold" / "cross_sectional").rglob("*.parquet")))
    xa_t = pq.read_table(next((root / "silver" / "cross_asset_1s").rglob("*.parquet")))
    for t in (feats, xa_t, hourly, xs):
        assert t.schema.field("event_timestamp").type == pa.timestamp("ns", tz="UTC")
        assert t.column("event_timestamp").cast(pa.int64()).equals(t.column("ts_ns"))
    assert "event_timestamp" not in lab.column_names


def test_open_hours_wait_and_changed_bronze_is_refused(bronze_root, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(bronze_root / "bronze", root / "bronze")
    hour01 = START + 2 * 60 * 10**9  # 01:00
    rep = FeatureBuilder(root, grids_ms=(1000,), complete_before_ns=hour01 + 30 * 60 * 10**9).build(["BTC-USD"])
    assert rep["partitions"] == 1 and rep["open"] == 1  # hour 01 is not over yet
    rep = FeatureBuilder(root, grids_ms=(1000,), complete_before_ns=hour01 + 3600 * 10**9).build(["BTC-USD"])
    assert rep["partitions"] == 1 and rep["skipped"] == 1
    extra = next((root / "bronze" / "l2_events").rglob("symbol=BTC-USD/date=*/hour=00")) / "part-9-late.parquet"
    shutil.copy(next(extra.parent.glob("part-*.parquet")), extra)  # bronze rewritten after the build
    with pytest.raises(RuntimeError, match="changed after its features were built"):
        FeatureBuilder(root, grids_ms=(1000,)).build(["BTC-USD"])


def test_holes_between_recordings_are_never_valid_nor_misfiled(tmp_path):
    """Two recordings three hours apart: no row after the first one ends is valid, and every row lands in the
    partition of its own hour (the grid resumes at the next recording's hour instead of filling the hole)."""
    hour = 3_600_000_000_000
    day = 1_767_571_200_000_000_000
    for start in (day + 600 * 10**9, day + 3 * hour + 600 * 10**9):
        write_bronze(MarketSimulator(seed=5, start_ns=start), 30.0, tmp_path)
    FeatureBuilder(tmp_path, grids_ms=(1000,), complete_before_ns=day + 10 * hour).build(["BTC-USD"])
    files = sorted((tmp_path / "silver" / "book_features_1s").rglob("symbol=BTC-USD/*/*/part-0.parquet"))
    assert [f.parent.name for f in files] == ["hour=00", "hour=03"]
    for f in files:
        t = pq.read_table(f)
        ts, valid = t.column("ts_ns").to_numpy(), t.column("valid").to_numpy()
        h = int(f.parent.name.split("=")[1])
        assert ts.min() >= day + h * hour and ts.max() < day + (h + 1) * hour
        assert valid.sum() >= 25  # the 30 s recording
        assert not valid[ts > ts[valid].max()].any()
        assert ts[valid].max() <= ts[valid].min() + 31 * 10**9


def test_duplicate_trades_are_dropped_across_partitions():
    from kernels.stream import dedupe_trades as _dedupe_trades

    recent = {}
    a = np.zeros(3, TRADE_DTYPE)
    a["trade_id"] = [1, 2, 3]
    b = np.zeros(3, TRADE_DTYPE)
    b["trade_id"] = [3, 4, 4]  # a restart repeats 3; a second copy of 4 in the same batch
    assert _dedupe_trades(a, recent)["trade_id"].tolist() == [1, 2, 3]
    assert _dedupe_trades(b, recent)["trade_id"].tolist() == [4]


def test_cross_asset_restarts_after_a_hole(tmp_path):
    """Cross-asset windows count rows: across a hole between recordings they restart, so the second recording's
    values equal those of a build that only ever saw the second recording."""
    from kernels.pipeline import build_cross_asset

    hour = 3_600_000_000_000
    day = 1_767_571_200_000_000_000
    both, second = tmp_path / "both", tmp_path / "second"
    for root, starts in ((both, (day + 600 * 10**9, day + 3 * hour + 600 * 10**9)), (second, (day + 3 * hour + 600 * 10**9,))):
        for start in starts:
            write_bronze(MarketSimulator(seed=5, start_ns=start), 40.0, root)
        FeatureBuilder(root, grids_ms=(1000,), complete_before_ns=day + 10 * hour).build()
        build_cross_asset(root, grids_ms=(1000,))
    a = pq.read_table(next((both / "silver" / "cross_asset_1s").rglob("symbol=ETH-USD/*/hour=03/part-0.parquet")))
    b = pq.read_table(next((second / "silver" / "cross_asset_1s").rglob("symbol=ETH-USD/*/hour=03/part-0.parquet")))
    assert_tables_equal(a, b)

import numpy as np
import pytest

from collectors.bronze import BronzeWriter, read_dataset
from collectors.coinbase import CoinbaseNormalizer, ProductScale
from l2lab.cli import main
from l2lab.settings import Settings
from l2lab.warehouse import connect

T0 = 1_767_571_200_000_000_000


def frame(seq, ts_text, price):
    return (f'{{"channel":"l2_data","client_id":"","timestamp":"{ts_text}","sequence_num":{seq},"events":'
            f'[{{"type":"{"snapshot" if seq == 0 else "update"}","product_id":"BTC-USD","updates":[{{"side":"bid",'
            f'"event_time":"{ts_text}","price_level":"{price}","new_quantity":"0.5"}}]}}]}}')


def test_hour_partitions_views_and_sql(data_root, capsys):
    n = CoinbaseNormalizer({"BTC-USD": ProductScale(2, 8)})
    n.feed(T0 + 1, frame(0, "2026-01-05T00:00:00Z", "100.01"))
    n.feed(T0 + 3_600_000_000_001, frame(1, "2026-01-05T01:00:00Z", "100.02"))
    n.feed(T0 + 3_600_000_000_002, "{not json")
    b = n.drain()
    w = BronzeWriter(Settings.load().layer_dir("bronze"), "coinbase")
    files = w.write_events("l2_events", "BTC-USD", b.l2["BTC-USD"], 2, 8)
    w.write_records("quarantine", b.quarantine)
    assert sorted(f.parent.name for f in files) == ["hour=00", "hour=01"]
    assert "symbol=BTC-USD" in str(files[0]) and "date=2026-01-05" in str(files[0])
    t = read_dataset(data_root / "bronze", "l2_events", symbol="BTC-USD")
    assert t.column("kind").to_pylist()[0] == 3  # the recording's start marker (L2_GAP)
    assert t.column("price").to_pylist()[1:] == [10001, 10002]
    con = connect()
    rows = con.sql("SELECT hour, price, price_f FROM bronze_l2_events WHERE kind != 3 ORDER BY ts_recv_ns").fetchall()
    assert rows == [("00", 10001, 100.01), ("01", 10002, 100.02)]
    assert con.sql("SELECT count(*) FROM bronze_trades").fetchone() == (0,)  # empty view, right columns
    assert con.sql("SELECT reason FROM bronze_quarantine").fetchone()[0].startswith("malformed JSON")
    con.close()
    assert main(["sql", "SELECT count(*) AS n FROM bronze_l2_events"]) == 0
    assert "3" in capsys.readouterr().out
    assert main(["sql", "SELECT * FROM nope"]) == 2


def _events(n, t0, price0):
    from l2lab.schema import L2_EVENT_DTYPE
    rows = np.zeros(n, L2_EVENT_DTYPE)
    rows["ts_recv_ns"] = t0 + np.arange(n) * 1_000_000
    rows["ts_exch_ns"] = rows["ts_recv_ns"] - 5
    rows["seq"] = np.arange(n)
    rows["kind"], rows["side"] = 1, np.arange(n) % 2
    rows["price"] = price0 + np.arange(n) % 7
    rows["size"] = np.where(np.arange(n) % 5 == 0, 0, 12345)
    return rows


def test_event_files_written_before_the_not_null_schema_are_read_beside_new_ones(data_root):
    """A partition holding a file in the earlier layout (nullable columns, dictionaries, zstd) and one written now
    (not null, delta-encoded, LZ4 or uncompressed): every reader sees both files' rows; a file whose columns
    differ otherwise still fails."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from collectors.bronze import SCHEMAS, read_partition
    from l2lab.schema import L2_EVENT_DTYPE

    w = BronzeWriter(Settings.load().layer_dir("bronze"), "coinbase")
    old, new = _events(50, T0, 10_000), _events(70, T0 + 10**9, 20_000)
    [path] = w.write_events("l2_events", "BTC-USD", new, 2, 8)
    cols = {n: old[n] for n in old.dtype.names} | {"price_exp": np.full(50, 2, np.int8),
                                                     "size_exp": np.full(50, 8, np.int8)}
    earlier = pa.schema([f.with_nullable(True) for f in SCHEMAS["l2_events"]])
    pq.write_table(pa.table(cols, schema=earlier), path.parent / f"part-{T0}-old.parquet", compression="zstd")

    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunks = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert {c: chunks[c].compression for c in ("ts_exch_ns", "price", "size")} == dict.fromkeys(
        ("ts_exch_ns", "price", "size"), "UNCOMPRESSED")
    # pyarrow names the codec "LZ4"; in the file it is LZ4_RAW (DuckDB's parquet_metadata says so)
    assert chunks["ts_recv_ns"].compression == "LZ4" and not chunks["ts_recv_ns"].has_dictionary_page
    assert all("DELTA_BINARY_PACKED" in c.encodings for c in chunks.values())
    assert not pq.ParquetFile(path).schema_arrow.field("price").nullable

    both = np.concatenate([old, new])
    t = read_dataset(data_root / "bronze", "l2_events", symbol="BTC-USD")
    assert t.column("price").to_pylist() == both["price"].tolist()
    assert read_partition(path.parent, L2_EVENT_DTYPE).tobytes() == both.tobytes()
    con = connect()
    assert con.sql("SELECT count(*), sum(price), sum(size), sum(kind), sum(side) FROM bronze_l2_events").fetchone() == (
        120, int(both["price"].sum()), int(both["size"].sum()), 120, int(both["side"].sum()))
    con.close()

    pq.write_table(pa.table(cols).drop_columns(["flags"]), path.parent / f"part-{T0 + 1}-drift.parquet")
    with pytest.raises(pa.ArrowInvalid):
        read_dataset(data_root / "bronze", "l2_events", symbol="BTC-USD")

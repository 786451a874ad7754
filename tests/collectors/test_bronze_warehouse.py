
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

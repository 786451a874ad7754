from collectors.bronze import BronzeWriter
from collectors.coinbase import CoinbaseNormalizer, ProductScale
from collectors.quality import quality_report
from l2lab.cli import main

T0 = 1_767_571_200_000_000_000


def frame(seq, etype, updates, second=0, product="BTC-USD"):
    ts = f"2026-01-05T00:00:{second:02d}Z"
    ups = ",".join(f'{{"side":"{s}","event_time":"{ts}","price_level":"{p}","new_quantity":"{q}"}}'
                   for s, p, q in updates)
    return (f'{{"channel":"l2_data","client_id":"","timestamp":"{ts}","sequence_num":{seq},'
            f'"events":[{{"type":"{etype}","product_id":"{product}","updates":[{ups}]}}]}}')


def test_report_counts_gaps_crossed_duplicates_and_quarantine(tmp_path, capsys):
    n = CoinbaseNormalizer({"BTC-USD": ProductScale(2, 8), "ETH-USD": ProductScale(2, 8)})
    n.feed(T0, frame(0, "snapshot", [("bid", "10", "1"), ("offer", "11", "1")], product="ETH-USD"), conn=1)
    n.feed(T0, frame(0, "snapshot", [("bid", "100", "1"), ("offer", "101", "1")]))
    n.feed(T0 + 10**9, frame(1, "update", [("bid", "102", "1")]))  # crosses the book
    n.feed(T0 + 2 * 10**9, frame(1, "update", [("bid", "102", "1")]))  # duplicate
    n.feed(T0 + 3 * 10**9, frame(3, "update", [("bid", "99", "1")]))  # gap: 2 missing
    n.feed(T0 + 4 * 10**9, "{oops")
    b = n.drain()
    w = BronzeWriter(tmp_path / "bronze", "coinbase")
    for product, rows in b.l2.items():
        w.write_events("l2_events", product, rows, 2, 8)
    w.write_records("quarantine", b.quarantine)
    rep = quality_report(tmp_path)
    assert rep["symbol"].tolist() == ["*", "BTC-USD", "ETH-USD"]
    row, wide, eth = (rep.set_index("symbol").loc[s].to_dict() for s in ("BTC-USD", "*", "ETH-USD"))
    # the book stays crossed (bid 102 > ask 101) after the crossing frame, the gap marker and the last update
    # gaps: the recording's start marker and the sequence gap
    assert row["snapshots"] == 1 and row["gaps"] == 2 and row["crossed_frames"] == 3
    # each quarantined frame counts once: in the row of the product it names, or exchange-wide if it names none
    assert row["quarantined"] == 1 and row["duplicate_frames"] == 1 and row["malformed"] == 0
    assert wide["quarantined"] == 1 and wide["malformed"] == 1 and wide["frames"] == 0
    assert eth["quarantined"] == 0 and eth["snapshots"] == 1
    assert main(["--data-root", str(tmp_path), "quality", "--csv"]) == 0
    assert capsys.readouterr().out.startswith("symbol,date,hour,frames")

import numpy as np
import pytest

from collectors.coinbase import CoinbaseNormalizer, ProductScale
from l2lab.schema import (FLAG_BOOK_RESET, FLAG_FRAME_END, GAP_DISCONNECT, GAP_SEQUENCE, GAP_START, GAP_STOP,
                          L2_DELETE, L2_GAP,
                          L2_SNAPSHOT, L2_UPDATE, SIDE_ASK, SIDE_BID)

TS = "2026-01-05T00:00:01.5Z"


def l2(seq, etype, updates, product="BTC-USD"):
    ups = ",".join(
        f'{{"side":"{s}","event_time":"{TS}","price_level":"{p}","new_quantity":"{q}"}}' for s, p, q in updates
    )
    return (f'{{"channel":"l2_data","client_id":"","timestamp":"{TS}","sequence_num":{seq},'
            f'"events":[{{"type":"{etype}","product_id":"{product}","updates":[{ups}]}}]}}')


def trades(seq, items, product="BTC-USD"):
    body = ",".join(
        f'{{"trade_id":"{i}","product_id":"{product}","price":"{p}","size":"{q}","side":"{s}","time":"{TS}"}}'
        for i, p, q, s in items
    )
    return (f'{{"channel":"market_trades","client_id":"","timestamp":"{TS}","sequence_num":{seq},'
            f'"events":[{{"type":"update","trades":[{body}]}}]}}')


def data(rows):
    """Rows without the recording-start markers."""
    first_gap = (rows["kind"] == L2_GAP) & (np.arange(len(rows)) == 0)
    return rows[~first_gap]


@pytest.fixture
def norm():
    return CoinbaseNormalizer({"BTC-USD": ProductScale(2, 8), "ETH-USD": ProductScale(2, 8)})


def test_snapshot_update_delete_exact(norm):
    norm.feed(10, l2(0, "snapshot", [("bid", "100.5", "1.25"), ("offer", "100.51", "0.00000001")]))
    norm.feed(11, l2(1, "update", [("bid", "100.50", "2"), ("offer", "100.51", "0")]))
    rows = data(norm.drain().l2["BTC-USD"])
    assert rows["kind"].tolist() == [L2_SNAPSHOT, L2_SNAPSHOT, L2_UPDATE, L2_DELETE]
    assert rows["side"].tolist() == [SIDE_BID, SIDE_ASK, SIDE_BID, SIDE_ASK]
    assert rows["price"].tolist() == [10050, 10051, 10050, 10051]
    assert rows["size"].tolist() == [125_000_000, 1, 200_000_000, 0]
    assert rows["flags"].tolist() == [FLAG_BOOK_RESET, FLAG_FRAME_END, 0, FLAG_FRAME_END]
    assert rows["ts_exch_ns"][0] == 1_767_571_201_500_000_000


def test_sequence_gap_marks_every_l2_product(norm):
    norm.feed(1, l2(0, "snapshot", [("bid", "1", "1")]))
    norm.feed(2, l2(1, "snapshot", [("bid", "2", "1")], "ETH-USD"))
    norm.feed(3, l2(5, "update", [("bid", "1", "2")]))
    b = norm.drain()
    seq_gaps = [g for g in b.gaps if g["kind"] == GAP_SEQUENCE]
    assert len(seq_gaps) == 1 and seq_gaps[0]["expected_seq"] == 2 and seq_gaps[0]["got_seq"] == 5
    for p in ("BTC-USD", "ETH-USD"):
        assert L2_GAP in data(b.l2[p])["kind"].tolist()


def test_duplicates_and_late_frames_are_quarantined_not_applied(norm):
    a = l2(0, "snapshot", [("bid", "1", "1")])
    norm.feed(1, a)
    norm.feed(2, a)  # duplicate
    norm.feed(3, l2(2, "update", [("bid", "1", "3")]))  # gap: 1 missing
    norm.feed(4, l2(1, "update", [("bid", "1", "2")]))  # late
    b = norm.drain()
    reasons = [q["reason"] for q in b.quarantine]
    assert reasons[0].startswith("duplicate frame") and reasons[1].startswith("late frame")
    assert data(b.l2["BTC-USD"])["size"].tolist() == [100_000_000, 0, 300_000_000]


def test_bad_fields_name_the_field_and_gap_the_product(norm):
    norm.feed(1, l2(0, "snapshot", [("bid", "1", "1")]))
    norm.feed(2, l2(1, "update", [("bid", "1.001", "1")]))  # more decimals than the tick allows
    norm.feed(3, l2(2, "update", [("middle", "1", "1")]))
    norm.feed(4, '{"channel":"l2_data"')
    norm.feed(5, '{"type":"error","message":"failure to subscribe"}')
    b = norm.drain()
    reasons = [q["reason"] for q in b.quarantine]
    assert "events[0].updates[0]" in reasons[0] and "decimals" in reasons[0]
    assert "events[0].updates[0]" in reasons[1]
    assert reasons[2].startswith("malformed JSON")
    assert reasons[3].startswith("venue error frame")
    assert (data(b.l2["BTC-USD"])["kind"] == L2_GAP).sum() == 2


def test_trades_taker_side_and_dedupe(norm):
    norm.feed(1, trades(0, [(7, "10.5", "0.1", "SELL"), (6, "10.4", "0.2", "BUY")]))
    norm.feed(2, trades(1, [(7, "10.5", "0.1", "SELL")]))  # repeated (e.g. subscribe snapshot)
    t = norm.drain().trades["BTC-USD"]
    assert t["trade_id"].tolist() == [6, 7]  # oldest first
    assert t["side"].tolist() == [SIDE_ASK, SIDE_BID]  # maker BUY -> taker sold
    assert norm.stats["duplicate_trades"] == 1


def test_disconnect_gap(norm):
    norm.feed(1, l2(0, "snapshot", [("bid", "1", "1")]))
    norm.connection_lost(5, 0)
    norm.feed(6, l2(0, "snapshot", [("bid", "1", "1")]))  # new connection restarts numbering
    norm.finish()
    b = norm.drain()
    assert [g["kind"] for g in b.gaps] == [GAP_START, GAP_DISCONNECT, GAP_STOP]
    assert b.l2["BTC-USD"]["kind"].tolist() == [L2_GAP, L2_SNAPSHOT, L2_GAP, L2_SNAPSHOT, L2_GAP]
    assert b.l2["BTC-USD"]["ts_recv_ns"][-1] == 6  # the stop marker sits at the last frame's receive time


def test_rejected_frame_without_product_still_gaps_every_book(norm):
    """A frame rejected before its product is known (bad timestamp, an unknown product beside a known one)
    loses updates: every L2 product of the connection is marked."""
    norm.feed(1, l2(0, "snapshot", [("bid", "1", "1")]))
    norm.feed(2, l2(1, "snapshot", [("bid", "2", "1")], "ETH-USD"))
    bad_ts = l2(2, "update", [("bid", "1", "2")]).replace(f'"timestamp":"{TS}",', "")
    norm.feed(3, bad_ts)
    mixed = l2(3, "update", [("bid", "1", "3")]).replace('"product_id":"BTC-USD"', '"product_id":"XXX-USD"')
    norm.feed(4, mixed)
    b = norm.drain()
    assert len(b.quarantine) == 2
    for p in ("BTC-USD", "ETH-USD"):
        assert (data(b.l2[p])["kind"] == L2_GAP).sum() == 2, p


def test_remembered_decimals_and_times_equal_parsing_each_one(monkeypatch):
    """Prices and sizes come from a bounded memo and an update's time from its frame's when the text is the same:
    every row and every quarantine reason equals what parsing each field gives, across memo resets."""
    import json
    import random

    import collectors.coinbase as cb
    from collectors.timeparse import rfc3339_to_ns
    from l2lab.schema import parse_fixed

    monkeypatch.setattr(cb, "DECIMAL_MEMO", 5)
    rng = random.Random(8)
    texts = ["1", "1.5", "100.50", "0", "0.00000001", "1.123", "1e3", " 2", "", "00.10", "7.0000000000", "１"]
    times = [TS, "2026-01-05T00:00:01.5000Z", "2026-01-05T00:00:02Z", "1970-01-01T00:00:00Z", "bad"]
    n = CoinbaseNormalizer({"BTC-USD": ProductScale(2, 8)})
    expected, reasons = [], []
    for seq in range(400):
        p, q, t = rng.choice(texts), rng.choice(texts), rng.choice(times)
        frame = json.loads(l2(seq, "snapshot" if seq == 0 else "update", [("bid", p, q)]))
        frame["events"][0]["updates"][0]["event_time"] = t
        n.feed(seq, json.dumps(frame))
        try:
            price, size, t_ns = parse_fixed(p, 2), parse_fixed(q, 8), rfc3339_to_ns(t)
            expected.append((price, size, t_ns or rfc3339_to_ns(TS)))
        except ValueError as exc:
            reasons.append(f"field events[0].updates[0]: ValueError: {exc}")
    b = n.drain()
    rows = b.l2["BTC-USD"]
    rows = rows[rows["kind"] != L2_GAP]
    assert list(zip(rows["price"].tolist(), rows["size"].tolist(), rows["ts_exch_ns"].tolist())) == expected
    assert [q["reason"] for q in b.quarantine] == reasons
    assert len(expected) > 50 and len(reasons) > 50

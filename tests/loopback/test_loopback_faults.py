"""Every fault kind is injected, observable by a client, and written to the fault log."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from loopback.faults import FaultConfig
from loopback.server import LoopbackExchange

from loopback_testlib import recv_all, run

pytestmark = pytest.mark.timeout(60)
SUB = orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"})


async def scenario(faults: FaultConfig, seconds: float = 1.0, fault_log_path=None, **kwargs):
    """One client on BTC-USD level2; returns (texts, close code, fault records, venue BTC book)."""
    async with LoopbackExchange(seed=7, speed=None, perps=False, faults=faults, fault_log_path=fault_log_path,
                                **kwargs) as ex:
        async with websockets.connect(ex.ws_url, close_timeout=0.5, max_queue=None) as ws:
            await ws.send(SUB)
            await asyncio.sleep(0.05)
            await ex.advance(seconds)
            texts = await recv_all(ws, idle=0.4)
            code = ws.close_code
        return texts, code, list(ex.fault_log.records), ex.state.books[0].snapshot()


def parsed(texts):
    out = []
    for t in texts:
        try:
            out.append(orjson.loads(t))
        except orjson.JSONDecodeError:
            out.append(None)
    return out


def seqs_of(msgs):
    return [m["sequence_num"] for m in msgs if m is not None and "sequence_num" in m]


def rebuild(msgs):
    """The book a client builds from the frames it got (last snapshot, then updates), as exact decimals."""
    book = {"bid": {}, "offer": {}}
    for m in msgs:
        if m is None or m.get("channel") != "l2_data":
            continue
        for ev in m["events"]:
            if ev["type"] == "snapshot":
                book = {"bid": {}, "offer": {}}
            for u in ev["updates"]:
                side = book[u["side"]]
                if Decimal(u["new_quantity"]) == 0:
                    side.pop(Decimal(u["price_level"]), None)
                else:
                    side[Decimal(u["price_level"])] = Decimal(u["new_quantity"])
    return book


def venue_as_decimals(bids_asks):
    bids, asks = bids_asks
    tick, lot = Decimal("0.01"), Decimal("0.00000001")
    return {"bid": {p * tick: s * lot for p, s in bids.tolist()},
            "offer": {p * tick: s * lot for p, s in asks.tolist()}}


def one(kind, **extra):
    return FaultConfig(seed=5, warmup_frames=3, max_per_connection=1, **{kind: 1.0}, **extra)


def test_clean_feed_is_contiguous_and_complete():
    texts, code, records, venue = run(scenario(FaultConfig()))
    msgs = parsed(texts)
    assert records == [] and None not in msgs
    assert seqs_of(msgs) == list(range(len(msgs)))
    assert rebuild(msgs) == venue_as_decimals(venue)


def test_drop_leaves_a_gap_and_loses_data():
    texts, _, records, venue = run(scenario(one("drop")))
    msgs = parsed(texts)
    (rec,) = records
    assert rec["kind"] == "drop" and rec["channel"] == "level2" and rec["products"] == ["BTC-USD"]
    (n,) = rec["seq"]
    seqs = seqs_of(msgs)
    assert n not in seqs and seqs == [s for s in range(len(seqs) + 1) if s != n]
    assert n >= 3 + 2  # snapshot + confirmation + warm-up frames first


def test_gap_skips_numbers_without_losing_data():
    texts, _, records, venue = run(scenario(one("gap", gap_max=3)))
    msgs = parsed(texts)
    (rec,) = records
    skipped = rec["seq"]
    assert rec["kind"] == "gap" and 1 <= len(skipped) <= 3
    seqs = seqs_of(msgs)
    assert sorted(set(range(seqs[-1] + 1)) - set(seqs)) == skipped
    assert rebuild(msgs) == venue_as_decimals(venue)  # every update arrived


def test_duplicate_sends_the_same_frame_twice():
    texts, _, records, venue = run(scenario(one("duplicate")))
    (rec,) = records
    (n,) = rec["seq"]
    dupes = [t for t in texts if orjson.loads(t)["sequence_num"] == n]
    assert len(dupes) == 2 and dupes[0] == dupes[1]
    assert rebuild(parsed(texts)) == venue_as_decimals(venue)  # levels are absolute: a replayed update is harmless


def test_reorder_swaps_two_frames():
    texts, _, records, _ = run(scenario(one("reorder")))
    (rec,) = records
    n, m = rec["seq"]
    assert m == n + 1
    seqs = seqs_of(parsed(texts))
    i = seqs.index(m)
    assert seqs[i + 1] == n and sorted(seqs) == list(range(len(seqs)))


def test_malformed_frame_is_not_json_and_uses_up_its_number():
    texts, _, records, _ = run(scenario(one("malformed")))
    msgs = parsed(texts)
    (rec,) = records
    (n,) = rec["seq"]
    bad = [t for t, m in zip(texts, msgs) if m is None]
    assert len(bad) == 1 and bad[0].startswith('{"channel":"l2_data"')
    assert n not in seqs_of(msgs)


def test_error_frame_precedes_the_frame():
    texts, _, records, _ = run(scenario(one("error", error_message="simulated outage")))
    msgs = parsed(texts)
    (rec,) = records
    (n,) = rec["seq"]
    i = next(i for i, m in enumerate(msgs) if m.get("type") == "error")
    assert msgs[i] == {"type": "error", "message": "simulated outage"}
    assert msgs[i + 1]["sequence_num"] == n


def test_disconnect_closes_the_socket():
    texts, code, records, _ = run(scenario(one("disconnect")))
    (rec,) = records
    assert code == 1011 and rec["kind"] == "disconnect" and rec["seq"] == []
    assert rec["last_seq"] == seqs_of(parsed(texts))[-1]


def test_slow_consumer_is_disconnected_and_logged():
    async def main():
        async with LoopbackExchange(seed=7, speed=None, perps=False, queue_limit=40,
                                    slow_consumer_timeout_s=0.2) as ex:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", ex.ws_port))
            async with websockets.connect(ex.ws_url, sock=sock, max_queue=1, close_timeout=0.5) as lazy, \
                    websockets.connect(ex.ws_url, close_timeout=0.5, max_queue=None) as good:
                await lazy.send(SUB)
                await good.send(SUB)
                await asyncio.sleep(0.1)
                for _ in range(60):  # the lazy client never reads
                    await ex.advance(1.0)
                    if ex.fault_log.of_kind("slow_consumer"):
                        break
                (rec,) = ex.fault_log.of_kind("slow_consumer")
                got = await recv_all(good, idle=0.3)
                with pytest.raises(ConnectionClosed) as info:
                    while True:  # the lazy client finds its connection closed once it drains its buffers
                        await asyncio.wait_for(lazy.recv(), 5)
                assert info.value.rcvd is None or info.value.rcvd.code == 1008
            seqs = [orjson.loads(t)["sequence_num"] for t in got]
            assert seqs == list(range(len(seqs))) and len(seqs) > 100  # the good client was not affected
            assert rec["conn"] == 1 and rec["kind"] == "slow_consumer" and rec["last_seq"] > 0

    run(main())


def test_faults_are_seeded_and_logged_to_jsonl(tmp_path):
    cfg = FaultConfig(seed=11, drop=0.02, duplicate=0.02, reorder=0.02, gap=0.02, malformed=0.01, error=0.01,
                      warmup_frames=5)
    path_a, path_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _, _, rec_a, _ = run(scenario(cfg, seconds=2.0, fault_log_path=path_a))
    _, _, rec_b, _ = run(scenario(cfg, seconds=2.0, fault_log_path=path_b))
    key = lambda recs: [(r["kind"], r["seq"], r["venue_ts_ns"]) for r in recs]
    assert key(rec_a) == key(rec_b) and len(rec_a) > 10
    assert {r["kind"] for r in rec_a} == {"drop", "duplicate", "reorder", "gap", "malformed", "error"}
    lines = [orjson.loads(line) for line in path_a.read_text().splitlines()]
    assert lines == rec_a
    _, _, rec_c, _ = run(scenario(FaultConfig(**{**cfg.__dict__, "seed": 12}), seconds=2.0))
    assert key(rec_c) != key(rec_a)


def test_fault_spec_parsing():
    cfg = FaultConfig.from_spec("drop=0.5, gap=0.1,seed=3,warmup_frames=10,channels=level2+market_trades")
    assert (cfg.drop, cfg.gap, cfg.seed, cfg.warmup_frames, cfg.channels) == \
           (0.5, 0.1, 3, 10, ("level2", "market_trades"))
    with pytest.raises(ValueError):
        FaultConfig.from_spec("drop=2")
    with pytest.raises(ValueError):
        FaultConfig.from_spec("explode=1")

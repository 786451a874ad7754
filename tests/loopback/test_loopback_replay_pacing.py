"""Capture replay (exact frames, routing, pacing), the venue clock, paced simulation and the CLI."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest
import websockets

from loopback import clients
from loopback.pacing import Clock
from collectors.capture import CaptureError, read_capture, write_capture
from loopback.replay import raw_frame
from loopback.server import LoopbackExchange

from loopback_testlib import recv_all, run

pytestmark = pytest.mark.timeout(60)
T0 = 1_767_571_200_000_000_000
MS = 1_000_000


def recorded_frames():
    """A small capture as a collector would have written it, in a mix of channels and products."""
    def l2(seq, pid, typ="update"):
        return orjson.dumps({"channel": "l2_data", "client_id": "", "timestamp": "2026-01-05T00:00:00.1Z",
                             "sequence_num": seq, "events": [{"type": typ, "product_id": pid, "updates": [
                                 {"side": "bid", "event_time": "2026-01-05T00:00:00.1Z", "price_level": "100.5",
                                  "new_quantity": "0.25000000"}]}]}).decode()  # trailing zeros kept verbatim

    def trades(seq, pid):
        return (f'{{"channel":"market_trades","client_id":"","timestamp":"2026-01-05T00:00:00.2Z",'
                f'"sequence_num":{seq},"events":[{{"type":"update","trades":[{{"trade_id":"9","product_id":"{pid}",'
                f'"price":"100","size":"1","side":"BUY","time":"2026-01-05T00:00:00.2Z"}}]}}]}}')

    frames = [l2(0, "BTC-USD", "snapshot"), l2(1, "ETH-USD", "snapshot"),
              '{"channel":"subscriptions","client_id":"","timestamp":"2026-01-05T00:00:00Z","sequence_num":2,'
              '"events":[{"subscriptions":{"level2":["BTC-USD","ETH-USD"]}}]}',
              l2(3, "BTC-USD"), trades(4, "BTC-USD"), l2(5, "ETH-USD"),
              '{"channel":"heartbeats","client_id":"","timestamp":"x","sequence_num":6,"events":[{"current_time":"x",'
              '"heartbeat_counter":"1"}]}',
              '{"type":"error","message":"recorded error"}',
              '{"channel":"l2_data", truncated', l2(9, "BTC-USD"), trades(10, "ETH-USD"), l2(12, "BTC-USD")]
    return [(T0 + i * 100 * MS, f) for i, f in enumerate(frames)]


def test_capture_round_trip_and_bad_lines(tmp_path):
    recs = recorded_frames()
    for name in ("c.jsonl", "c.jsonl.zst"):
        write_capture(tmp_path / name, recs)
        assert [(r.ts_recv_ns, r.raw) for r in read_capture(tmp_path / name)] == recs
    (tmp_path / "bad.jsonl").write_text('{"ts_recv_ns": 1, "raw": "x"}\n\n{"ts_recv_ns": "1", "raw": "x"}\n')
    with pytest.raises(CaptureError, match="bad.jsonl: line 3"):
        list(read_capture(tmp_path / "bad.jsonl"))
    f = raw_frame(recs[4][1], recs[4][0])
    assert (f.channel, f.products, f.seq_hint, f.render(99)) == ("market_trades", ("BTC-USD",), 4, recs[4][1])


def test_replay_sends_exact_frames_filtered_and_paced(tmp_path):
    recs = recorded_frames()
    path = tmp_path / "cap.jsonl.zst"
    write_capture(path, recs)
    speed = 5.0
    span_s = (recs[-1][0] - recs[0][0]) / 1e9 / speed

    async def main():
        async with LoopbackExchange(capture=path, speed=speed, perps=False, wait_clients=2) as ex:
            async with websockets.connect(ex.ws_url, close_timeout=0.5) as btc, \
                    websockets.connect(ex.ws_url, close_timeout=0.5) as all_:
                await btc.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                for ch in ("level2", "market_trades", "heartbeats"):
                    await all_.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"],
                                                  "channel": ch}))
                t0 = time.monotonic()
                got_btc = await recv_all(btc, idle=span_s + 1.0)
                elapsed = time.monotonic() - t0
                got_all = await recv_all(all_, idle=0.3)
                async with aiohttp.ClientSession() as http:
                    async with http.get(ex.rest_url + "/l2lab/clock") as r:
                        clock = await r.json()
        return got_btc, got_all, elapsed, clock

    got_btc, got_all, elapsed, clock = run(main())
    raws = [r for _, r in recs]
    assert got_all == raws  # every frame, byte for byte, in order (subscribed to everything)
    want_btc = [raws[i] for i in (0, 2, 3, 7, 8, 9, 11)]  # BTC level2 + frames for everyone
    assert got_btc == want_btc
    assert elapsed >= 0.8 * span_s  # paced by the recorded receive times / speed (loose: no tight timing)
    assert clock["mode"] == "replay" and clock["speed"] == speed and clock["replay_finished"]
    assert clock["venue_start_ns"] == recs[0][0] and clock["frames_sent"] == len(recs)


def test_clock_mapping():
    c = Clock(T0, speed=10.0)
    c.restart()
    time.sleep(0.05)
    now = c.venue_now()
    assert T0 + 0.4e9 <= now <= T0 + 5e9
    assert abs(c.wall_at(T0 + 10 * 10**9) - (c._mono_start_ns / 1e9 + 1.0)) < 1e-6
    d = c.to_dict()
    assert d["pacing"] == "paced" and d["speed"] == 10.0 and d["venue_start_ns"] == T0
    assert Clock(T0, speed=math.inf).to_dict()["pacing"] == "max"
    manual = Clock(T0, speed=None)
    manual.set_venue_now(T0 + 5)
    assert manual.venue_now() == T0 + 5
    with pytest.raises(ValueError):
        Clock(T0, speed=0)


def test_paced_simulation_follows_the_clock_and_serves_ccxt(sim_factory):
    sim = sim_factory()

    async def main():
        async with LoopbackExchange(sim=sim, speed=20.0, perps=False) as ex:
            client = clients.coinbase_pro(ex.ws_url, ex.sim.products)
            try:
                await client.watch_order_book("BTC/USD")
                t0 = ex.feed.now_ns
                await asyncio.sleep(0.5)
                advanced_s = (ex.feed.now_ns - t0) / 1e9
                async with aiohttp.ClientSession() as http:
                    async with http.get(ex.rest_url + "/l2lab/clock") as r:
                        clock = await r.json()
                updates = 0
                for _ in range(5):
                    await client.watch_order_book("BTC/USD")
                    updates += 1
            finally:
                await client.close()
        return advanced_s, clock, updates

    advanced_s, clock, updates = run(main())
    assert 3.0 <= advanced_s <= 20.0  # about 10 venue seconds in 0.5 wall seconds at 20x (loose)
    assert clock["pacing"] == "paced" and clock["speed"] == 20.0
    venue_from_wall = clock["venue_start_ns"] + (clock["wall_now_ns"] - clock["wall_start_ns"]) * 20
    assert abs(venue_from_wall - clock["venue_now_ns"]) < 2e9  # the published formula holds
    assert updates == 5


def test_max_speed_feed_waits_for_a_reading_client():
    async def main():
        async with LoopbackExchange(seed=7, speed=math.inf, perps=False, queue_limit=200) as ex:
            async with websockets.connect(ex.ws_url, close_timeout=0.5) as ws:
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                seqs = []
                async for text in ws:
                    seqs.append(orjson.loads(text)["sequence_num"])
                    if len(seqs) >= 3000:
                        break
            return seqs, ex.fault_log.records, ex.feed.now_ns - ex.feed.venue_start_ns

    seqs, records, venue_ns = run(main())
    assert seqs == list(range(3000)) and records == []  # back-pressure, not slow-consumer disconnects
    assert venue_ns > 2e9


def test_cli_serve_prints_urls_and_serves(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "l2lab.cli", "--data-root", str(tmp_path), "exchange", "serve",
                             "--port", "0", "--speed", "10", "--no-perps", "--duration", "20",
                             "--faults", "drop=0.5,seed=1,warmup_frames=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["ws_url"].startswith("ws://127.0.0.1:") and info["source"] == "simulator"
        assert info["fault_log"].startswith(str(tmp_path / "loopback"))

        async def main():
            async with websockets.connect(info["ws_url"], close_timeout=0.5) as ws:
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                texts = await recv_all(ws, idle=0.5, limit=200)
            async with aiohttp.ClientSession() as http:
                async with http.get(info["clock_url"]) as r:
                    clock = await r.json()
                async with http.get(info["faults_url"]) as r:
                    faults = await r.json()
            return texts, clock, faults

        texts, clock, faults = run(main())
        assert len(texts) > 20 and clock["speed"] == 10.0
        assert faults and all(f["kind"] == "drop" for f in faults)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read()
    logged = [json.loads(line) for line in open(info["fault_log"])]
    assert [r["seq"] for r in logged][: len(faults)] == [f["seq"] for f in faults]

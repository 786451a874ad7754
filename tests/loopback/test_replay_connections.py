"""Replay of a capture recorded over several connections: each recorded connection on a connection of its own."""

import asyncio
import math

import orjson
import pytest
import websockets

from loopback.server import LoopbackExchange

pytestmark = pytest.mark.timeout(60)
TS = "2026-01-05T00:00:00Z"


def l2(seq, price):
    etype = "snapshot" if seq == 0 else "update"
    return (f'{{"channel":"l2_data","client_id":"","timestamp":"{TS}","sequence_num":{seq},"events":[{{"type":'
            f'"{etype}","product_id":"BTC-USD","updates":[{{"side":"bid","event_time":"{TS}",'
            f'"price_level":"{price}","new_quantity":"1"}}]}}]}}')


def test_each_recorded_connection_is_replayed_on_its_own_connection(tmp_path):
    # two recorded connections, numbering restarted on the second
    recorded = {11: [l2(i, f"100.{i}") for i in range(4)], 12: [l2(i, f"200.{i}") for i in range(3)]}
    cap = tmp_path / "capture-1.jsonl"
    lines = [orjson.dumps({"ts_recv_ns": 1_000 + k, "raw": raw, "conn": conn})
             for k, (conn, raw) in enumerate((c, r) for c, rs in recorded.items() for r in rs)]
    cap.write_bytes(b"\n".join(lines) + b"\n")

    async def client(url):
        got, total = [], sum(map(len, recorded.values()))
        while True:
            async with websockets.connect(url) as ws:
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                got.append([])
                try:
                    while True:
                        got[-1].append(await asyncio.wait_for(ws.recv(), 10))
                        if sum(map(len, got)) == total:
                            return got
                except websockets.ConnectionClosed:
                    pass

    async def go():
        async with LoopbackExchange(capture=cap, speed=math.inf, perps=False) as ex:
            got = await client(ex.ws_url)
            return got, ex.replay.connections_ended

    got, ended = asyncio.run(go())
    assert ended == 1
    assert [[orjson.loads(t)["sequence_num"] for t in frames] for frames in got] == [[0, 1, 2, 3], [0, 1, 2]]
    assert got == list(recorded.values())

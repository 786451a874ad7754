"""``l2lab replay`` serves a collector's capture folder over the WebSocket protocol."""

import asyncio
import json
import subprocess
import sys

import orjson
import pytest
import websockets

from collectors.capture import write_capture

pytestmark = pytest.mark.timeout(60)


def test_replay_serves_a_capture_folder(tmp_path):
    ts = "2026-01-05T00:00:00Z"
    frames = [f'{{"channel":"l2_data","client_id":"","timestamp":"{ts}","sequence_num":{i},"events":[{{"type":'
              f'"{"snapshot" if i == 0 else "update"}","product_id":"BTC-USD","updates":[{{"side":"bid",'
              f'"event_time":"{ts}","price_level":"100.{i:02d}","new_quantity":"1"}}]}}]}}' for i in range(6)]
    seg = tmp_path / "raw" / "exchange=coinbase" / "date=2026-01-05" / "hour=00"
    write_capture(seg / "capture-1.jsonl.zst", [(1_000 + i, f) for i, f in enumerate(frames[:3])])
    write_capture(seg / "capture-5.jsonl.zst", [(5_000 + i, f) for i, f in enumerate(frames[3:])])
    proc = subprocess.Popen([sys.executable, "-m", "l2lab.cli", "replay", str(tmp_path / "raw"), "--speed", "max",
                             "--duration", "20"], stdout=subprocess.PIPE, text=True)
    try:
        urls = json.loads(proc.stdout.readline())

        async def client():
            async with websockets.connect(urls["ws_url"]) as ws:
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                got = []
                while len(got) < len(frames):
                    got.append(await asyncio.wait_for(ws.recv(), 10))
                return got

        received = asyncio.run(client())
    finally:
        proc.terminate()
        proc.wait(10)
    assert received == frames  # both segments, in receive order, text unchanged

"""Loopback exchange throughput, as a multiple of BTC-USD's real update rate.

Baseline (DESIGN.md): a real BTC book changes 1,286 levels per second on average (Binance USD-M BTCUSDT).

Two measurements:

* ``feed``: the simulator-to-frames path alone (generate events, update the venue books, format the frames), with
  no socket: venue events, level changes and frames produced per wall second.
* ``delivered``: the server at ``speed=max`` with one WebSocket client in a separate process subscribed to
  ``level2`` and ``market_trades`` for every product; the client parses every frame and counts what it got.
  Frames/s and level changes/s are what reached the client; the server and client share the machine's cores.

``run() -> dict``; ``python bench/bench_loopback.py`` prints it as JSON.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BTC_REAL_LEVEL_CHANGES_PER_S = 1286.0


def _feed_only(seconds: float, seed: int) -> dict:
    from loopback.sim_feed import SimFeed
    from loopback.venue_book import VenueState
    from simulator.l2 import MarketSimulator

    class Sink:
        needs_drain = False

        def __init__(self):
            self.frames = 0

        def publish(self, frame):
            frame.render(0)
            self.frames += 1

        def publish_heartbeats(self, ts_ns, uptime_ns):
            pass

    sim = MarketSimulator(seed=seed, record_latent=False)
    sim.advance(sim.now_ns + 1)  # first block generation (numba compile cache warm) outside the timing
    state = VenueState.from_simulator(sim)
    sink = Sink()
    feed = SimFeed(sim, state, sink)
    venue_s = 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        asyncio.run(feed.advance_to(feed.now_ns + 10**9))
        venue_s += 1.0
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 3), "venue_s": venue_s, "events_per_s": round(feed.events / wall),
            "level_changes_per_s": round(feed.level_changes / wall), "frames_per_s": round(sink.frames / wall),
            "venue_s_per_wall_s": round(venue_s / wall, 1),
            "x_btc_real": round(feed.level_changes / wall / BTC_REAL_LEVEL_CHANGES_PER_S, 1)}


def _client(url: str, products: list[str], seconds: float, out) -> None:
    import orjson
    import websockets

    async def main():
        frames = changes = trades = nbytes = 0
        async with websockets.connect(url, max_size=None, close_timeout=1) as ws:
            for channel in ("level2", "market_trades"):
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": products, "channel": channel}))
            # skip the snapshots and confirmations, then time a steady stream
            for _ in range(2 * len(products) + 2):
                await ws.recv()
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                text = await ws.recv()
                msg = orjson.loads(text)
                frames += 1
                nbytes += len(text)
                for ev in msg.get("events", ()):
                    changes += len(ev.get("updates", ()))
                    trades += len(ev.get("trades", ()))
            wall = time.perf_counter() - t0
        out.put({"wall_s": wall, "frames": frames, "level_changes": changes, "trades": trades, "bytes": nbytes})

    asyncio.run(main())


def _delivered(seconds: float, seed: int, coalesce_ms: float) -> dict:
    import math

    from loopback.server import BackgroundExchange

    with BackgroundExchange(seed=seed, speed=math.inf, perps=False, coalesce_ns=int(coalesce_ms * 1e6)) as ex:
        products = [p.symbol for p in ex.sim.products]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=_client, args=(ex.ws_url, products, seconds, out))
        v0 = ex.feed.now_ns
        proc.start()
        res = out.get(timeout=seconds + 60)
        proc.join(30)
        venue_s = (ex.feed.now_ns - v0) / 1e9
    wall = res["wall_s"]
    return {"coalesce_ms": coalesce_ms, "wall_s": round(wall, 3), "frames_per_s": round(res["frames"] / wall),
            "level_changes_per_s": round(res["level_changes"] / wall),
            "trades_per_s": round(res["trades"] / wall), "mbytes_per_s": round(res["bytes"] / wall / 1e6, 2),
            "x_btc_real": round(res["level_changes"] / wall / BTC_REAL_LEVEL_CHANGES_PER_S, 1),
            "venue_s_per_wall_s_approx": round(venue_s / wall, 1)}


def run(seconds: float = 5.0, seed: int = 7) -> dict:
    """Measure; returns a dict of figures (see the module docstring) and prints one line per figure."""
    res = {
        "baseline_btc_level_changes_per_s": BTC_REAL_LEVEL_CHANGES_PER_S,
        "feed": _feed_only(seconds, seed),
        "delivered": _delivered(seconds, seed, 0.0),
        "delivered_coalesced_100ms": _delivered(seconds, seed, 100.0),
    }
    for name in ("feed", "delivered", "delivered_coalesced_100ms"):
        r = res[name]
        print(f"   {name:<26} {r['level_changes_per_s']:>9,} level changes/s = {r['x_btc_real']:>6}x BTC-USD's "
              f"real rate ({BTC_REAL_LEVEL_CHANGES_PER_S:,.0f}/s); {r['frames_per_s']:,} frames/s")
    return res


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

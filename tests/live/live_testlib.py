"""Shared by the live tests: record a capture of the simulator through the collector, replay a capture into a
live session, craft captures (a symbol falling silent)."""

from __future__ import annotations

import asyncio

import orjson

from collectors.capture import capture_files, read_capture, write_capture
from collectors.live import CoinbaseCollector, CollectorConfig
from l2lab.live.session import LiveConfig, LiveSession
from loopback.clients import coinbase_markets
from loopback.replay import raw_frame
from loopback.server import LoopbackExchange
from simulator.l2 import MarketSimulator
from testlib import settle, wait_for  # noqa: F401  (re-exported to the live tests)

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


def products():
    return MarketSimulator(seed=1, record_latent=False).products


async def record_capture(root, seconds, seed=6, speed=4.0, coalesce_ms=50):
    """A capture of the simulator at ``speed`` x real time collected through ccxt, stamped with the venue clock
    (so receive times run continuously at the venue's pace). The venue coalesces each product's updates into one
    frame per ``coalesce_ms`` (as Coinbase batches its level2 updates), which keeps a loaded test machine from
    falling behind (and from the venue cutting it off as a slow consumer)."""
    async with LoopbackExchange(seed=seed, speed=speed, perps=False, coalesce_ns=coalesce_ms * 1_000_000) as ex:
        cfg = CollectorConfig(symbols=SYMBOLS, data_root=root, ws_url=ex.ws_url,
                              markets=coinbase_markets(ex.sim.products), bronze_flush_s=5.0, progress=False,
                              time_ns=ex.clock.venue_now, duration_s=seconds / speed)
        await CoinbaseCollector(cfg).run()
    return capture_files(root / "raw")[0]


async def replay_live(capture, data_root, run_dir, out_dir, *, speed=5.0, during=None, **kw):
    """The capture replayed at ``speed`` x its recorded pace into a live session (kernel path, features recorded,
    100 ms grid too); receive times follow the replay's clock. ``during(session)``: a coroutine run meanwhile."""
    async with LoopbackExchange(capture=capture, speed=speed, perps=False,
                                wait_channels=("level2", "market_trades", "heartbeats")) as ex:
        cfg = LiveConfig(run_dir=run_dir, data_root=data_root, symbols=SYMBOLS, out_dir=out_dir, ws_url=ex.ws_url,
                         markets=coinbase_markets(products()), time_ns=ex.clock.venue_now, stdout=False,
                         # a replay sends the recorded subscription confirmations, not fresh ones
                         collector={"bronze_flush_s": 5.0, "subscribe_timeout_s": 600.0}, **{"feast": False, "extra_grids_ms": (100,),
                                                               "record_features": True, **kw})
        session = LiveSession(cfg)
        task = asyncio.ensure_future(session.run())
        if during is not None:
            await during(session)
        await wait_for(lambda: ex.replay.done.is_set(), 120)
        await ex.flush()
        await settle(lambda: session.tap.frames)
        session.stop()
        return await task


def rewrite(capture, out, drop) -> tuple:
    """A copy of ``capture`` without the frames ``drop(record, frame)`` selects, every later ``sequence_num``
    renumbered so the stream has no gap. Returns (path, first receive time, frames dropped)."""
    records = list(read_capture(capture))
    kept, removed = [], 0
    for rec in records:
        fr = raw_frame(rec.raw, rec.ts_recv_ns)
        if drop(rec, fr):
            removed += 1
            continue
        raw = rec.raw
        if removed and '"sequence_num"' in raw:
            msg = orjson.loads(raw)
            msg["sequence_num"] -= removed
            raw = orjson.dumps(msg).decode()
        kept.append((rec.ts_recv_ns, raw))
    write_capture(out, kept)
    return out, records[0].ts_recv_ns, removed


def silence(capture, out, symbol, start_s, end_s):
    """``capture`` with ``symbol``'s own frames (L2 and trades) received between ``start_s`` and ``end_s``
    after the first frame left out: the venue just went quiet for that symbol (its book stays valid but ages).
    Returns (path, first receive time)."""
    t0 = next(iter(read_capture(capture))).ts_recv_ns
    lo, hi = t0 + int(start_s * 1e9), t0 + int(end_s * 1e9)

    def drop(rec, fr):
        return lo <= rec.ts_recv_ns < hi and fr.products == (symbol,) and fr.channel in ("level2", "market_trades")

    path, t0, removed = rewrite(capture, out, drop)
    assert removed > 100
    return path, t0

"""Collectors: live throughput through ccxt, memory over the run, ingest and backfill rates.

* collector: the loopback exchange (own process) serves the simulator as fast as the client reads; the ccxt
  collector (this process, one core) records everything for ``SECONDS``. Figures: level changes/s received as a
  multiple of BTC-USD's real rate (1,286/s), gaps, and resident memory sampled every second (flat = no leak).
* ingest: ``l2lab ingest`` of that capture, level rows/s, against a named baseline measured in the same run:
  reading the capture and ``orjson.loads`` of every frame with no normalization (the parsing floor).
* backfill: 1 day of 1-min bars for every listed perp through ccxt binanceusdm with ccxt's throttle off
  (our pipeline's cost; with the throttle on, ccxt's weight pacing for the real venue dominates).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import orjson
import psutil

from bench import BTC_REAL_LEVEL_CHANGES_PER_S

SECONDS = 10.0


def _collector(root: Path) -> dict:
    from collectors.live import CoinbaseCollector, CollectorConfig
    from l2lab.demo import start_exchange, stop_exchange
    from loopback.clients import coinbase_markets
    from simulator.l2 import MarketSimulator

    proc, urls = start_exchange(7, "max", "BTC-USD,ETH-USD,SOL-USD", root)
    rss = []
    me = psutil.Process()
    try:
        cfg = CollectorConfig(symbols=["BTC-USD", "ETH-USD", "SOL-USD"], data_root=root, ws_url=urls["ws_url"],
                              markets=coinbase_markets(MarketSimulator(seed=7, record_latent=False).products),
                              duration_s=SECONDS, bronze_flush_s=2.0, progress=False)

        async def main():
            col = CoinbaseCollector(cfg)
            task = asyncio.ensure_future(col.run())
            while not task.done():
                rss.append(me.memory_info().rss)
                await asyncio.sleep(1.0)
            return await task

        rep = asyncio.run(main())
    finally:
        stop_exchange(proc)
    l2 = rep.normalizer.get("l2_rows", 0)
    return {"wall_s": rep.wall_s, "frames_per_s": round(rep.frames / rep.wall_s),
            "level_changes_per_s": round(l2 / rep.wall_s),
            "x_btc_real": round(l2 / rep.wall_s / BTC_REAL_LEVEL_CHANGES_PER_S, 1),
            "gaps": rep.normalizer.get("gaps", 0), "reconnects": rep.reconnects,
            "rss_mb_first_last_max": [round(rss[1] / 2**20), round(rss[-1] / 2**20), round(max(rss) / 2**20)]
            if len(rss) > 1 else None}


def _ingest(root: Path) -> dict:
    from collectors.capture import read_capture
    from collectors.ingest import ingest_capture

    cap = root / "raw" / "exchange=coinbase"
    t = time.perf_counter()
    n = 0
    for rec in read_capture(cap):
        orjson.loads(rec.raw)
        n += 1
    parse_s = time.perf_counter() - t
    t = time.perf_counter()
    res = ingest_capture(cap, root / "ingested")
    wall = time.perf_counter() - t
    rows = res["normalizer"]["l2_rows"] + res["normalizer"].get("trades", 0)
    return {"frames": n, "rows": rows, "ingest_rows_per_s": round(rows / wall),
            "baseline_parse_only_rows_per_s": round(rows / parse_s),
            "ingest_vs_parse_only": round(parse_s / wall, 2)}


def _backfill(root: Path) -> dict:
    from collectors.backfill import Backfill
    from loopback.clients import binanceusdm
    from loopback.server import BackgroundExchange

    with BackgroundExchange(seed=7, speed=1.0) as ex:
        client = binanceusdm(ex.rest_url, {"enableRateLimit": False})
        now = client.fetch_time()
        t = time.perf_counter()
        rep = Backfill(client, root).run(since_ms=now - 86_400_000, until_ms=now, datasets=("ohlcv_1m",))
        wall = time.perf_counter() - t
    return {"symbols": rep.symbols, "bars": rep.rows["ohlcv_1m"], "requests": rep.requests,
            "bars_per_s": round(rep.rows["ohlcv_1m"] / wall)}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        col = _collector(root)
        print(f"   collector: {col['level_changes_per_s']:,} level changes/s = {col['x_btc_real']}x BTC-USD's real "
              f"rate, {col['frames_per_s']:,} frames/s, gaps {col['gaps']}, RSS MB first/last/max "
              f"{col['rss_mb_first_last_max']}")
        ing = _ingest(root)
        print(f"   ingest: {ing['ingest_rows_per_s']:,} rows/s; baseline parse-only "
              f"{ing['baseline_parse_only_rows_per_s']:,} rows/s (ingest runs at {ing['ingest_vs_parse_only']}x "
              f"the parse-only rate; goal 2,000,000 rows/s)")
        bf = _backfill(root / "bf")
        print(f"   backfill: {bf['bars']:,} bars for {bf['symbols']} perps in {bf['requests']} requests, "
              f"{bf['bars_per_s']:,} bars/s")
    return {"collector": col, "ingest": ing, "backfill": bf}

"""Collectors: live throughput through ccxt, memory over the run, ingest and backfill rates.

* collector: the loopback exchange (own process) serves the simulator as fast as the client reads; the ccxt
  collector (this process, one core) records everything for ``SECONDS``. Figures: level changes/s received as a
  multiple of BTC-USD's real rate (1,286/s), gaps, and resident memory sampled every second: at the start, after
  ``WARMUP_S`` (imports, JIT, first flushes, the bounded dedupe structures filling) and at the end; "flat" means
  end - warm-up stays small while the frame count keeps growing.
* ingest: ``l2lab ingest`` of that capture (bulk path: compiled scanner), level rows/s (L2 rows + trades), against
  two baselines measured in the same run on the same capture: reading it and ``orjson.loads`` of every frame with
  no normalization (the parsing floor of any per-frame reader), and the frame-by-frame ingest
  (``bulk=False``, the previous path). CPU seconds are reported beside wall time (the machine is shared).
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

SECONDS = 40.0
WARMUP_S = 10.0


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
    mb = [round(r / 2**20) for r in rss]
    warm = min(len(mb) - 1, int(WARMUP_S))
    return {"wall_s": rep.wall_s, "frames_per_s": round(rep.frames / rep.wall_s),
            "level_changes_per_s": round(l2 / rep.wall_s),
            "x_btc_real": round(l2 / rep.wall_s / BTC_REAL_LEVEL_CHANGES_PER_S, 1),
            "gaps": rep.normalizer.get("gaps", 0), "reconnects": rep.reconnects,
            "rss_mb_start_warm_end_max": [mb[0], mb[warm], mb[-1], max(mb)] if mb else None,
            "rss_mb_per_s": mb}


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _ingest(root: Path) -> dict:
    import shutil

    from collectors.capture import read_capture
    from collectors.ingest import ingest_capture

    cap = root / "raw" / "exchange=coinbase"

    def parse_only():
        n = 0
        for rec in read_capture(cap):
            orjson.loads(rec.raw)
            n += 1
        return n

    ingest_capture(cap, root / "warmup", bulk=True)  # compile (or load) the scanner before timing
    shutil.rmtree(root / "warmup")
    n, parse_s, parse_cpu = _timed(parse_only)
    old, old_s, old_cpu = _timed(lambda: ingest_capture(cap, root / "ingested_frames", bulk=False))
    res, wall, cpu = _timed(lambda: ingest_capture(cap, root / "ingested", bulk=True))
    assert res == old, "bulk and frame-by-frame ingest disagree"
    rows = res["normalizer"]["l2_rows"] + res["normalizer"].get("trades", 0)
    return {"frames": n, "rows": rows, "ingest_rows_per_s": round(rows / wall),
            "ingest_rows_per_cpu_s": round(rows / cpu),
            "baseline_parse_only_rows_per_s": round(rows / parse_s),
            "baseline_frame_by_frame_rows_per_s": round(rows / old_s),
            "ingest_vs_parse_only": round(parse_s / wall, 2), "ingest_vs_frame_by_frame": round(old_s / wall, 2),
            "cpu_s": {"ingest": round(cpu, 2), "parse_only": round(parse_cpu, 2), "frame_by_frame": round(old_cpu, 2)}}


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
        print(f"   collector ({col['wall_s']:.0f} s): {col['level_changes_per_s']:,} level changes/s = "
              f"{col['x_btc_real']}x BTC-USD's real rate, {col['frames_per_s']:,} frames/s, gaps {col['gaps']}, "
              f"RSS MB start/after {WARMUP_S:g} s/end/max {col['rss_mb_start_warm_end_max']}")
        ing = _ingest(root)
        print(f"   ingest: {ing['ingest_rows_per_s']:,} rows/s ({ing['ingest_rows_per_cpu_s']:,} per CPU s); "
              f"baselines: parse-only {ing['baseline_parse_only_rows_per_s']:,} rows/s "
              f"({ing['ingest_vs_parse_only']}x), frame-by-frame ingest "
              f"{ing['baseline_frame_by_frame_rows_per_s']:,} rows/s ({ing['ingest_vs_frame_by_frame']}x); "
              f"goal 2,000,000 rows/s")
        bf = _backfill(root / "bf")
        print(f"   backfill: {bf['bars']:,} bars for {bf['symbols']} perps in {bf['requests']} requests, "
              f"{bf['bars_per_s']:,} bars/s")
    return {"collector": col, "ingest": ing, "backfill": bf}

"""Collectors: live throughput through ccxt, memory over the run, ingest and backfill rates.

* collector: the loopback exchange (own process) serves the simulator as fast as the client reads; the ccxt
  collector (this process, one core) records everything for ``SECONDS``. Figures: level changes/s received as a
  multiple of BTC-USD's real rate (1,286/s), gaps, and resident memory sampled every second: at the start, after
  ``WARMUP_S`` (imports, JIT, first flushes, the bounded dedupe structures filling) and at the end; "flat" means
  end - warm-up stays small while the frame count keeps growing.
* ingest: ``l2lab ingest`` of that capture (bulk path: compiled scanner), level rows/s (L2 rows + trades), against
  two baselines measured in the same run on the same capture: reading it and ``orjson.loads`` of every frame with
  no normalization (the parsing floor of any per-frame reader), and the frame-by-frame ingest
  (``bulk=False``, the previous path). Rows/s are per CPU second, best of ``REPEATS`` (the machine is shared;
  wall time is reported beside them). The simulator sends about one level change per frame, so each row costs
  a whole frame envelope (~360 bytes of JSON); rows/s depend on that as much as on the code, so the same
  ingest also runs on the capture regrouped into frames of up to ``REGROUP`` updates of one product (same
  updates, same trades, renumbered frames): decompressed MB/s and rows per frame are printed for both. A third
  run ingests the recorded capture stored plain (its segments decompressed to ``.jsonl``, which the capture
  contract allows): the difference to the recorded run is what zstd decompression costs.
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
REPEATS = 3
REGROUP = 10


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


def _timed(fn, repeats: int = 1):
    """(result, best wall s, best CPU s) over ``repeats`` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return out, min(walls), min(cpus)


def decompressed(src: Path, dst: Path) -> Path:
    """A copy of capture folder ``src`` at ``dst`` with every ``.jsonl.zst`` segment stored plain (``.jsonl``)."""
    import shutil

    import zstandard

    for f in sorted(src.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.name.endswith(".jsonl.zst"):
            with open(f, "rb") as fin, open(target.with_name(f.name[:-len(".zst")]), "wb") as fout:
                zstandard.ZstdDecompressor().copy_stream(fin, fout)
        else:
            shutil.copy(f, target)
    return dst


def regroup(src: Path, dst: Path, per_frame: int) -> Path:
    """Write ``src``'s frames to ``dst`` with each product's single-event L2 update frames merged into frames of
    ``per_frame`` updates, as a venue that batches updates would send them. A product's held updates go out
    when it has ``per_frame`` of them, before a trade frame of that product, and (all products') before any other
    frame or a new connection, so each product's L2 rows and trades keep their order. A merged frame carries
    the receive and frame time of its last update; sequence numbers are renumbered per connection in the order
    frames are written (no gaps)."""
    import shutil

    from collectors.capture import compress_segment, read_capture

    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "products.json", dst / "products.json")
    seq: dict[int, int] = {}
    held: dict[str, list] = {}  # product -> [(record, frame)] of update frames waiting to be merged
    out = dst / "capture-0.jsonl"
    with open(out, "wb") as sink:  # then compressed as the collector compresses its segments
        def emit(rec, frame):
            frame["sequence_num"] = seq.get(rec.conn, 0)
            seq[rec.conn] = frame["sequence_num"] + 1
            sink.write(orjson.dumps({"ts_recv_ns": rec.ts_recv_ns, "raw": orjson.dumps(frame).decode(),
                                     "conn": rec.conn}) + b"\n")

        def flush(product):
            frames = held.pop(product, [])
            if frames:
                rec, frame = frames[-1]
                frame["events"][0]["updates"] = [u for _, f in frames for u in f["events"][0]["updates"]]
                emit(rec, frame)

        conn = None
        for rec in read_capture(src):
            frame = orjson.loads(rec.raw)
            if rec.conn != conn:
                for product in list(held):
                    flush(product)
                conn = rec.conn
            ev = frame.get("events") or [{}]
            if frame.get("channel") == "l2_data" and len(ev) == 1 and ev[0].get("type") == "update":
                product = ev[0]["product_id"]
                held.setdefault(product, []).append((rec, frame))
                if sum(len(f["events"][0]["updates"]) for _, f in held[product]) >= per_frame:
                    flush(product)
                continue
            if frame.get("channel") == "market_trades":
                mentioned = {t.get("product_id") for e in ev for t in e.get("trades") or []}
            else:
                mentioned = set(held)
            for product in [p for p in held if p in mentioned]:
                flush(product)
            emit(rec, frame)
        for product in list(held):
            flush(product)
    compress_segment(out)
    return dst


def _ingest_one(cap: Path, root: Path, name: str) -> dict:
    import shutil

    from collectors.capture import capture_files, read_capture, read_chunks
    from collectors.ingest import ingest_capture

    def parse_only():
        n = 0
        for rec in read_capture(cap):
            orjson.loads(rec.raw)
            n += 1
        return n

    def bulk():
        shutil.rmtree(root / name, ignore_errors=True)
        return ingest_capture(cap, root / name, bulk=True)

    mb = sum(len(piece) for f in capture_files(cap) for piece in read_chunks(f)) / 1e6
    ingest_capture(cap, root / "warmup", bulk=True)  # compile (or load) the scanner before timing
    shutil.rmtree(root / "warmup")
    n, parse_s, parse_cpu = _timed(parse_only)
    old, old_s, old_cpu = _timed(lambda: ingest_capture(cap, root / f"{name}_frames", bulk=False))
    res, wall, cpu = _timed(bulk, REPEATS)
    assert res == old, "bulk and frame-by-frame ingest disagree"
    rows = res["normalizer"]["l2_rows"] + res["normalizer"].get("trades", 0)
    return {"frames": n, "rows": rows, "rows_per_frame": round(rows / n, 2), "mb": round(mb, 1),
            "ingest_rows_per_cpu_s": round(rows / cpu), "ingest_rows_per_s_wall": round(rows / wall),
            "ingest_mb_per_cpu_s": round(mb / cpu), "baseline_parse_only_rows_per_cpu_s": round(rows / parse_cpu),
            "baseline_frame_by_frame_rows_per_cpu_s": round(rows / old_cpu),
            "ingest_vs_parse_only": round(parse_cpu / cpu, 2), "ingest_vs_frame_by_frame": round(old_cpu / cpu, 2),
            "cpu_s": {"ingest": round(cpu, 3), "parse_only": round(parse_cpu, 2), "frame_by_frame": round(old_cpu, 2)}}


def _ingest(root: Path) -> dict:
    cap = root / "raw" / "exchange=coinbase"
    grouped = regroup(cap, root / "regrouped" / "exchange=coinbase", REGROUP)
    plain = decompressed(cap, root / "plain" / "exchange=coinbase")
    return {"recorded": _ingest_one(cap, root, "ingested"),
            "recorded_plain": _ingest_one(plain, root, "ingested_plain"),
            f"regrouped_{REGROUP}": _ingest_one(grouped, root, "ingested_rg")}


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
        for name, r in ing.items():
            print(f"   ingest, {name} capture ({r['rows_per_frame']} rows/frame, {r['mb']} MB): "
                  f"{r['ingest_rows_per_cpu_s']:,} rows per CPU s ({r['ingest_mb_per_cpu_s']} MB/s; wall "
                  f"{r['ingest_rows_per_s_wall']:,} rows/s); baselines per CPU s: parse-only "
                  f"{r['baseline_parse_only_rows_per_cpu_s']:,} ({r['ingest_vs_parse_only']}x), frame-by-frame "
                  f"{r['baseline_frame_by_frame_rows_per_cpu_s']:,} ({r['ingest_vs_frame_by_frame']}x); "
                  f"goal 2,000,000 rows/s")
        bf = _backfill(root / "bf")
        print(f"   backfill: {bf['bars']:,} bars for {bf['symbols']} perps in {bf['requests']} requests, "
              f"{bf['bars_per_s']:,} bars/s")
    return {"collector": col, "ingest": ing, "backfill": bf}

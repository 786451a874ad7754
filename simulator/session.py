"""Generate a simulated data set to disk: venue events, latent path, statistics and the planted truth.

Layout under ``out_dir``::

    l2/venue_events.parquet   every venue event (ts_ns, symbol, kind, side, price/size in ticks/lots, ...)
    l2/latent.parquet         latent path every 100 ms: regime, signals, efficient log-prices, venue top of book
    l2/products.json          tick and size increments (exact decimal strings) to turn ticks/lots into prices
    l2/truth.json             planted parameters, regime path, oracle AUC per horizon
    l2/stats.json             rates, bursts, spreads
    perps/truth.json          planted cross-sectional effect, listings, outages, regime path
    perps/funding.parquet     every funding event of every contract
    perps/klines.parquet      (with ``klines=True``) every 1-min bar of every contract

Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from l2lab import atomic
from simulator.config import SimConfig
from simulator.l2 import MarketSimulator
from simulator.perps import PerpUniverse
from simulator.stats import session_stats
from simulator.truth import l2_truth, perp_truth

CHUNK_S = 60


def generate_l2(out_dir: Path, cfg: SimConfig, duration_s: float, progress=None) -> dict:
    out_dir = Path(out_dir) / "l2"
    sim = MarketSimulator(cfg)
    end = cfg.start_ns + int(duration_s * 1e9)
    symbols = pa.array(sim.symbols)
    chunks = []
    with atomic.atomic_path(out_dir / "venue_events.parquet") as tmp:
        writer = None
        t = cfg.start_ns
        while t < end:
            nxt = min(end, t + CHUNK_S * 1_000_000_000)
            ev = sim.advance(nxt)
            chunks.append(ev)
            table = _events_table(ev, symbols)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
            if progress:
                progress((nxt - cfg.start_ns) / 1e9, len(ev))
            t = nxt
        if writer is not None:
            writer.close()
    events = np.concatenate(chunks) if chunks else np.empty(0)
    path = sim.latent_path()
    keep = path["t_ns"] < end
    path = {k: v[keep] for k, v in path.items()}
    atomic.write_parquet(out_dir / "latent.parquet", pa.table(path))
    products = {p.symbol: {"tick_size": str(p.tick_size), "size_increment": str(p.size_increment),
                           "min_size": str(p.min_size), "base": p.base, "quote": p.quote} for p in sim.products}
    atomic.write_json(out_dir / "products.json", products)
    switches = [(t, r) for t, r in sim.latent.switches if t < end]
    truth = l2_truth(cfg, switches)
    truth["duration_s"] = duration_s
    atomic.write_json(out_dir / "truth.json", truth)
    stats = session_stats(events, path, sim.products, duration_s)
    atomic.write_json(out_dir / "stats.json", stats)
    return {"events": int(len(events)), "stats": stats, "dir": str(out_dir)}


def _events_table(ev: np.ndarray, symbols: pa.Array) -> pa.Table:
    return pa.table({
        "ts_ns": ev["ts_ns"],
        "symbol": pa.DictionaryArray.from_arrays(pa.array(ev["symbol"].astype(np.int32)), symbols),
        "kind": ev["kind"],
        "side": ev["side"],
        "price_ticks": ev["price"],
        "size_lots": ev["size"],
        "trade_id": ev["trade_id"],
        "informed": (ev["flags"] & 1).astype(bool),
    })


def generate_perps(out_dir: Path, cfg: SimConfig, klines: bool = False) -> dict:
    out_dir = Path(out_dir) / "perps"
    uni = PerpUniverse(cfg)
    atomic.write_json(out_dir / "truth.json", perp_truth(uni))
    fund = []
    for c in uni.contracts:
        f = uni.funding(c.symbol, uni.start_ms, uni.end_ms)
        fund.append(pa.table({"symbol": [c.symbol] * len(f), "funding_time_ms": f["funding_time_ms"],
                              "funding_rate": f["funding_rate"], "mark_price": f["mark_price"]}))
    atomic.write_parquet(out_dir / "funding.parquet", pa.concat_tables(fund))
    n_bars = 0
    if klines:
        with atomic.atomic_path(out_dir / "klines.parquet") as tmp:
            writer = None
            for c in uni.contracts:
                k = uni.klines(c.symbol, uni.start_ms, uni.end_ms)
                table = pa.table({"symbol": [c.symbol] * len(k), **{n: k[n] for n in k.dtype.names}})
                writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                n_bars += len(k)
            writer.close()
    return {"contracts": len(uni.contracts), "bars": n_bars, "dir": str(out_dir)}

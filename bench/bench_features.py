"""Full-catalog time for one simulated BTC-USD day of about 10M level changes, on one core.

Bronze comes from ``simulator.normalized`` (what a perfect collector records); the timed part is
``l2lab features build`` for BTC-USD: book rebuild, 100 ms and 1 s grids, every book-table family, silver
Parquet, state saved after each hour. Goal (issue): <= 60 s. Baseline measured in the same run: the book
rebuild alone on the same events (the floor the feature families add to). Peak RSS shows that memory is bounded
by one partition.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psutil

from simulator.config import load_config

TARGET_DELTAS = 10_000_000


def run(target: int = TARGET_DELTAS) -> dict:
    from kernels import catalog
    from kernels.book import BookRebuilder
    from collectors.bronze import hour_partitions, read_partition
    from kernels.pipeline import FeatureBuilder
    from l2lab.schema import L2_EVENT_DTYPE
    from simulator.l2 import MarketSimulator
    from simulator.normalized import write_bronze

    cfg = load_config(symbols=["BTC-USD"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sim = MarketSimulator(cfg, seed=3, record_latent=False)
        t = time.perf_counter()
        seconds = 0.0
        deltas = 0
        while deltas < target:  # an hour at a time until the day holds the target number of deltas
            deltas += write_bronze(sim, 3600.0, root)["l2_events"]
            seconds += 3600.0
        gen_s = time.perf_counter() - t
        rss0 = psutil.Process().memory_info().rss
        # baseline: the book rebuild alone over the same partitions
        t = time.perf_counter()
        rb = BookRebuilder(1, grids_ns=(100_000_000, 1_000_000_000), event_time=False)
        base = root / "bronze" / "l2_events" / "exchange=coinbase" / "symbol=BTC-USD"
        for date, hour, folder in hour_partitions(base):
            rb.process(read_partition(folder, L2_EVENT_DTYPE))
        book_s = time.perf_counter() - t
        # an untimed first build loads or compiles every numba kernel; the timed build starts from scratch
        FeatureBuilder(root, grids_ms=(100, 1000)).build(["BTC-USD"])
        shutil.rmtree(root / "silver")
        t = time.perf_counter()
        rep = FeatureBuilder(root, grids_ms=(100, 1000)).build(["BTC-USD"])
        build_s = time.perf_counter() - t
        peak = psutil.Process().memory_info().rss
        n_feat = len([s for s in catalog.features() if s.table == "book"])
    res = {"simulated_hours": seconds / 3600, "level_changes": deltas, "bronze_gen_s": round(gen_s, 1),
           "book_only_s": round(book_s, 2), "catalog_build_s": round(build_s, 2), "book_features": n_feat,
           "rows_100ms": rep["rows"]["100ms"], "rows_1s": rep["rows"]["1s"],
           "catalog_vs_book_only": round(build_s / book_s, 1), "goal_s": 60,
           "rss_mb_before_after": [round(rss0 / 2**20), round(peak / 2**20)]}
    print(f"   {deltas:,} level changes ({seconds / 3600:.1f} simulated hours of BTC-USD)")
    print(f"   full catalog ({n_feat} book features, 100 ms + 1 s grids): {build_s:.1f} s (goal <= 60 s); "
          f"book rebuild alone {book_s:.1f} s -> catalog costs {res['catalog_vs_book_only']}x the rebuild")
    print(f"   RSS MB before/after: {res['rss_mb_before_after']}")
    return res

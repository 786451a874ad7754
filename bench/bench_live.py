"""Live scoring: event -> signal latency on the loopback exchange at BTC-USD's real rate and at 10x.

The loopback exchange (own process) serves the simulator's BTC-USD at ``speed`` x real time; ``l2lab live`` (this
process) collects it through ccxt and scores every 100 ms row with a small LightGBM model (12 features from five families) trained on a
simulated session. Figures per run: event -> signal p50/p99 (receipt of the frame that made a grid row final ->
signal written), the per-stage p50/p99, and the signals per second.

Paths, measured in the same run: ``feast`` (rows written to the Feast online store through Feast's provider +
Feast online lookup via the SDK: the default), ``feast-push`` (the same rows through the views' push sources as
DataFrames, Feast's public push path; see ``l2lab/live/features.py``) and ``kernel`` (the engine's row scored
directly, no Feast: the baseline). Goal: p99 <= 20 ms at the real rate. ``L2LAB_BENCH_LIVE_SECONDS`` sets the
wall seconds per run (default 20); ``L2LAB_BENCH_LIVE_SPEEDS`` (default ``1,10``) and ``L2LAB_BENCH_LIVE_PATHS``
(default ``feast,feast-push,kernel``) select the runs.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

SECONDS = float(os.environ.get("L2LAB_BENCH_LIVE_SECONDS", "20"))
SPEEDS = tuple(float(x) for x in os.environ.get("L2LAB_BENCH_LIVE_SPEEDS", "1,10").split(","))
PATHS = tuple(os.environ.get("L2LAB_BENCH_LIVE_PATHS", "feast,feast-push,kernel").split(","))
FEATURES = ["imbalance_l1", "imbalance_top5", "spread_bps", "ofi_L0", "ofi_sum_1s", "mid_velocity", "rv_mid_10s",
            "spread_bps_mean_10s", "tf_imbalance_1s", "tf_signed_volume_10s", "ta_zscore_mid_20", "ta_rsi_14"]
TRAIN_START = 1_767_225_600_000_000_000  # 2026-01-01: apart from the served session


def _model(root: Path) -> Path:
    from kernels.pipeline import FeatureBuilder, build_labels
    from l2lab.live.quickmodel import train_small_model
    from simulator.config import load_config
    from simulator.l2 import MarketSimulator
    from simulator.normalized import write_bronze

    sim = MarketSimulator(load_config(symbols=["BTC-USD"]), seed=11, start_ns=TRAIN_START, record_latent=False)
    write_bronze(sim, 300.0, root)
    FeatureBuilder(root, grids_ms=(100,), complete_before_ns=TRAIN_START + 10 * 3_600_000_000_000).build()
    build_labels(root, grids_ms=(100,))
    run_dir = root / "run"
    train_small_model(root, run_dir, FEATURES, "label_dir_mid_5s", grid="100ms", rounds=40)
    return run_dir


def _session(root: Path, run_dir: Path, speed: float, path: str) -> dict:
    from collectors.cli import venue_time_source
    from l2lab.demo import start_exchange, stop_exchange
    from l2lab.live.session import LiveConfig, LiveSession
    from loopback.clients import coinbase_markets
    from simulator.config import load_config
    from simulator.l2 import MarketSimulator

    name = f"{path}-{speed:g}x"
    products = MarketSimulator(load_config(symbols=["BTC-USD"], overrides={"seed": 7}), record_latent=False).products
    proc, urls = start_exchange(7, speed, "BTC-USD", root / name)
    try:
        cfg = LiveConfig(run_dir=run_dir, data_root=root, symbols=["BTC-USD"], out_dir=root / name / "out",
                         record_root=root / name / "capture", ws_url=urls["ws_url"],
                         markets=coinbase_markets(products), duration_s=SECONDS,
                         time_ns=venue_time_source(urls["clock_url"]), feast=path != "kernel",
                         feast_write="push" if path == "feast-push" else "direct", warmup_rows=0, stdout=False)
        session = LiveSession(cfg)
        rep = asyncio.run(session.run())
    finally:
        stop_exchange(proc)
    stages = rep.latency
    e2s = stages.get("event_to_signal", {})
    return {"signals": rep.signals, "signals_per_s": round(rep.signals / max(rep.wall_s, 1e-9), 1),
            "rows": rep.rows, "suppressed": rep.suppressed, "frames": rep.collector.get("frames"),
            "p50_ms": e2s.get("p50_ms"), "p99_ms": e2s.get("p99_ms"), "grid_wait_ms": rep.grid_wait_ms,
            "stages": {k: {"p50_ms": v["p50_ms"], "p99_ms": v["p99_ms"]} for k, v in stages.items()}}


def run() -> dict:
    out: dict = {"seconds_per_run": SECONDS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        run_dir = _model(root)
        print(f"   model: LightGBM on {len(FEATURES)} features, 100 ms grid ({time.perf_counter() - t:.1f} s)")
        if any(path != "kernel" for path in PATHS):
            from l2lab.featurestore.store import ensure_applied

            ensure_applied(root)
        for speed in SPEEDS:
            for path in PATHS:
                key = f"{path}_{speed:g}x"
                r = _session(root, run_dir, speed, path)
                out[key] = r
                st = r["stages"]
                detail = ", ".join(f"{k} {v['p50_ms']:.2f}/{v['p99_ms']:.2f}" for k, v in st.items()
                                   if k != "event_to_signal")
                print(f"   {key}: event -> signal p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; {r['signals']:,} "
                      f"signals ({r['signals_per_s']}/s), {r['frames']:,} frames, no signal {r['suppressed']}")
                print(f"      stages p50/p99 ms: {detail}; grid wait p50 {r['grid_wait_ms'].get('p50_ms')} ms")
            k = out.get(f"kernel_{speed:g}x")
            for path in ("feast", "feast-push"):
                f = out.get(f"{path}_{speed:g}x")
                if isinstance(f, dict) and isinstance(k, dict) and f["p99_ms"] and k["p99_ms"]:
                    print(f"   {speed:g}x: {path} p99 = {f['p99_ms'] / k['p99_ms']:.1f}x the kernel-only p99")
    goals = {}
    for path in ("feast", "feast-push", "kernel"):
        r = out.get(f"{path}_1x")
        if isinstance(r, dict) and r.get("p99_ms") is not None:
            goals[path] = r["p99_ms"] <= 20.0
            print(f"   goal p99 <= 20 ms at the real rate, {path} path: {'met' if goals[path] else 'NOT met'} "
                  f"({r['p99_ms']} ms)")
    out["goal_met"] = goals
    return out

"""Live scoring: the collector's normalized stream -> incremental features (the batch kernels) -> Feast online
store -> the research model -> signals. ``l2lab live --model RUN_DIR``; see :mod:`l2lab.live.session`."""

from __future__ import annotations

from pathlib import Path


def demo_step(settings, run_dir, *, seconds: float = 20.0, speed: float = 3.0, seed: int = 7,
              symbols: list[str] | None = None, feast: bool = True, warmup_rows: int | None = None,
              out_dir=None) -> list[str]:
    """A short live-scoring session on the simulator: the loopback exchange in its own process (as ``l2lab demo``
    starts it), ``seconds`` of wall time at ``speed`` x real time, scored with the model of ``run_dir``. The
    default 3x keeps three symbols (about 11,000 level changes/s) within what the ccxt collector takes on a small
    machine; at 10x it falls behind and rows go stale (no signal).

    The collector underneath records into ``<out>/capture`` (not the demo's data root: the simulator replays the
    same session times, which must not be added to the collected bronze). Without ``warmup_rows`` the model's
    warm-up (its longest feature window) is used, shortened to a third of the session if it is longer (said so
    in the summary). Returns summary lines (signals, suppressed rows, alarms, latency p50/p99)."""
    import asyncio
    import time

    from collectors.cli import venue_time_source
    from kernels.pipeline import grid_ms, grid_name
    from l2lab.demo import DEFAULT_SYMBOLS, start_exchange, stop_exchange
    from l2lab.live.session import LiveConfig, LiveSession, warmup_rows as model_warmup
    from loopback.clients import coinbase_markets
    from research.model_artifact import load_meta
    from simulator.config import load_config
    from simulator.l2 import MarketSimulator

    meta = load_meta(run_dir)
    symbols = symbols or [s for s in DEFAULT_SYMBOLS.split(",") if s in (meta.trainset.get("symbols") or [s])]
    step_ms = grid_ms(meta.grid)
    rows = int(seconds * speed * 1000 / step_ms)
    lines = []
    if warmup_rows is None:
        warmup_rows = model_warmup(meta.features, step_ms * 1_000_000)
        if warmup_rows > rows // 3:
            lines.append(f"live: the model's warm-up ({warmup_rows} rows of {grid_name(step_ms)}) is longer than "
                         f"this demo allows; shortened to {rows // 3} rows")
            warmup_rows = rows // 3
    out = Path(out_dir) if out_dir else Path(run_dir) / "live" / time.strftime("demo-%Y%m%dT%H%M%SZ", time.gmtime())
    products = MarketSimulator(load_config(symbols=symbols, overrides={"seed": seed}), record_latent=False).products
    proc, urls = start_exchange(seed, speed, ",".join(symbols), settings.data_root)
    try:
        cfg = LiveConfig(run_dir=Path(run_dir), data_root=settings.data_root, symbols=symbols, out_dir=out,
                         record_root=out / "capture", ws_url=urls["ws_url"], markets=coinbase_markets(products),
                         duration_s=seconds, time_ns=venue_time_source(urls["clock_url"]), feast=feast,
                         warmup_rows=warmup_rows, stdout=False, collector={"bronze_flush_s": 5.0})
        session = LiveSession(cfg)
        report = asyncio.run(session.run())
    finally:
        stop_exchange(proc)
    lines += report.lines()
    lines.append(f"live: {seconds:g} s at {speed:g}x on the simulator; signals {out / 'signals'}, "
                 f"per-stage latency {out / 'metrics.json'}")
    return lines


__all__ = ["demo_step"]

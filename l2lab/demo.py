"""``l2lab demo``: the pipeline end to end on the simulator (it grows as capabilities land).

1. Start the loopback exchange (``l2lab exchange serve``) as its own process on free ports.
2. Collect a simulated session through the ccxt collector (raw capture + bronze), with live statistics and the
   ccxt-book cross-check; receive times follow the venue clock, so an accelerated session keeps venue time.
3. Backfill 1-min candles and funding for the whole perpetuals universe with unmodified ccxt ``binanceusdm``.
4. Write the planted truth of the served session beside the data (the simulator is deterministic: the same seed
   and duration regenerate exactly what was served).
5. Build the features (silver, 100 ms and 1 s grids) from bronze with the numba kernels.
6. Summarize from the DuckDB warehouse.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from l2lab.settings import Settings

DEFAULT_SYMBOLS = "BTC-USD,ETH-USD,SOL-USD"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on the simulator")
    p.add_argument("--duration", type=float, default=30.0, help="wall seconds of streaming (default 30)")
    p.add_argument("--speed", type=float, default=10.0, help="simulated seconds per wall second (default 10)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--symbols", default=DEFAULT_SYMBOLS, help=f"products to collect (default {DEFAULT_SYMBOLS})")
    p.add_argument("--name", default="demo", help="data set name for the truth files (default demo)")
    p.add_argument("--perp-days", type=float, default=2.0, help="days of perp history to backfill (default 2)")
    p.add_argument("--research-hours", type=float, default=2.0,
                   help="simulated hours of the research session the notebooks run on (default 2)")
    p.add_argument("--no-research", action="store_true",
                   help="stop after the feature store (no research session, notebooks or live scoring)")
    p.add_argument("--live-seconds", type=float, default=20.0, help="wall seconds of live scoring (default 20)")
    p.set_defaults(func=run)


def start_exchange(seed: int, speed: float, symbols: str, data_root: Path) -> tuple[subprocess.Popen, dict]:
    """``l2lab exchange serve`` in a child process; returns it and the URLs it printed first."""
    cmd = [sys.executable, "-m", "l2lab.cli", "--data-root", str(data_root), "exchange", "serve", "--port", "0",
           "--seed", str(seed), "--speed", str(speed), "--symbols", symbols]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    try:
        urls = json.loads(line)
    except json.JSONDecodeError:
        proc.kill()
        raise RuntimeError(f"the loopback exchange did not start (said {line!r})") from None
    return proc, urls


def stop_exchange(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def backfill_perps(rest_url: str, data_root: Path, days: float) -> dict:
    """Backfill the last ``days`` of 1-min bars and funding for every listed perp with unmodified ccxt."""
    from collectors.backfill import Backfill, linear_perps
    from loopback.clients import binanceusdm

    client = binanceusdm(rest_url)
    markets = linear_perps(client)
    now_ms = client.fetch_time()
    since = now_ms - int(days * 86_400_000)
    rep = Backfill(client, data_root).run(since_ms=since, until_ms=now_ms)
    return {"listed": len(markets), "trading": sum(1 for m in markets if m.get("active")), **rep.__dict__}


def signal_lines(settings, truth: dict) -> list[str]:
    """What the kit recovers from its own features, beside the planted truth."""
    from l2lab.warehouse import connect

    con = connect(settings)
    lines = []
    try:
        for sym, ll in truth["lead_lag"].items():
            got = con.sql(f"""SELECT median(xa_leadlag_s), median(xa_peak_xcorr) FROM silver_cross_asset_100ms
                              WHERE symbol = '{sym}' AND xa_leadlag_s IS NOT NULL AND NOT isnan(xa_leadlag_s)""").fetchone()
            if got and got[0] is not None:
                lines.append(f"recovered: {sym} lags {ll['leader']} by {got[0]:g} s (planted {ll['lag_s']:g} s), "
                             f"peak correlation {got[1]:.2f}")
        rows = con.sql("""SELECT f.symbol, corr(f.imbalance_l1, l.fwd_ret_mid_5s), corr(f.ofi_sum_1s, l.fwd_ret_mid_5s),
                                 count(*)
                          FROM silver_book_features_1s f JOIN silver_labels_1s l USING (symbol, ts_ns)
                          WHERE f.valid AND NOT isnan(l.fwd_ret_mid_5s) AND NOT isnan(f.imbalance_l1)
                                AND NOT isnan(f.ofi_sum_1s)
                          GROUP BY 1 ORDER BY 1""").fetchall()
        for sym, c_imb, c_ofi, n in rows:
            lines.append(f"correlation with the next 5 s mid return ({sym}, {n:,} rows): "
                         f"imbalance_l1 {c_imb:+.3f}, ofi_sum_1s {c_ofi:+.3f}")
    finally:
        con.close()
    return lines


DEMO_MARKER = ".l2lab-demo"


def prepare_data_root(root: Path) -> None:
    """The demo collects a simulated session with fixed times: collected twice into one data root it would
    duplicate every bronze row. An empty (or new) root is used as is; a root a previous demo wrote (it leaves
    ``.l2lab-demo``, or, before that marker, ``sim/demo/l2/truth.json``) is emptied first; any other non-empty
    root is refused (it may hold the user's data)."""
    from l2lab.cli import CLIError

    root = Path(root)
    entries = [p for p in root.iterdir()] if root.exists() else []
    earlier_demo = (root / DEMO_MARKER).exists() or (root / "sim" / "demo" / "l2" / "truth.json").exists()
    if entries and not earlier_demo:
        raise CLIError(f"data root {root} already holds data that a previous demo did not write "
                       f"({', '.join(sorted(p.name for p in entries)[:5])}); run the demo with --data-root on a "
                       f"new or empty folder")
    for p in entries:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("written by `l2lab demo`; the next demo run empties this folder\n")


def run(args) -> int:
    from collectors.cli import venue_time_source
    from collectors.live import CoinbaseCollector, CollectorConfig
    from l2lab.warehouse import connect
    from loopback.clients import coinbase_markets
    from simulator.config import load_config
    from simulator.l2 import MarketSimulator
    from simulator.session import generate_l2, generate_perps

    settings = Settings.load(args.data_root)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    t_start = time.perf_counter()
    prepare_data_root(settings.data_root)
    print(f"l2lab demo: data root {settings.data_root}")
    print(f"[1/10] loopback exchange: simulator seed {args.seed}, {args.speed:g}x real time")
    proc, urls = start_exchange(args.seed, args.speed, ",".join(symbols), settings.data_root)
    try:
        print(f"      WebSocket {urls['ws_url']}   REST {urls['rest_url']}")
        cfg = load_config(symbols=symbols, overrides={"seed": args.seed})
        products = MarketSimulator(cfg, record_latent=False).products
        print(f"[2/10] collecting {', '.join(symbols)} for {args.duration:g} s through ccxt.pro "
              f"({args.duration * args.speed:g} simulated seconds)")
        col = CollectorConfig(symbols=symbols, data_root=settings.data_root, ws_url=urls["ws_url"],
                              markets=coinbase_markets(products), duration_s=args.duration,
                              bronze_flush_s=5.0, progress=True)
        col.time_ns = venue_time_source(urls["clock_url"])
        report = asyncio.run(CoinbaseCollector(col).run())
        print(f"[3/10] backfilling {args.perp_days:g} days of 1-min OHLCV and funding for every listed perp "
              f"(ccxt binanceusdm over REST)")
        perps = backfill_perps(urls["rest_url"], settings.data_root, args.perp_days)
    finally:
        stop_exchange(proc)
    served_s = args.duration * args.speed
    print(f"[4/10] planted truth of the served session -> {settings.sim_dir / args.name}")
    generate_l2(settings.sim_dir / args.name, cfg, served_s)
    generate_perps(settings.sim_dir / args.name, cfg)
    truth = json.loads((settings.sim_dir / args.name / "l2" / "truth.json").read_text())

    from kernels import catalog
    from kernels.pipeline import build_all

    n_features = len(catalog.features())
    print(f"[5/10] features: {n_features} catalog features -> silver (100 ms, 1 s), labels, cross-asset, gold")
    fb = build_all(settings.data_root)

    print("[6/10] summary (DuckDB warehouse)")
    con = connect(settings)
    rows = con.sql("""
        SELECT symbol, count(*) AS l2_rows, count(*) FILTER (WHERE kind = 3) AS gap_rows,
               count(DISTINCT hour) AS hours
        FROM bronze_l2_events GROUP BY symbol ORDER BY symbol""").fetchall()
    trades = dict(con.sql("SELECT symbol, count(*) FROM bronze_trades GROUP BY symbol").fetchall())
    quarantined = con.sql("SELECT count(*) FROM bronze_quarantine").fetchone()[0]
    con.close()
    print(f"      {'symbol':<9}{'L2 rows':>12}{'trades':>10}{'gap rows':>10}")
    for sym, n, g, _ in rows:
        print(f"      {sym:<9}{n:>12,}{trades.get(sym, 0):>10,}{g:>10}")
    frames_per_s = report.frames / max(report.wall_s, 1e-9)
    l2_per_s = report.normalizer.get("l2_rows", 0) / max(report.wall_s, 1e-9)
    print(f"      frames {report.frames:,} ({frames_per_s:,.0f}/s, {l2_per_s:,.0f} level changes/s over all symbols = "
          f"{l2_per_s / 1286:.1f}x BTC-USD's real rate); gaps {report.normalizer.get('gaps', 0)}; "
          f"quarantined {quarantined}; reconnects {report.reconnects}")
    print(f"      silver: {fb['rows']['100ms']:,} rows at 100 ms, {fb['rows']['1s']:,} at 1 s "
          f"({fb['partitions']} partitions, {fb['wall_s']:.1f} s); gold: {fb['gold']['hourly_rows']:,} hourly rows "
          f"for {fb['gold']['symbols']} perps")
    for line in signal_lines(settings, truth):
        print("      " + line)
    print(f"      ccxt book cross-check: {report.crosschecks - report.crosscheck_mismatches}/{report.crosschecks} agree")
    print(f"      perps: {perps['listed']} linear perps listed ({perps['trading']} trading); "
          f"{perps['rows']['ohlcv_1m']:,} 1-min bars and {perps['rows']['funding']:,} funding events in "
          f"{perps['requests']} requests ({perps['wall_s']:.1f} s); venue gaps recorded: {perps['venue_gaps']} "
          f"({perps['gap_minutes']} minutes)")
    leader = truth["oracle_direction_auc"]["closed_form_leaders"].get("BTC-USD", {})
    if leader:
        ordered = sorted(leader.items(), key=lambda kv: float(kv[0].rstrip("s")))
        print("      planted: BTC-USD oracle direction AUC by horizon " +
              ", ".join(f"{h} {v:.3f}" for h, v in ordered))
    for sym, ll in truth["lead_lag"].items():
        print(f"      planted: {sym} follows {ll['leader']} by {ll['lag_s']:g} s with beta {ll['beta']:g}")
    research_steps(settings, args)
    print(f"done in {time.perf_counter() - t_start:.0f} s. Try: l2lab sql \"SELECT symbol, count(*) FROM "
          f"bronze_trades GROUP BY 1\"")
    return 0


def research_steps(settings, args) -> None:
    """Steps 7-10: the research session, the Feast repository (apply, training set, materialize, lookups), the
    01-06 notebook chain and a short live-scoring session with the model it trained."""
    from l2lab.featurestore.demo import demo_step as feast_step

    if args.no_research:
        print("[8/10] feature store: apply, training set, materialize, online lookups (steps 7, 9, 10 skipped)")
        for line in feast_step(settings):
            print("      " + line)
        return
    from l2lab.live import demo_step as live_step
    from research.demo import demo_run
    from research.sessions import make_research_session

    print(f"[7/10] research session: {args.research_hours:g} simulated hours (perfect-collector bronze, "
          f"exchange=sim) -> silver/gold")
    t0 = time.perf_counter()
    session = make_research_session(settings.data_root, hours=args.research_hours, seed=args.seed)
    print(f"      bronze + silver/gold of {session['hours']:g} h from {session['start']} in "
          f"{time.perf_counter() - t0:.0f} s")
    print("[8/10] feature store: apply, training set, materialize, online lookups")
    for line in feast_step(settings):
        print("      " + line)
    print("[9/10] research notebooks 01-06 under papermill (training sets through Feast)")
    lines, run_dir = demo_run(settings, hours=args.research_hours, seed=args.seed, session=session)
    for line in lines:
        print("      " + line)
    print(f"[10/10] live scoring for {args.live_seconds:g} s with the model of {run_dir.name} "
          f"(streaming kernels -> Feast online store -> model)")
    for line in live_step(settings, run_dir, seconds=args.live_seconds, seed=args.seed):
        print("      " + line)

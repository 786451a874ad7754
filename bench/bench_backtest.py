"""Backtester throughput: market events (L2 rows + trades) per second on one simple strategy, ours against
hftbacktest on the same events and the same decisions, in one run.

Workload: ``SIM_SECONDS`` of the simulator's BTC-USD written to bronze (``simulator.normalized``). Strategy: one
decision per second from the planted latent signal; enter with a 0.01 BTC market order when flat and |z-edge| >=
0.5 (research.backtest.gates), hold 10 s, exit with a market order, no re-entry at the exit bar; 5 ms order
latency, no fees.

* ``ours``: ``research.backtest.run_backtest`` end to end: Parquet read, the observation pass (book at every
  decision time) and the event loop (book at every order arrival, walk of the book), metrics, capacity curve.
  Timed after a compile run on the same data, with the observation and partition caches cleared; best of 3. Events counted: every L2 row and
  trade of the session.
* ``hftbacktest`` (PyPI 2.4.4, pip-installed at bench time into a temporary folder, child process, as in
  bench_book): ``HashMapMarketDepthBacktest`` with our rows as EXCH_EVENT | LOCAL_EVENT depth events (trades are
  not fed: its fills come from the book), partial-fill exchange, risk-averse queue, constant 5 ms order latency;
  a numba strategy loop that elapses to each decision time and sends IOC market orders from the *same* decision
  array ours computed. Timed: the strategy loop after compiling it on a prefix, best of 3; reading bronze and the
  conversion to its events are outside. Its market orders fill at the touch (no book walk), ours walk the book: the work per order differs,
  the events are the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIM_SECONDS = int(os.environ.get("L2LAB_BENCH_BACKTEST_SECONDS", "1200"))
START = 1_767_574_680_000_000_000
QTY = 0.01
HOLD_S = 10.0
LATENCY_NS = 5_000_000
REPEATS = 3  # best of: the machine is shared


def config() -> dict:
    return {"exchange": "sim", "fees": {"tiers": [{"maker_bps": 0.0, "taker_bps": 0.0}]},
            "latency": {"order_ns": LATENCY_NS, "md_ns": 0}, "gates": {"z_threshold": 0.5, "warmup_bars": 30},
            "sizing": {"base_size": QTY}, "exits": {"mode": "horizon", "horizon_s": HOLD_S},
            "metrics": {"capacity_multipliers": [1.0]}}


def session(root: Path, seconds: int) -> pd.DataFrame:
    from simulator.config import load_config
    from simulator.l2 import MarketSimulator
    from simulator.normalized import write_bronze

    sim = MarketSimulator(load_config(symbols=["BTC-USD"]), seed=7, start_ns=START)
    write_bronze(sim, float(seconds), root, exchange="sim")
    lat = sim.latent_path()
    t = lat["t_ns"]
    grid = np.arange(t[0] + 1_000_000_000, t[-1], 1_000_000_000)
    s = lat["signal__BTC-USD"][np.searchsorted(t, grid, side="right") - 1]
    return pd.DataFrame({"symbol": "BTC-USD", "ts_ns": grid, "score": 0.5 + 0.5 * np.tanh(s)})


def run_ours(root: Path, preds: pd.DataFrame) -> dict:
    from research.backtest import gates, market, run as R
    from research.backtest.config import load_config

    R.run_backtest(preds, root, config())  # compile + warm the OS file cache
    read_s, dt = [], []
    for _ in range(REPEATS):
        market._PARTITIONS.clear()
        t = time.perf_counter()
        market.SymbolTape(root, "sim", "BTC-USD", 1).ensure(np.iinfo(np.int64).max - 1)  # Parquet read alone
        read_s.append(time.perf_counter() - t)
        R._BARS_CACHE.clear()  # the timed run reads and rebuilds everything itself
        market._PARTITIONS.clear()
        t = time.perf_counter()
        res = R.run_backtest(preds, root, config())
        dt.append(time.perf_counter() - t)
    read_s, dt = min(read_s), min(dt)
    m = res.metrics
    events = m["run"]["l2_rows"] + m["run"]["trades_in_data"]
    bars = R.observed_bars(root, "sim", "BTC-USD", preds["ts_ns"].to_numpy(np.int64))
    sig = gates.compute(preds["score"].to_numpy(float), bars, HOLD_S, load_config(config()))
    return {"seconds": dt, "parquet_read_seconds": read_s, "events": int(events), "events_per_s": round(events / dt), "trades": m["trades"],
            "net_pnl": m["net_pnl"], "direction": sig.direction.astype(np.int64)}


# -- hftbacktest child ---------------------------------------------------------------------------------------
def _strategy():
    from numba import njit

    @njit
    def strategy(hbt, bar_ts, direction, qty, hold_ns, start_ns, market, ioc):
        """Enter when flat on a non-zero decision (not at the last bar), exit at the first bar >= entry + hold,
        no entry at an exit bar; IOC market orders at the touch price."""
        now = start_ns
        pos = 0
        due = 0
        oid = 1
        entries = 0
        n = bar_ts.shape[0]
        for i in range(n):
            t = bar_ts[i]
            if t > now:
                if hbt.elapse(t - now) != 0:
                    break
                now = t
            d = hbt.depth(0)
            if pos != 0 and t >= due:
                if pos > 0:
                    hbt.submit_sell_order(0, oid, d.best_bid, qty, ioc, market, False)
                else:
                    hbt.submit_buy_order(0, oid, d.best_ask, qty, ioc, market, False)
                oid += 1
                pos = 0
            elif pos == 0 and direction[i] != 0 and i < n - 1:
                if direction[i] > 0:
                    hbt.submit_buy_order(0, oid, d.best_ask, qty, ioc, market, False)
                else:
                    hbt.submit_sell_order(0, oid, d.best_bid, qty, ioc, market, False)
                oid += 1
                pos = direction[i]
                due = t + hold_ns
                entries += 1
            hbt.clear_inactive_orders(0)
        hbt.elapse(1_000_000_000)
        return entries, hbt.state_values(0).num_trades

    return strategy


def hbt_child(target: str, root: str, arrays: str) -> None:
    """Child process: prints one ``HBT_RESULT {json}`` line; exit status 3 if hftbacktest cannot run."""
    if target:
        sys.path.append(target)
    try:
        import hftbacktest as H
        from hftbacktest.order import IOC, MARKET

        from bench.bench_book import to_hbt_events
        from research.backtest.market import SymbolTape

        tape = SymbolTape(root, "sim", "BTC-USD", 20)
        tape.ensure(np.iinfo(np.int64).max - 1)
        ev = tape.ev
        a = np.load(arrays)
        bar_ts, direction = a["bar_ts"], a["direction"]
        data = to_hbt_events(H, ev, exch=True)
        strategy = _strategy()
        qty = float(round(QTY * tape.sdiv))

        def backtest(d):
            asset = (H.BacktestAsset().data([d]).linear_asset(1.0).constant_order_latency(LATENCY_NS, LATENCY_NS)
                     .risk_adverse_queue_model().partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
                     .tick_size(1.0).lot_size(1.0))
            return H.HashMapMarketDepthBacktest([asset])

        start = int(ev["ts_recv_ns"][0])
        warm = backtest(data[: min(len(data), 50_000)].copy())  # compile on a prefix
        strategy(warm, bar_ts[:5], direction[:5], qty, int(HOLD_S * 1e9), start, MARKET, IOC)
        warm.close()
        dt = []
        for _ in range(REPEATS):
            hbt = backtest(data)
            t = time.perf_counter()
            entries, fills = strategy(hbt, bar_ts, direction, qty, int(HOLD_S * 1e9), start, MARKET, IOC)
            dt.append(time.perf_counter() - t)
            hbt.close()
        dt = min(dt)
    except Exception as exc:  # noqa: BLE001 - optional contender
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)
    print("HBT_RESULT " + json.dumps({"version": H.__version__, "seconds": dt, "events": int(len(ev)),
                                      "hbt_events": int(len(data)), "entries": int(entries), "fills": int(fills)}),
          flush=True)


def run_hftbacktest(root: Path, bar_ts: np.ndarray, direction: np.ndarray) -> dict | None:
    from bench.bench_book import install_hftbacktest

    target = install_hftbacktest()
    if target is None:
        return None
    arrays = root / "decisions.npz"
    np.savez(arrays, bar_ts=bar_ts, direction=direction)
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-c", "import sys; from bench.bench_backtest import hbt_child; hbt_child(*sys.argv[1:])",
           target, str(root), str(arrays)]
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        print("   hftbacktest: the child process ran over 900 s, skipped")
        return None
    finally:
        if target:
            shutil.rmtree(target, ignore_errors=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("HBT_RESULT ")]
    if proc.returncode != 0 or not line:
        why = proc.stderr.strip().splitlines()
        print(f"   hftbacktest: unavailable ({why[-1] if why else proc.returncode}), skipped")
        return None
    return json.loads(line[-1][len("HBT_RESULT "):])


def run(seconds: int = SIM_SECONDS) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        preds = session(root, seconds)
        print(f"   simulated {seconds} s of BTC-USD to bronze in {time.perf_counter() - t:.1f} s")
        ours = run_ours(root, preds)
        direction = ours.pop("direction")
        res = {"sim_seconds": seconds, "ours": ours}
        print(f"   ours: {ours['events']:,} events in {ours['seconds']:.2f} s = {ours['events_per_s'] / 1e6:.2f}M "
              f"events/s (of which the Parquet read {ours['parquet_read_seconds']:.2f} s); {ours['trades']} round "
              f"trips, net {ours['net_pnl']:.4f}")
        t = time.perf_counter()
        hbt = run_hftbacktest(root, preds["ts_ns"].to_numpy(np.int64), direction)
        print(f"   hftbacktest install + child process {time.perf_counter() - t:.1f} s")
        if hbt:
            hbt["events_per_s"] = round(ours["events"] / hbt["seconds"])
            res["hftbacktest"] = hbt
            res["ours_x_hftbacktest"] = round(ours["events_per_s"] / hbt["events_per_s"], 2)
            print(f"   hftbacktest {hbt['version']}: same {ours['events']:,} events in {hbt['seconds']:.2f} s = "
                  f"{hbt['events_per_s'] / 1e6:.2f}M events/s; {hbt['entries']} entries, {hbt['fills']} fills; "
                  f"ours / hftbacktest = {res['ours_x_hftbacktest']}x")
    return res

"""Simulator throughput: venue events generated per wall second, as a multiple of BTC-USD's real rate.

Baseline: 1,286 level changes/s (Binance USD-M BTCUSDT average, DESIGN.md). One simulated hour of the default
three-symbol market is generated on one core after a warm-up (numba compilation excluded).
"""

from __future__ import annotations

import time

import numpy as np

from bench import BTC_REAL_LEVEL_CHANGES_PER_S
from simulator.events import KIND_L2
from simulator.l2 import MarketSimulator

SIM_SECONDS = 3600


def run() -> dict:
    warm = MarketSimulator(seed=1)  # loads the numba cache / compiles outside the timed region
    warm.advance(warm.now_ns + 10 * 10**9)
    t0 = time.perf_counter()
    sim = MarketSimulator(seed=2, record_latent=False)
    total_events = total_l2 = btc_l2 = frames = 0
    end = sim.now_ns + SIM_SECONDS * 10**9
    while sim.now_ns < end:
        ev = sim.advance(min(end, sim.now_ns + 60 * 10**9))
        l2 = ev["kind"] == KIND_L2
        total_events += len(ev)
        total_l2 += int(l2.sum())
        btc_l2 += int((l2 & (ev["symbol"] == 0)).sum())
        # one venue message per (symbol, timestamp)
        key = ev["ts_ns"] * 8 + ev["symbol"]
        frames += int(np.count_nonzero(np.diff(key)) + (len(key) > 0))
    wall = time.perf_counter() - t0
    res = {
        "simulated_s": SIM_SECONDS,
        "wall_s": round(wall, 3),
        "events_per_s": round(total_events / wall),
        "level_changes_per_s": round(total_l2 / wall),
        "venue_messages_per_s": round(frames / wall),
        "sim_speed_x_realtime": round(SIM_SECONDS / wall, 1),
        "btc_level_changes_per_sim_s": round(btc_l2 / SIM_SECONDS, 1),
        "x_btc_real_rate": round(total_l2 / wall / BTC_REAL_LEVEL_CHANGES_PER_S, 1),
    }
    print(f"   simulated {SIM_SECONDS} s of 3 symbols in {wall:.2f} s ({res['sim_speed_x_realtime']}x real time)")
    print(f"   {res['level_changes_per_s']:,} level changes/s = {res['x_btc_real_rate']}x BTC-USD's real rate "
          f"({BTC_REAL_LEVEL_CHANGES_PER_S:,.0f}/s); {res['venue_messages_per_s']:,} venue messages/s")
    return res

"""Summary statistics of a simulated session: rates, bursts, spreads, tracking of the efficient price."""

from __future__ import annotations

import numpy as np

from simulator.events import FLAG_INFORMED, KIND_L2, KIND_TRADE


def session_stats(events: np.ndarray, path: dict[str, np.ndarray], products, duration_s: float) -> dict:
    """Per symbol: level changes/s (mean, busiest second, busiest 100 ms scaled to /s), trades/s, informed
    share, spread in ticks and bps (from the venue's top of book every 100 ms), crossed samples, and how far the
    mid strays from the efficient price (bps)."""
    out = {}
    t0 = int(path["t_ns"][0]) if path else int(events["ts_ns"].min())
    for k, p in enumerate(products):
        ev = events[events["symbol"] == k]
        l2 = ev[ev["kind"] == KIND_L2]
        trades = ev[ev["kind"] == KIND_TRADE]
        per_s = np.bincount((l2["ts_ns"] - t0) // 1_000_000_000) if len(l2) else np.zeros(1)
        per_100ms = np.bincount((l2["ts_ns"] - t0) // 100_000_000) if len(l2) else np.zeros(1)
        row = {
            "level_changes_per_s": round(len(l2) / duration_s, 2),
            "busiest_second_per_s": int(per_s.max()),
            "busiest_100ms_per_s": int(per_100ms.max()) * 10,
            "trades_per_s": round(len(trades) / duration_s, 2),
            "informed_trade_share": round(float((trades["flags"] & FLAG_INFORMED).astype(bool).mean()), 4) if len(trades) else 0.0,
        }
        if path:
            bid = path[f"best_bid__{p.symbol}"].astype(float)
            ask = path[f"best_ask__{p.symbol}"].astype(float)
            ok = (bid > 0) & (ask > 0)
            spread = (ask - bid)[ok]
            tick = float(p.tick_size)
            mid = (ask + bid)[ok] / 2 * tick
            spread_bps = spread * tick / mid * 1e4
            dev = (mid / np.exp(path[f"log_price__{p.symbol}"][ok]) - 1) * 1e4
            row.update(
                spread_ticks_median=float(np.median(spread)),
                spread_ticks_p99=float(np.percentile(spread, 99)),
                spread_bps_median=round(float(np.median(spread_bps)), 4),
                crossed_samples=int((spread <= 0).sum()),
                one_sided_samples=int((~ok).sum()),
                mid_minus_efficient_bps_sd=round(float(dev.std()), 4),
            )
        out[p.symbol] = row
    return out


def format_stats(stats: dict) -> str:
    cols = ["level_changes_per_s", "busiest_second_per_s", "trades_per_s", "spread_ticks_median",
            "spread_bps_median", "crossed_samples"]
    head = f"{'symbol':<10}" + "".join(f"{c:>22}" for c in cols)
    lines = [head]
    for sym, row in stats.items():
        lines.append(f"{sym:<10}" + "".join(f"{row.get(c, ''):>22}" for c in cols))
    return "\n".join(lines)

"""Tiny hand-made markets written to bronze, for hand-computed backtest scenarios.

Prices have 2 decimals (tick 0.01), sizes 2 decimals. ``T0`` is a whole second; scenarios place frames and trades
at T0 + offsets in ms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from collectors.bronze import BronzeWriter
from l2lab.schema import (FLAG_BOOK_RESET, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_GAP, L2_SNAPSHOT,
                          L2_UPDATE, SIDE_ASK, SIDE_BID, TRADE_DTYPE)

T0 = 1_767_600_000_000_000_000  # 2026-01-05T08:00:00Z
SYMBOL = "TEST-USD"
PE, SE = 2, 2
MS = 1_000_000
S = 1_000_000_000


def m(x: float, exp: int) -> int:
    return int(round(x * 10**exp))


class HandMarket:
    """Builds an L2 stream and a trade stream; ``book`` frames replace the whole book (deleting what is gone)."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.trades: list[tuple] = []
        self.levels = {SIDE_BID: {}, SIDE_ASK: {}}
        self._tid = 0

    def snapshot(self, t: int, bids, asks) -> "HandMarket":
        self.rows.append((t, 0, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END))
        rows = [(t, 0, -1, L2_SNAPSHOT, SIDE_BID, m(p, PE), m(s, SE), 0) for p, s in bids]
        rows += [(t, 0, -1, L2_SNAPSHOT, SIDE_ASK, m(p, PE), m(s, SE), 0) for p, s in asks]
        rows[0] = rows[0][:7] + (FLAG_BOOK_RESET,)
        rows[-1] = rows[-1][:7] + (rows[-1][7] | FLAG_FRAME_END,)
        self.rows += rows
        self.levels = {SIDE_BID: dict(bids), SIDE_ASK: dict(asks)}
        return self

    def frame(self, t: int, changes) -> "HandMarket":
        """One frame of (side, price, new size) changes (size 0 deletes)."""
        rows = []
        for side, p, s in changes:
            kind = L2_DELETE if s == 0 else L2_UPDATE
            rows.append((t, 0, -1, kind, side, m(p, PE), m(s, SE), 0))
            if s == 0:
                self.levels[side].pop(p, None)
            else:
                self.levels[side][p] = s
        rows[-1] = rows[-1][:7] + (FLAG_FRAME_END,)
        self.rows += rows
        return self

    def book(self, t: int, bids, asks) -> "HandMarket":
        """A frame that makes the book exactly ``bids`` / ``asks``."""
        changes = []
        for side, want in ((SIDE_BID, dict(bids)), (SIDE_ASK, dict(asks))):
            for p in list(self.levels[side]):
                if p not in want:
                    changes.append((side, p, 0))
            for p, s in want.items():
                if self.levels[side].get(p) != s:
                    changes.append((side, p, s))
        if not changes:  # an unchanged book still gets a frame (a heartbeat-like re-send of the touch)
            p, s = next(iter(bids))
            changes.append((SIDE_BID, p, s))
        return self.frame(t, changes)

    def trade(self, t: int, taker_side: int, price: float, size: float) -> "HandMarket":
        self._tid += 1
        self.trades.append((t, t, -1, self._tid, taker_side, m(price, PE), m(size, SE)))
        return self

    def write(self, root: Path, end_t: int | None = None) -> Path:
        rows = sorted(self.rows, key=lambda r: r[0])  # stable: frames keep their row order
        if end_t is not None:
            rows.append((end_t, 0, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END))
        ev = np.array(rows, dtype=L2_EVENT_DTYPE)
        tr = np.array(sorted(self.trades, key=lambda r: r[0]), dtype=TRADE_DTYPE) if self.trades else \
            np.empty(0, TRADE_DTYPE)
        w = BronzeWriter(Path(root) / "bronze", "test")
        w.write_events("l2_events", SYMBOL, ev, PE, SE)
        if len(tr):
            w.write_events("trades", SYMBOL, tr, PE, SE)
        return Path(root)


def steady(n_s: int, mids, half_spread: float = 0.01, size: float = 5.0, levels: int = 3) -> HandMarket:
    """A market whose mid is ``mids[k]`` at second k (a frame 0.5 ms before T0 + k s: the bar at k s sees it)."""
    hm = HandMarket()
    for k in range(n_s):
        mid = mids[k]
        bids = [(round(mid - half_spread - 0.01 * j, 2), size) for j in range(levels)]
        asks = [(round(mid + half_spread + 0.01 * j, 2), size) for j in range(levels)]
        if k == 0:
            hm.snapshot(T0 + MS // 2, bids, asks)
        else:
            hm.book(T0 + k * S - MS // 2, bids, asks)
    return hm


def predictions(scores, start_s: int = 1, step_s: int = 1) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame({"symbol": SYMBOL, "ts_ns": T0 + (start_s + step_s * np.arange(n)) * S,
                         "score": np.asarray(scores, float)})


def config(**sections) -> dict:
    """A config with no warmup, no fees, zero latency unless overridden, fixed size 1."""
    base = {
        "exchange": "test",
        "latency": {"order_ns": 0, "md_ns": 0},
        "fees": {"tiers": [{"maker_bps": 0.0, "taker_bps": 0.0}]},
        "gates": {"warmup_bars": 0, "sigma_floor": 1e-4},
        "sizing": {"base_size": 1.0, "max_size": 100.0},
        "exits": {"mode": "horizon", "horizon_s": 1.0},
        "metrics": {"capacity_multipliers": [1.0]},
    }
    for sec, values in sections.items():
        if isinstance(values, dict):
            base.setdefault(sec, {}).update(values)
        else:
            base[sec] = values
    return base

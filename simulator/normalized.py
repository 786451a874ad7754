"""What a perfect collector would record from the simulator: normalized L2 rows and trades (``l2lab.schema``),
without WebSockets. For tests and benchmarks that need bronze-shaped data fast; the real path (loopback
exchange -> ccxt collector -> normalizer) produces the same rows up to receive times and sequence numbers.

Prices and sizes use the product's own exponents (tick 0.01 -> price_exp 2, so mantissa == ticks).
"""

from __future__ import annotations

import numpy as np

from l2lab.schema import (FLAG_BOOK_RESET, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_GAP, L2_SNAPSHOT,
                          L2_UPDATE, TRADE_DTYPE)
from simulator.events import KIND_L2, KIND_TRADE
from simulator.products import decimals_of

RECV_LATENCY_NS = 1_000_000


def scales(product) -> tuple[int, int, int, int]:
    """(price_exp, size_exp, tick mantissa, lot mantissa) for a ``simulator.products.Product``."""
    pe, se = decimals_of(product.tick_size), decimals_of(product.size_increment)
    return pe, se, int(product.tick_size * 10**pe), int(product.size_increment * 10**se)


def start_rows(sim, symbol: str, ts_recv_ns: int) -> np.ndarray:
    """A recording-start gap marker followed by a snapshot of the venue's current book."""
    k = sim.symbol_index(symbol)
    _, _, tick, lot = scales(sim.products[k])
    bids, asks = sim.book(symbol)
    n = len(bids) + len(asks)
    out = np.zeros(1 + max(n, 1), L2_EVENT_DTYPE)
    out[0] = (ts_recv_ns, 0, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END)
    snap = out[1:]
    snap["ts_recv_ns"] = ts_recv_ns
    snap["ts_exch_ns"] = sim.now_ns
    snap["kind"] = L2_SNAPSHOT
    if n:
        snap["side"] = np.r_[np.zeros(len(bids), np.int8), np.ones(len(asks), np.int8)]
        snap["price"] = np.r_[bids[:, 0], asks[:, 0]] * tick
        snap["size"] = np.r_[bids[:, 1], asks[:, 1]] * lot
    snap["flags"][0] |= FLAG_BOOK_RESET
    snap["flags"][-1] |= FLAG_FRAME_END
    return out


def event_rows(sim, events: np.ndarray, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    """Venue events of one symbol -> (L2 rows, trades); one frame per venue timestamp, received 1 ms later."""
    k = sim.symbol_index(symbol)
    _, _, tick, lot = scales(sim.products[k])
    ev = events[events["symbol"] == k]
    l2 = ev[ev["kind"] == KIND_L2]
    rows = np.zeros(len(l2), L2_EVENT_DTYPE)
    rows["ts_exch_ns"] = l2["ts_ns"]
    rows["ts_recv_ns"] = l2["ts_ns"] + RECV_LATENCY_NS
    rows["kind"] = np.where(l2["size"] == 0, L2_DELETE, L2_UPDATE)
    rows["side"] = l2["side"]
    rows["price"] = l2["price"] * tick
    rows["size"] = l2["size"] * lot
    if len(l2):
        ends = np.r_[l2["ts_ns"][1:] != l2["ts_ns"][:-1], True]
        rows["flags"][ends] |= FLAG_FRAME_END
        rows["seq"] = np.cumsum(np.r_[True, ends[:-1]])
    tr = ev[ev["kind"] == KIND_TRADE]
    trades = np.zeros(len(tr), TRADE_DTYPE)
    trades["ts_exch_ns"] = tr["ts_ns"]
    trades["ts_recv_ns"] = tr["ts_ns"] + RECV_LATENCY_NS
    trades["seq"] = -1
    trades["trade_id"] = tr["trade_id"]
    trades["side"] = tr["side"]
    trades["price"] = tr["price"] * tick
    trades["size"] = tr["size"] * lot
    return rows, trades


def write_bronze(sim, seconds: float, data_root, chunk_s: float = 60.0, exchange: str = "coinbase") -> dict:
    """Advance ``sim`` by ``seconds`` and write its normalized rows to bronze; returns row counts."""
    from collectors.bronze import BronzeWriter

    writer = BronzeWriter(data_root / "bronze", exchange)
    start = sim.now_ns
    end = start + int(seconds * 1e9)
    counts = {"l2_events": 0, "trades": 0}
    for p in sim.products:
        pe, se, _, _ = scales(p)
        rows = start_rows(sim, p.symbol, start + RECV_LATENCY_NS)
        writer.write_events("l2_events", p.symbol, rows, pe, se)
        counts["l2_events"] += len(rows)
    t = start
    while t < end:
        nxt = min(end, t + int(chunk_s * 1e9))
        ev = sim.advance(nxt)
        for p in sim.products:
            pe, se, _, _ = scales(p)
            rows, trades = event_rows(sim, ev, p.symbol)
            writer.write_events("l2_events", p.symbol, rows, pe, se)
            writer.write_events("trades", p.symbol, trades, pe, se)
            counts["l2_events"] += len(rows)
            counts["trades"] += len(trades)
        t = nxt
    for p in sim.products:  # the recording stops: nothing is known after its last frame
        pe, se, _, _ = scales(p)
        stop = np.zeros(1, L2_EVENT_DTYPE)
        stop[0] = (end - 1, 0, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END)
        writer.write_events("l2_events", p.symbol, stop, pe, se)
        counts["l2_events"] += 1
    return counts

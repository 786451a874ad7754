"""The simulator's exchange-side event layout: what the venue does, before any wire format.

This is the contract between the simulator and the loopback exchange. It is *not* the normalized research
layout of collected data (that lives with the kernels); it is what the venue's matching engine emits.

Prices are integer ticks of the product's tick size and sizes integer lots of its size increment, so nothing
is ever rounded: ``price = ticks * tick_size`` exactly (see :class:`simulator.products.Product`).
"""

import numpy as np

KIND_L2 = 0  # a price level changed: ``size`` is the new total quantity at the level, 0 deletes it
KIND_TRADE = 1  # a match: ``size`` is the traded quantity at ``price``

SIDE_BID = 0  # L2: bid side.   Trades: the taker bought (lifted an ask)
SIDE_ASK = 1  # L2: ask side.   Trades: the taker sold (hit a bid)

FLAG_INFORMED = 1  # trade by a taker that picked off a quote stale against the latent price (ground truth only)

SIM_EVENT_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),  # venue event time, UTC nanoseconds
        ("symbol", "<i2"),  # index into MarketSimulator.products
        ("kind", "i1"),  # KIND_L2 | KIND_TRADE
        ("side", "i1"),  # SIDE_BID | SIDE_ASK (taker side for trades)
        ("price", "<i8"),  # integer ticks
        ("size", "<i8"),  # integer lots
        ("trade_id", "<i8"),  # trades: per-symbol id, increasing from 1; L2: -1
        ("flags", "u1"),  # ground truth only, never on the wire
    ]
)

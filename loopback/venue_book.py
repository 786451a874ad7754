"""What the venue itself knows about each product: its L2 book and its recent trades.

The loopback exchange keeps this state from the simulator's events (the same events it sends), so that a client
subscribing at any moment gets a snapshot consistent with the updates that follow it on its connection.
"""

from __future__ import annotations

from collections import deque

import numpy as np

TRADE_SNAPSHOT_SIZE = 50  # trades in a market_trades snapshot (the venue's recent-trades window)


class VenueBook:
    """One product's price levels: ``{price_ticks: size_lots}`` per side. Size 0 deletes a level."""

    __slots__ = ("bids", "asks")

    def __init__(self, bids: np.ndarray | None = None, asks: np.ndarray | None = None):
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        if bids is not None:
            self.bids.update((int(p), int(s)) for p, s in np.asarray(bids).reshape(-1, 2) if s > 0)
        if asks is not None:
            self.asks.update((int(p), int(s)) for p, s in np.asarray(asks).reshape(-1, 2) if s > 0)

    def apply(self, side: int, price: int, size: int) -> None:
        levels = self.bids if side == 0 else self.asks
        if size == 0:
            levels.pop(price, None)
        else:
            levels[price] = size

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks) as int64 arrays (n, 2) of (price ticks, size lots), best first (like ``sim.book``)."""
        bids = np.array(sorted(self.bids.items(), reverse=True), dtype=np.int64).reshape(-1, 2)
        asks = np.array(sorted(self.asks.items()), dtype=np.int64).reshape(-1, 2)
        return bids, asks

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


class RecentTrades:
    """The last ``maxlen`` trades of a product, oldest first: tuples (ts_ns, trade_id, taker_side, price, size)."""

    __slots__ = ("_trades",)

    def __init__(self, maxlen: int = TRADE_SNAPSHOT_SIZE):
        self._trades: deque[tuple[int, int, int, int, int]] = deque(maxlen=maxlen)

    def add(self, ts_ns: int, trade_id: int, side: int, price: int, size: int) -> None:
        self._trades.append((ts_ns, trade_id, side, price, size))

    def newest_first(self) -> list[tuple[int, int, int, int, int]]:
        return list(reversed(self._trades))

    def __len__(self) -> int:
        return len(self._trades)


class VenueState:
    """Books and recent trades of every product, indexed like the simulator's ``products``."""

    def __init__(self, products, books: list[VenueBook] | None = None, trade_window: int = TRADE_SNAPSHOT_SIZE):
        self.products = list(products)
        self.index = {p.symbol: i for i, p in enumerate(self.products)}
        self.books = books if books is not None else [VenueBook() for _ in self.products]
        self.trades = [RecentTrades(trade_window) for _ in self.products]
        self.now_ns = 0  # venue time up to which events have been applied

    @classmethod
    def from_simulator(cls, sim, trade_window: int = TRADE_SNAPSHOT_SIZE) -> "VenueState":
        """Start from the simulator's current books (``sim.book`` at ``sim.now_ns``)."""
        books = [VenueBook(*sim.book(p.symbol)) for p in sim.products]
        state = cls(sim.products, books, trade_window)
        state.now_ns = int(sim.now_ns)
        return state

    def book(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        return self.books[self.index[symbol]].snapshot()

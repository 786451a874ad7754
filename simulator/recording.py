"""A simulator that keeps every event it published, so a test (or a conformance check) knows exactly what the
venue sent and can compare what a client received with it."""

from __future__ import annotations

import numpy as np

from simulator.events import KIND_TRADE, SIM_EVENT_DTYPE


class RecordingSimulator:
    """Wraps a :class:`simulator.l2.MarketSimulator`; ``advance`` output is also kept. Anything else is
    delegated to the wrapped simulator, so it can stand in for one (e.g. as a loopback exchange's source)."""

    def __init__(self, sim):
        self._sim = sim
        self.chunks: list[np.ndarray] = []

    def advance(self, until_ns):
        ev = self._sim.advance(until_ns)
        self.chunks.append(ev)
        return ev

    def events(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.empty(0, SIM_EVENT_DTYPE)

    def trades(self, symbol_index: int) -> np.ndarray:
        ev = self.events()
        return ev[(ev["symbol"] == symbol_index) & (ev["kind"] == KIND_TRADE)]

    def __getattr__(self, name):
        return getattr(self._sim, name)

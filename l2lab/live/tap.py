"""The stream tap: the collector's normalized rows, grouped by received frame, handed to the live consumer.

:class:`StreamTap` is what ``CollectorConfig.stream`` takes. The normalizer calls :meth:`StreamTap.rows` for every
row batch it produces (``l2lab.schema`` tuples, stream order) and the collector calls :meth:`StreamTap.frame_done`
after each received frame; the tap turns the rows of that frame into one :class:`Received` item (per product: L2
rows and trades as structured arrays) on a queue. Both run inside ccxt's receive loop, so they only append; the
consumer (:class:`l2lab.live.session.LiveSession`) takes the items in the same asyncio loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from l2lab.schema import L2_EVENT_DTYPE, TRADE_DTYPE


@dataclass
class Received:
    """The normalized rows of one received frame (or of one gap the collector marked)."""

    ts_recv_ns: int  # receive time stamped by the collector (the rows' ts_recv_ns)
    t_recv_perf_ns: int  # time.perf_counter_ns() when the frame was received
    t_norm_perf_ns: int  # ... when its normalization ended
    l2: dict[str, np.ndarray] = field(default_factory=dict)  # product -> L2_EVENT_DTYPE rows
    trades: dict[str, np.ndarray] = field(default_factory=dict)  # product -> TRADE_DTYPE rows

    @property
    def products(self) -> list[str]:
        return list(dict.fromkeys([*self.l2, *self.trades]))


class StreamTap:
    def __init__(self):
        self._l2: dict[str, list] = {}
        self._trades: dict[str, list] = {}
        self._queue: deque[Received] = deque()
        self._wake: asyncio.Event | None = None
        self.frames = 0
        self.last_ts_ns: int | None = None  # receive time of the last frame of any kind (heartbeats too)

    # -- producer side (collector / normalizer) --------------------------------------------------------------
    def rows(self, dataset: str, product: str, rows: list) -> None:
        target = self._l2 if dataset == "l2_events" else self._trades
        target.setdefault(product, []).extend(rows)

    def frame_done(self, ts_recv_ns: int, t_perf_ns: int) -> None:
        self.frames += 1
        self.last_ts_ns = int(ts_recv_ns)
        if not self._l2 and not self._trades:
            return  # heartbeats, confirmations, quarantined frames: nothing for the engine
        item = Received(int(ts_recv_ns), int(t_perf_ns), time.perf_counter_ns(),
                        {p: np.array(r, dtype=L2_EVENT_DTYPE) for p, r in self._l2.items()},
                        {p: np.array(r, dtype=TRADE_DTYPE) for p, r in self._trades.items()})
        self._l2, self._trades = {}, {}
        self._queue.append(item)
        if self._wake is not None:
            self._wake.set()

    # -- consumer side -------------------------------------------------------------------------------------
    def take(self) -> list[Received]:
        """Every queued item, oldest first."""
        out = list(self._queue)
        self._queue.clear()
        return out

    def __len__(self) -> int:
        return len(self._queue)

    async def wait(self, timeout_s: float) -> None:
        """Until an item is queued or ``timeout_s`` passed."""
        if self._queue:
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

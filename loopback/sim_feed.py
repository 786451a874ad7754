"""Turns the simulator's venue events into Coinbase frames, keeping the venue state in step.

Message boundaries: events with the same ``ts_ns`` and symbol form one venue message -- one ``l2_data`` update
frame with all its level changes and/or one ``market_trades`` frame with all its trades (newest first), in the
order in which the first event of each kind appears. With ``coalesce_ns > 0`` all events of a symbol whose
``ts_ns // coalesce_ns`` are equal (and that fall in the same feed step) form one message instead, stamped with
the time of its last event; every level change keeps its own ``event_time``.

Heartbeats are emitted once per venue second, between the messages, to connections subscribed to them.
"""

from __future__ import annotations

import asyncio

import numpy as np

from loopback.coinbase_frames import ProductCodec, l2_frame, l2_update_text, rfc3339_nano, trades_frame
from loopback.venue_book import VenueState

HEARTBEAT_INTERVAL_NS = 1_000_000_000


class SimFeed:
    """Advance the simulator, apply its events to :class:`VenueState`, publish frames to the WS server."""

    def __init__(self, sim, state: VenueState, server, *, coalesce_ns: int = 0):
        if coalesce_ns < 0:
            raise ValueError(f"coalesce_ns must be >= 0, got {coalesce_ns}")
        self.sim = sim
        self.state = state
        self.server = server
        self.coalesce_ns = int(coalesce_ns)
        self.codecs = [ProductCodec(p) for p in sim.products]
        self.venue_start_ns = int(sim.now_ns)
        self.now_ns = int(sim.now_ns)
        self.next_heartbeat_ns = -(-self.now_ns // HEARTBEAT_INTERVAL_NS) * HEARTBEAT_INTERVAL_NS
        self.events = 0
        self.level_changes = 0
        self.trades = 0
        self.messages = 0  # frames published (each may go to several connections)
        self._lock = asyncio.Lock()

    async def advance_to(self, until_ns: int) -> int:
        """Generate and publish every event before ``until_ns``; returns the number of events."""
        async with self._lock:
            until_ns = int(until_ns)
            if until_ns <= self.now_ns:
                return 0
            events = self.sim.advance(until_ns)
            await self._publish(events)
            self._heartbeats_before(until_ns)
            self.now_ns = until_ns
            self.state.now_ns = until_ns
            return len(events)

    def _heartbeats_before(self, ts_ns: int) -> None:
        while self.next_heartbeat_ns < ts_ns:
            self.server.publish_heartbeats(self.next_heartbeat_ns, self.next_heartbeat_ns - self.venue_start_ns)
            self.next_heartbeat_ns += HEARTBEAT_INTERVAL_NS

    async def _publish(self, ev: np.ndarray) -> None:
        n = len(ev)
        if n == 0:
            return
        if self.coalesce_ns > 0:
            window = ev["ts_ns"] // self.coalesce_ns
            order = np.lexsort((np.arange(n), ev["symbol"], window))
            ev = ev[order]
            key = window[order]
        else:
            key = ev["ts_ns"]
        sym = ev["symbol"]
        cut = np.flatnonzero((key[1:] != key[:-1]) | (sym[1:] != sym[:-1])) + 1
        starts = [0, *cut.tolist()]
        ends = [*cut.tolist(), n]
        ts_l, sym_l, kind_l = ev["ts_ns"].tolist(), sym.tolist(), ev["kind"].tolist()
        side_l, price_l, size_l, tid_l = ev["side"].tolist(), ev["price"].tolist(), ev["size"].tolist(), \
            ev["trade_id"].tolist()
        server, state, codecs = self.server, self.state, self.codecs
        for s, e in zip(starts, ends):
            if ts_l[s] >= self.next_heartbeat_ns:
                self._heartbeats_before(ts_l[s] + 1)
            k = sym_l[s]
            codec = codecs[k]
            book, recent = state.books[k], state.trades[k]
            price, size = codec.price, codec.size
            l2: list[str] = []
            trades: list[str] = []
            trades_first = kind_l[s] == 1
            for i in range(s, e):
                t = rfc3339_nano(ts_l[i])
                if kind_l[i] == 0:
                    book.apply(side_l[i], price_l[i], size_l[i])
                    l2.append(l2_update_text(side_l[i], t, price(price_l[i]), size(size_l[i])))
                else:
                    recent.add(ts_l[i], tid_l[i], side_l[i], price_l[i], size_l[i])
                    trades.append(codec.trade(ts_l[i], tid_l[i], side_l[i], price_l[i], size_l[i]))
            t_last = ts_l[e - 1]
            frames = []
            if l2:
                frames.append(l2_frame(codec.product_id, "update", l2, t_last))
            if trades:
                trades.reverse()  # newest first, as the venue sends them
                frames.append(trades_frame(codec.product_id, "update", trades, t_last))
            if trades_first:
                frames.reverse()
            for f in frames:
                server.publish(f)
            self.messages += len(frames)
            self.level_changes += len(l2)
            self.trades += len(trades)
            if server.needs_drain:
                await server.drain()
        self.events += n

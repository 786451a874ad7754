"""Replay of a raw capture: every recorded frame's text sent unchanged, paced by its receive time.

Capture format (DESIGN.md): JSON Lines, optionally zstd-compressed (``.zst``), one object per received frame:
``{"ts_recv_ns": <int UTC ns>, "raw": "<frame text exactly as received>"}``; read and written by
:mod:`collectors.capture`, the one implementation of the contract.

Routing: a frame goes to the connections subscribed to its channel (``l2_data`` -> ``level2``; other channel
names map to themselves) and to at least one of its products (``events[].product_id`` and
``events[].trades[].product_id``); frames without a channel (errors), ``subscriptions`` confirmations and text
that is not JSON go to every connection. Sequence numbers are the recorded ones (the text is not touched), so a
client sees the recording's numbering, gaps included.

Connections: a capture recorded over several connections (the ``conn`` of each record) restarts its sequence
numbers with each one. When the recorded connection changes, the replay delivers what it queued, closes every
client connection (as the venue's connection ended at recording time) and waits for ``wait_clients`` clients to
subscribe again before it goes on, so each recorded connection is replayed on a connection of its own.

Pacing: frame i is due at ``wall_start + (ts_recv_ns[i] - ts_recv_ns[0]) / speed``; the clock is anchored when
playback starts, which is when ``wait_clients`` connections have subscribed (so a client does not miss the
recorded snapshots), to every channel of ``wait_channels`` if given (ccxt subscribes each channel in its own
message: without it, the recorded frames of a channel subscribed a moment later would be missed, a sequence gap).
The same wait, for clients whose connection is still open, follows each recorded connection change. With
``speed = inf`` frames go out as fast as clients read them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from collectors.capture import read_capture
from loopback.coinbase_frames import Frame

CHANNEL_TO_SUBSCRIPTION = {"l2_data": "level2", "subscriptions": None}


def raw_frame(raw: str, ts_recv_ns: int) -> Frame:
    """A replayable :class:`Frame` for one recorded text, with its routing keys read from the text."""
    channel, products, seq, kind = None, None, None, "raw"
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        msg = None
    if isinstance(msg, dict):
        ch = msg.get("channel")
        if isinstance(ch, str):
            channel = CHANNEL_TO_SUBSCRIPTION.get(ch, ch)
        if isinstance(msg.get("sequence_num"), int):
            seq = msg["sequence_num"]
        found: dict[str, None] = {}
        events = msg.get("events")
        if isinstance(events, list):
            for ev in events:
                if not isinstance(ev, dict):
                    continue
                if ev.get("type") == "snapshot":
                    kind = "snapshot"
                pid = ev.get("product_id")
                if isinstance(pid, str) and pid:
                    found[pid] = None
                for key in ("trades", "tickers", "candles"):
                    items = ev.get(key)
                    if isinstance(items, list):
                        for it in items:
                            if isinstance(it, dict) and isinstance(it.get("product_id"), str) and it["product_id"]:
                                found[it["product_id"]] = None
        products = tuple(found) or None
    return Frame(channel, products, raw, "", False, int(ts_recv_ns), kind, seq)


class ReplayFeed:
    """Plays a capture into a :class:`~loopback.coinbase_ws.CoinbaseWsServer` following a :class:`Clock`."""

    def __init__(self, path: str | Path, server, clock, *, wait_clients: int = 1, wait_channels: tuple = ()):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"capture file not found: {self.path}")
        self.server = server
        self.clock = clock
        self.wait_clients = int(wait_clients)
        self.wait_channels = tuple(wait_channels)
        self.frames_sent = 0
        self.connections_ended = 0
        self.first_ts_ns: int | None = None
        self.last_ts_ns: int | None = None
        self.started = asyncio.Event()
        self.done = asyncio.Event()

    async def _wait_for_clients(self) -> None:
        def ready(c) -> bool:
            return bool(c.subs) and not c.closed and all(ch in c.subs for ch in self.wait_channels)

        while sum(1 for c in self.server.connections.values() if ready(c)) < self.wait_clients:
            await asyncio.sleep(0.005)

    async def run(self) -> None:
        try:
            if self.wait_clients > 0:
                await self._wait_for_clients()
            clock, server = self.clock, self.server
            recorded_conn = None
            for rec in read_capture(self.path):
                ts, raw = rec.ts_recv_ns, rec.raw
                if self.last_ts_ns is not None:
                    ts = max(ts, self.last_ts_ns)  # never go back in time
                if rec.conn != recorded_conn:
                    if recorded_conn is not None:
                        await self._end_connections(rec.conn)
                        clock.restart(ts)  # the wait for new subscriptions is not recorded time
                    recorded_conn = rec.conn
                if self.first_ts_ns is None:
                    self.first_ts_ns = ts
                    clock.restart(ts)
                    self.started.set()
                self.last_ts_ns = ts
                if clock.paced:
                    delay = clock.wall_at(ts) - time.monotonic()
                    if delay > 0.0005:
                        await asyncio.sleep(delay)
                else:
                    clock.set_venue_now(ts)
                    if self.frames_sent % 256 == 0:
                        await asyncio.sleep(0)
                server.publish(raw_frame(raw, ts))
                self.frames_sent += 1
                if server.needs_drain:
                    await server.drain()
        finally:
            self.started.set()
            self.done.set()

    async def _end_connections(self, next_conn: int) -> None:
        """The recorded connection ended: close the clients' connections once they have everything, and wait for
        new subscriptions."""
        await self.server.flush()
        await self.server.close_all(1001, f"recorded connection ended (next: {next_conn})")
        self.connections_ended += 1
        if self.wait_clients > 0:
            await self._wait_for_clients()

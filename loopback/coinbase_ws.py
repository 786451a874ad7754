"""Coinbase Advanced Trade market-data WebSocket server: subscriptions, per-connection sequencing and delivery.

One :class:`Connection` per client. Its reader handles ``subscribe``/``unsubscribe`` requests synchronously (so a
snapshot and the updates after it are always consistent); its writer task drains a bounded queue of
:class:`~loopback.coinbase_frames.Frame` objects, numbers them with the connection's ``sequence_num`` (0, 1, 2,
... for every frame sent on the connection, confirmations included) and applies injected faults.

Feeds (:mod:`loopback.sim_feed`, :mod:`loopback.replay`) call :meth:`CoinbaseWsServer.publish` and await
:meth:`CoinbaseWsServer.drain` when :attr:`CoinbaseWsServer.needs_drain` says a client queue is half full.
A client whose queue stays over half full for ``slow_consumer_timeout_s``, or overflows, is disconnected as a
slow consumer (close code 1008, ``ErrSlowConsume``).

Request errors (unknown product or channel, malformed JSON, missing fields) answer with an error frame and change
nothing; nothing a client sends can raise out of the handler.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from typing import Callable

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from loopback.coinbase_frames import Frame, ProductCodec, error_frame, heartbeat_frame, subscriptions_frame
from loopback.faults import FaultConfig, FaultInjector, FaultLog

log = logging.getLogger(__name__)

# channels the simulator feeds; a replay accepts every market-data channel name it may have recorded
SIM_CHANNELS = ("level2", "market_trades", "heartbeats")
MARKET_DATA_CHANNELS = ("level2", "market_trades", "heartbeats", "ticker", "ticker_batch", "candles", "status",
                        "level2_batch")
PRODUCTLESS_CHANNELS = ("heartbeats", "status")
DEFAULT_QUEUE_LIMIT = 20_000


class _Disconnect(Exception):
    """Raised inside a writer to end the connection after an injected disconnect."""


class Connection:
    """One client connection: its subscriptions, its sequence counter and its outgoing queue."""

    def __init__(self, server: "CoinbaseWsServer", ws: ServerConnection, conn_id: int):
        self.server = server
        self.ws = ws
        self.id = conn_id
        self.subs: dict[str, set[str]] = {}
        self.queue: deque[Frame] = deque()
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.seq = 0  # next sequence_num
        self.last_seq: int | None = None
        self.hb_counter = 0
        self.frames_sent = 0
        self.closed = False
        self.injector = FaultInjector(server.faults, conn_id)

    # -- routing --------------------------------------------------------------------------------------------
    def wants(self, frame: Frame) -> bool:
        if frame.channel is None:
            return True
        products = self.subs.get(frame.channel)
        if products is None:
            return False
        if frame.products is None or not products:
            return True
        for p in frame.products:
            if p in products:
                return True
        return False

    def offer(self, frame: Frame) -> None:
        if self.closed:
            return
        if len(self.queue) >= self.server.queue_limit:
            self.server.slow_consumer(self, "queue overflow")
            return
        self.queue.append(frame)
        self.wakeup.set()

    # -- writer ---------------------------------------------------------------------------------------------
    def _take_seq(self, frame: Frame) -> int | None:
        if not frame.sequenced:
            return None
        n = self.seq
        self.seq += 1
        return n

    async def _send(self, text: str, seq: int | None) -> None:
        await self.ws.send(text)
        self.frames_sent += 1
        if seq is not None:
            self.last_seq = seq

    async def writer(self) -> None:
        try:
            while True:
                if not self.queue:
                    self.idle.set()
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                self.idle.clear()
                frame = self.queue.popleft()
                await self._deliver(frame)
        except (ConnectionClosed, _Disconnect):
            pass
        finally:
            self.closed = True
            self.queue.clear()
            self.idle.set()

    async def _deliver(self, frame: Frame) -> None:
        kind = self.injector.decide(frame, next_available=bool(self.queue))
        if kind is None:
            seq = self._take_seq(frame)
            await self._send(frame.render(seq), seq)
            return
        flog = self.server.fault_log
        meta = dict(venue_ts_ns=frame.venue_ts_ns, channel=frame.channel, products=frame.products)
        if kind == "disconnect":
            flog.write("disconnect", self.id, [], last_seq=self.last_seq, **meta)
            await self.ws.close(1011, "l2lab injected disconnect")
            raise _Disconnect
        if kind == "gap":
            k = self.injector.gap_size()
            skipped = list(range(self.seq, self.seq + k))
            self.seq += k
            flog.write("gap", self.id, skipped, **meta)
            seq = self._take_seq(frame)
            await self._send(frame.render(seq), seq)
            return
        seq = self._take_seq(frame)
        recorded = frame.seq_hint if seq is None else seq
        affected = [] if recorded is None else [recorded]
        text = frame.render(seq)
        if kind == "drop":
            flog.write("drop", self.id, affected, **meta)
        elif kind == "malformed":
            flog.write("malformed", self.id, affected, **meta)
            await self._send(text[: max(1, len(text) // 2)], seq)
        elif kind == "duplicate":
            flog.write("duplicate", self.id, affected, **meta)
            await self._send(text, seq)
            await self._send(text, seq)
        elif kind == "error":
            flog.write("error", self.id, affected, message=self.server.faults.error_message, **meta)
            await self._send(error_frame(self.server.faults.error_message).head, None)
            await self._send(text, seq)
        elif kind == "reorder":
            nxt = self.queue.popleft()
            nseq = self._take_seq(nxt)
            n_recorded = nxt.seq_hint if nseq is None else nseq
            flog.write("reorder", self.id, affected + ([] if n_recorded is None else [n_recorded]), **meta)
            await self._send(nxt.render(nseq), nseq)
            await self._send(text, seq)


class CoinbaseWsServer:
    """The WebSocket side of the loopback exchange. See the module docstring.

    ``codecs``/``state``: product formatting and venue state for snapshots (simulator mode); ``None`` in replay
    mode, where the server only routes recorded frames and generates no snapshots or confirmations.
    ``venue_now``: callable returning the venue time (ns) used for confirmation timestamps.
    """

    def __init__(self, *, state=None, faults: FaultConfig | None = None, fault_log: FaultLog | None = None,
                 queue_limit: int = DEFAULT_QUEUE_LIMIT, slow_consumer_timeout_s: float = 2.0,
                 subscribe_timeout_s: float | None = 5.0, venue_now: Callable[[], int] | None = None):
        self.state = state
        self.replay_mode = state is None
        self.codecs = {p.symbol: ProductCodec(p) for p in state.products} if state is not None else {}
        self.faults = faults or FaultConfig()
        self.fault_log = fault_log or FaultLog()
        if queue_limit < 4:
            raise ValueError(f"queue_limit must be >= 4, got {queue_limit}")
        self.queue_limit = int(queue_limit)
        self.high_water = self.queue_limit // 2
        self.slow_consumer_timeout_s = slow_consumer_timeout_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.venue_now = venue_now or time.time_ns
        self.connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._server = None
        self.port: int | None = None
        self.subscribed = asyncio.Event()  # set once any connection has a subscription (used by replay)
        self._closing: set[asyncio.Task] = set()  # slow-consumer closes in flight (kept referenced)
        self.requests_seen = 0

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await serve(self._handler, host, port, compression=None, max_size=2**16,
                                   close_timeout=2, ping_interval=20, ping_timeout=20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- publishing -----------------------------------------------------------------------------------------
    def publish(self, frame: Frame) -> None:
        for conn in tuple(self.connections.values()):
            if conn.wants(frame):
                conn.offer(frame)

    def publish_heartbeats(self, ts_ns: int, uptime_ns: int) -> None:
        """One heartbeat frame to every connection subscribed to ``heartbeats``, with its own counter."""
        for conn in tuple(self.connections.values()):
            if "heartbeats" in conn.subs and not conn.closed:
                conn.hb_counter += 1
                conn.offer(heartbeat_frame(ts_ns, uptime_ns, conn.hb_counter))

    @property
    def needs_drain(self) -> bool:
        for conn in self.connections.values():
            if len(conn.queue) > self.high_water:
                return True
        return False

    def backlog(self) -> int:
        return max((len(c.queue) for c in self.connections.values()), default=0)

    async def drain(self, below: int | None = None) -> None:
        """Wait until every queue is at most ``below`` (default: half the limit); connections that stay above it
        for ``slow_consumer_timeout_s`` are disconnected as slow consumers."""
        below = self.high_water if below is None else below
        deadline = time.monotonic() + self.slow_consumer_timeout_s
        while True:
            lagging = [c for c in self.connections.values() if not c.closed and len(c.queue) > below]
            if not lagging:
                return
            if time.monotonic() >= deadline:
                for c in lagging:
                    self.slow_consumer(c, f"queue above {below} frames for {self.slow_consumer_timeout_s} s")
                return
            await asyncio.sleep(0.002)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every connection has written everything queued (frames are then in the kernel)."""
        deadline = time.monotonic() + timeout
        while any(c.queue or not c.idle.is_set() for c in self.connections.values() if not c.closed):
            if time.monotonic() > deadline:
                raise TimeoutError("connections did not flush their queues in time")
            await asyncio.sleep(0.002)

    def slow_consumer(self, conn: Connection, why: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.fault_log.write("slow_consumer", conn.id, [], queued=len(conn.queue), last_seq=conn.last_seq,
                             reason=why, venue_ts_ns=self.venue_now())
        conn.queue.clear()
        task = asyncio.ensure_future(self._close(conn, 1008, "ErrSlowConsume"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close_all(self, code: int, reason: str) -> None:
        """Close every client connection (marked closed at once; their handlers then remove them)."""
        conns = list(self.connections.values())
        for conn in conns:
            conn.closed = True
            conn.queue.clear()
        await asyncio.gather(*(self._close(c, code, reason) for c in conns))

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        try:
            await conn.ws.close(code, reason)
        except Exception:  # the transport may already be gone
            pass

    # -- connection handling --------------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws, next(self._ids))
        self.connections[conn.id] = conn
        writer = asyncio.ensure_future(conn.writer())
        watchdog = None
        if self.subscribe_timeout_s is not None:
            watchdog = asyncio.ensure_future(self._subscribe_watchdog(conn))
        try:
            async for message in ws:
                self.requests_seen += 1
                try:
                    self.handle_request(conn, message)
                except Exception:  # never let a request take the server down
                    log.exception("error handling request on connection %s", conn.id)
                    conn.offer(error_frame("internal error"))
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            conn.wakeup.set()
            self.connections.pop(conn.id, None)
            if watchdog is not None:
                watchdog.cancel()
            writer.cancel()
            try:
                await writer
            except (asyncio.CancelledError, Exception):
                pass

    async def _subscribe_watchdog(self, conn: Connection) -> None:
        await asyncio.sleep(self.subscribe_timeout_s)
        if not conn.subs and not conn.closed:
            await self._close(conn, 1000, "no subscribe received within 5 seconds")

    def handle_request(self, conn: Connection, message) -> None:
        """Validate and apply one client request; errors are answered with an error frame."""
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError:
            conn.offer(error_frame("Failed to parse message", "request is not valid JSON"))
            return
        if not isinstance(req, dict):
            conn.offer(error_frame("Failed to parse message", "request must be a JSON object"))
            return
        rtype = req.get("type")
        if rtype not in ("subscribe", "unsubscribe"):
            conn.offer(error_frame(f"unknown message type: {rtype!r}" if rtype is not None
                                   else "message type is required"))
            return
        verb = "subscribe" if rtype == "subscribe" else "unsubscribe"
        channel = req.get("channel")
        if channel is None and "channels" in req:
            conn.offer(error_frame(f"Failed to {verb}", "use 'channel' (one channel per message), not 'channels'"))
            return
        if not isinstance(channel, str) or not channel:
            conn.offer(error_frame(f"Failed to {verb}", "channel is required"))
            return
        allowed = MARKET_DATA_CHANNELS if self.replay_mode else SIM_CHANNELS
        if channel not in allowed:
            reason = (f"{channel} is not a valid channel" if channel not in MARKET_DATA_CHANNELS and channel != "user"
                      else f"channel {channel} is not served by the l2lab loopback exchange")
            conn.offer(error_frame(f"Failed to {verb}", reason))
            return
        products = req.get("product_ids", [])
        if products is None:
            products = []
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            conn.offer(error_frame(f"Failed to {verb}", "product_ids must be a list of strings"))
            return
        if not self.replay_mode:
            bad = [p for p in products if p not in self.codecs]
            if bad:
                conn.offer(error_frame(f"Failed to {verb}", f"{bad[0]} is not a valid product"))
                return
        if rtype == "subscribe":
            if not products and channel not in PRODUCTLESS_CHANNELS:
                conn.offer(error_frame("Failed to subscribe", f"product_ids are required for channel {channel}"))
                return
            self._subscribe(conn, channel, products)
        else:
            self._unsubscribe(conn, channel, products)

    def _subscribe(self, conn: Connection, channel: str, products: list[str]) -> None:
        current = conn.subs.setdefault(channel, set())
        new = [p for p in dict.fromkeys(products) if p not in current]
        current.update(new)
        self.subscribed.set()
        if self.replay_mode:
            return
        now = self.venue_now()
        for p in new:
            k = self.state.index[p]
            if channel == "level2":
                bids, asks = self.state.books[k].snapshot()
                conn.offer(self.codecs[p].book_snapshot(bids, asks, now))
            elif channel == "market_trades":
                conn.offer(self.codecs[p].trades_snapshot(self.state.trades[k].newest_first(), now))
        conn.offer(self._confirmation(conn, now))

    def _unsubscribe(self, conn: Connection, channel: str, products: list[str]) -> None:
        if channel in conn.subs:
            if products:
                conn.subs[channel].difference_update(products)
                if not conn.subs[channel]:
                    del conn.subs[channel]
            else:
                del conn.subs[channel]
        if not self.replay_mode:
            conn.offer(self._confirmation(conn, self.venue_now()))

    @staticmethod
    def _confirmation(conn: Connection, now: int) -> Frame:
        return subscriptions_frame({ch: sorted(ps) for ch, ps in sorted(conn.subs.items())}, now)

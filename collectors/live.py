"""The live Coinbase collector: ccxt keeps the connection, subscriptions and parsing; l2lab records every frame.

ccxt's ``watch_order_book`` may merge several delta frames into one book update and does not check
``sequence_num`` (DESIGN.md), so research data cannot come from ccxt's book. The split used here:

* ccxt (``ccxt.pro.coinbase``, unmodified; a subclass only taps each connection's text frames before ccxt
  decodes them) owns the WebSocket, the subscriptions, reconnects and its own parsed book;
* every received frame goes, as received, to the raw capture (:mod:`collectors.capture`) and through
  :class:`collectors.coinbase.CoinbaseNormalizer` (gaps, dedupe, quarantine) into bronze;
* ccxt's book is a cross-check: at every flush its best bid/ask is compared with the book the bronze rows
  rebuild, and disagreements are counted.

Observability: a live statistics line every second (frames/s, L2 rows, trades, gaps, quarantined, reconnects,
socket queue depth, lag = receive time - venue timestamp of the last data frame) and a structured JSON Lines log
(``<data>/logs/collect-<t>.jsonl``: start, stats every second, resyncs, stop).

Faults: a sequence gap, a stale connection (no frame within ``stale_after_s``; the ``heartbeats`` channel
sends one a second) or subscriptions the venue has not confirmed within ``subscribe_timeout_s`` of the client
being caught up with its socket (e.g. the venue answered with an error frame) make the collector *resync*: it
drops the ccxt client, rejects ccxt's pending watches with a ``NetworkError`` and closes the connection, so the
watch loops reconnect and resubscribe and the venue sends fresh snapshots. Reconnects back off exponentially
with full jitter. SIGINT/SIGTERM (or the duration ending) stop gracefully: ccxt is closed, the normalizer
drained, bronze and the capture flushed.

ccxt 4.5.90 raises ``ExchangeError`` from its message callback on a venue error frame (and a decode error on a
frame that is not valid JSON); raised there, the exception ends ccxt's receive loop and no further frame is read
on that connection. The tap therefore catches whatever ccxt's handler raises (the frame is already recorded and
quarantined by the normalizer) and counts it in ``CollectorReport.ccxt_errors``.

Connection ids (``conn`` in the capture, gaps and quarantine) are ``<process start, ms> * 1_000_000 + n``: unique
across reconnects and across collector restarts, so one normalizer can ingest the captures of several runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import ccxt
import ccxt.pro
import orjson

from collectors.bronze import BronzeWriter
from collectors.capture import CaptureWriter
from collectors.coinbase import CoinbaseNormalizer, ProductScale
from collectors.ingest import write_products
from l2lab.schema import GAP_STALE
from simulator.products import decimals_of

log = logging.getLogger("l2lab.collect")


@dataclass
class CollectorConfig:
    symbols: list[str]  # venue product ids, e.g. ["BTC-USD", "ETH-USD"]
    data_root: Path
    ws_url: str | None = None  # None: the venue's own URL
    markets: list[dict] | None = None  # ccxt markets to install with set_markets (None: load over REST)
    duration_s: float | None = None
    bronze_flush_s: float = 30.0
    capture_flush_s: float = 0.2
    stale_after_s: float = 5.0
    subscribe_timeout_s: float = 10.0  # a connection whose subscriptions are not all confirmed by then is resynced
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 30.0
    stats_every_s: float = 1.0
    time_ns: callable = time.time_ns  # receive-time source (a venue clock mapping for accelerated simulators)
    exchange: str = "coinbase"
    progress: bool = True
    # optional consumer of the normalized stream (e.g. ``l2lab.live.tap.StreamTap``): gets
    # ``rows(dataset, product, rows)`` for every normalized row batch as it is produced, then
    # ``frame_done(ts_recv_ns, t_perf_ns)`` after each received frame (t_perf_ns: time.perf_counter_ns() at receipt)
    # and after each gap the collector itself marks (staleness, end of the recording)
    stream: object = None


@dataclass
class CollectorReport:
    frames: int = 0
    reconnects: int = 0
    stale: int = 0
    resyncs: int = 0
    crosscheck_mismatches: int = 0
    crosschecks: int = 0
    venue_errors: int = 0  # error frames the venue sent
    ccxt_errors: int = 0  # exceptions ccxt raised while handling a frame (caught in the tap)
    subscribe_timeouts: int = 0  # connections resynced because subscriptions were not confirmed in time
    connections: int = 0
    normalizer: dict = field(default_factory=dict)
    bronze_rows: dict = field(default_factory=dict)
    capture_files: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class JsonLog:
    """Structured log: one JSON object a line (``t`` UTC ns, ``event`` and fields), appended and flushed."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "ab")

    def write(self, event: str, **fields) -> None:
        import orjson

        self._fh.write(orjson.dumps({"t": time.time_ns(), "event": event, **fields}) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class Backoff:
    """Exponential backoff with full jitter: sleep U(0, min(max, initial * 2^n))."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial, self.maximum, self.n = initial, maximum, 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        delay = self.rng.uniform(0, min(self.maximum, self.initial * 2**self.n))
        self.n += 1
        return delay

    def reset(self) -> None:
        self.n = 0


class RecordingCoinbase(ccxt.pro.coinbase):
    """``ccxt.pro.coinbase`` with a tap on every connection's text frames (called before ccxt decodes them).

    ``on_handler_error(client, exc)`` receives what ccxt's own handling of a frame raised; the exception is not
    re-raised, so ccxt's receive loop goes on reading (see the module docstring)."""

    def __init__(self, config: dict, on_frame, on_handler_error=None):
        super().__init__(config)
        self._on_frame = on_frame
        self._on_handler_error = on_handler_error

    def client(self, url):
        client = super().client(url)
        if not getattr(client, "_l2lab_tapped", False):
            original = client.handle_text_or_binary_message
            on_frame, on_error = self._on_frame, self._on_handler_error

            def tapped(data, _original=original, _client=client):
                on_frame(_client, data.decode() if isinstance(data, (bytes, bytearray)) else data)
                try:
                    return _original(data)
                except Exception as exc:
                    if on_error is None:
                        raise
                    on_error(_client, exc)

            client.handle_text_or_binary_message = tapped
            client._l2lab_tapped = True
        return client


def scales_from_markets(markets: dict) -> dict[str, ProductScale]:
    """Fixed-point exponents per venue product id from ccxt markets (tick size and amount increment)."""
    out = {}
    for m in markets.values():
        price = Decimal(str(m["precision"]["price"]))
        amount = Decimal(str(m["precision"]["amount"]))
        out[m["id"]] = ProductScale(decimals_of(price), decimals_of(amount))
    return out


class CoinbaseCollector:
    def __init__(self, cfg: CollectorConfig):
        self.cfg = cfg
        self.report = CollectorReport()
        self._stop = asyncio.Event()
        self._conn_base = (time.time_ns() // 1_000_000) * 1_000_000
        self._conns: list[tuple[object, int]] = []  # recent (connection object, conn id); objects kept alive
        self._conn: int | None = None  # id of the connection frames arrive on now
        self._unconfirmed_s = 0.0  # time caught up with the socket while the current connection is unconfirmed
        self._conn_gapped = False  # the current connection had a sequence gap
        self._confirmed: dict[str, set[str]] = {}  # the current connection's confirmed subscriptions
        self._last_frame_mono = time.monotonic()
        self._gaps_seen = 0
        self._reconnect_requested = False
        self._dropped_clients: list = []  # ccxt clients a resync closed (their late frames trigger nothing)
        self.exchange: RecordingCoinbase | None = None
        self.normalizer: CoinbaseNormalizer | None = None

    # -- frame tap (runs inside ccxt's receive loop: keep it cheap) -----------------------------------------
    def _on_frame(self, client, text: str) -> None:
        t_perf = time.perf_counter_ns()
        ts = self.cfg.time_ns()
        self._last_frame_mono = time.monotonic()
        conn = self._conn_id(client.connection)
        self.capture.write(ts, text, conn)
        self.normalizer.feed(ts, text, conn)
        if self.cfg.stream is not None:
            self.cfg.stream.frame_done(ts, t_perf)
        self.report.frames += 1
        if len(text) < 4096 and ('"subscriptions"' in text or '"error"' in text):
            self._control_frame(text)
        gaps = self.normalizer.stats["gaps"]
        if gaps != self._gaps_seen:
            self._gaps_seen = gaps
            if conn == self._conn and not any(c is client for c in self._dropped_clients):
                self._conn_gapped = True
                self._request_resync("sequence gap")

    def _conn_id(self, connection) -> int:
        for obj, cid in self._conns:
            if obj is connection:
                return cid
        cid = self._conn_base + len(self._conns) if not self._conns else self._conns[-1][1] + 1
        self._conns = (self._conns + [(connection, cid)])[-8:]
        self._conn, self._unconfirmed_s, self._conn_gapped, self._confirmed = cid, 0.0, False, {}
        self.report.connections += 1
        return cid

    def _control_frame(self, text: str) -> None:
        """Subscription confirmations (what the venue really subscribed) and venue error frames."""
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("type") == "error":
            self.report.venue_errors += 1
            log.warning("venue error frame: %s", text)
        elif msg.get("channel") == "subscriptions":
            for ev in msg.get("events") or []:
                subs = ev.get("subscriptions") if isinstance(ev, dict) else None
                if isinstance(subs, dict):
                    self._confirmed = {ch: set(ps or ()) for ch, ps in subs.items() if isinstance(ps, list)}

    def _on_handler_error(self, client, exc: Exception) -> None:
        self.report.ccxt_errors += 1
        log.info("ccxt raised while handling a frame (frame kept in capture/quarantine): %s: %s",
                 type(exc).__name__, exc)

    @property
    def subscriptions_confirmed(self) -> bool:
        """The venue confirmed ``level2`` and ``market_trades`` for every product on the current connection."""
        want = set(self.cfg.symbols)
        return all(want <= self._confirmed.get(ch, set()) for ch in ("level2", "market_trades"))

    def _client(self):
        """ccxt's client of the WebSocket URL (None before the first connection and between resyncs)."""
        return self.exchange.clients.get(self.exchange.urls["api"]["ws"]) if self.exchange else None

    @property
    def synced(self) -> bool:
        """The current connection is open, its subscriptions are confirmed, every product got a book snapshot on
        it and no sequence gap happened since (so bronze rebuilds the venue's book), and no resync is pending."""
        conn = getattr(self._client(), "connection", None)
        return (conn is not None and not conn.closed and self._conn is not None
                and self._conns[-1][0] is conn and not self._conn_gapped and not self._reconnect_requested
                and self.subscriptions_confirmed
                and set(self.normalizer.l2_products(self._conn)) >= set(self.cfg.symbols))

    def _request_resync(self, why: str) -> None:
        if self._reconnect_requested:
            return
        self._reconnect_requested = True
        self.report.resyncs += 1
        log.warning("resync: %s", why)
        if getattr(self, "jlog", None):
            self.jlog.write("resync", reason=why, frames=self.report.frames)
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._reconnect()))

    async def _reconnect(self) -> None:
        """Drop the ccxt client and close its connection; the watch loops reconnect and resubscribe.

        The pending watches are *rejected* with a ``NetworkError`` first: ``client.close()`` alone cancels them, and
        a cancelled watch would end the watch loop instead of reconnecting it."""
        url = self.exchange.urls["api"]["ws"]
        try:
            client = self.exchange.clients.pop(url, None)
            if client is not None:
                self._dropped_clients = (self._dropped_clients + [client])[-4:]
                client.reject(ccxt.NetworkError("l2lab resync"))
                await asyncio.wait_for(client.close(), 5.0)
        except Exception as exc:  # closing a dead socket may fail; the reconnect still happens
            log.debug("close during resync: %r", exc)
        finally:
            self._reconnect_requested = False

    # -- loops ----------------------------------------------------------------------------------------------
    async def _watch(self, name: str, call) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        while not self._stop.is_set():
            try:
                await call()
                backoff.reset()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._stop.is_set() or (task is not None and task.cancelling()):
                    raise
                exc = "cancelled"  # ccxt cancelled the pending future (its client was closed): reconnect
            except Exception as exc_:  # ccxt.NetworkError, ccxt.ExchangeError, or anything ccxt raised
                exc = f"{type(exc_).__name__}: {exc_}"  # ccxt's text names the close code and reason
            else:
                continue
            if self._stop.is_set():
                return
            self.report.reconnects += 1
            delay = backoff.next()
            log.info("%s: %s; reconnecting in %.2f s", name, exc, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _books(self) -> None:
        symbols = self.unified
        await self._watch("level2", lambda: self.exchange.watch_order_book_for_symbols(symbols))

    async def _trades(self) -> None:
        symbols = self.unified
        await self._watch("market_trades", lambda: self.exchange.watch_trades_for_symbols(symbols))

    async def _heartbeats(self) -> None:
        # the heartbeats subscription never resolves a ccxt future; re-send it after every reconnect
        sent_on = None
        while not self._stop.is_set():
            client = self._client()
            conn = getattr(client, "connection", None)
            if conn is not None and not conn.closed and conn is not sent_on:
                sent_on = conn
                ids = [self.exchange.market(s)["id"] for s in self.unified]
                try:
                    await client.send({"type": "subscribe", "product_ids": ids, "channel": "heartbeats"})
                except Exception as exc:
                    log.debug("heartbeats subscribe failed: %r", exc)
                    sent_on = None
            await asyncio.sleep(0.1)

    async def _watchdog(self) -> None:
        """Stale connections, and subscriptions not confirmed within ``subscribe_timeout_s``. The subscription
        clock runs only while the client has caught up with its socket: a client behind by hundreds of frames
        (a busy consumer) has the confirmation still queued, and resyncing it would only start the wait again."""
        tick = time.monotonic()
        while not self._stop.is_set():
            await asyncio.sleep(min(1.0, self.cfg.stale_after_s / 4, self.cfg.subscribe_timeout_s / 2))
            now = time.monotonic()
            elapsed, tick = now - tick, now
            if now - self._last_frame_mono > self.cfg.stale_after_s:
                self.report.stale += 1
                if self._conn is not None:
                    t_perf, ts = time.perf_counter_ns(), self.cfg.time_ns()
                    self.normalizer.mark_gap(ts, self._conn, GAP_STALE, f"no frame for {self.cfg.stale_after_s:g} s")
                    if self.cfg.stream is not None:
                        self.cfg.stream.frame_done(ts, t_perf)
                self._last_frame_mono = now
                self._request_resync("stale connection")
            elif self._conn is not None and not self.subscriptions_confirmed and not self._reconnect_requested:
                client = self._client()
                if client is None or _queue_depth(client) <= 0:  # unknown depth: count the time
                    self._unconfirmed_s += elapsed
                if self._unconfirmed_s <= self.cfg.subscribe_timeout_s:
                    continue
                self.report.subscribe_timeouts += 1
                self._unconfirmed_s = 0.0
                self._request_resync(f"subscriptions not confirmed within {self.cfg.subscribe_timeout_s:g} s "
                                     f"(confirmed: {sorted((k, sorted(v)) for k, v in self._confirmed.items())})")

    async def _flusher(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.cfg.bronze_flush_s)
            except asyncio.TimeoutError:
                self.flush()

    async def _stats(self) -> None:
        last_frames, last_t = 0, time.monotonic()
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.cfg.stats_every_s)
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            rate = (self.report.frames - last_frames) / max(1e-9, now - last_t)
            last_frames, last_t = self.report.frames, now
            st = self.normalizer.stats
            depth = _queue_depth(self._client())
            norm = self.normalizer
            lag_ms = ((norm.last_recv_ns - norm.last_venue_ns) / 1e6
                      if norm.last_venue_ns is not None and norm.last_recv_ns is not None else None)
            line = (f"frames {self.report.frames:>9,}  {rate:>8,.0f}/s  l2 rows {st['l2_rows']:>10,}  "
                    f"trades {st['trades']:>8,}  gaps {st['gaps']}  quarantined {st['quarantined']}  "
                    f"reconnects {self.report.reconnects}  queue {depth}  "
                    f"lag {'-' if lag_ms is None else f'{lag_ms:,.1f} ms'}")
            log.info(line)
            self.jlog.write("stats", frames=self.report.frames, frames_per_s=round(rate, 1),
                            l2_rows=st["l2_rows"], trades=st["trades"], gaps=st["gaps"],
                            quarantined=st["quarantined"], reconnects=self.report.reconnects, queue=depth,
                            lag_ms=None if lag_ms is None else round(lag_ms, 3))
            if self.cfg.progress:
                print("\r" + line, end="", flush=True)

    # -- bronze ---------------------------------------------------------------------------------------------
    def flush(self) -> None:
        # the frames first: bronze must never hold rows whose frames a crash could still take from the capture
        self.capture.flush()
        batch = self.normalizer.drain()
        for product, rows in batch.l2.items():
            s = self.scales[product]
            self.bronze.write_events("l2_events", product, rows, s.price_exp, s.size_exp)
            self._crosscheck(product, rows)
        for product, rows in batch.trades.items():
            s = self.scales[product]
            self.bronze.write_events("trades", product, rows, s.price_exp, s.size_exp)
        self.bronze.write_records("gaps", batch.gaps)
        self.bronze.write_records("quarantine", batch.quarantine)

    def _crosscheck(self, product: str, rows) -> None:
        """Compare ccxt's best bid/ask with the best levels of our own replay of the bronze rows."""
        from collectors.shadow_book import ShadowBook

        book = self._shadow.setdefault(product, ShadowBook())
        book.apply(rows)
        symbol = self.exchange.markets_by_id[product][0]["symbol"]
        ob = self.exchange.orderbooks.get(symbol)
        if ob is None or not book.valid:
            return
        ours = book.best(self.scales[product])
        theirs = (ob["bids"][0][0] if ob["bids"] else None, ob["asks"][0][0] if ob["asks"] else None)
        self.report.crosschecks += 1
        # ccxt may have applied frames that arrived after our drain; only a persistent mismatch matters
        if ours != theirs:
            self.report.crosscheck_mismatches += 1

    # -- run ------------------------------------------------------------------------------------------------
    async def run(self) -> CollectorReport:
        cfg = self.cfg
        started = time.monotonic()
        config = {"enableRateLimit": True, "newUpdates": True}
        if cfg.ws_url:
            config["urls"] = {"api": {"ws": cfg.ws_url}}
        self.exchange = RecordingCoinbase(config, self._on_frame, self._on_handler_error)
        if cfg.ws_url:
            self.exchange.urls["api"]["ws"] = cfg.ws_url
        if cfg.markets is not None:
            self.exchange.set_markets(cfg.markets)
        else:
            await self.exchange.load_markets()
        unknown = [s for s in cfg.symbols if s not in self.exchange.markets_by_id]
        if unknown:
            await self.exchange.close()
            raise ValueError(f"unknown product(s) on {cfg.exchange}: {', '.join(unknown)}")
        self.unified = [self.exchange.markets_by_id[s][0]["symbol"] for s in cfg.symbols]
        self.scales = scales_from_markets({s: self.exchange.markets_by_id[s][0] for s in cfg.symbols})
        self.normalizer = CoinbaseNormalizer(self.scales, source="live")
        if cfg.stream is not None:
            self.normalizer.on_rows = cfg.stream.rows
        self.capture = CaptureWriter(cfg.data_root / "raw", cfg.exchange, flush_interval_s=cfg.capture_flush_s)
        write_products(self.capture.root, self.scales)
        self.bronze = BronzeWriter(cfg.data_root / "bronze", cfg.exchange)
        self.jlog = JsonLog(cfg.data_root / "logs" / f"collect-{time.time_ns()}.jsonl")
        self.jlog.write("start", symbols=cfg.symbols, ws_url=cfg.ws_url)
        self._shadow = {}
        self._last_frame_mono = time.monotonic()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        tasks = [asyncio.ensure_future(c) for c in (self._books(), self._trades(), self._heartbeats(),
                                                    self._watchdog(), self._flusher(), self._stats())]
        try:
            if cfg.duration_s is not None:
                try:
                    await asyncio.wait_for(self._stop.wait(), cfg.duration_s)
                except asyncio.TimeoutError:
                    pass
            else:
                await self._stop.wait()
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await asyncio.wait_for(self.exchange.close(), 10.0)
            except Exception as exc:
                log.debug("close: %r", exc)
            self.normalizer.finish()  # GAP_STOP at the last frame's receive time (ingest does the same)
            if cfg.stream is not None and self.normalizer.last_frame_ns is not None:
                cfg.stream.frame_done(self.normalizer.last_frame_ns, time.perf_counter_ns())
            self.flush()
            self.capture.close()
            self.jlog.write("stop", frames=self.report.frames, reconnects=self.report.reconnects,
                            normalizer=dict(self.normalizer.stats))
            self.jlog.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
            if cfg.progress:
                print(flush=True)
        self.report.normalizer = dict(self.normalizer.stats)
        self.report.bronze_rows = {k: v for k, v in self.bronze.rows_written.items() if v}
        self.report.capture_files = [str(p) for p in self.capture.finished]
        self.report.wall_s = round(time.monotonic() - started, 3)
        return self.report

    def stop(self) -> None:
        self._stop.set()


def _queue_depth(client) -> int:
    """Frames received by the socket but not yet handled (aiohttp's reader buffer), when visible."""
    try:
        return len(client.connection._reader._buffer)
    except AttributeError:
        return -1

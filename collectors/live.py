"""The live Coinbase collector: ccxt keeps the connection, subscriptions and parsing; l2lab records every frame.

ccxt's ``watch_order_book`` may merge several delta frames into one book update and does not check
``sequence_num`` (DESIGN.md), so research data cannot come from ccxt's book. The split used here:

* ccxt (``ccxt.pro.coinbase``, unmodified; a subclass only taps each connection's text frames before ccxt
  decodes them) owns the WebSocket, the subscriptions, reconnects and its own parsed book;
* every received frame goes, as received, to the raw capture (:mod:`collectors.capture`) and through
  :class:`collectors.coinbase.CoinbaseNormalizer` (gaps, dedupe, quarantine) into bronze;
* ccxt's book is a cross-check: at every flush its best bid/ask is compared with the book the bronze rows
  rebuild, and disagreements are counted.

Faults: a sequence gap or a stale connection (no frame within ``stale_after_s``; the ``heartbeats`` channel
sends one a second) closes the connection, which makes ccxt reconnect and resubscribe and the venue send fresh
snapshots. Reconnects back off exponentially with full jitter. SIGINT/SIGTERM (or the duration ending) stop
gracefully: ccxt is closed, the normalizer drained, bronze and the capture flushed.
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
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 30.0
    stats_every_s: float = 1.0
    time_ns: callable = time.time_ns  # receive-time source (a venue clock mapping for accelerated simulators)
    exchange: str = "coinbase"
    progress: bool = True


@dataclass
class CollectorReport:
    frames: int = 0
    reconnects: int = 0
    stale: int = 0
    resyncs: int = 0
    crosscheck_mismatches: int = 0
    crosschecks: int = 0
    normalizer: dict = field(default_factory=dict)
    bronze_rows: dict = field(default_factory=dict)
    capture_files: list[str] = field(default_factory=list)
    wall_s: float = 0.0


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
    """``ccxt.pro.coinbase`` with a tap on every connection's text frames (called before ccxt decodes them)."""

    def __init__(self, config: dict, on_frame):
        super().__init__(config)
        self._on_frame = on_frame

    def client(self, url):
        client = super().client(url)
        if not getattr(client, "_l2lab_tapped", False):
            original = client.handle_text_or_binary_message
            on_frame = self._on_frame

            def tapped(data, _original=original, _client=client):
                on_frame(_client, data.decode() if isinstance(data, (bytes, bytearray)) else data)
                return _original(data)

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
        self._conn_ids: dict[int, int] = {}
        self._last_frame_mono = time.monotonic()
        self._gaps_seen = 0
        self._reconnect_requested = False
        self.exchange: RecordingCoinbase | None = None
        self.normalizer: CoinbaseNormalizer | None = None

    # -- frame tap (runs inside ccxt's receive loop: keep it cheap) -----------------------------------------
    def _on_frame(self, client, text: str) -> None:
        ts = self.cfg.time_ns()
        self._last_frame_mono = time.monotonic()
        conn = self._conn_ids.setdefault(id(client.connection), len(self._conn_ids))
        self.capture.write(ts, text, conn)
        self.normalizer.feed(ts, text, conn)
        self.report.frames += 1
        gaps = self.normalizer.stats["gaps"]
        if gaps != self._gaps_seen:
            self._gaps_seen = gaps
            self._request_resync("sequence gap")

    def _request_resync(self, why: str) -> None:
        if self._reconnect_requested:
            return
        self._reconnect_requested = True
        self.report.resyncs += 1
        log.warning("resync: %s", why)
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._reconnect()))

    async def _reconnect(self) -> None:
        """Close the connection; ccxt rejects the pending watches, the loops reconnect and resubscribe."""
        try:
            for client in list(self.exchange.clients.values()):
                await client.close()
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
                raise
            except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                if self._stop.is_set():
                    return
                self.report.reconnects += 1
                delay = backoff.next()
                log.info("%s: %s; reconnecting in %.2f s", name, type(exc).__name__, delay)
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
            client = self.exchange.clients.get(self.exchange.urls["api"]["ws"])
            conn = getattr(client, "connection", None) if client else None
            if conn is not None and not conn.closed and id(conn) != sent_on:
                sent_on = id(conn)
                ids = [self.exchange.market(s)["id"] for s in self.unified]
                try:
                    await client.send({"type": "subscribe", "product_ids": ids, "channel": "heartbeats"})
                except Exception as exc:
                    log.debug("heartbeats subscribe failed: %r", exc)
                    sent_on = None
            await asyncio.sleep(0.1)

    async def _watchdog(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(min(1.0, self.cfg.stale_after_s / 4))
            if self.report.frames and time.monotonic() - self._last_frame_mono > self.cfg.stale_after_s:
                self.report.stale += 1
                conn = self._current_conn_id()
                if conn is not None:
                    self.normalizer.mark_gap(self.cfg.time_ns(), conn, GAP_STALE,
                                             f"no frame for {self.cfg.stale_after_s:g} s")
                self._last_frame_mono = time.monotonic()
                self._request_resync("stale connection")

    def _current_conn_id(self):
        return max(self._conn_ids.values()) if self._conn_ids else None

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
            client = self.exchange.clients.get(self.exchange.urls["api"]["ws"])
            depth = _queue_depth(client)
            line = (f"frames {self.report.frames:>9,}  {rate:>8,.0f}/s  l2 rows {st['l2_rows']:>10,}  "
                    f"trades {st['trades']:>8,}  gaps {st['gaps']}  quarantined {st['quarantined']}  "
                    f"reconnects {self.report.reconnects}  queue {depth}")
            log.info(line)
            if self.cfg.progress:
                print("\r" + line, end="", flush=True)

    # -- bronze ---------------------------------------------------------------------------------------------
    def flush(self) -> None:
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
        self.capture.flush()

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
        self.exchange = RecordingCoinbase(config, self._on_frame)
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
        self.capture = CaptureWriter(cfg.data_root / "raw", cfg.exchange, flush_interval_s=cfg.capture_flush_s)
        write_products(self.capture.root, self.scales)
        self.bronze = BronzeWriter(cfg.data_root / "bronze", cfg.exchange)
        self._shadow = {}
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
                await self.exchange.close()
            except Exception as exc:
                log.debug("close: %r", exc)
            self.flush()
            self.capture.close()
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

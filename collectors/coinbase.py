"""Coinbase Advanced Trade market data: raw frames -> normalized L2 events, trades, gaps and quarantine.

The same :class:`CoinbaseNormalizer` serves the live collector and ``l2lab ingest`` of recorded captures, so
both produce identical bronze rows from identical frames.

Rules
* ``sequence_num`` counts every frame of one connection (all channels). A jump is a **gap**: every product
  with an L2 subscription on that connection gets an ``L2_GAP`` row (its book is invalid until the next snapshot)
  and a gap record. A number at or below one already seen is a duplicate (identical text) or a late frame; both
  go to quarantine with the reason (the raw capture keeps them too), never into the event stream.
* ``l2_data`` snapshot events become ``L2_SNAPSHOT`` rows, the first with ``FLAG_BOOK_RESET``; update rows are
  ``L2_UPDATE`` or, for quantity 0, ``L2_DELETE``. The last row of each product's event gets ``FLAG_FRAME_END``.
  Prices and sizes are parsed exactly into fixed-point mantissas (``l2lab.schema``).
* A snapshot's ``event_time`` may be the epoch; ``ts_exch_ns`` then falls back to the frame ``timestamp``.
* ``market_trades``: the wire ``side`` is the maker's; the stored side is the taker's. Trades are deduplicated
  by (product, trade_id) — the snapshot sent on subscribe repeats recent trades.
* A frame that cannot be parsed, or with a field out of contract, goes to quarantine with a reason naming the
  field; if it was L2 data of a known product, that product also gets a gap (its book missed an update).
* Recording boundaries are gaps too: a product's first L2 row of a recording is preceded by a ``GAP_START``
  marker (nothing is known before it, e.g. while the collector was not running) and :meth:`finish` ends the
  recording with a ``GAP_STOP`` marker at the last frame's receive time, for live collection and ingest alike.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

import numpy as np
import orjson

from collectors.timeparse import rfc3339_to_ns
from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_FRAME_END, GAP_DISCONNECT, GAP_SEQUENCE, GAP_START, GAP_STOP, L2_DELETE, L2_EVENT_DTYPE,
    L2_GAP, L2_SNAPSHOT, L2_UPDATE, SIDE_ASK, SIDE_BID, TRADE_DTYPE, parse_fixed,
)

L2_SIDE = {"bid": SIDE_BID, "offer": SIDE_ASK, "ask": SIDE_ASK}
MAKER_SIDE_TO_TAKER = {"BUY": SIDE_ASK, "SELL": SIDE_BID}  # maker bought -> taker sold
RECENT_TRADE_IDS = 200_000  # per product, for deduplication


@dataclass(frozen=True)
class ProductScale:
    price_exp: int
    size_exp: int


@dataclass
class Batch:
    """What one drain returns: per-product arrays plus gap and quarantine records (dicts)."""

    l2: dict[str, np.ndarray] = field(default_factory=dict)
    trades: dict[str, np.ndarray] = field(default_factory=dict)
    gaps: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)


class FrameRejected(ValueError):
    def __init__(self, reason: str, product: str | None = None):
        super().__init__(reason)
        self.reason, self.product = reason, product


class CoinbaseNormalizer:
    def __init__(self, products: dict[str, ProductScale], source: str = "live"):
        self.products = products
        self.source = source
        self._l2 = defaultdict(list)
        self._trades = defaultdict(list)
        self._gaps: list[dict] = []
        self._quarantine: list[dict] = []
        self._next_seq: dict[int, int] = {}
        self._l2_products: dict[int, set[str]] = defaultdict(set)
        self._recent_seq: dict[int, OrderedDict] = defaultdict(OrderedDict)
        self._trade_ids: dict[str, OrderedDict] = defaultdict(OrderedDict)
        self._conn: int | None = None
        self._recorded: set[str] = set()  # products with L2 rows in this recording
        self._last_ts: int | None = None
        self.last_venue_ns: int | None = None  # venue timestamp of the last data frame (for lag)
        self.last_recv_ns: int | None = None  # its receive time
        self.stats = defaultdict(int)
        # optional consumer of every normalized row as it is produced (a live scorer), called with
        # ("l2_events" | "trades", product, [row tuples]) in stream order; drain() still returns every row
        self.on_rows = None

    # -- input ----------------------------------------------------------------------------------------------
    def feed(self, ts_recv_ns: int, raw: str, conn: int = 0, where: str = "") -> None:
        """Normalize one received frame. ``where`` (e.g. ``file:line``) is quoted in quarantine records. A frame on
        a new connection id ends the previous connection: its L2 products get a disconnect gap stamped at the old
        connection's last frame, so no stale book counts as valid during the outage."""
        self.stats["frames"] += 1
        if conn != self._conn:
            if self._conn is not None:
                # nothing is known after the old connection's last frame: the gap starts there
                self.connection_lost(self._last_ts, self._conn, f"new connection {conn}")
            self._conn = conn
        self._last_ts = ts_recv_ns
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._reject(ts_recv_ns, raw, conn, where, f"malformed JSON: {exc}")
            return
        if not isinstance(msg, dict):
            self._reject(ts_recv_ns, raw, conn, where, "frame is not a JSON object")
            return
        if msg.get("type") == "error":
            self.stats["venue_errors"] += 1
            self._reject(ts_recv_ns, raw, conn, where, f"venue error frame: {msg.get('message')!r}")
            return
        seq = msg.get("sequence_num")
        if not isinstance(seq, int) or isinstance(seq, bool):
            self._reject(ts_recv_ns, raw, conn, where, "field sequence_num missing or not an integer")
            return
        if not self._check_sequence(ts_recv_ns, raw, conn, where, seq):
            return
        channel = msg.get("channel")
        try:
            if channel == "l2_data":
                self._l2_frame(ts_recv_ns, msg, seq, conn)
            elif channel == "market_trades":
                self._trades_frame(ts_recv_ns, msg, seq)
            elif channel in ("subscriptions", "heartbeats"):
                self.stats[channel] += 1
            else:
                raise FrameRejected(f"field channel: unknown channel {channel!r}")
        except FrameRejected as exc:
            self._reject(ts_recv_ns, raw, conn, where, exc.reason)
            if channel == "l2_data":
                # the frame's updates are lost: every product it may concern loses its book
                named = {ev.get("product_id") for ev in msg.get("events") or [] if isinstance(ev, dict)}
                products = sorted(({p for p in named if p in self.products} | self._l2_products.get(conn, set()))
                                  & self._recorded | ({exc.product} if exc.product in self.products else set()))
                if products:
                    self._gap(ts_recv_ns, conn, GAP_SEQUENCE, seq, seq, f"rejected L2 frame: {exc.reason}", products)

    def connection_lost(self, ts_ns: int, conn: int, detail: str = "disconnected") -> None:
        """Mark every L2 product of ``conn`` invalid (their books resume at the next snapshot)."""
        products = sorted(self._l2_products.get(conn, ()))
        if products:
            self._gap(ts_ns, conn, GAP_DISCONNECT, self._next_seq.get(conn, -1), -1, detail, products)
        self._next_seq.pop(conn, None)
        self._recent_seq.pop(conn, None)
        self._l2_products.pop(conn, None)

    def mark_gap(self, ts_ns: int, conn: int, kind: int, detail: str) -> None:
        """A gap the caller detected (e.g. staleness): invalidates every L2 product of ``conn``."""
        products = sorted(self._l2_products.get(conn, ()))
        if products:
            self._gap(ts_ns, conn, kind, -1, -1, detail, products)

    def finish(self, ts_ns: int | None = None) -> None:
        """End of the recording: every product recorded gets a ``GAP_STOP`` marker (default: at the last
        frame's receive time, so live collection and ingest of its capture agree)."""
        ts = self._last_ts if ts_ns is None else ts_ns
        products = sorted(self._recorded)
        if products and ts is not None:
            self._gap(ts, -1 if self._conn is None else self._conn, GAP_STOP, -1, -1, "recording stopped", products)

    @property
    def last_frame_ns(self) -> int | None:
        """Receive time of the last frame fed."""
        return self._last_ts

    def l2_products(self, conn: int) -> list[str]:
        return sorted(self._l2_products.get(conn, ()))

    # -- output ---------------------------------------------------------------------------------------------
    def drain(self) -> Batch:
        b = Batch(
            l2={p: np.array(rows, dtype=L2_EVENT_DTYPE) for p, rows in self._l2.items() if rows},
            trades={p: np.array(rows, dtype=TRADE_DTYPE) for p, rows in self._trades.items() if rows},
            gaps=self._gaps,
            quarantine=self._quarantine,
        )
        self._l2, self._trades = defaultdict(list), defaultdict(list)
        self._gaps, self._quarantine = [], []
        return b

    # -- internals ------------------------------------------------------------------------------------------
    def _check_sequence(self, ts, raw, conn, where, seq) -> bool:
        expected = self._next_seq.get(conn)
        recent = self._recent_seq[conn]
        if expected is not None and seq < expected:
            if recent.get(seq) == hash(raw):
                self.stats["duplicates"] += 1
                self._reject(ts, raw, conn, where, f"duplicate frame (sequence_num {seq})")
            else:
                self.stats["late"] += 1
                self._reject(ts, raw, conn, where, f"late frame: sequence_num {seq} after {expected - 1}")
            return False
        if expected is not None and seq > expected:
            self.stats["gaps"] += 1
            products = sorted(self._l2_products.get(conn, ()))
            self._gap(ts, conn, GAP_SEQUENCE, expected, seq, f"sequence_num jumped from {expected - 1} to {seq}", products)
        self._next_seq[conn] = seq + 1
        recent[seq] = hash(raw)
        if len(recent) > 4096:
            recent.popitem(last=False)
        return True

    def _gap(self, ts, conn, kind, expected, got, detail, products) -> None:
        for p in products:  # a gap has no venue time: ts_exch_ns 0
            row = (ts, 0, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END)
            self._l2[p].append(row)
            if self.on_rows is not None:
                self.on_rows("l2_events", p, [row])
        self._gaps.append({"ts_recv_ns": ts, "conn": conn, "kind": kind, "expected_seq": expected,
                           "got_seq": got, "products": ",".join(products), "detail": detail, "source": self.source})

    def _reject(self, ts, raw, conn, where, reason) -> None:
        self.stats["quarantined"] += 1
        self._quarantine.append({"ts_recv_ns": ts, "conn": conn, "where": where, "reason": reason, "raw": raw,
                                 "source": self.source})

    def _scale(self, product) -> ProductScale:
        scale = self.products.get(product) if isinstance(product, str) else None
        if scale is None:
            raise FrameRejected(f"field product_id: unknown product {product!r}")
        return scale

    def _frame_time(self, msg) -> int:
        try:
            t = rfc3339_to_ns(msg["timestamp"])
        except (KeyError, TypeError, ValueError):
            raise FrameRejected("field timestamp missing or not RFC 3339") from None
        self.last_venue_ns, self.last_recv_ns = t, self._last_ts
        return t

    def _l2_frame(self, ts, msg, seq, conn) -> None:
        frame_ns = self._frame_time(msg)
        events = msg.get("events")
        if not isinstance(events, list):
            raise FrameRejected("field events missing or not a list")
        staged = []
        for i, ev in enumerate(events):
            product = ev.get("product_id") if isinstance(ev, dict) else None
            scale = self._scale(product)
            etype = ev.get("type")
            if etype not in ("snapshot", "update"):
                raise FrameRejected(f"field events[{i}].type: {etype!r} is not snapshot or update", product)
            updates = ev.get("updates")
            if not isinstance(updates, list):
                raise FrameRejected(f"field events[{i}].updates missing or not a list", product)
            rows = []
            snap = etype == "snapshot"
            for j, u in enumerate(updates):
                try:
                    side = L2_SIDE[u["side"]]
                    price = parse_fixed(u["price_level"], scale.price_exp)
                    size = parse_fixed(u["new_quantity"], scale.size_exp)
                    t_exch = rfc3339_to_ns(u["event_time"])
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise FrameRejected(f"field events[{i}].updates[{j}]: {type(exc).__name__}: {exc}", product) from None
                if t_exch == 0:
                    t_exch = frame_ns
                kind = L2_SNAPSHOT if snap else (L2_DELETE if size == 0 else L2_UPDATE)
                rows.append((ts, t_exch, seq, kind, side, price, size, 0))
            if snap:
                if not rows:
                    rows.append((ts, frame_ns, seq, L2_SNAPSHOT, SIDE_BID, 0, 0, 0))  # an empty book
                first = rows[0]
                rows[0] = first[:7] + (first[7] | FLAG_BOOK_RESET,)
            if rows:
                last = rows[-1]
                rows[-1] = last[:7] + (last[7] | FLAG_FRAME_END,)
            staged.append((product, rows, snap))
        for product, rows, snap in staged:
            if product not in self._recorded:
                self._recorded.add(product)
                self._gap(ts, conn, GAP_START, seq, seq, "recording started", [product])
            self._l2_products[conn].add(product)
            self._l2[product].extend(rows)
            if self.on_rows is not None and rows:
                self.on_rows("l2_events", product, rows)
            self.stats["l2_rows"] += len(rows)
            if snap:
                self.stats["snapshots"] += 1

    def _trades_frame(self, ts, msg, seq) -> None:
        self._frame_time(msg)
        events = msg.get("events")
        if not isinstance(events, list):
            raise FrameRejected("field events missing or not a list")
        staged = []
        for i, ev in enumerate(events):
            trades = ev.get("trades") if isinstance(ev, dict) else None
            if not isinstance(trades, list):
                raise FrameRejected(f"field events[{i}].trades missing or not a list")
            for j, t in enumerate(reversed(trades)):  # the venue lists newest first
                try:
                    product = t["product_id"]
                    scale = self._scale(product)
                    row = (ts, rfc3339_to_ns(t["time"]), seq, int(t["trade_id"]), MAKER_SIDE_TO_TAKER[t["side"]],
                           parse_fixed(t["price"], scale.price_exp), parse_fixed(t["size"], scale.size_exp))
                except FrameRejected:
                    raise
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    k = len(trades) - 1 - j
                    raise FrameRejected(f"field events[{i}].trades[{k}]: {type(exc).__name__}: {exc}") from None
                staged.append((product, row))
        for product, row in staged:
            seen = self._trade_ids[product]
            if row[3] in seen:
                self.stats["duplicate_trades"] += 1
                continue
            seen[row[3]] = None
            if len(seen) > RECENT_TRADE_IDS:
                seen.popitem(last=False)
            self._trades[product].append(row)
            self.stats["trades"] += 1
            if self.on_rows is not None:
                self.on_rows("trades", product, [row])

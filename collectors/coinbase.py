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
  by (product, trade_id) among the last ``RECENT_TRADE_IDS`` (200,000) accepted ids of the product — the snapshot
  sent on subscribe repeats recent trades.
* Bulk input: :meth:`CoinbaseNormalizer.feed_scanned` takes frames that :mod:`collectors.frame_scan` parsed in
  a compiled pass over capture lines, for as long as each is what ``feed`` would accept without any transition
  (the next ``sequence_num`` on the current connection; for ``l2_data`` only products that already have rows on
  it): then ``feed`` would only append the frame's rows (trades through the same dedupe) and count it, and so
  does ``feed_scanned``, for whole runs at once. Every other frame goes through ``feed``, so gaps, quarantine
  and dedupe are decided in one place.
* A frame that cannot be parsed, or with a field out of contract, goes to quarantine with a reason naming the
  field; if it was L2 data of a known product, that product also gets a gap (its book missed an update).
* Recording boundaries are gaps too: a product's first L2 row of a recording is preceded by a ``GAP_START``
  marker (nothing is known before it, e.g. while the collector was not running) and :meth:`finish` ends the
  recording with a ``GAP_STOP`` marker at the last frame's receive time, for live collection and ingest alike.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import orjson
from numba import njit

from collectors.frame_scan import FAST, FAST_TRADES, ProductTable
from collectors.normalizer_store import ArrivalRows, RecentFrames, RecentTradeIds
from collectors.timeparse import rfc3339_to_ns
from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_FRAME_END, GAP_DISCONNECT, GAP_SEQUENCE, GAP_START, GAP_STOP, L2_DELETE,
    L2_EVENT_DTYPE, L2_GAP, L2_SNAPSHOT, L2_UPDATE, SIDE_ASK, SIDE_BID, TRADE_DTYPE, parse_fixed,
)

L2_SIDE = {"bid": SIDE_BID, "offer": SIDE_ASK, "ask": SIDE_ASK}
MAKER_SIDE_TO_TAKER = {"BUY": SIDE_ASK, "SELL": SIDE_BID}  # maker bought -> taker sold


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
        self._scan_table: ProductTable | None = None
        self._l2 = ArrivalRows(L2_EVENT_DTYPE, FAST)
        self._trades = ArrivalRows(TRADE_DTYPE, FAST_TRADES)
        self._gaps: list[dict] = []
        self._quarantine: list[dict] = []
        self._next_seq: dict[int, int] = {}
        self._l2_products: dict[int, set[str]] = defaultdict(set)
        self._recent_seq: dict[int, RecentFrames] = defaultdict(RecentFrames)
        self._known_key = None  # (conn, number of its L2 products) the cached mask below was built for
        self._known = np.zeros(len(products), np.bool_)
        self._trade_ids: dict[str, RecentTradeIds] = defaultdict(RecentTradeIds)
        self._decimals: dict[int, dict] = defaultdict(dict)  # exponent -> {decimal text: mantissa} (_fixed)
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

    def feed_scanned(self, block, i: int, stop: int) -> int:
        """Take frames ``i, i + 1, ... < stop`` of a :class:`collectors.frame_scan.ScanBlock` (scanned with
        ``self.scan_table``) for as long as ``feed`` would accept each with no transition: a FAST frame on the
        current connection carrying the next ``sequence_num`` -- ``l2_data`` whose products all have L2 rows on
        that connection already, or ``market_trades`` -- so no gap, quarantine, connection change or
        recording-start marker. Trades go through the same dedupe as in ``feed``: in a run, a trade is taken
        when its id is above every id its product ever had (new without a search, see ``RecentTradeIds``); a
        frame with any other id is taken alone, trade by trade. Returns the index of the first frame not taken
        (``i``: feed that one with ``feed``).

        Bulk ingest only: block rows do not pass through ``on_rows``, so with a row hook set nothing is taken (the
        live collector sets the hook and never scans; ``collectors.ingest`` scans and sets no hook)."""
        conn = self._conn
        expected = self._next_seq.get(conn) if conn is not None else None
        if expected is None or self.on_rows is not None:
            return i
        status, conns, seqs = block.status, block.conn, block.seq
        known = self._known_mask(conn)
        tops = self._trade_tops()
        st = self.stats
        j = i
        while j < stop:
            k, n_rows, n_snap, n_trades = _trivial_run(status, conns, seqs, block.row0, block.n_snap, block.prod,
                                                       block.trade_id, known, tops, j, stop, conn,
                                                       expected + (j - i))
            if k > j:
                r0, r1 = int(block.row0[j]), int(block.row0[k])
                st["frames"] += k - j
                if n_rows > n_trades:
                    st["l2_rows"] += n_rows - n_trades
                    self._l2.add_block(block, r0, r1)
                if n_snap:
                    st["snapshots"] += n_snap
                if n_trades:
                    st["trades"] += n_trades
                    self._trades.add_block(block, r0, r1)
                    self._remember_trade_ids(block, r0, r1)
                j = k
            elif status[j] == FAST_TRADES and conns[j] == conn and seqs[j] == expected + (j - i):
                st["frames"] += 1
                self._accept_trades(block.trades_of(j))
                tops = self._trade_tops()
                j += 1
            else:
                break
        if j == i:
            return i
        last = j - 1
        self._last_ts = self.last_recv_ns = int(block.lines["ts_recv_ns"][last])
        self.last_venue_ns = int(block.lines["frame_ns"][last])
        self._next_seq[conn] = int(seqs[last]) + 1
        self._recent_seq[conn].add_block(block, i, j)
        return j

    def _trade_tops(self) -> np.ndarray:
        """Per product (``scan_table`` order) the highest trade id accepted so far (``_NO_TOP``: none)."""
        tops = [_NO_TOP if (r := self._trade_ids.get(p)) is None or r.top is None else r.top
                for p in self.scan_table.names]
        return np.array(tops or [_NO_TOP], np.int64)

    def _remember_trade_ids(self, block, r0: int, r1: int) -> None:
        """Add the ids of the trade rows in block rows ``r0:r1`` (taken by the run finder: per product they
        increase, above every earlier id) to their products' dedupe rings, in order."""
        rows = block.block_rows.trade_rows
        rows = rows[np.searchsorted(rows, r0):np.searchsorted(rows, r1)]
        prod, ids = block.prod[rows], block.trade_id[rows]
        for k in np.unique(prod).tolist():
            self._trade_ids[self.scan_table.names[k]].add_increasing(ids[prod == k])

    @property
    def scan_table(self) -> ProductTable:
        """The products in scanner form (built on first use: the live collector never scans)."""
        if self._scan_table is None:
            self._scan_table = ProductTable(self.products)
        return self._scan_table

    def _known_mask(self, conn: int) -> np.ndarray:
        """Products (``scan_table`` order) with L2 rows on ``conn``; each is recorded too (``_l2_frame`` records a
        product before it adds it to its connection). The set only grows until ``connection_lost`` drops it, so
        its size identifies it between drops: the mask is cached under (conn, size) and the cache cleared there."""
        on_conn = self._l2_products.get(conn, ())
        key = (conn, len(on_conn))
        if key != self._known_key:
            self._known = np.array([p in on_conn for p in self.scan_table.names], np.bool_)
            self._known_key = key
        return self._known

    def connection_lost(self, ts_ns: int, conn: int, detail: str = "disconnected") -> None:
        """Mark every L2 product of ``conn`` invalid (their books resume at the next snapshot)."""
        products = sorted(self._l2_products.get(conn, ()))
        if products:
            self._gap(ts_ns, conn, GAP_DISCONNECT, self._next_seq.get(conn, -1), -1, detail, products)
        self._next_seq.pop(conn, None)
        self._recent_seq.pop(conn, None)
        self._l2_products.pop(conn, None)
        self._known_key = None

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
            l2=self._l2.take(),
            trades=self._trades.take(),
            gaps=self._gaps,
            quarantine=self._quarantine,
        )
        self._gaps, self._quarantine = [], []
        return b

    # -- internals ------------------------------------------------------------------------------------------
    def _check_sequence(self, ts, raw, conn, where, seq) -> bool:
        expected = self._next_seq.get(conn)
        recent = self._recent_seq[conn]
        if expected is not None and seq < expected:
            if recent.same_text(seq, raw):
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
        recent.add(seq, raw)
        return True

    def _gap(self, ts, conn, kind, expected, got, detail, products) -> None:
        for p in products:  # a gap has no venue time: ts_exch_ns 0
            row = (ts, 0, -1, L2_GAP, 0, 0, 0, FLAG_FRAME_END)
            self._l2.add(p, [row])
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
        frame_text = msg["timestamp"]  # an update stamped with the same text has the same time
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
            pexp, sexp = scale.price_exp, scale.size_exp
            pmemo, smemo = self._decimals[pexp], self._decimals[sexp]
            for j, u in enumerate(updates):
                try:
                    side = L2_SIDE[u["side"]]
                    price = _fixed(pmemo, u["price_level"], pexp)
                    size = _fixed(smemo, u["new_quantity"], sexp)
                    text = u["event_time"]
                    t_exch = frame_ns if text == frame_text else rfc3339_to_ns(text)
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
            self._l2.add(product, rows)
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
                    trade_id = int(t["trade_id"])
                    if not -(2**63) <= trade_id < 2**63:
                        raise ValueError(f"trade_id {trade_id} does not fit an int64")
                    row = (ts, rfc3339_to_ns(t["time"]), seq, trade_id, MAKER_SIDE_TO_TAKER[t["side"]],
                           parse_fixed(t["price"], scale.price_exp), parse_fixed(t["size"], scale.size_exp))
                except FrameRejected:
                    raise
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    k = len(trades) - 1 - j
                    raise FrameRejected(f"field events[{i}].trades[{k}]: {type(exc).__name__}: {exc}") from None
                staged.append((product, row))
        self._accept_trades(staged)

    def _accept_trades(self, staged) -> None:
        """Keep (product, trade row) items whose trade id is new for the product, in order."""
        for product, row in staged:
            seen = self._trade_ids[product]
            if row[3] in seen:
                self.stats["duplicate_trades"] += 1
                continue
            seen.add(row[3])
            self._trades.add(product, [row])
            self.stats["trades"] += 1
            if self.on_rows is not None:
                self.on_rows("trades", product, [row])


DECIMAL_MEMO = 4096  # remembered decimal texts per exponent (prices near the touch repeat all the time)


def _fixed(memo: dict, text, exp: int) -> int:
    """``parse_fixed(text, exp)`` through the exponent's memo of decimal texts (only ``str`` texts are looked up
    and remembered, so anything else fails exactly as ``parse_fixed`` makes it; emptied when full)."""
    if text.__class__ is not str:
        return parse_fixed(text, exp)
    value = memo.get(text)
    if value is None:
        value = parse_fixed(text, exp)
        if len(memo) >= DECIMAL_MEMO:
            memo.clear()
        memo[text] = value
    return value


_NO_TOP = np.iinfo(np.int64).min  # a product with no trade id yet: every id is above it


@njit(cache=True)
def _trivial_run(status, conn, seq, row0, snaps, prod, trade_id, known, tops, i, stop, want_conn, expected):
    """Length of the run of lines from ``i`` (before ``stop``) on ``want_conn``, numbered ``expected,
    expected + 1, ...``, each either FAST with every row's product ``known``, or FAST_TRADES with every trade id
    above its product's ``tops`` entry (raised as trades are taken, so ids increase along the run).
    Returns (end, rows, snapshots, trades)."""
    j = i
    n_snap = 0
    n_trades = 0
    while j < stop:
        if conn[j] != want_conn or seq[j] != expected + (j - i):
            break
        if status[j] == FAST:
            ok = True
            for r in range(row0[j], row0[j + 1]):
                if not known[prod[r]]:
                    ok = False
                    break
            if not ok:
                break
            n_snap += snaps[j]
        elif status[j] == FAST_TRADES:
            ok = True
            for r in range(row0[j], row0[j + 1]):
                if trade_id[r] <= tops[prod[r]]:
                    ok = False
                    break
                for q in range(row0[j], r):  # the same product earlier in this frame
                    if prod[q] == prod[r] and trade_id[q] >= trade_id[r]:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                break
            for r in range(row0[j], row0[j + 1]):
                tops[prod[r]] = trade_id[r]
            n_trades += row0[j + 1] - row0[j]
        else:
            break
        j += 1
    return j, row0[j] - row0[i], n_snap, n_trades

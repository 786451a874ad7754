"""Coinbase Advanced Trade market-data frames: exact text of what the venue sends, built without a JSON encoder.

Every market-data frame has the envelope ``{"channel", "client_id", "timestamp", "sequence_num", "events"}`` in
that key order. ``sequence_num`` is per connection (it counts every frame sent on the connection), so a frame
that goes to many connections is built once as a :class:`Frame` with the text before and after the sequence
number, and rendered per connection with its own number.

Wire conventions reproduced here (see ``loopback/README.md`` for sources and the choices we made):

* Times are RFC 3339 with up to nanosecond fractions and trailing zeros trimmed (Go's ``RFC3339Nano``), e.g.
  ``2023-02-09T20:19:35.39625135Z``; a whole second has no fraction.
* Prices and sizes are exact decimal strings with trailing zeros trimmed (``"21921.3"``, ``"0.02"``); a deleted
  level has ``new_quantity`` ``"0"``.
* ``market_trades`` lists trades newest first inside an event; ``side`` is the *maker* order's side
  (``"BUY"`` when the resting order was a bid, i.e. the taker sold). See :data:`TRADE_SIDE_IS_MAKER`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import orjson

# Coinbase reports the side of the maker (resting) order in its public trade feeds. Set to False to report the
# taker side instead. The simulator's trade ``side`` is the taker side (SIDE_BID = taker bought).
TRADE_SIDE_IS_MAKER = True

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(slots=True)
class Frame:
    """One outgoing frame, shared by every connection it goes to.

    ``channel`` is the *subscription* channel the frame belongs to (``level2``, ``market_trades``,
    ``heartbeats``) or ``None`` for frames every connection gets (errors, recorded subscription frames).
    ``products`` are the product ids it concerns (``None``: not product specific). A sequenced frame is rendered
    as ``head + str(sequence_num) + tail``; an unsequenced one (errors, replayed raw text) is ``head`` verbatim.
    """

    channel: str | None
    products: tuple[str, ...] | None
    head: str
    tail: str = ""
    sequenced: bool = True
    venue_ts_ns: int = 0
    kind: str = "data"  # data | snapshot | heartbeat | subscriptions | error | raw
    seq_hint: int | None = None  # raw frames: the sequence_num recorded in the text, if any (for the fault log)

    def render(self, seq: int | None) -> str:
        if not self.sequenced:
            return self.head
        return f"{self.head}{seq}{self.tail}"


# -- formatting ---------------------------------------------------------------------------------------------
class TimeFormatter:
    """RFC 3339 nano (Go ``RFC3339Nano``) from integer UTC nanoseconds, caching the per-second prefix."""

    __slots__ = ("_sec", "_prefix")

    def __init__(self) -> None:
        self._sec = None
        self._prefix = ""

    def __call__(self, ts_ns: int) -> str:
        sec, ns = divmod(int(ts_ns), 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = (EPOCH + dt.timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
        if ns == 0:
            return self._prefix + "Z"
        return f"{self._prefix}.{ns:09d}".rstrip("0") + "Z"


rfc3339_nano = TimeFormatter()


def heartbeat_time(ts_ns: int, uptime_ns: int) -> str:
    """Go's ``time.Time.String()`` as in Coinbase heartbeats: ``2023-06-23 20:31:56.121961769 +0000 UTC m=+1.5``."""
    sec, ns = divmod(int(ts_ns), 1_000_000_000)
    stamp = (EPOCH + dt.timedelta(seconds=sec)).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{ns:09d} +0000 UTC m=+{uptime_ns / 1e9:.9f}"


class DecimalFormatter:
    """Exact decimal text of ``units * step`` with trailing zeros trimmed, using integer arithmetic only.

    ``step = m * 10**-d`` with integer ``m``, so ``units * step = (units * m) / 10**d`` exactly.
    """

    __slots__ = ("mult", "decimals", "scale")

    def __init__(self, step: Decimal):
        step = Decimal(step)
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        _, digits, exponent = step.normalize().as_tuple()
        mantissa = int("".join(map(str, digits)))
        self.mult = mantissa * 10 ** max(int(exponent), 0)
        self.decimals = max(-int(exponent), 0)
        self.scale = 10**self.decimals

    def __call__(self, units: int) -> str:
        v = int(units) * self.mult
        if self.decimals == 0:
            return str(v)
        sign = "-" if v < 0 else ""
        q, r = divmod(abs(v), self.scale)
        if r == 0:
            return f"{sign}{q}"
        return f"{sign}{q}.{r:0{self.decimals}d}".rstrip("0")


# -- envelopes ----------------------------------------------------------------------------------------------
def _head(channel: str, ts_ns: int) -> str:
    return f'{{"channel":"{channel}","client_id":"","timestamp":"{rfc3339_nano(ts_ns)}","sequence_num":'


def _json_str(s: str) -> str:
    return orjson.dumps(s).decode()


L2_SIDES = ("bid", "offer")  # indexed by simulator side: SIDE_BID = 0, SIDE_ASK = 1


def l2_update_text(side: int, time_text: str, price_text: str, qty_text: str) -> str:
    """One entry of an ``l2_data`` event's ``updates`` list."""
    return (f'{{"side":"{L2_SIDES[side]}","event_time":"{time_text}",'
            f'"price_level":"{price_text}","new_quantity":"{qty_text}"}}')


def l2_frame(product_id: str, event_type: str, updates: list[str], ts_ns: int, kind: str = "data") -> Frame:
    """An ``l2_data`` frame with one event (``snapshot`` or ``update``) for one product."""
    tail = (f',"events":[{{"type":"{event_type}","product_id":{_json_str(product_id)},'
            f'"updates":[{",".join(updates)}]}}]}}')
    return Frame("level2", (product_id,), _head("l2_data", ts_ns), tail, True, ts_ns, kind)


def trade_side_text(taker_side: int) -> str:
    """Wire ``side`` of a trade from the simulator's taker side (0: taker bought, 1: taker sold)."""
    taker_bought = taker_side == 0
    if TRADE_SIDE_IS_MAKER:
        return "SELL" if taker_bought else "BUY"
    return "BUY" if taker_bought else "SELL"


def trade_text(trade_id: int, product_id: str, price_text: str, size_text: str, side_text: str,
               time_text: str) -> str:
    """One entry of a ``market_trades`` event's ``trades`` list."""
    return (f'{{"trade_id":"{trade_id}","product_id":{_json_str(product_id)},"price":"{price_text}",'
            f'"size":"{size_text}","side":"{side_text}","time":"{time_text}"}}')


def trades_frame(product_id: str, event_type: str, trades_newest_first: list[str], ts_ns: int,
                 kind: str = "data") -> Frame:
    """A ``market_trades`` frame with one event (``snapshot`` or ``update``) for one product."""
    tail = f',"events":[{{"type":"{event_type}","trades":[{",".join(trades_newest_first)}]}}]}}'
    return Frame("market_trades", (product_id,), _head("market_trades", ts_ns), tail, True, ts_ns, kind)


def heartbeat_frame(ts_ns: int, uptime_ns: int, counter: int) -> Frame:
    """A ``heartbeats`` frame; ``counter`` is the connection's heartbeat count."""
    tail = (f',"events":[{{"current_time":"{heartbeat_time(ts_ns, uptime_ns)}",'
            f'"heartbeat_counter":"{counter}"}}]}}')
    return Frame("heartbeats", None, _head("heartbeats", ts_ns), tail, True, ts_ns, "heartbeat")


def subscriptions_frame(subscriptions: dict[str, list[str]], ts_ns: int) -> Frame:
    """The confirmation sent after every subscribe/unsubscribe: all current subscriptions of the connection."""
    body = orjson.dumps({"subscriptions": subscriptions}).decode()
    return Frame(None, None, _head("subscriptions", ts_ns), f',"events":[{body}]}}', True, ts_ns, "subscriptions")


def error_frame(message: str, reason: str | None = None) -> Frame:
    """``{"type":"error","message":...}`` (plus ``reason`` when given); error frames carry no sequence number."""
    payload = {"type": "error", "message": message}
    if reason:
        payload["reason"] = reason
    return Frame(None, None, orjson.dumps(payload).decode(), "", False, 0, "error")


class ProductCodec:
    """Formats one product's ticks, lots and events as Coinbase wire text."""

    __slots__ = ("product_id", "price", "size")

    def __init__(self, product):
        self.product_id = product.symbol
        self.price = DecimalFormatter(product.tick_size)
        self.size = DecimalFormatter(product.size_increment)

    def book_snapshot(self, bids, asks, ts_ns: int) -> Frame:
        """``l2_data`` snapshot of a whole book: bids best first, then offers best first."""
        t = rfc3339_nano(ts_ns)
        price, size = self.price, self.size
        updates = [l2_update_text(0, t, price(p), size(s)) for p, s in bids.tolist()]
        updates += [l2_update_text(1, t, price(p), size(s)) for p, s in asks.tolist()]
        return l2_frame(self.product_id, "snapshot", updates, ts_ns, kind="snapshot")

    def trade(self, ts_ns: int, trade_id: int, side: int, price: int, size: int) -> str:
        return trade_text(trade_id, self.product_id, self.price(price), self.size(size), trade_side_text(side),
                          rfc3339_nano(ts_ns))

    def trades_snapshot(self, trades_newest_first, ts_ns: int) -> Frame:
        """``market_trades`` snapshot of the venue's recent trades (tuples ts, id, side, price, size)."""
        texts = [self.trade(*t) for t in trades_newest_first]
        return trades_frame(self.product_id, "snapshot", texts, ts_ns, kind="snapshot")

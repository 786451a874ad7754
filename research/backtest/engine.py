"""The event loop for one symbol: bars (prediction times), order arrivals and resting-order ends, in time order.

At each bar the strategy (which sees the recorded book at the bar time) first manages open positions, then may
enter:

* exits: the timed exit (hold ``max_hold_s``, or exactly ``horizon_s`` in horizon mode) and, in gated mode, the
  ATR stop-loss / take-profit OCO measured from the entry VWAP with the ATR of the entry bar. The OCO is checked
  at bar closes on the observed mid and only from bar entry_bar + oco_arm_bars + 1 on (armed one bar after entry
  with the default 1). The last bar closes everything ("end");
* entries: a bar whose gates passed (research.backtest.gates), when the cooldown since the last completed exit is
  over and, unless horizon mode with ``overlap``, no position or order of this symbol is open.

Orders reach the venue ``latency.order_ns`` after the decision and meet the recorded book at decision +
order_ns + md_ns (research.backtest.latency). A market order fills against that book; a passive order rests
``passive_ttl_s`` and its rest goes out as a market order when the strategy learns the order ended. Exits by
stop and at the end always use market orders. A partially filled exit is re-sent at the next bar. Market orders
arriving at the same time on the same side share the book (the second walks what the first left); the recorded
book never reflects our earlier fills (no lasting impact), a limit of replaying recorded data.

Cash accounting per fill (buy q at v: cash -= q v + fee; position += q) gives equity = cash + position x mid at
every bar; "gross" is the same without fees.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from dataclasses import dataclass, field

import numpy as np

from research.backtest import latency as LAT
from research.backtest.bars import Bars
from research.backtest.config import BacktestConfig
from research.backtest.execution import Execution, Leg, limit_order, market_order
from research.backtest.fees import FeeSchedule
from research.backtest.gates import Signals
from research.backtest.market import SymbolTape

BAR, ARRIVE, RESTING_DONE = 0, 1, 2  # at equal times: bars (decisions) see the state before arrivals


@dataclass
class Lot:
    """One position from entry to exit."""

    d: int
    entry_bar: int
    atr: float
    exit_due_ns: int
    entry: Leg
    exits: list[Leg] = field(default_factory=list)
    open_qty: float = 0.0
    state: str = "opening"  # opening -> open -> closing -> open (partial exit) ... -> closed | void
    retry_reason: str = ""

    @property
    def ref(self) -> float:
        return self.entry.vwap


@dataclass
class Order:
    lot: Lot
    leg: Leg
    market_only: bool
    remaining: float


@dataclass
class SymbolRun:
    lots: list[Lot]
    equity: np.ndarray  # net, at every bar
    gross_equity: np.ndarray
    position: np.ndarray
    rejected: dict
    rows_fed: int
    trades_seen: int


class SymbolEngine:
    def __init__(self, tape: SymbolTape, bars: Bars, signals: Signals, horizon_s: float, cfg: BacktestConfig,
                 fees: FeeSchedule):
        self.tape, self.bars, self.sig, self.cfg, self.fees = tape, bars, signals, cfg, fees
        ex = cfg.exits
        self.hold_ns = int(round(1e9 * (ex.horizon_s or horizon_s if ex.mode == "horizon"
                                        else ex.max_hold_s or ex.horizon_s or horizon_s)))
        self.cooldown_ns = int(round(ex.cooldown_s * 1e9))
        self.ttl_ns = int(round(cfg.execution.passive_ttl_s * 1e9))
        self.heap: list = []
        self.seq = itertools.count()
        self.lots: list[Lot] = []
        self.active: list[Lot] = []
        self.cash = 0.0
        self.gross_cash = 0.0
        self.pos = 0.0
        self.last_exit_ns = None
        self.rejected: dict[str, int] = {}
        self._taken_t = None  # arrival time of the liquidity bookkeeping below
        self._taken: dict = {}  # direction -> {price: size our market orders took at that time}

    def push(self, t: int, kind: int, obj) -> None:
        heapq.heappush(self.heap, (int(t), kind, next(self.seq), obj))

    def run(self) -> SymbolRun:
        b = self.bars
        for i, t in enumerate(b.t_ns.tolist()):
            self.push(t, BAR, i)
        eq = np.zeros(b.n)
        geq = np.zeros(b.n)
        pos = np.zeros(b.n)
        while self.heap:
            t, kind, _, obj = heapq.heappop(self.heap)
            if kind == BAR:
                self.on_bar(obj, t)
                m = b.mid[obj] if np.isfinite(b.mid[obj]) else self._last_mid(obj)
                mark = self.pos * m if self.pos else 0.0
                eq[obj], geq[obj], pos[obj] = self.cash + mark, self.gross_cash + mark, self.pos
            elif kind == ARRIVE:
                self.on_arrive(obj, t)
            else:
                self.on_resting_done(*obj)
        self._value_unclosed()
        if b.n:  # the last bar's exits complete after it: the final equity includes them
            m = self._last_mid(b.n - 1)
            eq[-1], geq[-1], pos[-1] = self.cash + self.pos * m, self.gross_cash + self.pos * m, self.pos
        return SymbolRun(self.lots, eq, geq, pos, self.rejected, self.tape.rows_fed, self.tape.trades_loaded)

    def _last_mid(self, i: int) -> float:
        m = self.bars.mid[: i + 1]
        m = m[np.isfinite(m)]
        return float(m[-1]) if len(m) else 0.0

    # -- decisions ----------------------------------------------------------------------------------------
    def on_bar(self, i: int, t: int) -> None:
        b, ex = self.bars, self.cfg.exits
        last = i == b.n - 1
        mid = b.mid[i]
        for lot in [x for x in self.active if x.state == "open"]:
            reason = lot.retry_reason
            if not reason and ex.mode == "gated" and i - lot.entry_bar > ex.oco_arm_bars and np.isfinite(mid):
                move = lot.d * (mid - lot.ref)
                if ex.stop_atr > 0 and move <= -ex.stop_atr * lot.atr:
                    reason = "stop"
                elif ex.take_atr > 0 and move >= ex.take_atr * lot.atr:
                    reason = "take"
            if not reason and t >= lot.exit_due_ns:
                reason = "horizon" if ex.mode == "horizon" else "timed"
            if not reason and last:
                reason = "end"
            if reason:
                leg = Leg(-lot.d, lot.open_qty, t, mid, reason)
                lot.exits.append(leg)
                lot.state = "closing"
                self.send(lot, leg, market_only=reason in ("stop", "end"), t=t)
        if last:
            return
        d = int(self.sig.direction[i])
        if d == 0:
            return
        if self.last_exit_ns is not None and t - self.last_exit_ns < self.cooldown_ns:
            return
        if self.active and not (ex.mode == "horizon" and ex.overlap):
            return
        leg = Leg(d, float(self.sig.size[i]), t, mid, "entry")
        lot = Lot(d, i, float(self.sig.atr[i]), t + self.hold_ns, leg)
        self.lots.append(lot)
        self.active.append(lot)
        self.send(lot, leg, market_only=False, t=t)

    def send(self, lot: Lot, leg: Leg, market_only: bool, t: int) -> None:
        market = market_only or self.cfg.execution.style == "market"
        order = Order(lot, leg, market, leg.target)
        self.push(LAT.arrival_ns(t, self.cfg.latency), ARRIVE, order)

    # -- venue ----------------------------------------------------------------------------------------------
    def on_arrive(self, order: Order, t: int) -> None:
        book = self.tape.book(t)
        if order.market_only:
            book = self._less_own_fills(book, order.leg.d)
            ex = market_order(book, order.leg.d, order.remaining)
            self._record_taken(book, order.leg.d, ex.filled)
            self._book_fill(order, ex)
            self._leg_done(order, ex.last_fill_ns)
        else:
            ex = limit_order(self.tape, book, order.leg.d, order.remaining, t + self.ttl_ns)
            done = ex.last_fill_ns if ex.filled >= order.remaining * (1 - 1e-12) else t + self.ttl_ns
            self.push(done, RESTING_DONE, (order, ex))

    def _less_own_fills(self, book, d: int):
        """The recorded book minus what our own market orders already took from it at this same time and side
        (overlapping lots exiting at one bar must not each take the same liquidity). Fills at earlier times are
        not subtracted: the recorded book never shows our orders, a limit of any replay backtest."""
        if self._taken_t != book.t_ns:
            self._taken_t, self._taken = book.t_ns, {1: {}, -1: {}}
        taken = self._taken[d]
        px, sz = book.side(d > 0)
        if taken:
            left = np.array([max(s - taken.get(p, 0.0), 0.0) if s > 0 else 0.0 for p, s in zip(px.tolist(),
                                                                                             sz.tolist())])
            keep = left > 0  # levels our own orders emptied are gone; the others keep their order
            px2, sz2 = np.zeros_like(px), np.zeros_like(sz)
            px2[:keep.sum()], sz2[:keep.sum()] = px[keep], left[keep]
            book = dataclasses.replace(book, **({"ask_px": px2, "ask_sz": sz2} if d > 0 else
                                                {"bid_px": px2, "bid_sz": sz2}))
        return book

    def _record_taken(self, book, d: int, filled: float) -> None:
        px, sz = book.side(d > 0)
        before = np.concatenate([[0.0], np.cumsum(sz)[:-1]])
        took = np.clip(filled - before, 0.0, sz)
        taken = self._taken[d]
        for p, q in zip(px[took > 0].tolist(), took[took > 0].tolist()):
            taken[p] = taken.get(p, 0.0) + q

    def on_resting_done(self, order: Order, ex: Execution) -> None:
        self._book_fill(order, ex)
        if order.remaining > 1e-12 * order.leg.target and self.cfg.execution.passive_fallback == "market":
            # the strategy learns the order ended now; the rest goes out as a market order
            order.market_only = True
            self.push(LAT.arrival_ns(max(ex.last_fill_ns, ex.t_arr_ns + self.ttl_ns), self.cfg.latency), ARRIVE,
                      order)
            return
        self._leg_done(order, ex.last_fill_ns)

    def _book_fill(self, order: Order, ex: Execution) -> None:
        if ex.rejected:
            self.rejected[ex.rejected] = self.rejected.get(ex.rejected, 0) + 1
        if ex.filled > 0:
            ex.fee = self.fees.charge(ex.notional, ex.maker)
            d = order.leg.d
            self.cash -= d * ex.notional + ex.fee
            self.gross_cash -= d * ex.notional
            self.pos += d * ex.filled
            order.remaining = max(0.0, order.remaining - ex.filled)
        order.leg.execs.append(ex)

    def _leg_done(self, order: Order, t: int) -> None:
        lot, leg = order.lot, order.leg
        if leg is lot.entry:
            lot.open_qty = leg.filled
            lot.state = "open" if lot.open_qty > 0 else "void"
            if lot.state == "void":
                self.active.remove(lot)
            return
        lot.open_qty = max(0.0, lot.open_qty - leg.filled)
        if lot.open_qty <= 1e-12 * max(lot.entry.filled, 1e-300):
            lot.open_qty = 0.0
            lot.state = "closed"
            self.active.remove(lot)
            self.last_exit_ns = t
        else:
            lot.state = "open"
            lot.retry_reason = leg.reason if leg.reason != "end" else "end"

    def _value_unclosed(self) -> None:
        """Positions the data could not close (e.g. the book was invalid at the end) are valued at the last
        observed touch a taker would get (bid for a long), without fees, and marked ``unclosed``."""
        b = self.bars
        for lot in list(self.active):
            if lot.state not in ("open", "closing") or lot.open_qty <= 0:
                continue
            px_side = b.bid if lot.d > 0 else b.ask
            ok = np.flatnonzero(np.isfinite(px_side))
            px = float(px_side[ok[-1]]) if len(ok) else np.nan
            leg = Leg(-lot.d, lot.open_qty, int(b.t_ns[-1]), px, "unclosed")
            ex = Execution(int(b.t_ns[-1]), False, lot.open_qty, lot.open_qty, lot.open_qty * px, 0.0, px, px)
            leg.execs.append(ex)
            lot.exits.append(leg)
            self.cash += lot.d * ex.notional
            self.gross_cash += lot.d * ex.notional
            self.pos -= lot.d * lot.open_qty
            lot.open_qty = 0.0
            lot.state = "closed"
            self.active.remove(lot)

"""Binance USD-M futures public REST market data (the ``fapi`` endpoints ccxt's ``binanceusdm`` calls).

Served from :class:`simulator.perps.PerpUniverse`; the venue's "now" is ``universe.end_ms``.

Endpoints: ``GET /fapi/v1/ping``, ``/fapi/v1/time``, ``/fapi/v1/exchangeInfo``, ``/fapi/v1/klines``,
``/fapi/v1/fundingRate``.

Rules reproduced:

* klines: ``symbol`` and ``interval`` required; bars with ``startTime <= open_time <= endTime``; with
  ``startTime`` the first ``limit`` bars from it, otherwise the last ``limit`` bars up to ``endTime`` (default:
  now); ``limit`` default 500, 1..1500. Intervals 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w (aggregated from the
  1-minute bars; 1w opens on Monday 00:00 UTC); 3d and 1M are not served (answered as an invalid interval).
  Bars exist only while the contract is listed and outside planted venue outages.
* fundingRate: ``symbol`` optional (all contracts if absent); ``startTime``/``endTime`` inclusive; with
  ``startTime`` the first ``limit`` records from it, otherwise the last ``limit`` up to ``endTime``; ``limit``
  default 100, 1..1000; ascending time.
* Errors are Binance JSON ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400; unknown parameters
  -1104; non-numeric integers -1100; missing mandatory parameters -1102; bad limits -1130; start after end -1023.
* Request weight per minute window (``X-MBX-USED-WEIGHT-1M`` on every response); a request that would exceed
  ``weight_limit`` gets HTTP 429, code -1003 and ``Retry-After`` (seconds to the next window); requests answered
  with an error (400 or 429) add no weight; no IP bans (HTTP 418) are modelled. klines weigh by limit: <100: 1,
  <500: 2, <=1000: 5, else 10; other endpoints 1.
* Delisted contracts stay in exchangeInfo with ``status`` ``"SETTLING"`` and ``deliveryDate`` at the delisting;
  contracts not yet listed at "now" would be ``"PENDING_TRADING"``.
"""

from __future__ import annotations

import re
import time
from typing import Callable

import numpy as np
import orjson
from aiohttp import web

MINUTE_MS = 60_000
PERPETUAL_DELIVERY_MS = 4133404800000  # what Binance reports as the deliveryDate of a perpetual
INTERVALS_MS = {
    "1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS, "2h": 120 * MINUTE_MS, "4h": 240 * MINUTE_MS, "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS, "12h": 720 * MINUTE_MS, "1d": 1440 * MINUTE_MS, "1w": 7 * 1440 * MINUTE_MS,
}
WEEK_OFFSET_MS = 4 * 86_400_000  # 1970-01-05 was a Monday: weekly bars open at 4 days + k weeks
KLINES_DEFAULT_LIMIT, KLINES_MAX_LIMIT = 500, 1500
FUNDING_DEFAULT_LIMIT, FUNDING_MAX_LIMIT = 100, 1000
DEFAULT_WEIGHT_LIMIT = 2400
_UINT = re.compile(r"^[0-9]{1,20}$")


class BinanceError(Exception):
    """A Binance-style error answer."""

    def __init__(self, code: int, msg: str, status: int = 400, headers: dict | None = None):
        super().__init__(msg)
        self.code, self.msg, self.status, self.headers = code, msg, status, headers or {}


def _json(payload, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


class WeightLimiter:
    """Fixed one-minute windows of request weight, like ``X-MBX-USED-WEIGHT-1M``."""

    def __init__(self, limit: int = DEFAULT_WEIGHT_LIMIT, now_s: Callable[[], float] = time.time):
        self.limit = int(limit)
        self.now_s = now_s
        self.window = None
        self.used = 0

    def charge(self, weight: int) -> int:
        now = self.now_s()
        window = int(now // 60)
        if window != self.window:
            self.window, self.used = window, 0
        if self.used + weight > self.limit:
            retry = max(1, int(60 - now % 60))
            raise BinanceError(-1003, f"Too many requests; current limit of IP(127.0.0.1) is {self.limit} requests"
                                      " per minute. Please use the websocket for live updates to avoid polling the"
                                      " API.", 429, {"Retry-After": str(retry)})
        self.used += weight
        return self.used


def _fixed(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def aggregate_klines(bars: np.ndarray, interval_ms: int) -> np.ndarray:
    """Aggregate 1-minute bars (``KLINE_DTYPE``) into ``interval_ms`` bars aligned like Binance's."""
    if interval_ms == MINUTE_MS or len(bars) == 0:
        return bars
    offset = WEEK_OFFSET_MS if interval_ms == INTERVALS_MS["1w"] else 0
    t = bars["open_time_ms"]
    key = (t - offset) // interval_ms * interval_ms + offset
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    ends = np.r_[starts[1:], len(bars)]
    out = np.empty(len(starts), bars.dtype)
    out["open_time_ms"] = key[starts]
    out["open"] = bars["open"][starts]
    out["close"] = bars["close"][ends - 1]
    out["high"] = np.maximum.reduceat(bars["high"], starts)
    out["low"] = np.minimum.reduceat(bars["low"], starts)
    for f in ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"):
        out[f] = np.add.reduceat(bars[f], starts)
    return out


def kline_rows(contract, bars: np.ndarray, interval_ms: int) -> list[list]:
    """Binance kline arrays: [open time, o, h, l, c, volume, close time, quote volume, trades, taker buy
    base volume, taker buy quote volume, "0"] with prices/quantities at the contract's precision."""
    p, q = contract.price_str, contract.qty_str
    qd = min(8, contract.price_decimals + contract.qty_decimals)
    rows = []
    for b in bars.tolist():
        t, o, h, lo, c, v, qv, n, tbv, tbqv = b
        rows.append([t, p(o), p(h), p(lo), p(c), q(v), t + interval_ms - 1, _fixed(qv, qd), int(n), q(tbv),
                     _fixed(tbqv, qd), "0"])
    return rows


def funding_rows(contract, records: np.ndarray) -> list[dict]:
    return [{"symbol": contract.symbol, "fundingTime": int(t), "fundingRate": _fixed(r, 8),
             "markPrice": _fixed(m, 8)} for t, r, m in records.tolist()]


class BinanceRest:
    """aiohttp routes of the Binance USD-M market-data REST API over a ``PerpUniverse``."""

    def __init__(self, universe, *, weight_limit: int = DEFAULT_WEIGHT_LIMIT,
                 now_s: Callable[[], float] = time.time):
        self.universe = universe
        self.contracts = {c.symbol: c for c in universe.contracts}
        self.limiter = WeightLimiter(weight_limit, now_s)

    @property
    def now_ms(self) -> int:
        return int(self.universe.end_ms)

    def add_routes(self, app: web.Application) -> None:
        for path, handler in (("/fapi/v1/ping", self.ping), ("/fapi/v1/time", self.time),
                              ("/fapi/v1/exchangeInfo", self.exchange_info), ("/fapi/v1/klines", self.klines),
                              ("/fapi/v1/fundingRate", self.funding_rate)):
            app.router.add_get(path, self._wrap(handler))

    # -- plumbing -------------------------------------------------------------------------------------------
    def _wrap(self, handler):
        async def route(request: web.Request) -> web.Response:
            headers = {}
            try:
                params = self._params(request)
                weight, payload = handler(params)
                used = self.limiter.charge(weight)
                headers["X-MBX-USED-WEIGHT-1M"] = str(used)
                resp = _json(payload)
            except BinanceError as e:
                headers.update(e.headers)
                used = self.limiter.used if self.limiter.window == int(self.limiter.now_s() // 60) else 0
                headers["X-MBX-USED-WEIGHT-1M"] = str(used)
                resp = _json({"code": e.code, "msg": e.msg}, e.status)
            resp.headers.update(headers)
            return resp
        return route

    @staticmethod
    def _params(request: web.Request) -> dict[str, str]:
        params = {}
        for key, value in request.query.items():
            if key in params:
                raise BinanceError(-1101, f"Duplicate values for parameter '{key}'.")
            params[key] = value
        return params

    @staticmethod
    def _check_known(params: dict, known: tuple[str, ...]) -> None:
        unknown = [k for k in params if k not in known]
        if unknown:
            read = len(params) - len(unknown)
            raise BinanceError(-1104, f"Not all sent parameters were read; read '{read}' parameter(s) but was sent"
                                      f" '{len(params)}'.")

    @staticmethod
    def _uint(params: dict, name: str) -> int | None:
        raw = params.get(name)
        if raw is None:
            return None
        if raw == "":
            raise BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        if not _UINT.match(raw):
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is"
                                      f" '^[0-9]{{1,20}}$'.")
        return int(raw)

    def _limit(self, params: dict, default: int, maximum: int) -> int:
        limit = self._uint(params, "limit")
        if limit is None:
            return default
        if not 1 <= limit <= maximum:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        return limit

    def _contract(self, params: dict, required: bool = True):
        symbol = params.get("symbol")
        if symbol is None or symbol == "":
            if required:
                raise BinanceError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        contract = self.contracts.get(symbol)
        if contract is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return contract

    def _time_range(self, params: dict) -> tuple[int | None, int | None]:
        start, end = self._uint(params, "startTime"), self._uint(params, "endTime")
        if start is not None and end is not None and start > end:
            raise BinanceError(-1023, "Start time is greater than end time.")
        return start, end

    # -- endpoints: each returns (weight, payload) ----------------------------------------------------------
    def ping(self, params):
        self._check_known(params, ())
        return 1, {}

    def time(self, params):
        self._check_known(params, ())
        return 1, {"serverTime": self.now_ms}

    def exchange_info(self, params):
        self._check_known(params, ())
        return 1, {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.limiter.limit},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [self._symbol_info(c) for c in self.universe.contracts],
        }

    def contract_status(self, c) -> str:
        if c.delist_ms is not None and c.delist_ms <= self.now_ms:
            return "SETTLING"
        if c.onboard_ms > self.now_ms:
            return "PENDING_TRADING"
        return "TRADING"

    def _symbol_info(self, c) -> dict:
        status = self.contract_status(c)
        tick, step = str(c.tick_size), str(c.step_size)
        return {
            "symbol": c.symbol, "pair": c.symbol, "contractType": "PERPETUAL",
            "deliveryDate": c.delist_ms if status == "SETTLING" else PERPETUAL_DELIVERY_MS,
            "onboardDate": c.onboard_ms, "status": status,
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": c.base, "quoteAsset": c.quote, "marginAsset": c.quote,
            "pricePrecision": c.price_decimals, "quantityPrecision": c.qty_decimals,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "10000000", "tickSize": tick},
                {"filterType": "LOT_SIZE", "stepSize": step, "maxQty": "10000000", "minQty": step},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": step, "maxQty": "1000000", "minQty": step},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSet": ["GRID", "COPY"],
        }

    def klines(self, params):
        self._check_known(params, ("symbol", "interval", "startTime", "endTime", "limit"))
        contract = self._contract(params)
        interval = params.get("interval")
        if not interval:
            raise BinanceError(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if interval not in INTERVALS_MS:
            raise BinanceError(-1120, "Invalid interval.")
        limit = self._limit(params, KLINES_DEFAULT_LIMIT, KLINES_MAX_LIMIT)
        start, end = self._time_range(params)
        weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
        return weight, kline_rows(contract, self.select_klines(contract, INTERVALS_MS[interval], start, end, limit),
                                  INTERVALS_MS[interval])

    def select_klines(self, contract, interval_ms: int, start: int | None, end: int | None, limit: int):
        """The bars a klines request returns (see the module docstring), as a structured array."""
        end = self.now_ms if end is None else min(end, self.now_ms)
        lo = self.universe.start_ms if start is None else start
        offset = WEEK_OFFSET_MS if interval_ms == INTERVALS_MS["1w"] else 0
        lo_aligned = (lo - offset) // interval_ms * interval_ms + offset
        bars = self.universe.klines(contract.symbol, lo_aligned, end + interval_ms - 1)
        bars = aggregate_klines(bars, interval_ms)
        t = bars["open_time_ms"]
        bars = bars[(t >= lo) & (t <= end)]
        return bars[:limit] if start is not None else bars[-limit:]

    def funding_rate(self, params):
        self._check_known(params, ("symbol", "startTime", "endTime", "limit"))
        contract = self._contract(params, required=False)
        limit = self._limit(params, FUNDING_DEFAULT_LIMIT, FUNDING_MAX_LIMIT)
        start, end = self._time_range(params)
        lo = self.universe.start_ms if start is None else start
        hi = self.now_ms if end is None else end
        rows = []
        for c in [contract] if contract is not None else self.universe.contracts:
            rows += funding_rows(c, self.universe.funding(c.symbol, lo, hi))
        rows.sort(key=lambda r: (r["fundingTime"], r["symbol"]))
        return 1, rows[:limit] if start is not None else rows[-limit:]

"""Binance USD-M REST conformance driven by unmodified ccxt.binanceusdm, against PerpUniverse data."""

from __future__ import annotations

import aiohttp
import ccxt
import numpy as np
import pytest

from loopback import clients
from loopback.binance_rest import INTERVALS_MS, aggregate_klines
from loopback.server import BackgroundExchange, LoopbackExchange

from loopback_testlib import run

pytestmark = pytest.mark.timeout(60)
MIN = 60_000


def expected_ohlcv(contract, bars):
    p, q = contract.price_str, contract.qty_str
    return [[int(b["open_time_ms"]), float(p(b["open"])), float(p(b["high"])), float(p(b["low"])),
             float(p(b["close"])), float(q(b["volume"]))] for b in bars]


def brute_force_bars(bars, interval_ms):
    """Slow twin of aggregate_klines: one dict per bucket."""
    buckets = {}
    for b in bars.tolist():
        t = b[0]
        off = 4 * 86_400_000 if interval_ms == INTERVALS_MS["1w"] else 0
        key = (t - off) // interval_ms * interval_ms + off
        if key not in buckets:
            buckets[key] = [key, b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]
        else:
            a = buckets[key]
            a[2], a[3], a[4] = max(a[2], b[2]), min(a[3], b[3]), b[4]
            for i in (5, 6, 7, 8, 9):
                a[i] += b[i]
    return [buckets[k] for k in sorted(buckets)]


def test_aggregation_matches_brute_force(universe):
    bars = universe.klines("SOLUSDT", universe.start_ms, universe.start_ms + 20 * 86_400_000)
    for name in ("5m", "1h", "8h", "1d", "1w"):
        fast = aggregate_klines(bars, INTERVALS_MS[name]).tolist()
        slow = brute_force_bars(bars, INTERVALS_MS[name])
        assert len(fast) == len(slow)
        for f, s in zip(fast, slow):
            assert f[0] == s[0] and f[1:5] == tuple(s[1:5]) and f[7] == s[7]
            assert np.allclose(f[5:], [s[5], s[6], s[7], s[8], s[9]])


def test_load_markets_klines_and_funding_round_trip_across_pages(universe):
    async def main():
        async with LoopbackExchange(universe=universe, speed=None) as ex:
            client = clients.binanceusdm_async(ex.rest_url)
            try:
                markets = await client.load_markets()
                assert len(markets) == len(universe.contracts)
                for c in universe.contracts:
                    m = markets[f"{c.base}/USDT:USDT"]
                    assert m["id"] == c.symbol and m["swap"] and m["linear"]
                    assert m["precision"]["price"] == float(c.tick_size)
                    assert m["active"] is (c.delist_ms is None)
                    assert m["info"]["status"] == ("TRADING" if c.delist_ms is None else "SETTLING")
                    assert m["created"] == c.onboard_ms

                btc = universe.contract("BTCUSDT")
                since, until = universe.start_ms + 1000 * MIN, universe.start_ms + 3500 * MIN
                got = []
                cursor = since
                while cursor <= until:  # manual paging as a collector does: since = last open time + 1 bar
                    page = await client.fetch_ohlcv("BTC/USDT:USDT", "1m", since=cursor, limit=1000,
                                                    params={"until": until})
                    if not page:
                        break
                    got += page
                    cursor = page[-1][0] + MIN
                truth = universe.klines("BTCUSDT", since, until)
                assert got == expected_ohlcv(btc, truth)
                assert len(got) > 2000

                # ccxt's own deterministic pagination
                auto = await client.fetch_ohlcv("BTC/USDT:USDT", "1m", since=since, params={
                    "paginate": True, "until": until - 1, "paginationCalls": 5})
                assert sorted({tuple(r) for r in auto}) == [tuple(r) for r in got if r[0] < until]

                hourly = await client.fetch_ohlcv("ETH/USDT:USDT", "1h", since=universe.start_ms, limit=200)
                eth = universe.contract("ETHUSDT")
                minute = universe.klines("ETHUSDT", universe.start_ms, universe.start_ms + 200 * 60 * MIN)
                agg = aggregate_klines(minute, INTERVALS_MS["1h"])[:200]
                assert hourly == expected_ohlcv(eth, agg)

                rates = []
                cursor = universe.start_ms
                while True:
                    page = await client.fetch_funding_rate_history("ETH/USDT:USDT", since=cursor, limit=100)
                    if not page:
                        break
                    rates += page
                    cursor = page[-1]["timestamp"] + 1
                truth = universe.funding("ETHUSDT", universe.start_ms, universe.end_ms)
                assert [(r["timestamp"], r["fundingRate"]) for r in rates] == \
                       [(int(t), float(f"{x:.8f}")) for t, x, _ in truth.tolist()]
                assert len(rates) > 200
            finally:
                await client.close()

    run(main(), 45)


def test_delisted_and_late_listed_contracts_have_bars_only_while_listed(universe):
    delisted = next(c for c in universe.contracts if c.delist_ms is not None)
    late = next(c for c in universe.contracts if c.onboard_ms > universe.start_ms)

    async def main():
        async with LoopbackExchange(universe=universe, speed=None) as ex:
            client = clients.binanceusdm_async(ex.rest_url)
            try:
                await client.load_markets()
                tail = await client.fetch_ohlcv(f"{delisted.base}/USDT:USDT", "1m", since=delisted.delist_ms - 30 * MIN,
                                                limit=1000)
                assert tail and all(r[0] < delisted.delist_ms for r in tail)
                assert tail[-1][0] >= delisted.delist_ms - 30 * MIN
                head = await client.fetch_ohlcv(f"{late.base}/USDT:USDT", "1m", since=universe.start_ms, limit=10)
                assert head[0][0] >= late.onboard_ms
                latest = await client.fetch_ohlcv(f"{delisted.base}/USDT:USDT", "1m", limit=5)  # no since: last bars
                assert [r[0] for r in latest] == [r[0] for r in tail[-5:]] or latest[-1][0] < delisted.delist_ms
            finally:
                await client.close()

    run(main())


BAD = [
    ("/fapi/v1/klines?symbol=NOPEUSDT&interval=1m", 400, -1121, "Invalid symbol."),
    ("/fapi/v1/klines?symbol=BTCUSDT&interval=7m", 400, -1120, "Invalid interval."),
    ("/fapi/v1/klines?symbol=BTCUSDT", 400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, "
                                                    "or malformed."),
    ("/fapi/v1/klines?interval=1m", 400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                                                 "malformed."),
    ("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1501", 400, -1130, "Data sent for parameter 'limit' is not "
                                                                          "valid."),
    ("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=0", 400, -1130, "Data sent for parameter 'limit' is not "
                                                                       "valid."),
    ("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=-5", 400, -1100, "Illegal characters found in "
                                                                            "parameter 'startTime'; legal range is "
                                                                            "'^[0-9]{1,20}$'."),
    ("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=20&endTime=10", 400, -1023, "Start time is greater than "
                                                                                       "end time."),
    ("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&foo=1", 400, -1104, "Not all sent parameters were read; read '2' "
                                                                     "parameter(s) but was sent '3'."),
    ("/fapi/v1/fundingRate?symbol=NOPE", 400, -1121, "Invalid symbol."),
    ("/fapi/v1/fundingRate?limit=1001", 400, -1130, "Data sent for parameter 'limit' is not valid."),
]


def test_bad_requests_get_binance_errors_weight_headers_and_429(universe):
    async def main():
        async with LoopbackExchange(universe=universe, speed=None, weight_limit=30) as ex:
            async with aiohttp.ClientSession() as http:
                for path, status, code, msg in BAD:
                    async with http.get(ex.rest_url + path) as r:
                        assert (r.status, await r.json()) == (status, {"code": code, "msg": msg}), path
                        assert "X-MBX-USED-WEIGHT-1M" in r.headers
                async with http.get(ex.rest_url + "/fapi/v1/ping") as r:
                    assert r.status == 200 and await r.json() == {}
                    used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
                async with http.get(ex.rest_url + "/fapi/v1/time") as r:
                    assert await r.json() == {"serverTime": universe.end_ms}
                    assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) == used + 1
                async with http.get(ex.rest_url + "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1000") as r:
                    assert r.status == 200 and len(await r.json()) == 1000
                    assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) == used + 6  # limit 1000 weighs 5
                statuses = []
                for _ in range(40):
                    async with http.get(ex.rest_url + "/fapi/v1/ping") as r:
                        statuses.append(r.status)
                        if r.status == 429:
                            body = await r.json()
                            assert body["code"] == -1003 and int(r.headers["Retry-After"]) >= 1
                assert 429 in statuses and statuses.index(429) == 30 - (used + 6)
            client = clients.binanceusdm_async(ex.rest_url)
            try:
                with pytest.raises((ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
                    await client.fetch_time()
            finally:
                await client.close()
            ex.rest.limiter.limit = 10_000
            client = clients.binanceusdm_async(ex.rest_url)
            try:
                await client.load_markets()
                with pytest.raises(ccxt.BadSymbol):
                    await client.fetch_ohlcv("NOPE/USDT:USDT")
                with pytest.raises(ccxt.BadRequest):
                    await client.fetch_ohlcv("BTC/USDT:USDT", "3d")  # not served: the venue's invalid interval
            finally:
                await client.close()

    run(main())


def test_sync_ccxt_against_the_background_exchange(universe):
    with BackgroundExchange(universe=universe, speed=None) as ex:
        client = clients.binanceusdm(ex.rest_url)
        markets = client.load_markets()
        assert "BTC/USDT:USDT" in markets
        rows = client.fetch_ohlcv("BTC/USDT:USDT", "15m", since=universe.start_ms, limit=4)
        assert [r[0] for r in rows] == [universe.start_ms + i * 15 * MIN for i in range(4)]
        assert client.fetch_time() == universe.end_ms

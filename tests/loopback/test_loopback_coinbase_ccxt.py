"""Coinbase protocol conformance driven by unmodified ccxt.pro.coinbase against the real WS server."""

from __future__ import annotations

import asyncio
import calendar
import time

import orjson
import pytest
import websockets

from loopback import clients
from loopback.coinbase_frames import trade_side_text
from loopback.server import LoopbackExchange

from loopback_testlib import book_as_floats, recv_all, run, wait_until

pytestmark = pytest.mark.timeout(60)


def rfc3339_ns(text: str) -> int:
    whole, _, frac = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) * 10**9 + int(frac.ljust(9, "0"))
SYMBOLS = {"BTC-USD": "BTC/USD", "ETH-USD": "ETH/USD", "SOL-USD": "SOL/USD"}


def test_watch_order_book_equals_venue_book_and_simulator(sim_factory):
    sim = sim_factory()

    async def main():
        async with LoopbackExchange(sim=sim, speed=None, perps=False) as ex:
            client = clients.coinbase_pro(ex.ws_url, ex.sim.products)
            try:
                for symbol in SYMBOLS.values():  # initial snapshots
                    await client.watch_order_book(symbol)
                for step in range(3):  # after N events, and again after more
                    n = await ex.advance(1.5)
                    assert n > 1000
                    await ex.flush()
                    for k, product in enumerate(ex.sim.products):
                        venue = ex.state.books[k].snapshot()
                        truth = ex.sim.book(product.symbol)
                        assert venue[0].tolist() == truth[0].tolist() and venue[1].tolist() == truth[1].tolist()
                        want = book_as_floats(product, *truth)
                        book = client.orderbooks[SYMBOLS[product.symbol]]
                        ok = await wait_until(lambda: (book["bids"], book["asks"]) == want, 5.0)
                        assert ok, f"ccxt book of {product.symbol} differs from the venue after step {step}"
                        assert len(book["bids"]) > 10 and len(book["asks"]) > 10
            finally:
                await client.close()

    run(main())


def test_trades_round_trip_exactly(sim_factory):
    sim = sim_factory()

    async def main():
        async with LoopbackExchange(sim=sim, speed=None, perps=False) as ex:
            await ex.advance(3.0)  # some trades before subscribing: they arrive as the snapshot
            client = clients.coinbase_pro(ex.ws_url, ex.sim.products, config={"options": {"tradesLimit": 5000}})
            try:
                first = await client.watch_trades("ETH/USD")
                assert 0 < len(first) <= 50
                await ex.advance(4.0)
                await ex.flush()
                truth = sim.trades(1)
                product = ex.sim.products[1]
                expected = [(str(t["trade_id"]), float(product.price_str(t["price"])),
                             float(product.size_str(t["size"])), trade_side_text(int(t["side"])).lower(),
                             int(t["ts_ns"]) // 1_000_000, product.price_str(t["price"]), int(t["ts_ns"]))
                            for t in truth]
                first_id = int(first[0]["id"])
                expected = [e for e in expected if int(e[0]) >= first_id]
                cache = client.trades["ETH/USD"]
                assert await wait_until(lambda: len(cache) >= len(expected), 5.0)
                got = [(t["id"], t["price"], t["amount"], t["side"], t["timestamp"],
                        t["info"]["price"], t["info"]["time"]) for t in cache]
                assert len(got) == len(expected) > 50
            finally:
                await client.close()
            for g, e in zip(got, expected):
                assert g[:5] == e[:5]  # id, price, amount, side (the maker's), ms timestamp
                assert product.price_ticks(g[5]) == product.price_ticks(e[5])  # exact on the tick grid
                frac = g[6][:-1].split(".")[1] if "." in g[6] else "0"
                assert int(frac.ljust(9, "0")) == e[6] % 1_000_000_000  # nanoseconds survive on the wire

    run(main())


def test_sequence_numbers_heartbeats_and_confirmations():
    async def main():
        async with LoopbackExchange(seed=7, speed=None, perps=False) as ex:
            async with websockets.connect(ex.ws_url, close_timeout=0.5) as ws:
                for channel, products in (("level2", ["BTC-USD"]), ("market_trades", ["BTC-USD", "SOL-USD"]),
                                          ("heartbeats", [])):
                    await ws.send(orjson.dumps({"type": "subscribe", "product_ids": products, "channel": channel}))
                await asyncio.sleep(0.1)
                await ex.advance(2.5)
                await ex.flush()
                msgs = [orjson.loads(m) for m in await recv_all(ws)]
        seqs = [m["sequence_num"] for m in msgs]
        assert seqs == list(range(len(msgs)))  # every frame of the connection counts, confirmations included
        subs = [m for m in msgs if m["channel"] == "subscriptions"]
        assert [s["events"][0]["subscriptions"] for s in subs] == [
            {"level2": ["BTC-USD"]},
            {"level2": ["BTC-USD"], "market_trades": ["BTC-USD", "SOL-USD"]},
            {"heartbeats": [], "level2": ["BTC-USD"], "market_trades": ["BTC-USD", "SOL-USD"]}]
        assert msgs[0]["channel"] == "l2_data" and msgs[0]["events"][0]["type"] == "snapshot"
        hb = [m for m in msgs if m["channel"] == "heartbeats"]
        assert [int(h["events"][0]["heartbeat_counter"]) for h in hb] == list(range(1, len(hb) + 1))
        assert len(hb) >= 2
        products = {m["events"][0]["product_id"] for m in msgs if m["channel"] == "l2_data"}
        assert products == {"BTC-USD"}
        traded = {t["product_id"] for m in msgs if m["channel"] == "market_trades"
                  for t in m["events"][0]["trades"]}
        assert traded <= {"BTC-USD", "SOL-USD"} and traded
        stamps = [rfc3339_ns(m["timestamp"]) for m in msgs if m["channel"] in ("l2_data", "market_trades")
                  and m["events"][0]["type"] == "update"]
        assert stamps == sorted(stamps)

    run(main())


def test_unwatch_and_load_markets_over_rest():
    async def main():
        async with LoopbackExchange(seed=7, speed=None, perps=False) as ex:
            client = clients.coinbase_pro(ex.ws_url, rest_url=ex.rest_url, load_markets_over_rest=True)
            try:
                book = await client.watch_order_book("SOL/USD")  # loads markets over REST first
                assert client.markets["SOL/USD"]["id"] == "SOL-USD"
                assert client.markets["SOL/USD"]["precision"]["price"] == 0.01
                assert len(book["bids"]) > 0
                await client.un_watch_order_book("SOL/USD")
                conn = next(iter(ex.ws.connections.values()))
                assert conn.subs == {}
                before = conn.frames_sent
                await ex.advance(1.0)
                await ex.flush()
                assert conn.frames_sent == before  # nothing after the unsubscribe
            finally:
                await client.close()

    run(main())

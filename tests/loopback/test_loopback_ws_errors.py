"""Bad client input gets the venue's error frames; nothing a client sends takes the server down."""

from __future__ import annotations

import asyncio

import ccxt
import orjson
import pytest
import websockets
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from loopback import clients
from loopback.server import BackgroundExchange, LoopbackExchange
from simulator.products import Product

from loopback_testlib import recv_json, run

pytestmark = pytest.mark.timeout(60)

BAD_REQUESTS = [
    ('{"type":"subscribe","product_ids":["DOGE-USD"],"channel":"level2"}',
     {"type": "error", "message": "Failed to subscribe", "reason": "DOGE-USD is not a valid product"}),
    ('{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level3"}',
     {"type": "error", "message": "Failed to subscribe", "reason": "level3 is not a valid channel"}),
    ('{"type":"subscribe","product_ids":["BTC-USD"],"channel":"ticker"}',
     {"type": "error", "message": "Failed to subscribe",
      "reason": "channel ticker is not served by the l2lab loopback exchange"}),
    ('{"type":"subscribe","product_ids":[],"channel":"level2"}',
     {"type": "error", "message": "Failed to subscribe", "reason": "product_ids are required for channel level2"}),
    ('{"type":"subscribe","product_ids":"BTC-USD","channel":"level2"}',
     {"type": "error", "message": "Failed to subscribe", "reason": "product_ids must be a list of strings"}),
    ('{"type":"subscribe","product_ids":["BTC-USD"]}',
     {"type": "error", "message": "Failed to subscribe", "reason": "channel is required"}),
    ('{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2"]}',
     {"type": "error", "message": "Failed to subscribe",
      "reason": "use 'channel' (one channel per message), not 'channels'"}),
    ('{"type":"unsubscribe","product_ids":["NOPE"],"channel":"level2"}',
     {"type": "error", "message": "Failed to unsubscribe", "reason": "NOPE is not a valid product"}),
    ('{"type":"hello"}', {"type": "error", "message": "unknown message type: 'hello'"}),
    ('{"product_ids":["BTC-USD"],"channel":"level2"}', {"type": "error", "message": "message type is required"}),
    ("[1,2,3]", {"type": "error", "message": "Failed to parse message", "reason": "request must be a JSON object"}),
    ("{not json", {"type": "error", "message": "Failed to parse message", "reason": "request is not valid JSON"}),
    (b"\x00\xff\xfe binary", {"type": "error", "message": "Failed to parse message",
                              "reason": "request is not valid JSON"}),
]


def test_bad_requests_get_error_frames_and_change_nothing():
    async def main():
        async with LoopbackExchange(seed=7, speed=None, perps=False) as ex:
            async with websockets.connect(ex.ws_url, close_timeout=0.5) as ws:
                for request, expected in BAD_REQUESTS:
                    await ws.send(request)
                    assert await recv_json(ws) == expected, request
                conn = next(iter(ex.ws.connections.values()))
                assert conn.subs == {} and conn.seq == 0  # error frames carry no sequence number
                # the same connection still works
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "level2"}))
                first = await recv_json(ws)
                assert first["channel"] == "l2_data" and first["sequence_num"] == 0
                assert first["events"][0]["type"] == "snapshot"

    run(main())


def test_oversized_and_abusive_clients_do_not_hurt_others():
    async def main():
        async with LoopbackExchange(seed=7, speed=None, perps=False) as ex:
            async with websockets.connect(ex.ws_url, max_size=None, close_timeout=0.5) as big:
                await big.send("x" * (1 << 17))  # over the 64 KiB request limit: closed with 1009
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(big.recv(), 5)
                assert info.value.rcvd.code == 1009
            async with websockets.connect(ex.ws_url, close_timeout=0.5) as rude:  # subscribes, then vanishes
                await rude.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
            async with websockets.connect(ex.ws_url, close_timeout=0.5) as ws:
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
                assert (await recv_json(ws))["events"][0]["type"] == "snapshot"
                await ex.advance(0.5)
                assert (await recv_json(ws))["channel"] == "subscriptions"
                assert (await recv_json(ws))["events"][0]["type"] == "update"

    run(main())


def test_no_subscribe_within_the_timeout_disconnects():
    async def main():
        async with LoopbackExchange(seed=7, speed=None, perps=False, subscribe_timeout_s=0.3) as ex:
            async with websockets.connect(ex.ws_url, close_timeout=0.5) as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)

    run(main())


def test_ccxt_receives_the_venues_error_frame_for_an_unlisted_product():
    """ccxt 4.5 raises ExchangeError from its message callback on an error frame, so the exception goes to the
    event loop's exception handler and the pending watch is never resolved (same against the real venue)."""
    async def main():
        raised = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda lp, ctx: raised.append(ctx.get("exception")))
        async with LoopbackExchange(seed=7, speed=None, perps=False) as ex:
            fake = Product("DOGE-USD", "DOGE", "USD", ex.sim.products[0].tick_size,
                           ex.sim.products[0].size_increment, ex.sim.products[0].min_size)
            client = clients.coinbase_pro(ex.ws_url, [*ex.sim.products, fake])
            try:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(client.watch_order_book("DOGE/USD"), 1.5)
            finally:
                await client.close()
        errors = [e for e in raised if isinstance(e, ccxt.ExchangeError)]
        assert errors and str(errors[0]) == "Failed to subscribe"

    run(main())


def test_refuses_non_loopback_addresses():
    with pytest.raises(ValueError):
        LoopbackExchange(host="0.0.0.0")
    with pytest.raises(ValueError):
        clients.coinbase_pro("wss://advanced-trade-ws.coinbase.com", [])
    with pytest.raises(ValueError):
        clients.binanceusdm("https://fapi.binance.com")


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)
requests = st.fixed_dictionaries(
    {}, optional={"type": st.sampled_from(["subscribe", "unsubscribe", "SUBSCRIBE", ""]) | json_values,
                  "channel": st.sampled_from(["level2", "market_trades", "heartbeats", "user", ""]) | json_values,
                  "product_ids": st.lists(st.sampled_from(["BTC-USD", "ETH-USD", "X", ""]), max_size=3)
                  | json_values})


@pytest.fixture(scope="module")
def background_venue():
    with BackgroundExchange(seed=7, speed=None, perps=False) as ex:
        yield ex


@hypothesis_settings(max_examples=25, deadline=None, database=None)
@given(messages=st.lists(requests.map(orjson.dumps) | st.binary(max_size=40) | st.text(max_size=40),
                         min_size=1, max_size=12))
def test_random_requests_never_break_the_connection(background_venue, messages):
    """Property: whatever a client sends, each request gets exactly one answer (an error or a confirmation, plus
    snapshots for new subscriptions) and the connection keeps working."""
    ex = background_venue
    seen = ex.ws.requests_seen
    with connect(ex.ws_url, close_timeout=0.5) as ws:
        for m in messages:
            ws.send(m)
        ws.send(orjson.dumps({"type": "unsubscribe", "product_ids": [], "channel": "level2"}))
        ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["SOL-USD"], "channel": "level2"}))
        got = []
        while not (got and got[-1].get("channel") == "subscriptions"
                   and "SOL-USD" in got[-1]["events"][0]["subscriptions"].get("level2", [])):
            got.append(orjson.loads(ws.recv(timeout=5)))
    assert ex.ws.requests_seen == seen + len(messages) + 2
    answers = [g for g in got if g.get("type") == "error" or g.get("channel") == "subscriptions"]
    assert len(answers) == len(messages) + 2
    assert got[-2]["channel"] == "l2_data" and got[-2]["events"][0]["product_id"] == "SOL-USD"

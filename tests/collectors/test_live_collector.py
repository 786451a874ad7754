"""The collector against the real loopback exchange (real WebSocket, real ccxt), no mocks."""

import asyncio
import math

import numpy as np
import pytest

from collectors.bronze import read_dataset
from collectors.capture import capture_files, read_capture
from collectors.ingest import ingest_capture
from collectors.live import CoinbaseCollector, CollectorConfig
from collectors.shadow_book import ShadowBook
from l2lab.schema import L2_GAP
from loopback.clients import coinbase_markets
from loopback.server import LoopbackExchange
from testlib import settle, wait_for

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]
pytestmark = pytest.mark.timeout(120)


async def collect_manual(data_root, seconds, seed=3, step=5.0):
    """Manual pacing: the test moves venue time, so it knows exactly what the venue sent."""
    async with LoopbackExchange(seed=seed, speed=None, perps=False) as ex:
        cfg = CollectorConfig(symbols=SYMBOLS, data_root=data_root, ws_url=ex.ws_url,
                              markets=coinbase_markets(ex.sim.products), bronze_flush_s=1.0, progress=False)
        collector = CoinbaseCollector(cfg)
        task = asyncio.ensure_future(collector.run())
        await wait_for(lambda: collector.normalizer is not None and collector.normalizer.stats["snapshots"] >= 3)
        for _ in range(int(seconds / step)):
            await ex.advance(step)
        await ex.flush()
        await settle(lambda: collector.report.frames)
        books = {s: ex.sim.book(s) for s in SYMBOLS}
        collector.stop()
        return await task, books


def bronze_book(root, symbol):
    """The book from bronze rows, up to (not including) the recording's final GAP_STOP marker."""
    t = read_dataset(root / "bronze", "l2_events", symbol=symbol)
    rows = {n: t.column(n).to_numpy() for n in ("kind", "side", "price", "size", "flags")}
    assert rows["kind"][0] == L2_GAP and rows["kind"][-1] == L2_GAP  # recording start and stop markers
    rows = {n: v[:-1] for n, v in rows.items()}
    book = ShadowBook()
    book.apply(rows)
    return book


def test_clean_session_books_and_trades_equal_the_venue(tmp_path):
    report, books = asyncio.run(collect_manual(tmp_path, 30.0))
    assert report.normalizer["gaps"] == 0 and report.normalizer["quarantined"] == 0
    assert report.reconnects == 0
    assert report.crosschecks > 0 and report.crosscheck_mismatches == 0
    for k, sym in enumerate(SYMBOLS):
        book = bronze_book(tmp_path, sym)
        assert book.valid
        bids, asks = books[sym]
        # the venue's book in ticks; bronze in mantissas at 2 decimals with tick 0.01 -> identical integers
        assert book.levels(0) == [tuple(x) for x in bids.tolist()]
        assert book.levels(1) == [tuple(x) for x in asks.tolist()]
        ids = read_dataset(tmp_path / "bronze", "trades", symbol=sym).column("trade_id").to_numpy()
        assert len(ids) > 0 and np.all(np.diff(ids) == 1)  # every trade, none twice


def test_ingest_of_the_capture_reproduces_live_bronze(tmp_path):
    live = tmp_path / "live"
    asyncio.run(collect_manual(live, 10.0, seed=5))
    off = tmp_path / "offline"
    res = ingest_capture(live / "raw" / "exchange=coinbase", off)
    assert res["frames"] > 1000
    for dataset in ("l2_events", "trades"):
        for sym in SYMBOLS:
            a = read_dataset(live / "bronze", dataset, symbol=sym)
            b = read_dataset(off / "bronze", dataset, symbol=sym)
            assert a.num_rows > 0 and a.equals(b), (dataset, sym)


def test_replayed_capture_collected_live_equals_offline_ingest(tmp_path):
    first = tmp_path / "first"
    asyncio.run(collect_manual(first, 10.0, seed=8))
    capture = capture_files(first / "raw")[0]

    async def replay_and_collect():
        async with LoopbackExchange(capture=capture, speed=math.inf, perps=False) as ex:
            cfg = CollectorConfig(symbols=SYMBOLS, data_root=tmp_path / "replayed", ws_url=ex.ws_url,
                                  markets=coinbase_markets(_products()), bronze_flush_s=1.0, progress=False)
            collector = CoinbaseCollector(cfg)
            task = asyncio.ensure_future(collector.run())
            await wait_for(lambda: ex.replay.done.is_set(), 60)
            await ex.flush()
            await settle(lambda: collector.report.frames)
            collector.stop()
            return await task

    asyncio.run(replay_and_collect())
    ingest_capture(capture, tmp_path / "offline")
    recorded = sum(1 for r in read_capture(capture) if '"channel":"subscriptions"' not in r.raw)
    assert recorded > 1000
    for dataset in ("l2_events", "trades"):
        for sym in SYMBOLS:
            a = read_dataset(tmp_path / "replayed" / "bronze", dataset, symbol=sym).drop(["ts_recv_ns"])
            b = read_dataset(tmp_path / "offline" / "bronze", dataset, symbol=sym).drop(["ts_recv_ns"])
            assert a.num_rows > 0 and a.equals(b), (dataset, sym)


def _products():
    from simulator.l2 import MarketSimulator

    return MarketSimulator(seed=1, record_latent=False).products


def test_structured_log_has_stats_with_lag(tmp_path):
    import json

    async def go():
        async with LoopbackExchange(seed=4, speed=20.0, perps=False) as ex:
            cfg = CollectorConfig(symbols=SYMBOLS, data_root=tmp_path, ws_url=ex.ws_url,
                                  markets=coinbase_markets(ex.sim.products), duration_s=2.5, stats_every_s=0.5,
                                  progress=False)
            return await CoinbaseCollector(cfg).run()

    asyncio.run(go())
    (log,) = list((tmp_path / "logs").glob("collect-*.jsonl"))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["event"] == "start" and records[-1]["event"] == "stop"
    stats = [r for r in records if r["event"] == "stats"]
    assert len(stats) >= 3 and stats[-1]["frames"] > 0
    assert stats[-1]["lag_ms"] is not None

"""Parity: a capture replayed through the loopback exchange and scored live gives the features that
``features build`` computes from the ingest of what the live session recorded, and the predictions the
model gives offline on those rows."""

import asyncio

import numpy as np
import pyarrow.parquet as pq
import pytest

from collectors.capture import capture_files
from collectors.ingest import ingest_capture
from collectors.live import CoinbaseCollector, CollectorConfig
from kernels import catalog
from kernels.pipeline import FeatureBuilder, build_cross_asset
from l2lab.live.quickmodel import read_silver
from l2lab.live.scorer import score_frame
from l2lab.live.session import LiveConfig, LiveSession
from loopback.clients import coinbase_markets
from loopback.server import LoopbackExchange
from research.model_artifact import load_meta, load_predictor
from simulator.l2 import MarketSimulator

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]
pytestmark = pytest.mark.timeout(240)


async def wait_for(cond, timeout=30.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def products():
    return MarketSimulator(seed=1, record_latent=False).products


async def record_capture(root, seconds, seed=6):
    """A capture of the simulator collected through ccxt with manual pacing."""
    async with LoopbackExchange(seed=seed, speed=None, perps=False) as ex:
        cfg = CollectorConfig(symbols=SYMBOLS, data_root=root, ws_url=ex.ws_url,
                              markets=coinbase_markets(ex.sim.products), bronze_flush_s=5.0, progress=False)
        col = CoinbaseCollector(cfg)
        task = asyncio.ensure_future(col.run())
        await wait_for(lambda: col.normalizer is not None and col.normalizer.stats["snapshots"] >= 3)
        for _ in range(int(seconds)):
            await ex.advance(1.0)
        await ex.flush()
        await asyncio.sleep(0.5)
        col.stop()
        await task
    return capture_files(root / "raw")[0]


async def replay_live(capture, data_root, run_dir, out_dir, **kw):
    """The capture replayed at 5x its recorded pace; receive times follow the replay's clock."""
    async with LoopbackExchange(capture=capture, speed=5.0, perps=False) as ex:
        cfg = LiveConfig(run_dir=run_dir, data_root=data_root, symbols=SYMBOLS, out_dir=out_dir, ws_url=ex.ws_url,
                         markets=coinbase_markets(products()), time_ns=ex.clock.venue_now, feast=False,
                         extra_grids_ms=(100,), record_features=True, stdout=False,
                         collector={"bronze_flush_s": 5.0}, **kw)
        session = LiveSession(cfg)
        task = asyncio.ensure_future(session.run())
        await wait_for(lambda: ex.replay.done.is_set(), 120)
        await ex.flush()
        n = -1
        while n != session.tap.frames:  # until the session has read everything
            n = session.tap.frames
            await asyncio.sleep(0.3)
        session.stop()
        return await task


def test_live_replay_equals_features_build_and_offline_predictions(tmp_path, model_run):
    capture = asyncio.run(record_capture(tmp_path / "first", 25))
    live_root, out = tmp_path / "live", tmp_path / "out"
    report = asyncio.run(replay_live(capture, live_root, model_run, out, warmup_rows=0))
    assert report.signals > 20 and report.rows > 60

    # offline: ingest what the live session recorded, then features build
    offline = tmp_path / "offline"
    ingest_capture(live_root / "raw" / "exchange=coinbase", offline)
    FeatureBuilder(offline, grids_ms=(100, 1000), complete_before_ns=2**62).build()
    build_cross_asset(offline, grids_ms=(100, 1000))
    book = [s.name for s in catalog.features() if s.table == "book"]
    for grid in ("100ms", "1s"):
        live = pq.read_table(out / f"features_{grid}.parquet").to_pandas()
        silver = read_silver(offline, f"book_features_{grid}").to_pandas()
        xa = read_silver(offline, f"cross_asset_{grid}").to_pandas()
        silver = silver.merge(xa.drop(columns=["ts_avail_ns"]), on=["symbol", "ts_ns"], how="left")
        merged = live.merge(silver, on=["symbol", "ts_ns"], how="left", suffixes=("", "_batch"), indicator=True)
        assert (merged["_merge"] == "both").all()  # every live row is a silver row
        assert len(merged) > (200 if grid == "100ms" else 20) * len(SYMBOLS)
        assert merged["valid"].sum() > 0.8 * len(merged)
        np.testing.assert_array_equal(merged["valid"], merged["valid_batch"])
        np.testing.assert_array_equal(merged["ts_avail_ns"], merged["ts_avail_ns_batch"])
        for name in book + [c for c in xa.columns if c.startswith("xa_")]:
            np.testing.assert_array_equal(merged[name].to_numpy(), merged[f"{name}_batch"].to_numpy(),
                                          err_msg=f"{grid} {name}")

    # predictions: the live scores equal the model's offline scores on the silver rows of the same times
    signals = pq.read_table(out / "signals").to_pandas()
    meta, predictor = load_meta(model_run), load_predictor(model_run)
    silver = read_silver(offline, "book_features_1s").to_pandas().merge(
        read_silver(offline, "cross_asset_1s").to_pandas().drop(columns=["ts_avail_ns"]), on=["symbol", "ts_ns"],
        how="left")
    rows = signals.merge(silver, on=["symbol", "ts_ns"], how="left", suffixes=("", "_batch"))
    offline_scores = score_frame(predictor, meta, rows[meta.features].astype(float))
    assert len(rows) == report.signals and np.isfinite(offline_scores).all()
    np.testing.assert_array_equal(rows["score"].to_numpy(), offline_scores)

"""Resilience of a live session: disconnects make the features invalid until the book is whole and every window
is warm again. (Stale rows and model reloads are covered in test_parity.py's replay session.)"""

import asyncio
import pyarrow.parquet as pq
import pytest

from l2lab.live.session import LiveConfig, LiveSession
from live_testlib import SYMBOLS, wait_for
from loopback.clients import coinbase_markets
from loopback.faults import FaultConfig
from loopback.server import LoopbackExchange

pytestmark = pytest.mark.timeout(240)
STEP = 1_000_000_000
WARMUP = 3


def test_disconnects_invalidate_until_warm_again(tmp_path, model_run):
    async def go():
        # every connection is cut after 9,000 clean frames (about 8 simulated seconds); the collector reconnects
        # and the venue sends fresh snapshots
        faults = FaultConfig(seed=1, disconnect=1.0, warmup_frames=9000, max_per_connection=1)
        async with LoopbackExchange(seed=4, speed=None, perps=False, faults=faults) as ex:
            cfg = LiveConfig(run_dir=model_run, data_root=tmp_path / "data", symbols=SYMBOLS, out_dir=tmp_path / "out",
                             ws_url=ex.ws_url, markets=coinbase_markets(ex.sim.products), time_ns=ex.clock.venue_now,
                             feast=False, record_features=True, stdout=False, warmup_rows=WARMUP,
                             collector={"bronze_flush_s": 5.0, "backoff_initial_s": 0.05})
            session = LiveSession(cfg)
            task = asyncio.ensure_future(session.run())
            await wait_for(lambda: session.collector is not None and session.collector.normalizer is not None
                           and session.collector.normalizer.stats["snapshots"] >= 3, 30)
            for _ in range(24):
                await ex.advance(1.0)
                await asyncio.sleep(0.1)
            await ex.flush()
            await asyncio.sleep(0.5)
            session.stop()
            return await task

    report = asyncio.run(go())
    assert report.collector["connections"] >= 2
    feats = pq.read_table(tmp_path / "out" / "features_1s.parquet").to_pandas()
    signals = pq.read_table(tmp_path / "out" / "signals").to_pandas()
    assert report.suppressed.get("invalid", 0) > 0 and report.suppressed.get("warming", 0) > 0
    for sym in SYMBOLS:
        f = feats[feats.symbol == sym].set_index("ts_ns")
        valid = f["valid"]
        first_valid = valid.idxmax()
        invalid_after = valid[(valid.index > first_valid) & ~valid]
        assert len(invalid_after) > 0, f"{sym}: the disconnect never invalidated the book"
        s = signals[signals.symbol == sym]
        assert (s.ts_ns > invalid_after.index.min()).any(), f"{sym}: no signal after recovering"
        for t in s.ts_ns:  # every signal: its row and the WARMUP rows before it are all present and valid
            window = [t - k * STEP for k in range(WARMUP + 1)]
            assert all(w in valid.index and valid[w] for w in window), (sym, t)


def test_a_reload_may_not_read_what_the_session_does_not_compute(tmp_path, model_run):
    from research.model_artifact import load_meta

    session = LiveSession(LiveConfig(run_dir=model_run, data_root=tmp_path, symbols=SYMBOLS))
    meta = load_meta(model_run)
    assert session._accept(meta) is None
    assert session._families() == ["dynamic", "structural"]  # what the test model reads (+ structural)
    meta.features = meta.features + ["vpin_bvc"]
    assert session._accept(meta) == "families not computed since the start: ['advanced']"
    meta.features = meta.features[:-1] + ["h_close"]
    assert "not computable live" in session._accept(meta)
    session = LiveSession(LiveConfig(run_dir=model_run, data_root=tmp_path, symbols=SYMBOLS, all_features=True))
    meta.features = meta.features[:-1] + ["vpin_bvc"]
    assert session._accept(meta) is None

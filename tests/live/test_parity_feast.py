"""The parity of scores through Feast: a capture replayed live on the default path (rows written to the Feast
online store, the model's vector read back by Feast online lookups) gives the predictions the model gives offline
on the silver rows of the same times, bit for bit."""

import asyncio
import shutil

import pytest

from collectors.ingest import ingest_capture
from kernels.pipeline import FeatureBuilder, build_cross_asset
from live_testlib import replay_live
from test_parity import assert_scores_equal_offline

pytestmark = pytest.mark.timeout(240)


def test_scores_through_feast_equal_offline_predictions(tmp_path, model_run, sim_capture):
    run = tmp_path / "run"
    shutil.copytree(model_run, run)
    live_root, out = tmp_path / "live", tmp_path / "out"
    report = asyncio.run(replay_live(sim_capture, live_root, run, out, speed=2.0, warmup_rows=0, feast=True,
                                     conflate=False))
    assert report.source == "feast" and report.signals > 20
    assert (live_root / "feast" / "online.db").exists()

    offline = tmp_path / "offline"
    ingest_capture(live_root / "raw" / "exchange=coinbase", offline)
    FeatureBuilder(offline, grids_ms=(1000,), complete_before_ns=2**62).build()
    build_cross_asset(offline, grids_ms=(1000,))
    assert_scores_equal_offline(out, offline, model_run, report)

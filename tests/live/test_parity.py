"""Parity: a capture replayed through the loopback exchange and scored live gives the features that
``features build`` computes from the ingest of what the live session recorded (100 ms and 1 s grids,
cross-asset included), and the predictions the model gives offline on those rows.

The same session also covers two resilience rules without a second replay: ETH-USD goes quiet for 8 s (its rows
go stale: no signal on them, while the others go on), and the model is replaced on disk mid-session (reloaded
without a restart; then a broken model.json is refused and scoring goes on with the last good model)."""

import asyncio
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from collectors.ingest import ingest_capture
from kernels import catalog
from kernels.pipeline import FeatureBuilder, build_cross_asset
from l2lab.live.quickmodel import read_silver
from l2lab.live.scorer import score_frame
from live_testlib import SYMBOLS, replay_live, silence, wait_for
from research.model_artifact import load_meta, load_predictor, save_meta

pytestmark = pytest.mark.timeout(240)
STEP = 1_000_000_000


def silver_with_cross_asset(root, grid):
    book = read_silver(root, f"book_features_{grid}").to_pandas()
    xa = read_silver(root, f"cross_asset_{grid}").to_pandas().drop(columns=["ts_avail_ns"])
    return book.merge(xa, on=["symbol", "ts_ns"], how="left")


def assert_scores_equal_offline(out, offline, model_run, report):
    """Every live signal's score equals the model's score on the offline silver row of the same symbol and time;
    returns the signals."""
    signals = pq.read_table(out / "signals").to_pandas()
    meta, predictor = load_meta(model_run), load_predictor(model_run)
    rows = signals.merge(silver_with_cross_asset(offline, "1s"), on=["symbol", "ts_ns"], how="left")
    offline_scores = score_frame(predictor, meta, rows[meta.features].astype(float))
    assert len(rows) == report.signals and np.isfinite(offline_scores).all()
    np.testing.assert_array_equal(rows["score"].to_numpy(), offline_scores)
    return signals


def test_live_replay_equals_features_build_and_offline_predictions(tmp_path, model_run, sim_capture):
    run = tmp_path / "run"
    shutil.copytree(model_run, run)
    quiet, t0 = silence(sim_capture, tmp_path / "quiet.jsonl.zst", "ETH-USD", 6.0, 14.0)

    async def swap_models(session):
        await wait_for(lambda: session.report.signals >= 10, 60)
        save_meta(run, load_meta(run))  # the same model written again: a new model.json
        await wait_for(lambda: session.scorer.version == 2, 30)
        (run / "model" / "model.json").write_text('{"target": ')  # a broken write: refused, version 2 goes on
        await wait_for(lambda: len(session.scorer.reload_errors) == 1, 30)
        meta = load_meta(model_run)
        meta.features = meta.features[1:]  # model.json leaves out an input of the predictor: refused
        save_meta(run, meta)
        await wait_for(lambda: len(session.scorer.reload_errors) == 2, 30)

    live_root, out = tmp_path / "live", tmp_path / "out"
    report = asyncio.run(replay_live(quiet, live_root, run, out, speed=2.0, warmup_rows=0, stale_after_s=3.0,
                                     reload_check_s=0.1, during=swap_models))
    assert report.signals > 20 and report.rows > 40

    # offline: ingest what the live session recorded, then features build
    offline = tmp_path / "offline"
    ingest_capture(live_root / "raw" / "exchange=coinbase", offline)
    FeatureBuilder(offline, grids_ms=(100, 1000), complete_before_ns=2**62).build()
    build_cross_asset(offline, grids_ms=(100, 1000))
    book = [s.name for s in catalog.features() if s.table == "book"]
    for grid in ("100ms", "1s"):
        live = pq.read_table(out / f"features_{grid}.parquet").to_pandas()
        silver = silver_with_cross_asset(offline, grid)
        merged = live.merge(silver, on=["symbol", "ts_ns"], how="left", suffixes=("", "_batch"), indicator=True)
        assert (merged["_merge"] == "both").all()  # every live row is a silver row
        assert len(merged) > (150 if grid == "100ms" else 15) * len(SYMBOLS)
        assert merged["valid"].sum() > 0.8 * len(merged)
        np.testing.assert_array_equal(merged["valid"], merged["valid_batch"])
        np.testing.assert_array_equal(merged["ts_avail_ns"], merged["ts_avail_ns_batch"])
        xa = [c for c in silver.columns if c.startswith("xa_")]
        assert len(xa) == 17
        for name in book + xa:
            np.testing.assert_array_equal(merged[name].to_numpy(), merged[f"{name}_batch"].to_numpy(),
                                          err_msg=f"{grid} {name}")

    # predictions: the live scores equal the model's offline scores on the silver rows of the same times
    signals = assert_scores_equal_offline(out, offline, model_run, report)

    # the quiet spell: no signal on a row whose inputs are older than 3 s; ETH's went stale, the others went on
    assert (signals.ts_ns - signals.ts_avail_ns <= 3 * STEP).all()
    assert report.suppressed.get("stale", 0) >= 3
    spell = signals[(signals.ts_ns >= t0 + 10 * STEP) & (signals.ts_ns < t0 + 14 * STEP)]
    assert not (spell.symbol == "ETH-USD").any() and (spell.symbol == "BTC-USD").sum() >= 3
    assert (signals[signals.ts_ns > t0 + 16 * STEP].symbol == "ETH-USD").any()  # ETH is back
    # the reloads
    assert report.model_versions == [1, 2] and len(report.reload_errors) == 2
    assert "not valid JSON" in report.reload_errors[0] and "which model.json does not list" in report.reload_errors[1]
    assert set(signals.model_version) == {1, 2} and np.all(np.diff(signals.model_version.to_numpy()) >= 0)
    log = [json.loads(line) for line in (out / "live.jsonl").read_text().splitlines()]
    assert [r["version"] for r in log if r["event"] == "reload"] == [2]

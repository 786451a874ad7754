"""A tiny real AutoGluon model (LightGBM) trained on simulated silver, shared by the live tests."""

import asyncio

import pytest

from kernels.pipeline import FeatureBuilder, build_cross_asset, build_labels
from l2lab.live.quickmodel import train_small_model
from simulator.l2 import MarketSimulator
from simulator.normalized import write_bronze

TRAIN_START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MODEL_FEATURES = ["imbalance_l1", "imbalance_top5", "smart_imbalance_5bps", "spread_bps", "mid_velocity",
                  "xa_leader_ret_1s"]


@pytest.fixture(scope="session")
def model_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("train")
    write_bronze(MarketSimulator(seed=11, start_ns=TRAIN_START, record_latent=False), 240.0, data)
    FeatureBuilder(data, grids_ms=(1000,), complete_before_ns=TRAIN_START + 10 * 3_600_000_000_000).build()
    build_labels(data, grids_ms=(1000,))
    build_cross_asset(data, grids_ms=(1000,))
    run_dir = tmp_path_factory.mktemp("run")
    train_small_model(data, run_dir, MODEL_FEATURES, "label_dir_mid_5s", grid="1s", rounds=30)
    return run_dir


@pytest.fixture(scope="session")
def sim_capture(tmp_path_factory):
    """20 simulated seconds of BTC-USD, ETH-USD and SOL-USD collected through ccxt from the loopback exchange"""
    from live_testlib import record_capture

    return asyncio.run(record_capture(tmp_path_factory.mktemp("capture"), 20))

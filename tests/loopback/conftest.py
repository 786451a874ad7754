"""Fixtures for the loopback exchange tests: real servers on 127.0.0.1, real ccxt, no mocks."""

from __future__ import annotations

import pytest

from simulator.recording import RecordingSimulator


@pytest.fixture(scope="session")
def sim_factory():
    from simulator.l2 import MarketSimulator

    def make(seed: int = 7):
        return RecordingSimulator(MarketSimulator(seed=seed, record_latent=False))
    return make


@pytest.fixture(scope="session")
def universe():
    from simulator.perps import PerpUniverse

    return PerpUniverse(seed=7)

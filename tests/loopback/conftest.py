"""Fixtures for the loopback exchange tests: real servers on 127.0.0.1, real ccxt, no mocks."""

from __future__ import annotations

import pytest

from loopback_testlib import RecordingSim


@pytest.fixture(scope="session")
def sim_factory():
    from simulator.l2 import MarketSimulator

    def make(seed: int = 7):
        return RecordingSim(MarketSimulator(seed=seed, record_latent=False))
    return make


@pytest.fixture(scope="session")
def universe():
    from simulator.perps import PerpUniverse

    return PerpUniverse(seed=7)

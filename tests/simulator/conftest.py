import pytest

from simulator.l2 import MarketSimulator


@pytest.fixture(scope="session")
def twenty_minutes():
    """A 20-minute default session: (simulator, events, latent path)."""
    sim = MarketSimulator(seed=11)
    events = sim.advance(sim.config.start_ns + 1200 * 10**9)
    return sim, events, sim.latent_path()

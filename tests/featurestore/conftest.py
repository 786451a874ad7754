"""One simulated session (150 s, three symbols, crossing an hour) built to silver on the 1 s grid and one applied
Feast repository, shared by every feature-store test module."""

import pytest
from feast_session import SECONDS, START


@pytest.fixture(scope="session")
def feast_root(tmp_path_factory):
    from kernels.pipeline import build_all
    from simulator.l2 import MarketSimulator
    from simulator.normalized import write_bronze

    root = tmp_path_factory.mktemp("feast") / "data"
    write_bronze(MarketSimulator(seed=3, start_ns=START), SECONDS, root)
    build_all(root, "coinbase", grids_ms=(1000,))
    return root


@pytest.fixture(scope="session")
def feast_store(feast_root):
    from l2lab.featurestore.store import apply

    return apply(feast_root)

import pytest

TINY_HOURS = 0.15  # 9 simulated minutes: enough rows for the chain on the 1 s grid, small enough for CI


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """One research session shared by every research test (bronze exchange=sim, truth, silver, gold)."""
    from research.sessions import make_research_session

    root = tmp_path_factory.mktemp("research_data")
    make_research_session(root, hours=TINY_HOURS, seed=7, mc_hours=0.3)
    return root

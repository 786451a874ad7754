"""The live rows through Feast (``l2lab.featurestore``): pushed through the views'
push sources, read back by online lookups, the model's vector equals the engine's row bit for bit (SDK; the HTTP
feature server in the slow variant)."""

import numpy as np
import pytest

from collectors.coinbase import ProductScale
from kernels import catalog
from kernels.pipeline import FeatureBuilder
from l2lab.live.engine import LiveEngine
from l2lab.live.features import FeastOnline
from l2lab.live.session import rounds
from simulator.config import load_config
from simulator.l2 import MarketSimulator
from simulator.normalized import write_bronze
from test_engine import frames_of

START = 1_767_571_200_000_000_000
SYMBOLS = ["BTC-USD", "ETH-USD"]
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def live_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("feast")
    sim = MarketSimulator(load_config(symbols=SYMBOLS), seed=5, start_ns=START + 600 * 10**9, record_latent=False)
    write_bronze(sim, 20.0, root)
    FeatureBuilder(root, grids_ms=(1000,), complete_before_ns=START + 10 * 3_600_000_000_000).build()  # sources
    engine = LiveEngine({s: ProductScale(2, 8) for s in SYMBOLS}, (1000,))
    rows = []
    for sym in SYMBOLS:
        for _, _, l2, tr in frames_of(root, sym):
            rows += engine.feed(sym, l2, tr)
    rows.sort(key=lambda r: (r.t_ns, r.symbol))
    assert len(rows) > 30
    return root, rows


def every_family_feature():
    picks = {}
    for s in catalog.features():
        if s.table == "book":
            picks.setdefault(s.family, []).append(s.name)
    return [n for names in picks.values() for n in names[:3]]


def check_round_trip(source, rows, features, last=6):
    """The last ``last`` rows, two symbols per round: push, look up, compare; then the other views."""
    n = 0
    for batch in rounds(rows[-last:]):
        source.push_needed(batch, features)
        got = source.fetch(batch, features)
        want = np.array([[r.values[f] for f in features] for r in batch])
        np.testing.assert_array_equal(got, want)
        source.push_rest(batch)
        n += len(batch)
    return n


@pytest.mark.parametrize("write", ["push", "direct"])
def test_online_lookup_returns_the_pushed_live_row(live_rows, write):
    root, rows = live_rows
    features = every_family_feature()
    source = FeastOnline(root, "1s", write=write)
    try:
        assert check_round_trip(source, rows, features) == 6
    finally:
        source.close()


@pytest.mark.slow
def test_http_feature_server_returns_the_pushed_live_row(live_rows):
    root, rows = live_rows
    source = FeastOnline(root, "1s", http=True)
    try:
        assert check_round_trip(source, rows, every_family_feature(), last=20) == 20
    finally:
        source.close()

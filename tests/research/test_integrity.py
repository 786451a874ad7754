"""Integrity helpers: oracle lookups, planted regimes, macro-F1 and lead-lag against references."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from research import integrity

TRUTH = {
    "oracle_direction_auc": {"closed_form_leaders": {"BTC-USD": {"5s": 0.71}},
                             "monte_carlo": {"ETH-USD": {"5s": {"auc": 0.74, "se": 0.02}}}},
    "regimes": {"names": ["calm", "normal", "stressed"],
                "path": [{"start_ns": 100, "regime": 1}, {"start_ns": 200, "regime": 2}, {"start_ns": 350, "regime": 0}]},
    "lead_lag": {"ETH-USD": {"leader": "BTC-USD", "lag_s": 1.0, "beta": 0.8}},
}


def test_oracle_lookup_and_auc_beside_it():
    assert integrity.oracle_auc(TRUTH, "BTC-USD", 5) == (0.71, 0.0)
    assert integrity.oracle_auc(TRUTH, "ETH-USD", 5.0) == (0.74, 0.02)
    with pytest.raises(KeyError, match="ETH-USD at 30s"):
        integrity.oracle_auc(TRUTH, "ETH-USD", 30)
    p = pd.DataFrame({"symbol": ["BTC-USD"] * 4, "y": [0, 0, 1, 1], "score": [0.1, 0.4, 0.35, 0.8]})
    t = integrity.auc_beside_oracle(p, TRUTH, 5)
    assert t.loc[0, "achieved_auc"] == 0.75 and t.loc[0, "edge_share"] == pytest.approx(0.25 / 0.21)


def test_planted_regime_at_matches_a_loop():
    ts = np.array([100, 150, 199, 200, 349, 350, 10_000])
    got = integrity.planted_regime_at(TRUTH, ts)
    path = TRUTH["regimes"]["path"]
    ref = [[p["regime"] for p in path if p["start_ns"] <= t][-1] for t in ts]
    assert got.tolist() == ref


@pytest.mark.parametrize("seed", range(3))
def test_macro_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 3, 300))
    assert integrity.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    y2 = np.where(y == 2, 1, y)  # a class absent from both
    p2 = np.where(p == 2, 1, p)
    assert integrity.macro_f1(y2, p2) == pytest.approx(f1_score(y2, p2, average="macro", labels=[0, 1]))


def test_lead_lag_recovers_a_planted_lag():
    rng = np.random.default_rng(4)
    leader = rng.standard_normal(20_000)
    follower = 0.8 * np.r_[np.zeros(10), leader[:-10]] + 0.5 * rng.standard_normal(20_000)
    follower[::97] = np.nan
    xc = integrity.lead_lag_xcorr(leader, follower, 25)
    assert xc.idxmax() == 10 and xc[10] > 0.7 and abs(xc[3]) < 0.05
    assert integrity.planted_lead_lag(TRUTH).to_dict(orient="records") == [
        {"symbol": "ETH-USD", "leader": "BTC-USD", "planted_lag_s": 1.0, "planted_beta": 0.8}]


def test_shuffled_labels_is_a_seeded_permutation():
    y = np.arange(100)
    a, b = integrity.shuffled_labels(y, 3), integrity.shuffled_labels(y, 3)
    assert (a == b).all() and sorted(a) == list(y) and (a != y).any()


def test_regime_vol_ratios_recover_planted_multipliers():
    truth = {"regimes": {"names": ["calm", "normal", "stressed"], "vol_multiplier": [0.6, 1.0, 2.2]}}
    rng = np.random.default_rng(8)
    planted = rng.integers(0, 2, 5000)  # stressed absent, as in a short session
    vol = np.array([0.6, 1.0, 2.2])[planted] * np.exp(0.1 * rng.standard_normal(5000))
    vol[::50] = np.nan
    t = integrity.regime_vol_ratios(vol, planted, truth).set_index("regime")
    assert list(t.index) == ["calm", "normal"]
    assert t.loc["calm", "ratio_to_normal"] == pytest.approx(0.6, rel=0.02)
    assert t.loc["calm", "planted_ratio"] == pytest.approx(0.6) and t.loc["normal", "ratio_to_normal"] == 1.0
    assert t["rows"].sum() == np.isfinite(vol).sum()

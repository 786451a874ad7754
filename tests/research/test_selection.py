"""Redundancy clusters, mutual information, fold stability and the selected-feature list."""

import json

import numpy as np
import pandas as pd
import pytest

from research.cv import walk_forward
from research.selection import (fold_stability, mutual_information, read_selected, redundancy_clusters,
                                scale_free, select_features, spearman_matrix, usable_features, write_selected)
from research.stats import ic_table


@pytest.fixture
def frame():
    rng = np.random.default_rng(11)
    n = 4000
    s = rng.standard_normal(n)
    df = pd.DataFrame({"symbol": "A", "ts_ns": np.arange(n, dtype=np.int64) * 10**9})
    df["sig"] = s
    df["sig_copy"] = 2 * s + 0.05 * rng.standard_normal(n)  # redundant with sig
    df["sig_rank"] = np.exp(s)  # monotone transform: Spearman 1
    df["noise1"] = rng.standard_normal(n)
    df["noise2"] = rng.standard_normal(n)
    df["const"] = 1.0
    df["mostly_nan"] = np.where(rng.random(n) < 0.9, np.nan, 1.0)
    df["y"] = 0.3 * s + rng.standard_normal(n)
    df["y_cls"] = (df["y"] > 0).astype(int)
    return df


def test_usable_and_clusters(frame):
    keep, dropped = usable_features(frame, ["sig", "sig_copy", "sig_rank", "noise1", "noise2", "const", "mostly_nan"])
    assert set(dropped) == {"const", "mostly_nan"}
    corr = spearman_matrix(frame, keep)
    ref = frame[keep].corr(method="spearman")
    np.testing.assert_allclose(corr.to_numpy(), ref.to_numpy(), atol=1e-12)
    cl = redundancy_clusters(corr, threshold=0.3)
    assert cl["sig"] == cl["sig_copy"] == cl["sig_rank"]
    assert len({cl["sig"], cl["noise1"], cl["noise2"]}) == 3
    assert redundancy_clusters(corr.loc[["sig"], ["sig"]]).tolist() == [1]


def test_mutual_information_ranks_the_signal_first(frame):
    feats = ["noise1", "sig", "noise2"]
    mi = mutual_information(frame, feats, "y", discrete=False, seed=0)
    assert mi.index[0] == "sig" and mi["sig"] > 5 * max(mi["noise1"], mi["noise2"], 1e-3)
    mic = mutual_information(frame, feats, "y_cls", discrete=True, seed=0)
    assert mic.index[0] == "sig"
    assert mi.equals(mutual_information(frame, feats, "y", discrete=False, seed=0))  # seeded


def test_fold_stability_and_selection(frame, tmp_path):
    feats = ["sig", "sig_copy", "sig_rank", "noise1", "noise2"]
    t0 = frame["ts_ns"].to_numpy()
    folds = walk_forward(t0, t0 + 5 * 10**9, n_splits=4)
    stab = fold_stability(frame, feats, "y", folds)
    assert stab.loc["sig", "sign_stability"] == 1.0
    fold0 = frame.iloc[folds[0].train]
    assert stab.loc["sig", "fold0_ic"] == pytest.approx(fold0["sig"].corr(fold0["y"], method="spearman"))
    tab = ic_table(frame, feats, "y", block_s=60)
    cl = redundancy_clusters(spearman_matrix(frame, feats))
    chosen = select_features(tab, cl, stab, min_abs_t=2.0, min_stability=0.75)
    assert len(chosen) == 1 and chosen.index[0] in ("sig", "sig_copy", "sig_rank")
    path = write_selected(tmp_path, "y", list(chosen.index), chosen, min_abs_t=2.0)
    assert read_selected(tmp_path) == list(chosen.index)
    assert json.loads(path.read_text())["rules"] == {"min_abs_t": 2.0}
    with pytest.raises(ValueError, match="empty"):
        write_selected(tmp_path, "y", [])
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        read_selected(tmp_path / "nowhere")


def test_scale_free_drops_price_denominated_features():
    kept = scale_free(["mid", "bid_px_L0", "spread_bps", "imbalance_l1", "mid_velocity", "kyle_lambda_60s", "nope"])
    assert kept == ["spread_bps", "imbalance_l1"]

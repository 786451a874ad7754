"""Models, calibration and interpretability against scikit-learn references; AutoGluon and TreeSHAP on a tiny fit."""

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from research import interpret, models
from research.cv import walk_forward


def test_calibration_matches_sklearn():
    rng = np.random.default_rng(0)
    p = rng.random(5000)
    y = (rng.random(5000) < p ** 1.5).astype(float)
    tab = models.calibration_table(y, p, n_bins=10)
    obs, pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(tab["observed"], obs, rtol=1e-12)
    np.testing.assert_allclose(tab["mean_pred"], pred, rtol=1e-12)
    m = models.calibration_metrics(y, p)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    ece = np.sum(tab["count"] * np.abs(obs - pred)) / len(p)
    assert m["ece"] == pytest.approx(ece)
    assert models.calibration_metrics(y, y * 0.999)["ece"] < 0.01  # edges: p in {0, 0.999}


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.round(y * 0.3 + rng.random(500), 1)
    assert models.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_tuning_split_purges_one_horizon():
    ts = np.arange(100, dtype=np.int64) * 10**9
    fit, tune = models.tuning_split(100, ts, horizon_s=5, frac=0.2)
    assert tune[0] == 80 and fit.max() == 74  # 75..79 would read into the tuning window
    assert (ts[fit] + 5 * 10**9 < ts[tune[0]]).all()


def test_problem_types_and_horizons():
    assert models.problem_type_of("label_dir_mid_5s") == "binary"
    assert models.problem_type_of("label_vol_regime_60s") == "multiclass"
    assert models.problem_type_of("fwd_ret_mid_30s") == "regression"
    assert models.horizon_of("fwd_ret_mid_30s") == 30
    with pytest.raises(ValueError, match="not a catalog label"):
        models.horizon_of("imbalance_l1")


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(5)
    n = 3000
    df = pd.DataFrame({"symbol": "A", "ts_ns": np.arange(n, dtype=np.int64) * 10**9,
                       "a": rng.standard_normal(n), "b": rng.standard_normal(n), "c": rng.standard_normal(n)})
    df.loc[rng.random(n) < 0.05, "c"] = np.nan
    z = 1.2 * df["a"] - 0.6 * df["b"] * (df["a"] > 0) + 0.3 * rng.standard_normal(n)
    df["label_dir_mid_5s"] = (z > 0).astype(int)
    df["rv"] = np.abs(rng.standard_normal(n))
    return df


def test_walk_forward_predictions_test_each_row_once(synthetic):
    feats = ["a", "b", "c"]
    t0 = synthetic["ts_ns"].to_numpy()
    folds = walk_forward(t0, t0 + 5 * 10**9, n_splits=3)
    oos = models.walk_forward_predictions(
        synthetic, feats, "label_dir_mid_5s", folds,
        lambda tr, k: models.baseline("binary").fit(tr[feats], tr["label_dir_mid_5s"]),
        lambda m, te: models.baseline_score(m, te[feats], "binary"))
    assert oos["ts_ns"].is_unique and len(oos) == sum(len(f.test) for f in folds)
    assert models.roc_auc(oos["y"], oos["score"]) > 0.8
    s, r = models.regime_conditional_predictions(synthetic.iloc[:2000], synthetic.iloc[2000:], feats,
                                                 "label_dir_mid_5s", "rv", "binary")
    assert len(s) == 1000 and set(np.unique(r)) == {0.0, 1.0, 2.0}
    assert models.roc_auc(synthetic["label_dir_mid_5s"].iloc[2000:], s) > 0.8


def test_partial_dependence_matches_sklearn_brute():
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.inspection import partial_dependence as sk_pd

    rng = np.random.default_rng(2)
    x = pd.DataFrame(rng.standard_normal((400, 3)), columns=["a", "b", "c"])
    y = x["a"] ** 2 + x["b"]
    m = GradientBoostingRegressor(n_estimators=30, random_state=0).fit(x, y)
    grid = np.array([-1.0, 0.0, 0.5, 1.0])
    ours = interpret.partial_dependence(m.predict, x, "a", grid=grid)
    ref = sk_pd(m, x, ["a"], method="brute", custom_values={"a": grid}, kind="average")
    np.testing.assert_allclose(ours["partial_dependence"], ref["average"][0], rtol=1e-10)


def test_shap_prune_and_group():
    imp = pd.Series({"a": 5.0, "b": 3.0, "c": 1.5, "d": 0.5})
    assert interpret.shap_prune(imp, 0.8) == ["a", "b"]  # 8/10 reaches 0.8 exactly
    assert interpret.shap_prune(imp, 0.81) == ["a", "b", "c"]
    assert interpret.shap_prune(imp, 1.0) == ["a", "b", "c", "d"]
    assert interpret.shap_prune(imp * 0, 0.9, min_features=2) == ["a", "b"]
    shap = pd.DataFrame({"a": [1.0, -3.0, 2.0], "b": [0.0, 1.0, -1.0]})
    g = interpret.shap_by_group(shap, [0, 1, 1])
    assert g.loc["a", 1] == 2.5 and g.loc["b", 0] == 0.0


@pytest.mark.timeout(120)
def test_autogluon_tiny_fit_and_tree_shap_add_up(synthetic, tmp_path):
    feats = ["a", "b", "c"]
    settings = models.AutoGluonSettings(time_limit=None, num_cpus=1,
                                        hyperparameters={"GBM": {"num_boost_round": 40}, "CAT": {"iterations": 40}})
    tr, te = synthetic.iloc[:2000], synthetic.iloc[2000:]
    p = models.fit_autogluon(tr, feats, "label_dir_mid_5s", tmp_path / "ag", settings)
    names = set(p.leaderboard(silent=True)["model"])
    assert {"LightGBM", "CatBoost"} <= names and not names & {"RandomForest", "ExtraTrees", "KNeighbors"}
    s = models.predict_score(p, te, feats)
    assert ((s >= 0) & (s <= 1)).all() and models.roc_auc(te["label_dir_mid_5s"], s) > 0.8
    for name in ("LightGBM", "CatBoost"):
        shap, expected, used = interpret.tree_shap(p, te[feats], name)
        assert used == name and list(shap.columns) == feats
        np.testing.assert_allclose(shap.sum(axis=1) + expected, interpret.raw_margin(p, te[feats], name), atol=1e-9)
        imp = interpret.mean_abs_shap(shap)
        assert imp.index[0] == "a" and imp["c"] < imp["b"]  # c is pure noise
    assert interpret.best_tree_model(p) in ("LightGBM", "CatBoost")

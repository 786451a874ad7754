"""Interpretability for notebook 06: TreeSHAP from the best tree model inside an AutoGluon predictor, partial
dependence, SHAP by regime and SHAP-based pruning.

TreeSHAP (Lundberg et al. 2020) exact for tree ensembles; we use the libraries' native implementations:
LightGBM ``predict(..., pred_contrib=True)`` and CatBoost ``get_feature_importance(type='ShapValues')``. Both
return one column per feature plus the expected value; per row they add up to the model's raw output (log-odds
for a binary model): sum_j phi_j + phi_0 = f(x). AutoGluon transforms the features before its models see them
(``predictor.transform_features``); SHAP values are computed on that transformed frame and mapped back by name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TREE_PREFIXES = ("LightGBM", "CatBoost")


def best_tree_model(predictor) -> str:
    """The best-scoring LightGBM/CatBoost model of the leaderboard (ensembles and other kinds skipped)."""
    lb = predictor.leaderboard(silent=True)
    for name in lb["model"]:
        if name.startswith(TREE_PREFIXES):
            return name
    raise ValueError(f"no LightGBM or CatBoost model among {list(lb['model'])}")


def tree_shap(predictor, x: pd.DataFrame, model_name: str | None = None) -> tuple[pd.DataFrame, np.ndarray, str]:
    """(SHAP values per row and feature, expected value per row, model name) of a binary/regression
    tree model inside ``predictor``, columns named like the transformed features."""
    name = model_name or best_tree_model(predictor)
    model = predictor._trainer.load_model(name)
    xt = predictor.transform_features(x, model=name)
    xt = model.preprocess(xt)
    if name.startswith("LightGBM"):
        contrib = model.model.predict(xt, pred_contrib=True)
    elif name.startswith("CatBoost"):
        from catboost import Pool

        contrib = model.model.get_feature_importance(Pool(xt), type="ShapValues")
    else:
        raise ValueError(f"{name}: not a LightGBM or CatBoost model")
    contrib = np.asarray(contrib)
    if contrib.ndim != 2 or contrib.shape[1] != xt.shape[1] + 1:
        raise ValueError(f"{name}: SHAP output of shape {contrib.shape} for {xt.shape[1]} features (multiclass models "
                         f"give one block per class; use a binary or regression model)")
    return pd.DataFrame(contrib[:, :-1], columns=list(xt.columns), index=x.index), contrib[:, -1], name


def raw_margin(predictor, x: pd.DataFrame, model_name: str) -> np.ndarray:
    """The tree model's raw output (log-odds for binary) on ``x``, the quantity SHAP values add up to."""
    model = predictor._trainer.load_model(model_name)
    xt = model.preprocess(predictor.transform_features(x, model=model_name))
    if model_name.startswith("LightGBM"):
        return np.asarray(model.model.predict(xt, raw_score=True), float)
    return np.asarray(model.model.predict(xt, prediction_type="RawFormulaVal"), float)


def mean_abs_shap(shap: pd.DataFrame) -> pd.Series:
    return shap.abs().mean().sort_values(ascending=False).rename("mean_abs_shap")


def shap_by_group(shap: pd.DataFrame, groups) -> pd.DataFrame:
    """Mean |SHAP| per feature (rows) and group (columns), e.g. per volatility regime."""
    g = pd.Series(np.asarray(groups), index=shap.index)
    ok = g.notna()
    return shap[ok].abs().groupby(g[ok]).mean().T


def shap_prune(importance: pd.Series, keep_share: float = 0.95, min_features: int = 1) -> list[str]:
    """The fewest features (by decreasing mean |SHAP|) whose importance adds up to ``keep_share`` of the total."""
    imp = importance.sort_values(ascending=False)
    total = imp.sum()
    if total <= 0:
        return list(imp.index[:min_features])
    n = int(np.searchsorted(np.cumsum(imp.to_numpy()) / total, keep_share - 1e-12) + 1)
    return list(imp.index[:max(n, min_features)])


def partial_dependence(predict, x: pd.DataFrame, feature: str, grid=None, n_grid: int = 20) -> pd.DataFrame:
    """Brute-force partial dependence (Friedman 2001): for each grid value v, the mean prediction over all rows
    with ``feature`` set to v. ``grid`` defaults to ``n_grid`` quantiles (5%..95%) of the feature."""
    if grid is None:
        vals = x[feature].to_numpy(float)
        grid = np.unique(np.nanquantile(vals, np.linspace(0.05, 0.95, n_grid)))
    out = []
    for v in grid:
        xv = x.copy()
        xv[feature] = v
        out.append(float(np.mean(predict(xv))))
    return pd.DataFrame({feature: np.asarray(grid, float), "partial_dependence": out})

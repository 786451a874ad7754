"""Models for notebook 04: AutoGluon tuned for 2 cores, linear baselines, walk-forward out-of-sample predictions,
calibration and regime-conditional models.

AutoGluon on 2 cores (DESIGN.md): RandomForest/ExtraTrees ignore the time budget (``medium_quality`` with a 60 s
limit took 126 s), KNN is slow to predict; excluding RF/XT/KNN it took 9 s and trained LightGBM, CatBoost and the
weighted ensemble. So they are excluded by default. AutoGluon's own validation split would be random rows, which
overlap the training labels in time; :func:`fit_autogluon` passes the last part of the training rows (after a
purge gap of one horizon) as ``tuning_data`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from research.cv import Fold

DEFAULT_EXCLUDED = ("RF", "XT", "KNN")
PROBLEM_METRICS = {"binary": "roc_auc", "regression": "root_mean_squared_error", "multiclass": "f1_macro"}


def problem_type_of(label: str) -> str:
    """binary for ``label_dir_*``, multiclass for 3-class / regime / triple-barrier labels, else regression."""
    if label.startswith("label_dir_"):
        return "binary"
    if label.startswith("label_"):
        return "multiclass"
    return "regression"


def horizon_of(label: str) -> float:
    """The horizon in seconds from a catalog label name (``..._5s`` -> 5)."""
    from kernels import catalog

    for spec in catalog.labels():
        if spec.name == label:
            return spec.forward_reach_ns / 1e9
    raise ValueError(f"{label!r} is not a catalog label")


def tuning_split(n: int, ts_ns: np.ndarray, horizon_s: float, frac: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, tuning rows): the last ``frac`` of the rows by time tune; fit rows whose label reaches into
    the tuning window are dropped (a purge of one horizon)."""
    cut = int(n * (1 - frac))
    tune = np.arange(cut, n)
    t_start = ts_ns[cut]
    fit = np.flatnonzero(ts_ns[:cut] + int(horizon_s * 1e9) < t_start)
    return fit, tune


@dataclass
class AutoGluonSettings:
    presets: str = "medium_quality"
    time_limit: float | None = 60.0
    excluded_model_types: tuple[str, ...] = DEFAULT_EXCLUDED
    hyperparameters: dict | str | None = None  # e.g. {"GBM": {"num_boost_round": 50}} for tests
    num_cpus: int = 2
    seed: int = 0
    verbosity: int = 0


def fit_autogluon(train: pd.DataFrame, features: list[str], label: str, path, settings: AutoGluonSettings,
                  problem_type: str | None = None, horizon_s: float | None = None):
    """A ``TabularPredictor`` on ``train`` (time-ordered rows) with a time-ordered, purged tuning split."""
    from autogluon.tabular import TabularPredictor

    problem_type = problem_type or problem_type_of(label)
    horizon_s = horizon_of(label) if horizon_s is None else horizon_s
    d = train[train[label].notna()].reset_index(drop=True)
    fit_rows, tune_rows = tuning_split(len(d), d["ts_ns"].to_numpy(), horizon_s)
    cols = list(features) + [label]
    predictor = TabularPredictor(label=label, problem_type=problem_type, eval_metric=PROBLEM_METRICS[problem_type],
                                 path=str(path), verbosity=settings.verbosity)
    kwargs = dict(presets=settings.presets, time_limit=settings.time_limit, num_cpus=settings.num_cpus,
                  excluded_model_types=list(settings.excluded_model_types), num_gpus=0,
                  tuning_data=d.loc[tune_rows, cols], fit_weighted_ensemble=True, calibrate_decision_threshold=False)
    if settings.hyperparameters is not None:
        kwargs["hyperparameters"] = settings.hyperparameters
    predictor.fit(d.loc[fit_rows, cols], **kwargs)
    return predictor


def predict_score(predictor, df: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Binary: P(positive class); regression: the prediction; multiclass: the predicted class."""
    x = df[list(features)]
    if predictor.problem_type == "binary":
        return predictor.predict_proba(x, as_multiclass=False).to_numpy(float)
    return predictor.predict(x).to_numpy()


def baseline(problem_type: str, seed: int = 0, c: float = 1.0, alpha: float = 1.0):
    """Median imputation + standardization + logistic regression (binary / multiclass) or ridge (regression)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = (Ridge(alpha=alpha) if problem_type == "regression"
             else LogisticRegression(C=c, max_iter=500, random_state=seed))
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), model)


def baseline_score(model, x: pd.DataFrame, problem_type: str) -> np.ndarray:
    if problem_type == "binary":
        return model.predict_proba(x)[:, 1]
    return model.predict(x)


def walk_forward_predictions(df: pd.DataFrame, features: list[str], label: str, folds: list[Fold], fit, score,
                             ) -> pd.DataFrame:
    """Out-of-sample predictions: for each fold, ``model = fit(train_rows, k)`` then ``score(model, test_rows)``.
    Returns symbol, ts_ns, fold, y, score for every test row with a label (each row tested once)."""
    out = []
    for k, fd in enumerate(folds):
        tr = df.iloc[fd.train]
        tr = tr[tr[label].notna()]
        te = df.iloc[fd.test]
        te = te[te[label].notna()]
        if tr.empty or te.empty:
            continue
        model = fit(tr, k)
        out.append(pd.DataFrame({"symbol": te["symbol"].to_numpy(), "ts_ns": te["ts_ns"].to_numpy(), "fold": k,
                                 "y": te[label].to_numpy(), "score": score(model, te)}))
    if not out:
        raise ValueError(f"walk_forward_predictions: no fold had labelled training and test rows for {label}")
    return pd.concat(out, ignore_index=True)


def roc_auc(y, score) -> float:
    from simulator.truth import auc

    return auc(np.asarray(score, float), np.asarray(y).astype(float) > 0.5)


def calibration_table(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table on equal-width probability bins: mean predicted, observed frequency, count."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    rows = [{"bin": k, "lo": edges[k], "hi": edges[k + 1], "mean_pred": p[b == k].mean(), "observed": y[b == k].mean(),
             "count": int((b == k).sum())} for k in range(n_bins) if (b == k).any()]
    return pd.DataFrame(rows)


def calibration_metrics(y, p, n_bins: int = 10) -> dict:
    """Brier score (mean (p - y)^2) and expected calibration error (count-weighted |observed - mean_pred|)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    ok = np.isfinite(y) & np.isfinite(p)
    tab = calibration_table(y[ok], p[ok], n_bins)
    ece = float((tab["count"] * (tab["observed"] - tab["mean_pred"]).abs()).sum() / tab["count"].sum())
    return {"brier": float(np.mean((p[ok] - y[ok]) ** 2)), "ece": ece}


def regime_conditional_predictions(train: pd.DataFrame, test: pd.DataFrame, features: list[str], label: str,
                                   regime_col: str, problem_type: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Baseline models fitted per regime of ``regime_col`` (terciles fitted on ``train`` only; a trailing
    feature, so known at prediction time) and applied to the test rows of the same regime. Returns
    (scores, test regimes); rows whose regime has no training rows get the pooled model's score."""
    from kernels.labels import apply_regime_thresholds, fit_regime_thresholds

    th = fit_regime_thresholds(train[regime_col].to_numpy(float))
    r_tr = apply_regime_thresholds(train[regime_col].to_numpy(float), th)
    r_te = apply_regime_thresholds(test[regime_col].to_numpy(float), th)
    pooled = baseline(problem_type, seed).fit(train[features], train[label].to_numpy())
    scores = baseline_score(pooled, test[features], problem_type).astype(float)
    for r in (0.0, 1.0, 2.0):
        tr, te = r_tr == r, r_te == r
        if te.any() and tr.sum() >= 50 and np.unique(train.loc[tr, label]).size > 1:
            m = baseline(problem_type, seed).fit(train.loc[tr, features], train.loc[tr, label].to_numpy())
            scores[te] = baseline_score(m, test.loc[te, features], problem_type)
    return scores, r_te

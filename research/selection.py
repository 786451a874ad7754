"""Feature selection: redundancy clusters, mutual information, stability across walk-forward folds, and the
selected-feature list that notebook 04 trains on.

* Redundancy: d_ij = 1 - |rho_ij| (rho = Spearman correlation over rows where both are finite), average-linkage
  hierarchical clustering (scipy), clusters cut at distance ``threshold`` (0.3: |rho| >= 0.7 on average).
  Features that are constant or almost always missing are reported and left out.
* Mutual information: scikit-learn's k-nearest-neighbour estimator (Kraskov et al. 2004; Ross 2014 for a
  discrete target), seeded.
* Stability: the IC of each feature inside every walk-forward training fold; share of folds whose IC has the
  sign of the pooled IC, mean and standard deviation of the per-fold ICs.
* Selection: one representative per cluster (the largest |Newey-West t|), kept if |t| >= ``min_abs_t`` and
  sign-stable in at least ``min_stability`` of the folds, at most ``max_features`` by |t|.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from l2lab import atomic
from research.stats import ic


def usable_features(df: pd.DataFrame, features: list[str], max_null: float = 0.5) -> tuple[list[str], dict]:
    """Features with at most ``max_null`` missing and more than one distinct finite value; the rest with why."""
    keep, dropped = [], {}
    for f in features:
        x = df[f].to_numpy(float)
        finite = np.isfinite(x)
        if 1.0 - finite.mean() > max_null:
            dropped[f] = f"missing in {1 - finite.mean():.0%} of rows"
        elif np.unique(x[finite]).size < 2:
            dropped[f] = "constant"
        else:
            keep.append(f)
    return keep, dropped


def spearman_matrix(df: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Pairwise Spearman correlation (pandas, pairwise-complete rows)."""
    return df[features].rank().corr(method="pearson")


def redundancy_clusters(corr: pd.DataFrame, threshold: float = 0.3) -> pd.Series:
    """Cluster id per feature from average-linkage clustering on 1 - |rho|, cut at ``threshold``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    names = list(corr.index)
    if len(names) == 1:
        return pd.Series([1], index=names, name="cluster")
    d = 1.0 - corr.abs().to_numpy(float)
    d = np.nan_to_num(d, nan=1.0)
    np.fill_diagonal(d, 0.0)
    d = np.clip((d + d.T) / 2.0, 0.0, 1.0)
    z = linkage(squareform(d, checks=False), method="average")
    return pd.Series(fcluster(z, t=threshold, criterion="distance"), index=names, name="cluster")


def mutual_information(df: pd.DataFrame, features: list[str], label: str, discrete: bool, seed: int = 0,
                       max_rows: int = 20_000) -> pd.Series:
    """MI (nats) between each feature and the label over rows with a label (NaN features -> column median);
    at most ``max_rows`` rows, sampled with ``seed``."""
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    d = df[df[label].notna()]
    if len(d) > max_rows:
        d = d.sample(max_rows, random_state=seed)
    x = d[features].astype(float)
    x = x.fillna(x.median()).fillna(0.0).to_numpy()
    y = d[label].to_numpy()
    fn = mutual_info_classif if discrete else mutual_info_regression
    mi = fn(x, y.astype(int) if discrete else y.astype(float), random_state=seed)
    return pd.Series(mi, index=features, name="mi").sort_values(ascending=False)


def fold_stability(df: pd.DataFrame, features: list[str], label: str, folds, method: str = "spearman") -> pd.DataFrame:
    """Per feature: IC in each fold's training rows, sign agreement with the pooled IC, mean and std."""
    y_all = df[label].to_numpy(float)
    rows = []
    for f in features:
        x_all = df[f].to_numpy(float)
        pooled = ic(x_all, y_all, method)
        per = np.array([ic(x_all[fd.train], y_all[fd.train], method) for fd in folds])
        ok = np.isfinite(per)
        agree = float((np.sign(per[ok]) == np.sign(pooled)).mean()) if ok.any() and np.isfinite(pooled) else np.nan
        rows.append({"feature": f, "pooled_ic": pooled, "fold_ic_mean": float(np.nanmean(per)) if ok.any() else np.nan,
                     "fold_ic_std": float(np.nanstd(per)) if ok.sum() > 1 else np.nan, "sign_stability": agree,
                     **{f"fold{k}_ic": v for k, v in enumerate(per)}})
    return pd.DataFrame(rows).set_index("feature")


def select_features(ic_tab: pd.DataFrame, clusters: pd.Series, stability: pd.DataFrame, *, min_abs_t: float = 2.0,
                    min_stability: float = 0.75, max_features: int = 30) -> pd.DataFrame:
    """One representative per redundancy cluster (largest |t|), filtered by |t| and sign stability."""
    t = ic_tab.set_index("feature")["nw_t"]
    tab = pd.DataFrame({"nw_t": t.reindex(clusters.index), "cluster": clusters,
                        "sign_stability": stability["sign_stability"].reindex(clusters.index)})
    tab["abs_t"] = tab["nw_t"].abs()
    tab = tab.sort_values("abs_t", ascending=False, na_position="last")
    rep = tab.groupby("cluster", sort=False).head(1)
    chosen = rep[(rep["abs_t"] >= min_abs_t) & (rep["sign_stability"].fillna(0) >= min_stability)]
    return chosen.head(max_features)


def write_selected(run_dir, label: str, features: list[str], table: pd.DataFrame | None = None, **why) -> Path:
    """``<run_dir>/selected_features.json``: the label, the chosen features in order, and the selection rules."""
    if not features:
        raise ValueError("write_selected: the selection is empty (loosen min_abs_t / min_stability)")
    doc = {"label": label, "features": list(features), "rules": why,
           "table": None if table is None else table.reset_index().to_dict(orient="records")}
    path = Path(run_dir) / "selected_features.json"
    atomic.write_json(path, doc)
    return path


def read_selected(run_dir) -> list[str]:
    import json

    path = Path(run_dir) / "selected_features.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no selected feature list (notebook 03 writes it)")
    return json.loads(path.read_text())["features"]


PRICE_UNITS = ("price", "price/s", "price/s^2", "price/base unit")


def scale_free(features: list[str]) -> list[str]:
    """Features not measured in the symbol's price (price levels, mid, velocities in price/s, Kyle's lambda in
    price per unit): pooled over symbols those mostly identify the symbol and its price level."""
    from kernels import catalog

    specs = catalog.by_name()
    return [f for f in features if f in specs and specs[f].unit not in PRICE_UNITS]

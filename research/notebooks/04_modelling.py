# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (l2lab)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Modelling
# AutoGluon per target and horizon, tuned for 2 cores (RF/XT/KNN excluded; presets and time limits are
# parameters), linear baselines, purged walk-forward evaluation after the selection period, leaderboard,
# calibration, regime-conditional models, and the integrity checks against the simulator's planted truth:
# achieved vs Bayes-optimal AUC per horizon, a shuffled-label control, the volatility-regime macro-F1.
# Saves the model (`model/`) and the out-of-sample predictions (`predictions.parquet`).

# %% tags=["parameters"]
run_dir = ""              # set by `l2lab run`; empty: nothing is written
# The parameters notebooks share (grid, horizons, horizon, target, seed, ...) default in
# research.workflow.DEFAULTS; set one here to override it in this notebook.
integrity_horizons = None  # None: every horizon in `horizons`
shuffle_repeats = 3       # permutations in the shuffled-label control

# %%
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from research import cv, integrity, model_artifact, models, runlog, selection, workflow

ctx = workflow.setup(globals())  # the shared parameters' defaults, the run's training set
df = ctx.df
label = workflow.target_label(target, horizon)
problem = models.problem_type_of(label)
feats = selection.read_selected(run_dir)
split_ns = int(np.quantile(df["ts_ns"], selection_frac))
ag = models.AutoGluonSettings(presets=presets, time_limit=time_limit, hyperparameters=hyperparameters,
                              num_cpus=num_cpus, seed=seed)
work = ctx.run_dir / "ag" if ctx.run_dir else None
assert work is not None, "notebook 04 needs a run folder (run it with `l2lab run`)"
if target == "regime":  # forward-volatility terciles with thresholds from the selection period only
    df, regime_th = workflow.with_regime_label(df, int(horizon), df["ts_ns"] + int(horizon * 1e9) < split_ns)
df = df[df[label].notna()].reset_index(drop=True)
print(f"{label} ({problem}), {len(feats)} features, {len(df):,} labelled rows")

# %% [markdown]
# ## Walk-forward with purge and embargo
# `n_splits` test blocks cut from the period after the selection period; each trains on every earlier row, purged.

# %%
t0 = df["ts_ns"].to_numpy()
folds = cv.walk_forward(t0, cv.label_end(t0, horizon), n_splits=n_splits, embargo_ns=int(embargo_s * 1e9),
                        test_from_ns=split_ns)
pd.DataFrame([{"fold": k, "train": len(f.train), "test": len(f.test), "purged": f.purged,
               "test_start": pd.Timestamp(int(t0[f.test[0]]), tz="UTC")} for k, f in enumerate(folds)])

# %%
def fit_ag(train, k):
    return models.fit_autogluon(train, feats, label, work / f"fold{k}", ag, problem, horizon)


def fit_base(train, k):
    return models.baseline(problem, seed).fit(train[feats], train[label].to_numpy())


oos = models.walk_forward_predictions(df, feats, label, folds, fit_ag, lambda m, te: models.predict_score(m, te, feats))
oos_base = models.walk_forward_predictions(df, feats, label, folds, fit_base,
                                           lambda m, te: models.baseline_score(m, te[feats], problem))


def score_of(p):
    if problem == "binary":
        return models.roc_auc(p["y"], p["score"])
    if problem == "multiclass":
        return integrity.macro_f1(p["y"].astype(int), p["score"].astype(int), labels=sorted(p["y"].unique()))
    return float(np.corrcoef(p["y"], p["score"])[0, 1])


metric_name = {"binary": "auc", "multiclass": "macro_f1", "regression": "corr"}[problem]
by_fold = pd.DataFrame({"autogluon": oos.groupby("fold").apply(score_of), "baseline": oos_base.groupby("fold").apply(score_of)})
by_fold.loc["all"] = [score_of(oos), score_of(oos_base)]
by_fold

# %% [markdown]
# ## Final model, leaderboard and the model artifact
# Trained on every labelled row, saved with its metadata for notebooks 05/06 and `l2lab live`.

# %%
pred_dir = model_artifact.predictor_dir(run_dir)
shutil.rmtree(pred_dir, ignore_errors=True)
final = models.fit_autogluon(df, feats, label, pred_dir, ag, problem, horizon)
leaderboard = final.leaderboard(silent=True)
model_artifact.save_meta(run_dir, model_artifact.ModelMeta(
    target=label, problem_type=problem, grid=grid, horizon_s=float(horizon), features=feats,
    feature_service=ctx.manifest.get("feature_service"), positive_class=final.positive_class if problem == "binary" else None,
    trainset={k: ctx.manifest.get(k) for k in ("source", "features", "catalog_hash", "symbols", "start_ns", "end_ns", "rows")}))
leaderboard[["model", "score_val", "fit_time", "pred_time_val"]]

# %%
preds = oos.assign(horizon_s=float(horizon))[["symbol", "ts_ns", "score", "horizon_s", "fold", "y"]]
if ctx.run_dir:
    preds.to_parquet(ctx.run_dir / "predictions.parquet", index=False)

# %% [markdown]
# ## Calibration (binary targets)

# %%
calib = {}
if problem == "binary":
    tab = models.calibration_table(oos["y"], oos["score"], n_bins=10)
    calib = models.calibration_metrics(oos["y"], oos["score"])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=0.5)
    ax.plot(tab["mean_pred"], tab["observed"], "o-")
    ax.set_xlabel("predicted P(up)")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"Brier {calib['brier']:.4f}, ECE {calib['ece']:.4f}")
    runlog.save_plot(run_dir, fig, "04_calibration")
calib

# %% [markdown]
# ## Regime-conditional models
# Baseline models fitted per trailing-volatility regime (terciles of `rv_mid_60s` on the training rows: known at
# prediction time) against the pooled baseline, on the walk-forward test rows.

# %%
regime_rows = []
if problem != "multiclass" and "rv_mid_60s" in df.columns:
    for k, f in enumerate(folds):
        tr, te = df.iloc[f.train], df.iloc[f.test]
        s, r = models.regime_conditional_predictions(tr, te, feats, label, "rv_mid_60s", problem, seed)
        pooled = oos_base[oos_base["fold"] == k]
        for reg in (0.0, 1.0, 2.0):
            m = r == reg
            if m.sum() > 20 and te[label][m].nunique() > 1:
                regime_rows.append({"fold": k, "regime": int(reg), "rows": int(m.sum()),
                                    "conditional": score_of(pd.DataFrame({"y": te[label][m].to_numpy(), "score": s[m]})),
                                    "pooled": score_of(pooled[m])})
regime_tab = pd.DataFrame(regime_rows)
regime_tab.groupby("regime")[["conditional", "pooled"]].mean() if len(regime_tab) else regime_tab

# %% [markdown]
# ## Integrity: achieved vs Bayes-optimal direction AUC per horizon
# One purged split per horizon (train before the last fold's test start, test after), the same features and
# AutoGluon settings. The oracle knows the latent state (truth.json), so achieved AUC should lie between 0.5 and it.

# %%
ih = [int(h) for h in (integrity_horizons or horizons)]
test_start = int(t0[folds[-1].test[0]]) if folds else split_ns
full = ctx.df
integ = []
for h in ih:
    lab = f"label_dir_mid_{h}s"
    d = full[full[lab].notna()].reset_index(drop=True)
    tr = d[d["ts_ns"] + int(h * 1e9) < test_start]
    te = d[d["ts_ns"] >= test_start]
    if tr[lab].nunique() < 2 or te.empty:
        continue
    m = models.fit_autogluon(tr, feats, lab, work / f"integrity_{h}s", ag, "binary", h)
    p = pd.DataFrame({"symbol": te["symbol"], "y": te[lab], "score": models.predict_score(m, te, feats)})
    if ctx.truth:  # non-overlapping horizons in the test period: below ~10 the AUC is mostly noise
        span_s = (te["ts_ns"].max() - te["ts_ns"].min()) / 1e9
        integ.append(integrity.auc_beside_oracle(p, ctx.truth, h).assign(independent_windows=span_s / h))
integ = pd.concat(integ, ignore_index=True) if integ else pd.DataFrame()
integ

# %% [markdown]
# ## Integrity: shuffled-label control
# The same model on permuted training labels (target horizon, direction), `shuffle_repeats` permutations: the
# out-of-sample AUC should be about 0.5. Its spread is wider than the row count suggests: test rows overlap in time,
# and each fit on noise is a random function of features that do carry the signal.

# %%
lab = f"label_dir_mid_{int(horizon)}s"
d = full[full[lab].notna()].reset_index(drop=True)
tr = d[d["ts_ns"] + int(horizon * 1e9) < test_start].copy()
te = d[d["ts_ns"] >= test_start]
shuffled = []
for k in range(shuffle_repeats):
    tr[lab] = integrity.shuffled_labels(d.loc[tr.index, lab].to_numpy(), seed + k)
    ctrl = models.fit_autogluon(tr, feats, lab, work / f"shuffled{k}", ag, "binary", horizon)
    shuffled.append(models.roc_auc(te[lab], models.predict_score(ctrl, te, feats)))
shuffled_auc = float(np.mean(shuffled))
print(f"shuffled-label control AUC {shuffled_auc:.4f} (permutations: {', '.join(f'{a:.4f}' for a in shuffled)}) "
      f"on {len(te):,} test rows")

# %% [markdown]
# ## Integrity: volatility regime macro-F1
# A 3-class AutoGluon model of the forward 60 s volatility regime (terciles fitted on training rows).

# %%
d, th = workflow.with_regime_label(full, 60, full["ts_ns"] + int(60e9) < test_start)
lab = "label_vol_regime_60s"
d = d[d[lab].notna()].reset_index(drop=True)
tr, te = d[d["ts_ns"] + int(60e9) < test_start], d[d["ts_ns"] >= test_start]
reg_feats = list(dict.fromkeys(feats + [f for f in ("rv_mid_60s", "rv_mid_300s", "book_event_rate_60s",
                                                      "trade_arrival_rate_60s", "spread_bps_mean_60s") if f in d.columns]))
rm = models.fit_autogluon(tr, reg_feats, lab, work / "regime", ag, "multiclass", 60)
regime_f1 = integrity.macro_f1(te[lab].astype(int), rm.predict(te[reg_feats]).astype(int))
print(f"forward-volatility regime model: macro-F1 {regime_f1:.3f} on {len(te):,} test rows (chance about 0.33)")

# %% [markdown]
# The planted regimes themselves (truth.json): per symbol, the trailing 300 s volatility per planted regime over
# the whole session, its ratio to the normal regime beside the planted volatility multipliers' ratio.

# %%
if ctx.truth:
    planted_tab = pd.concat([integrity.regime_vol_ratios(g["rv_mid_300s"], integrity.planted_regime_at(ctx.truth, g["ts_ns"]),
                                                         ctx.truth).assign(symbol=sym) for sym, g in full.groupby("symbol")],
                            ignore_index=True)
else:
    planted_tab = pd.DataFrame()
planted_tab

# %%
runlog.record(run_dir, "04_modelling", label=label, problem_type=problem, features=len(feats),
              folds=len(folds), metric=metric_name, oos_autogluon=float(by_fold.loc["all", "autogluon"]),
              oos_baseline=float(by_fold.loc["all", "baseline"]),
              oos_by_fold={str(k): float(v) for k, v in by_fold["autogluon"].items()},
              best_model=str(leaderboard["model"].iloc[0]), calibration=calib,
              regime_conditional=(regime_tab.groupby("regime")[["conditional", "pooled"]].mean().to_dict()
                                  if len(regime_tab) else {}),
              integrity_auc=integ.to_dict(orient="records"), shuffled_label_auc=shuffled_auc,
              shuffled_label_aucs=shuffled,
              vol_regime_macro_f1=float(regime_f1), planted_regime_vol=planted_tab.to_dict(orient="records"))

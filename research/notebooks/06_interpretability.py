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
# # 06 · Interpretability
# TreeSHAP on the best tree model of notebook 04's predictor (LightGBM's or CatBoost's native SHAP values; they
# add up to the model's raw output, checked below), partial dependence, SHAP by volatility regime (trailing and
# planted), and SHAP-based pruning checked out of sample.

# %% tags=["parameters"]
run_dir = ""              # set by `l2lab run`; empty: nothing is written
# The parameters notebooks share (grid, horizons, horizon, target, seed, ...) default in
# research.workflow.DEFAULTS; set one here to override it in this notebook.
shap_rows = 2000          # rows explained (the last ones of the session: the walk-forward test period)
keep_share = 0.95         # pruning keeps the fewest features carrying this share of mean |SHAP|

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from research import integrity, interpret, model_artifact, models, runlog, workflow

ctx = workflow.setup(globals())  # the shared parameters' defaults, the run's training set
meta = model_artifact.load_meta(run_dir)
predictor = model_artifact.load_predictor(run_dir)
feats, label, problem = meta.features, meta.target, meta.problem_type
df = ctx.df
if problem == "multiclass" and label.startswith("label_vol_regime"):
    split_ns = int(np.quantile(df["ts_ns"], selection_frac))  # notebook 04's thresholds: selection period, purged
    df, _ = workflow.with_regime_label(df, int(meta.horizon_s), df["ts_ns"] + int(meta.horizon_s * 1e9) < split_ns)
df = df[df[label].notna()].reset_index(drop=True)
x = df[feats].tail(shap_rows)
print(f"model {label} ({problem}) on {len(feats)} features; explaining {len(x):,} rows")

# %% [markdown]
# ## TreeSHAP

# %%
if problem == "multiclass":
    # native SHAP of a multiclass model has one block per class: use AutoGluon's permutation importance instead
    imp = predictor.feature_importance(df.tail(shap_rows)[feats + [label]], num_shuffle_sets=2, silent=True)["importance"]
    shap_vals, model_name, additivity = None, predictor.model_best, None
else:
    shap_vals, expected, model_name = interpret.tree_shap(predictor, x)
    additivity = float(np.max(np.abs(shap_vals.sum(axis=1).to_numpy() + expected
                                     - interpret.raw_margin(predictor, x, model_name))))
    imp = interpret.mean_abs_shap(shap_vals)
    print(f"{model_name}: max |sum SHAP + expected - raw output| = {additivity:.2e}")
fig, ax = plt.subplots(figsize=(6, 4))
imp.head(15)[::-1].plot.barh(ax=ax, title=f"mean |SHAP| ({model_name})" if shap_vals is not None else "permutation importance")
runlog.save_plot(run_dir, fig, "06_importance")
imp.head(15)

# %%
if shap_vals is not None:
    top = list(imp.index[:4])
    fig, axes = plt.subplots(1, len(top), figsize=(3 * len(top), 3))
    for ax, f in zip(np.atleast_1d(axes), top):
        ax.scatter(x[f], shap_vals[f], s=2, alpha=0.4)
        ax.set_title(f, fontsize=8)
    axes[0].set_ylabel("SHAP value")
    runlog.save_plot(run_dir, fig, "06_shap_dependence")

# %% [markdown]
# ## Partial dependence
# The model's mean prediction with one feature set to each of its 5%..95% quantiles (all other features as observed).

# %%
def predict(frame):
    return models.predict_score(predictor, frame, feats).astype(float)


pd_top = list(imp.index[:3])
fig, axes = plt.subplots(1, len(pd_top), figsize=(3.3 * len(pd_top), 3))
pd_tables = {}
for ax, f in zip(np.atleast_1d(axes), pd_top):
    t = interpret.partial_dependence(predict, x.tail(500), f, n_grid=12)
    pd_tables[f] = t
    ax.plot(t[f], t["partial_dependence"], "o-")
    ax.set_title(f, fontsize=8)
runlog.save_plot(run_dir, fig, "06_partial_dependence")

# %% [markdown]
# ## SHAP by regime
# Mean |SHAP| per trailing-volatility tercile (`rv_mid_60s`, thresholds from the explained rows) and per planted regime.

# %%
by_regime = pd.DataFrame()
if shap_vals is not None:
    from kernels.labels import apply_regime_thresholds, fit_regime_thresholds

    rv = df["rv_mid_60s"].tail(shap_rows).to_numpy(float)
    trailing = apply_regime_thresholds(rv, fit_regime_thresholds(rv))
    by_regime = interpret.shap_by_group(shap_vals, trailing).loc[list(imp.index[:10])]
    by_regime.columns = [f"trailing {int(c)}" for c in by_regime.columns]
    if ctx.truth:
        planted = integrity.planted_regime_at(ctx.truth, df["ts_ns"].tail(shap_rows))
        pr = interpret.shap_by_group(shap_vals, planted).loc[list(imp.index[:10])]
        pr.columns = [f"planted {ctx.truth['regimes']['names'][int(c)]}" for c in pr.columns]
        by_regime = by_regime.join(pr)
by_regime

# %% [markdown]
# ## SHAP-based pruning
# Keep the fewest features carrying `keep_share` of the importance; refit on the rows before the explained ones
# (purged by one horizon) with all and with the pruned features, and compare on the explained rows.

# %%
kept = interpret.shap_prune(imp, keep_share=keep_share)
cut = int(x.index[0])
train = df.iloc[:cut]
train = train[train["ts_ns"] + int(meta.horizon_s * 1e9) < df["ts_ns"].iloc[cut]]
test = df.iloc[cut:]
ag = models.AutoGluonSettings(presets=presets, time_limit=time_limit, hyperparameters=hyperparameters,
                              num_cpus=num_cpus, seed=seed)
work = ctx.run_dir / "ag"


def evaluate(fs, name):
    m = models.fit_autogluon(train, fs, label, work / name, ag, problem, meta.horizon_s)
    s = models.predict_score(m, test, fs)
    if problem == "binary":
        return models.roc_auc(test[label], s)
    if problem == "multiclass":
        return integrity.macro_f1(test[label].astype(int), s.astype(int))
    return float(np.corrcoef(test[label], s)[0, 1])


full_score = evaluate(feats, "prune_full")
pruned_score = evaluate(kept, "prune_kept") if len(kept) < len(feats) else full_score
print(f"{len(feats)} -> {len(kept)} features; out-of-sample {full_score:.4f} (all) vs {pruned_score:.4f} (pruned)")

# %%
runlog.record(run_dir, "06_interpretability", model=model_name, shap_additivity_max_err=additivity,
              top_features=list(imp.index[:10]), importance={k: float(v) for k, v in imp.head(10).items()},
              pruned_features=kept, score_all=full_score, score_pruned=pruned_score,
              shap_by_regime=by_regime.round(6).to_dict() if len(by_regime) else {})

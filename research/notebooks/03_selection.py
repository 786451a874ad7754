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
# # 03 · Feature selection
# On the **selection period only** (the first `selection_frac` of the time; notebook 04 evaluates after it):
# redundancy clusters, IC with Newey-West t-statistics per horizon, stability across walk-forward folds, mutual
# information. Writes `selected_features.json` for notebook 04.

# %% tags=["parameters"]
run_dir = ""              # set by `l2lab run`; empty: nothing is written
# The parameters notebooks share (grid, horizons, horizon, target, seed, ...) default in
# research.workflow.DEFAULTS; set one here to override it in this notebook.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from research import cv, runlog, selection, stats, workflow

ctx = workflow.setup(globals())  # the shared parameters' defaults, the run's training set
df = ctx.df
label = workflow.target_label(target, horizon)
# IC needs a continuous outcome: the forward return for price targets, the forward volatility for the regime
outcome = f"fwd_rv_{int(horizon)}s" if target == "regime" else f"fwd_ret_mid_{int(horizon)}s"
split_ns = int(np.quantile(df["ts_ns"], selection_frac))
sel = df[(df["ts_ns"] + int(horizon * 1e9) < split_ns) & df[outcome].notna()].reset_index(drop=True)
print(f"target {label}; selection rows {len(sel):,} (before {pd.Timestamp(split_ns, tz='UTC')}, labels purged)")

# %% [markdown]
# ## Candidates and redundancy clusters
# Distance 1 - |Spearman rho|, average linkage, cut at 0.3.

# %%
cands, dropped = selection.usable_features(sel, selection.scale_free(ctx.features))
corr = selection.spearman_matrix(sel, cands)
clusters = selection.redundancy_clusters(corr, threshold=0.3)
print(f"{len(cands)} candidates in {clusters.nunique()} clusters; dropped {len(dropped)}")
clusters.value_counts().head(10)

# %% [markdown]
# ## IC and Newey-West t-statistics per horizon
# Per-block Spearman IC (1-minute blocks per symbol), mean over blocks, Newey-West t of that mean.

# %%
block_s = 60.0
ic_h = {}
for h in sorted(int(x) for x in horizons):
    col = f"fwd_ret_mid_{h}s"
    ic_h[h] = stats.ic_table(sel, cands, col if target != "regime" else outcome, block_s=block_s).set_index("feature")
tstats = pd.DataFrame({f"t_{h}s": t["nw_t"] for h, t in ic_h.items()})
ic_target = stats.ic_table(sel, cands, outcome, block_s=block_s)
ic_target.head(15)

# %%
top = ic_target["feature"].head(15).tolist()
fig, ax = plt.subplots(figsize=(8, 4))
tstats.loc[top].plot.barh(ax=ax)
ax.axvline(2, color="k", lw=0.5)
ax.axvline(-2, color="k", lw=0.5)
ax.set_title("Newey-West t of mean IC, by horizon")
runlog.save_plot(run_dir, fig, "03_ic_tstats")

# %% [markdown]
# ## Stability across walk-forward folds and mutual information

# %%
folds = cv.walk_forward(sel["ts_ns"].to_numpy(), cv.label_end(sel["ts_ns"], horizon), n_splits=n_splits,
                        embargo_ns=int(embargo_s * 1e9))
stab = selection.fold_stability(sel, cands, outcome, folds)
mi = selection.mutual_information(sel, cands, label if target != "regime" else outcome,
                                  discrete=target in ("direction", "3class"), seed=seed)
stab.join(mi).loc[top, ["pooled_ic", "fold_ic_mean", "fold_ic_std", "sign_stability", "mi"]]

# %% [markdown]
# ## Selection
# One representative per cluster (largest |t|), |t| >= 2 and the IC's sign in at least 75% of the folds.

# %%
rules = {"min_abs_t": 2.0, "min_stability": 0.75, "max_features": 25}
chosen = selection.select_features(ic_target, clusters, stab, **rules)
if chosen.empty:  # nothing passes: keep the strongest representatives so the chain can go on, and say so
    print("no feature passes the rules; keeping the 5 cluster representatives with the largest |t|")
    chosen = selection.select_features(ic_target, clusters, stab, min_abs_t=0.0, min_stability=0.0, max_features=5)
table = chosen.join(mi)
selection.write_selected(run_dir, label, list(chosen.index), table, outcome=outcome, selection_end_ns=split_ns,
                         **rules) if run_dir else None
table

# %%
runlog.record(run_dir, "03_selection", label=label, outcome=outcome, selection_rows=len(sel),
              selection_end_ns=split_ns, candidates=len(cands), clusters=int(clusters.nunique()),
              selected=list(chosen.index), top_abs_t=float(chosen["abs_t"].max()),
              selected_t={f: float(t) for f, t in chosen["nw_t"].items()})

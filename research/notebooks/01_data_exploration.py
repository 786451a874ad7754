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
# # 01 · Data exploration
# Coverage, message rates, gaps, spread and depth distributions, intraday patterns, feature distributions and
# their correlations, on the research session's training set (built point-in-time through the feature store).

# %% tags=["parameters"]
run_dir = ""              # set by `l2lab run`; empty: nothing is written
# The parameters notebooks share (grid, horizons, horizon, target, seed, ...) default in
# research.workflow.DEFAULTS; set one here to override it in this notebook.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from research import eda, runlog, workflow
from research.selection import scale_free, spearman_matrix, usable_features

ctx = workflow.setup(globals())  # the shared parameters' defaults, the run's training set
df, sess = ctx.df, ctx.session
grid_s = pd.Timedelta(grid).total_seconds()
print(f"training set {ctx.trainset_dir}: {len(df):,} rows x {len(ctx.features)} features, "
      f"built by {ctx.manifest.get('source')}; session {sess['start']} + {sess['hours']} h, seed {sess['seed']}")

# %% [markdown]
# ## Coverage and gaps
# Rows with a usable book per symbol, and the longest run of rows without one.

# %%
cov = eda.coverage(df, grid_s)
cov

# %% [markdown]
# ## Message rates (bronze)

# %%
rates = eda.message_rates(ctx.data_root, sess["exchange"], symbols, sess["start_ns"], sess["end_ns"], bucket_s=60)
fig, ax = plt.subplots(1, 2, figsize=(11, 3))
for sym, d in rates.groupby("symbol"):
    ax[0].plot(d["time"], d["l2_per_s"], label=sym)
    ax[1].plot(d["time"], d["trades_per_s"], label=sym)
ax[0].set_title("level changes / s (1-min buckets)")
ax[1].set_title("trades / s")
ax[0].legend()
fig.autofmt_xdate()
runlog.save_plot(run_dir, fig, "01_message_rates")
rates.groupby("symbol")[["l2_per_s", "trades_per_s", "gaps"]].agg(["mean", "max"])

# %% [markdown]
# ## Spread and depth distributions

# %%
fig, ax = plt.subplots(1, 2, figsize=(11, 3))
for sym, d in df.groupby("symbol"):
    ax[0].hist(d["spread_bps"].dropna(), bins=60, alpha=0.5, label=sym)
    ax[1].hist(np.log10(d["bid_depth_25bps"].dropna() + 1e-12), bins=60, alpha=0.5, label=sym)
ax[0].set_title("spread (bps)")
ax[1].set_title("log10 bid depth within 25 bps (base units)")
ax[0].legend()
runlog.save_plot(run_dir, fig, "01_spread_depth")
df.groupby("symbol")[["spread_bps", "bid_depth_25bps", "ask_depth_25bps"]].describe().T

# %% [markdown]
# ## Intraday pattern
# Mean spread and realized volatility per 5-minute bucket of the session (the simulator's volatility regimes show up
# here as level shifts).

# %%
df["bucket"] = pd.to_datetime(df["ts_ns"] // int(300e9) * int(300e9), unit="ns", utc=True)
intraday = df.groupby(["bucket", "symbol"])[["spread_bps", "rv_mid_60s"]].mean().unstack("symbol")
fig, ax = plt.subplots(1, 2, figsize=(11, 3))
intraday["spread_bps"].plot(ax=ax[0], title="mean spread (bps)")
intraday["rv_mid_60s"].plot(ax=ax[1], title="mean 60 s realized volatility")
runlog.save_plot(run_dir, fig, "01_intraday")

# %% [markdown]
# ## Feature distributions and correlations
# Price-denominated features (levels, mid, velocities in price units) are set aside: pooled over symbols they mostly
# identify the symbol. The heat map shows Spearman correlations of the rest.

# %%
cands, dropped = usable_features(df, scale_free(ctx.features))
print(f"{len(cands)} usable scale-free features; {len(dropped)} dropped: {dict(list(dropped.items())[:8])}")
summary = df[cands].describe(percentiles=[0.01, 0.5, 0.99]).T
summary.head(20)

# %%
show = cands[:40]
corr = spearman_matrix(df, show)
fig, ax = plt.subplots(figsize=(9, 8))
im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xticks(range(len(show)), show, rotation=90, fontsize=6)
ax.set_yticks(range(len(show)), show, fontsize=6)
fig.colorbar(im)
runlog.save_plot(run_dir, fig, "01_correlation")

# %%
per_sym = rates.groupby("symbol")[["l2_per_s", "trades_per_s"]].mean()
runlog.record(run_dir, "01_data_exploration",
              rows=len(df), symbols=sorted(df["symbol"].unique()), features=len(ctx.features),
              usable_features=len(cands), trainset_source=ctx.manifest.get("source"),
              usable_share={r.symbol: r.usable_share for r in cov.itertuples()},
              longest_gap_s=float(cov["longest_gap_s"].max()),
              l2_per_s={s: float(v) for s, v in per_sym["l2_per_s"].items()},
              trades_per_s={s: float(v) for s, v in per_sym["trades_per_s"].items()},
              median_spread_bps={s: float(v) for s, v in df.groupby("symbol")["spread_bps"].median().items()})

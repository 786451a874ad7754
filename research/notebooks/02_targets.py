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
# # 02 · Targets
# Labels per horizon, class balance, the dead-zone choice, autocorrelation and the overlap structure of forward
# returns, IC decay across horizons, and cross-asset lead-lag discovery beside the planted lead-lag.

# %% tags=["parameters"]
run_dir = ""              # set by `l2lab run`; empty: nothing is written
# The parameters notebooks share (grid, horizons, horizon, target, seed, ...) default in
# research.workflow.DEFAULTS; set one here to override it in this notebook.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from research import eda, integrity, runlog, stats, workflow

ctx = workflow.setup(globals())  # the shared parameters' defaults, the run's training set
df = ctx.df
grid_s = pd.Timedelta(grid).total_seconds()
hs = sorted(int(h) for h in horizons)

# %% [markdown]
# ## Labels per horizon and class balance
# `label_dir_mid_h` is up vs not up (a zero move counts as not up, so short horizons lean to 0);
# `label_3c_mid_h` has a dead zone of half the spread.

# %%
rows = []
for h in hs:
    r = df[f"fwd_ret_mid_{h}s"]
    rows.append({"horizon_s": h, "rows": int(r.notna().sum()), "mean_bps": 1e4 * r.mean(), "std_bps": 1e4 * r.std(),
                 "zero_share": float((r == 0).mean()), "up_share": float(df[f"label_dir_mid_{h}s"].mean()),
                 **{f"3c_{c:+d}": float((df[f"label_3c_mid_{h}s"] == c).mean()) for c in (-1, 0, 1)}})
balance = pd.DataFrame(rows).set_index("horizon_s")
balance

# %% [markdown]
# ## Dead-zone choice
# Share of rows inside a fixed dead zone |r| <= d (bps) per horizon, beside the half-spread rule the labels use.

# %%
zones = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
dz = pd.DataFrame({f"{d:g} bps": [float((df[f"fwd_ret_mid_{h}s"].abs() <= d / 1e4).mean()) for h in hs]
                   for d in zones}, index=pd.Index(hs, name="horizon_s"))
dz["half spread (labels)"] = balance["3c_+0"]
dz

# %% [markdown]
# ## Autocorrelation and overlap
# On a grid of step g a label of horizon h overlaps its neighbours: consecutive forward returns share (h - g) / h
# of their window, so their autocorrelation at lag k is about 1 - k g / h. That is why walk-forward folds purge
# one horizon and t-statistics use Newey-West.

# %%
fig, ax = plt.subplots(figsize=(7, 3))
acf_rows = {}
for h in hs:
    lag_max = int(min(2 * h / grid_s, 400))
    one = df[df["symbol"] == df["symbol"].iloc[0]][f"fwd_ret_mid_{h}s"]
    acf = stats.autocorrelation(one.to_numpy(), lag_max)
    ax.plot(np.arange(lag_max + 1) * grid_s, acf, label=f"{h} s")
    acf_rows[h] = float(acf[min(int(h / grid_s), lag_max)]) if lag_max >= 1 else np.nan
ax.set_xlabel("lag (s)")
ax.set_title(f"autocorrelation of forward mid returns ({df['symbol'].iloc[0]})")
ax.legend()
runlog.save_plot(run_dir, fig, "02_label_autocorrelation")

# %% [markdown]
# ## IC decay across horizons
# Spearman IC of a few order-flow features against the forward mid return at each horizon (pooled rows).

# %%
probe = [f for f in ("imbalance_l1", "ofi_sum_1s", "ofi_sum_10s", "tf_signed_count_10s", "smart_imbalance_5bps",
                     "xa_leader_ret_1s", "xa_leader_ret_3s") if f in df.columns]
decay = pd.DataFrame({f: stats.ic_decay(df, f, {h: f"fwd_ret_mid_{h}s" for h in hs}) for f in probe})
decay.index.name = "horizon_s"
fig, ax = plt.subplots(figsize=(7, 3))
decay.plot(ax=ax, marker="o", logx=True, title="IC decay")
runlog.save_plot(run_dir, fig, "02_ic_decay")
decay

# %% [markdown]
# ## Cross-asset lead-lag
# Correlation of each follower's 100 ms mid returns with the leader's returns l steps earlier; the peak is the
# recovered lag, shown beside the planted one (truth.json) and the kernels' own estimate (`xa_leadlag_s`).

# %%
mids = eda.silver(ctx.data_root, "book_features_100ms", ["mid"], ctx.session["exchange"], None,
                  ctx.session["start_ns"], ctx.session["end_ns"])
rets = eda.log_returns(mids)
lead_rows = []
if ctx.truth and ctx.truth.get("lead_lag"):
    planted = integrity.planted_lead_lag(ctx.truth)
    xa = df.groupby("symbol")["xa_leadlag_s"].median() if "xa_leadlag_s" in df.columns else pd.Series(dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3))
    for p in planted.itertuples():
        if p.symbol not in rets.columns or p.leader not in rets.columns:
            continue
        xc = integrity.lead_lag_xcorr(rets[p.leader].to_numpy(), rets[p.symbol].to_numpy(), max_lag=50)
        ax.plot(xc.index * 0.1, xc.to_numpy(), label=f"{p.symbol} vs {p.leader}")
        lead_rows.append({"symbol": p.symbol, "leader": p.leader, "recovered_lag_s": float(xc.idxmax()) * 0.1,
                          "peak_corr": float(xc.max()), "planted_lag_s": p.planted_lag_s,
                          "kernel_leadlag_s": float(xa.get(p.symbol, np.nan))})
    ax.set_xlabel("leader lead (s)")
    ax.legend()
    runlog.save_plot(run_dir, fig, "02_lead_lag")
lead = pd.DataFrame(lead_rows)
lead

# %%
runlog.record(run_dir, "02_targets",
              up_share={str(h): float(balance.loc[h, "up_share"]) for h in hs},
              flat_share_3c={str(h): float(balance.loc[h, "3c_+0"]) for h in hs},
              label_acf_at_horizon={str(h): v for h, v in acf_rows.items()},
              ic_decay={f: {str(h): float(v) for h, v in decay[f].items()} for f in decay.columns},
              lead_lag=lead.to_dict(orient="records"))

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
# # 05 · Backtest
# The model's out-of-sample walk-forward predictions (notebook 04, `predictions.parquet`: symbol, ts_ns, score,
# horizon_s) through the backtester (`research.backtest.run_backtest`): the exact book rebuilt from bronze at
# order arrival, bronze trades, fees and latency. Before that, what the scores alone say: the forward return by
# score decile.

# %% tags=["parameters"]
run_dir = ""              # set by `l2lab run`; empty: nothing is written
# The parameters notebooks share (grid, horizons, horizon, target, seed, ...) default in
# research.workflow.DEFAULTS; set one here to override it in this notebook.
backtest_config = None    # YAML file for research.backtest (None: its defaults)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from research import runlog, workflow

ctx = workflow.setup(globals())  # the shared parameters' defaults, the run's training set
pred_path = Path(run_dir) / "predictions.parquet" if run_dir else None
if pred_path is None or not pred_path.exists():
    raise FileNotFoundError(f"{pred_path}: no out-of-sample predictions (run notebook 04 of this run first)")
preds = pd.read_parquet(pred_path)
print(f"{len(preds):,} out-of-sample predictions, {preds['symbol'].nunique()} symbols, horizon {preds['horizon_s'].iloc[0]:g} s")

# %% [markdown]
# ## Forward return by score decile (before costs)

# %%
ret_col = f"fwd_ret_mid_{int(preds['horizon_s'].iloc[0])}s"
joined = preds.merge(ctx.df[["symbol", "ts_ns", ret_col]], on=["symbol", "ts_ns"], how="left")
joined["decile"] = joined.groupby("symbol")["score"].transform(lambda s: pd.qcut(s.rank(method="first"), 10, labels=False))
deciles = joined.groupby("decile")[ret_col].agg(["mean", "count"])
deciles["mean_bps"] = 1e4 * deciles["mean"]
fig, ax = plt.subplots(figsize=(6, 3))
deciles["mean_bps"].plot.bar(ax=ax, title=f"mean forward {ret_col} (bps) by score decile")
runlog.save_plot(run_dir, fig, "05_deciles")
spread_10_1 = float(deciles["mean_bps"].iloc[-1] - deciles["mean_bps"].iloc[0])
deciles

# %% [markdown]
# ## Backtest

# %%
from research.backtest import run_backtest

result = run_backtest(preds[["symbol", "ts_ns", "score", "horizon_s"]], ctx.data_root, backtest_config)
out = Path(run_dir) / "backtest"
result.save(out)
for png in sorted(out.glob("*.png")):
    fig = plt.figure(figsize=(8, 3))
    plt.imshow(plt.imread(png))
    plt.axis("off")
result.metrics

# %% [markdown]
# ## The same predictions, traded only when the edge pays the costs
# The run above takes every prediction with taker fees: at a few seconds' horizon the costs decide. Here an entry
# needs an expected gain of at least one round-trip cost (`gates.ev_multiple`, from the score's edge and the
# recent volatility) and rests passively at the touch (`execution.style: passive`, maker fee; unfilled orders are
# cancelled after `passive_ttl_s` and fall back to a market order). Few or no trades is a finding too: no edge
# that survives costs at this horizon.

# %%
from research.backtest.config import load_config

gated_cfg = load_config(backtest_config).replace(gates={"ev_multiple": 1.0}, execution={"style": "passive"})
gated = run_backtest(preds[["symbol", "ts_ns", "score", "horizon_s"]], ctx.data_root, gated_cfg)
gated.save(Path(run_dir) / "backtest_gated")


def _scalars(metrics):
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


comparison = pd.DataFrame({"every prediction, taker": _scalars(result.metrics),
                           "cost-gated, passive": _scalars(gated.metrics)})
comparison.reindex(["trades", "gross_pnl", "fees", "net_pnl", "hit_rate", "sharpe"])

# %%
runlog.record(run_dir, "05_backtest", predictions=len(preds), decile_spread_bps=spread_10_1,
              backtest=_scalars(result.metrics), deflated_sharpe=result.metrics.get("deflated_sharpe"),
              trades=int(len(result.trades)), gated_backtest=_scalars(gated.metrics),
              gated_trades=int(len(gated.trades)))

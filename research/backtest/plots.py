"""PNG plots of a backtest (matplotlib's object API: no pyplot state, so a notebook's backend is left alone): equity (net and gross), drawdown, cost breakdown, capacity
curve, per-trade net PnL distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _subplots(*grid, figsize, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


def save_all(result, out_dir) -> list[Path]:
    from research.backtest.run import portfolio_equity

    out = Path(out_dir)
    paths = []
    total = portfolio_equity(result.equity)
    t = (total["ts_ns"].to_numpy(np.int64) - (total["ts_ns"].iloc[0] if len(total) else 0)) / 60e9

    fig, ax = _subplots(2, 1, figsize=(9, 6), sharex=True)
    ax[0].plot(t, total["gross_equity"], label="gross (before fees)", lw=1)
    ax[0].plot(t, total["equity"], label="net (after fees)", lw=1)
    ax[0].set_ylabel("PnL (quote)")
    ax[0].legend(loc="best")
    eq = total["equity"].to_numpy(float)
    ax[1].fill_between(t, -(np.maximum.accumulate(eq) - eq) if len(eq) else [], 0, color="tab:red", alpha=0.4)
    ax[1].set_ylabel("drawdown")
    ax[1].set_xlabel("minutes")
    paths.append(_save(fig, out / "equity.png"))

    costs = result.metrics.get("costs") or {}
    fig, ax = _subplots(figsize=(7, 4))
    names = ["mid_pnl", "spread", "impact", "latency", "fees"]
    vals = [costs.get("mid_pnl", 0.0)] + [-(costs.get(k) or 0.0) for k in names[1:]]
    ax.bar(names, vals, color=["tab:blue"] + ["tab:red"] * 4)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("quote currency (costs negative)")
    ax.set_title(f"net PnL {result.metrics.get('net_pnl', 0.0):.4g}")
    paths.append(_save(fig, out / "costs.png"))

    cap = result.metrics.get("capacity") or []
    if cap:
        fig, ax = _subplots(figsize=(7, 4))
        ax.plot([c["multiplier"] for c in cap], [c["net_pnl"] for c in cap], "o-", label="net")
        ax.plot([c["multiplier"] for c in cap], [c["gross_pnl"] for c in cap], "s--", label="gross")
        ax.set_xscale("log")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("size multiplier (x the run's sizes)")
        ax.set_ylabel("PnL (taker on arrival books)")
        ax.legend()
        paths.append(_save(fig, out / "capacity.png"))

    if len(result.trades):
        fig, ax = _subplots(figsize=(7, 4))
        ax.hist(result.trades["net_pnl"].astype(float), bins=40)
        ax.set_xlabel("net PnL per trade")
        paths.append(_save(fig, out / "trades.png"))
    return paths


def _save(fig, path: Path) -> Path:
    from l2lab import atomic

    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return path

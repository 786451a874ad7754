"""Event-driven, cost-aware backtest of model predictions against the exact rebuilt L2 book.

Use
    >>> from research.backtest import run_backtest
    >>> result = run_backtest(predictions, data_root, {"fees": {"tiers": [{"taker_bps": 2.0}]}})
    >>> result.metrics["net_pnl"], result.metrics["sharpe"], result.metrics["deflated_sharpe"]["dsr"]
    >>> result.save("out/")          # metrics.json, config.json, trades.parquet, equity.parquet, *.png
    >>> sweep = walk_forward(predictions, data_root, {"gates.z_threshold": (0.0, 1.5)}, n_folds=3, n_trials=20)
    >>> sweep.trials, sweep.oos.metrics["deflated_sharpe"]   # every trial; OOS deflated by all of them
    >>> execution_timing(data_root, "BTC-USD", qty=0.5, wait_s=5.0)   # cost now vs in 5 s, evaluated

    ``predictions``: a DataFrame with ``symbol`` (str), ``ts_ns`` (int64 UTC ns at which the prediction was
    available: the strategy decides then), ``score`` (P(up) by default; a predicted log return with
    ``gates.score_kind: return``) and optionally ``horizon_s`` (the prediction's horizon; the default holding
    time). ``data_root``: the folder holding ``bronze/l2_events`` and ``bronze/trades``. ``config``: None, a dict,
    a YAML path or a :class:`BacktestConfig` (sections fees, latency, execution, gates, sizing, exits, metrics;
    see research.backtest.config). CLI: ``l2lab backtest --predictions P.parquet [--config C.yaml] --out DIR``.

Outputs
    ``metrics`` (JSON-able; NaN -> None): net_pnl, gross_pnl, fees, sharpe (+ sharpe_annualization), sortino,
    max_drawdown, periods, trades, hit_rate, hit_rate_gross, mean_trade_net, trade_t_stat, period_t_stat,
    traded_notional, turnover_per_day, deflated_sharpe {dsr, sr0, n_trials, sr_var}, costs {fees, spread, impact,
    latency, mid_pnl}, capacity [{multiplier, net_pnl, gross_pnl, fees, trades, depth_limited}], per_symbol
    {trades, net_pnl, gross_pnl, hit_rate, entries_blocked per gate, rejected_orders, void_entries, ...}, run
    {wall_s, l2_rows, trades_in_data, events_per_s, predictions}. PnL is in quote currency.
    ``trades``: one row per round trip (symbol, direction, qty, requested, entry/exit decision and fill times,
    VWAPs, decision mids, exit_reason, gross_pnl, fees, net_pnl, mid_pnl, spread, impact, latency).
    ``equity``: per symbol and prediction time: equity (net), gross_equity, position, mid, z.
    Identities: net = gross - fees; gross = mid_pnl - spread - impact - latency (per closed trade).

What it does (one module each)
    market      bronze rows streamed hour by hour; the exact book (kernels.book) at any time
    bars        what the strategy sees at each prediction time (observed book, trade range)
    gates       z-edge, EV-after-costs, rolling quantile, persistence, warmup, sigma floor; sizing
    latency     decision -> order arrival: the book an order meets is later than the one it was decided on
    fills       numba kernels: market orders walk the book; resting orders through a queue-position model
    execution   one order's execution and its cost breakdown (latency, spread, impact vs the decision mid)
    fees        maker/taker fee tiers
    engine      the event loop (bars, arrivals, resting-order ends): entries, ATR OCO armed one bar after
                entry, timed exit, cooldown, hold-to-horizon with or without overlap
    metrics     gross/net PnL, Sharpe (annualization stated), Sortino, drawdown, turnover, hit rate, deflated
                Sharpe (Bailey & Lopez de Prado 2014)
    capacity    net PnL against size on the recorded arrival books
    sweep       Optuna search evaluated walk-forward, every trial recorded, deflated Sharpe with its trial count
    timing      execution timing: predicted cost of trading now vs in k seconds, against the realized cost
    plots       PNGs
"""

import importlib

# Imported on first use: the ``l2lab`` command line imports ``research.backtest.cli`` at start, and the engine's
# scipy/numba imports took about 2 s there.
_EXPORTS = {
    "BacktestConfig": "config", "ConfigError": "config", "load_config": "config",
    "BacktestResult": "run", "run_backtest": "run",
    "SweepResult": "sweep", "walk_forward": "sweep",
    "execution_timing": "timing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value

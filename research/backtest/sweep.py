"""Parameter sweeps: Optuna (TPE, seeded) search evaluated walk-forward, every trial recorded.

Walk-forward: the predictions' time span is cut into ``n_folds + 1`` consecutive blocks of equal duration. Fold k
(1..n_folds) searches on block k-1 (``n_trials`` trials; the objective is a metric of research.backtest.run on that
block) and evaluates the best trial's parameters once on block k, which the search never saw. The out-of-sample
equity is the folds' test equity chained end to end.

The deflated Sharpe ratio of the out-of-sample result uses N = every trial run (all folds) and V = the variance
of the trials' per-period Sharpe ratios, so searching harder deflates more.

Search space: ``{"section.field": (low, high)}`` for a float range, ``(low, high, "int")`` for integers, or a list
of choices, e.g. ``{"gates.z_threshold": (0.0, 1.5), "exits.horizon_s": [5.0, 10.0, 30.0]}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l2lab import atomic
from research.backtest import metrics
from research.backtest.config import load_config
from research.backtest.run import BacktestResult, check_predictions, clean, portfolio_equity, run_backtest


@dataclass
class SweepResult:
    trials: pd.DataFrame  # every trial: fold, trial, value, params, train metrics
    folds: pd.DataFrame  # per fold: best params, train value, test metrics
    oos: BacktestResult  # out-of-sample trades / equity / metrics (deflated with every trial)

    def save(self, out_dir) -> Path:
        out = Path(out_dir)
        self.oos.save(out)
        atomic.write_parquet(out / "trials.parquet", self.trials)
        atomic.write_parquet(out / "folds.parquet", self.folds.astype({"params": str}))
        return out


def _suggest(trial, name: str, spec):
    if isinstance(spec, list):
        return trial.suggest_categorical(name, spec)
    if len(spec) == 3 and spec[2] == "int":
        return trial.suggest_int(name, int(spec[0]), int(spec[1]))
    return trial.suggest_float(name, float(spec[0]), float(spec[1]))


def _apply(cfg, params: dict):
    sections: dict = {}
    for key, value in params.items():
        sec, fld = key.split(".", 1)
        sections.setdefault(sec, {})[fld] = value
    return cfg.replace(**sections)


def _score(m: dict, objective: str) -> float:
    v = m.get(objective)
    return float(v) if v is not None and math.isfinite(v) else -1e12


def blocks(ts: np.ndarray, n: int) -> list[tuple[int, int]]:
    """``n`` consecutive [start, end) time blocks of equal duration covering ``ts``."""
    lo, hi = int(ts.min()), int(ts.max()) + 1
    edges = [lo + (hi - lo) * k // n for k in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def walk_forward(predictions: pd.DataFrame, data_root, space: dict, config=None, *, n_folds: int = 2,
                 n_trials: int = 10, objective: str = "sharpe", seed: int = 0) -> SweepResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_config(config)
    preds = check_predictions(predictions)
    spans = blocks(preds["ts_ns"].to_numpy(), n_folds + 1)
    part = [preds[(preds["ts_ns"] >= a) & (preds["ts_ns"] < b)] for a, b in spans]
    rows, fold_rows, oos = [], [], []
    for k in range(1, n_folds + 1):
        train, test = part[k - 1], part[k]

        def objective_fn(trial, train=train, k=k):
            params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
            res = run_backtest(train, data_root, _apply(base, params))
            m = res.metrics
            sr_ann = m["sharpe"]
            rows.append({"fold": k, "trial": trial.number, "value": _score(m, objective), **params,
                         "train_net_pnl": m["net_pnl"], "train_trades": m["trades"], "train_sharpe": sr_ann,
                         "train_sr_per_period": (sr_ann / math.sqrt(metrics.SECONDS_PER_YEAR / base.metrics.period_s)
                                                 if sr_ann is not None else None)})
            return _score(m, objective)

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed + k))
        study.optimize(objective_fn, n_trials=n_trials)
        best = dict(study.best_params)
        res = run_backtest(test, data_root, _apply(base, best))
        oos.append(res)
        fold_rows.append({"fold": k, "params": best, "train_value": study.best_value,
                          "train_start_ns": spans[k - 1][0], "test_start_ns": spans[k][0], "test_end_ns": spans[k][1],
                          "test_net_pnl": res.metrics["net_pnl"], "test_trades": res.metrics["trades"],
                          "test_sharpe": res.metrics["sharpe"]})
    trials = pd.DataFrame(rows)
    sr = trials["train_sr_per_period"].dropna().to_numpy(float) if len(trials) else np.empty(0)
    sr_var = float(np.var(sr, ddof=1)) if len(sr) > 1 else None
    return SweepResult(trials, pd.DataFrame(fold_rows), _chain(oos, base, len(trials), sr_var))


def _chain(results: list[BacktestResult], cfg, n_trials: int, sr_var) -> BacktestResult:
    """Test folds end to end: each fold's equity starts where the previous fold's ended."""
    equity, trades, offset, goffset = [], [], {}, {}
    for r in results:
        e = r.equity.copy()
        if len(e):
            e["equity"] += e["symbol"].map(offset).fillna(0.0)
            e["gross_equity"] += e["symbol"].map(goffset).fillna(0.0)
            last = e.sort_values("ts_ns").groupby("symbol").last()
            offset.update(last["equity"].to_dict())
            goffset.update(last["gross_equity"].to_dict())
        equity.append(e)
        trades.append(r.trades)
    eq = pd.concat(equity, ignore_index=True)
    tr = pd.concat([t for t in trades if len(t)], ignore_index=True) if any(len(t) for t in trades) else trades[0]
    total = portfolio_equity(eq)
    m = metrics.summarize(total["ts_ns"].to_numpy(np.int64), total["equity"].to_numpy(float),
                          total["gross_equity"].to_numpy(float), tr, cfg.metrics.period_s, n_trials, sr_var)
    m["folds"] = len(results)
    m["n_trials"] = n_trials
    return BacktestResult(clean(m), tr, eq, cfg.to_dict())

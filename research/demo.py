"""The research part of ``make demo``: the research session, the 01-06 chain through the runner, and the
headline figures beside the planted truth."""

from __future__ import annotations

import time
from pathlib import Path

# LightGBM and CatBoost with bounded rounds and no time limit. On 2 shared cores medium_quality's own set (three
# LightGBM variants, CatBoost, XGBoost) spent its whole 30 s budget per fit, and the chain fits 14 models; with a
# time limit AutoGluon's LightGBM took 7.9 s where the same 300 rounds took 1.1 s without one (and a budget makes
# the result depend on the machine's load, so runs would not reproduce).
DEMO_PARAMS = {"horizons": [1, 5, 30, 60, 300], "horizon": 5, "target": "direction", "presets": "medium_quality",
               "time_limit": None, "hyperparameters": {"GBM": {"num_boost_round": 300}, "CAT": {"iterations": 300}},
               "num_cpus": 2, "seed": 7}


def demo_step(settings, **kwargs) -> list[str]:
    """Make (or reuse) the research session, run notebooks 01-06 once, return summary lines."""
    return demo_run(settings, **kwargs)[0]


def demo_run(settings, *, hours: float = 2.0, seed: int = 7, runs_root=None, params: dict | None = None,
             timeout: float | None = 900, progress=None, session: dict | None = None) -> tuple[list[str], Path]:
    """:func:`demo_step`, also returning the run folder (``l2lab demo`` scores live with its model). ``session``:
    the record of a research session already made (``make_research_session``'s return), else it is made here."""
    from research.runner import CHAIN, run_grid
    from research.runlog import read_metrics
    from research.sessions import make_research_session

    t0 = time.perf_counter()
    sess = session or make_research_session(settings.data_root, hours=hours, seed=seed)
    t_sess = time.perf_counter() - t0
    p = {**DEMO_PARAMS, "seed": seed, **(params or {})}
    [res] = run_grid([p], CHAIN, runs_root=runs_root, data_root=settings.data_root, prefix="demo", timeout=timeout,
                     progress=progress)
    run_dir = Path(res["run_dir"])
    m = read_metrics(run_dir)
    made = "" if session else f" made in {t_sess:.0f} s;"
    lines = [f"research session: {sess['hours']:g} simulated hours from {sess['start']} (seed {sess['seed']}, "
             f"exchange={sess['exchange']});{made} notebooks 01-06 in {time.perf_counter() - t0 - t_sess:.0f} s",
             f"report: {run_dir / 'index.html'}  (all runs: {run_dir.parent / 'index.html'})",
             "notebooks: " + ", ".join(f"{k} {v}" for k, v in res["notebooks"].items())]
    lines += headline_lines(m)
    return lines, run_dir


def _num(v, digits: int = 3) -> str:
    """A metric for a summary line; metrics.json stores NaN (e.g. AUC of a one-class test set) as null."""
    return "n/a" if v is None else f"{v:.{digits}f}"


def headline_lines(m: dict) -> list[str]:
    """The integrity figures of one run's metrics.json, as printable lines."""
    lines = []
    mod = m.get("04_modelling", {})
    if mod:
        lines.append(f"{mod['label']}: out-of-sample {mod['metric']} {_num(mod['oos_autogluon'])} (AutoGluon, "
                     f"{mod['folds']} purged walk-forward folds) vs {_num(mod['oos_baseline'])} (linear baseline)")
        by_h: dict = {}
        for r in mod.get("integrity_auc", []):
            by_h.setdefault(r["horizon_s"], []).append(r)
        for h, rows in sorted(by_h.items()):
            windows = rows[0].get("independent_windows")
            noisy = f" [noise: {windows:.1f} non-overlapping horizons in the test period]" if windows and windows < 10 else ""
            lines.append(f"direction AUC at {h:g} s, achieved (oracle): " + ", ".join(
                f"{r['symbol']} {_num(r['achieved_auc'])} ({_num(r['oracle_auc'])})" for r in rows) + noisy)
        perms = ", ".join(_num(a) for a in mod.get("shuffled_label_aucs", []))
        lines.append(f"shuffled-label control AUC {_num(mod['shuffled_label_auc'])} (should be about 0.5; "
                     f"permutations {perms})")
        lines.append(f"volatility regime: forward-regime model macro-F1 {_num(mod['vol_regime_macro_f1'])} (chance 0.33)")
        by_regime: dict = {}
        for r in mod.get("planted_regime_vol", []):
            by_regime.setdefault(r["regime"], []).append(r)
        for name, rows in by_regime.items():
            if rows[0]["planted_ratio"] != 1.0:
                lines.append(f"planted regime {name} (planted volatility {rows[0]['planted_ratio']:.2f}x normal): "
                             f"recovered trailing 300 s volatility ratio " +
                             ", ".join(f"{r['symbol']} {_num(r['ratio_to_normal'], 2)}x" for r in rows))
    for r in m.get("02_targets", {}).get("lead_lag", []):
        lines.append(f"lead-lag: {r['symbol']} follows {r['leader']} by {r['recovered_lag_s']:g} s "
                     f"(planted {r['planted_lag_s']:g} s; kernel estimate {r['kernel_leadlag_s']:g} s)")
    bt = m.get("05_backtest", {})
    if bt.get("backtest"):
        b = bt["backtest"]
        shown = [f"{k} {b[k]:.4g}" for k in ("net_pnl", "gross_pnl", "fees", "sharpe", "hit_rate", "max_drawdown")
                 if isinstance(b.get(k), (int, float))]
        dsr = (bt.get("deflated_sharpe") or {}).get("dsr")
        lines.append(f"backtest of the out-of-sample predictions: {bt.get('trades')} trades, " + ", ".join(shown)
                     + (f", deflated Sharpe probability {dsr:.3f}" if isinstance(dsr, (int, float)) else ""))
        g = bt.get("gated_backtest") or {}
        if g:
            shown = [f"{k} {g[k]:.4g}" for k in ("net_pnl", "gross_pnl", "fees", "hit_rate")
                     if isinstance(g.get(k), (int, float))]
            lines.append(f"backtest gated by cost (expected gain >= round-trip cost, passive orders): "
                         f"{bt.get('gated_trades')} trades, " + ", ".join(shown))
    sh = m.get("06_interpretability", {})
    if sh:
        lines.append(f"SHAP ({sh.get('model')}): top features {', '.join(sh.get('top_features', [])[:5])}; "
                     f"pruned to {len(sh.get('pruned_features', []))} features: {_num(sh.get('score_pruned'))} "
                     f"vs {_num(sh.get('score_all'))} with all")
    return lines


"""Walk-forward Optuna sweep (every trial recorded, deflated with the trial count), the execution-timing model,
and the ``l2lab backtest`` command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtest_scenario import SYMBOL as HAND_SYMBOL, T0, S, steady
from l2lab.cli import main as cli_main
from research.backtest import run_backtest
from research.backtest.market import SymbolTape
from research.backtest.sweep import walk_forward
from research.backtest.timing import execution_timing, liquidity_costs
from simulator.config import load_config as sim_config
from simulator.l2 import MarketSimulator
from simulator.normalized import write_bronze

pytestmark = pytest.mark.timeout(300)
START = 1_767_574_680_000_000_000


@pytest.fixture(scope="module")
def sim_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    sim = MarketSimulator(sim_config(symbols=["BTC-USD"]), seed=11, start_ns=START)
    write_bronze(sim, 300.0, root, exchange="sim")
    lat = sim.latent_path()
    t = lat["t_ns"]
    grid = np.arange(t[0] + 1_000_000_000, t[-1], 1_000_000_000)
    s = lat["signal__BTC-USD"][np.searchsorted(t, grid, side="right") - 1]
    return root, pd.DataFrame({"symbol": "BTC-USD", "ts_ns": grid, "score": 0.5 + 0.5 * np.tanh(s)})


def test_walk_forward_records_every_trial_and_deflates_with_their_count(sim_session, tmp_path):
    root, preds = sim_session
    space = {"gates.z_threshold": (0.0, 1.0), "exits.horizon_s": [5.0, 10.0]}
    base = {"exchange": "sim", "fees": {"tiers": [{"taker_bps": 0.5}]}, "gates": {"warmup_bars": 20},
            "exits": {"mode": "horizon"}, "metrics": {"capacity_multipliers": [1.0]}}
    res = walk_forward(preds, root, space, base, n_folds=2, n_trials=3, seed=1)
    assert len(res.trials) == 6 and sorted(res.trials["fold"].unique()) == [1, 2]
    assert {"trial", "value", "gates.z_threshold", "exits.horizon_s", "train_net_pnl"} <= set(res.trials.columns)
    assert res.trials["gates.z_threshold"].between(0, 1).all()
    assert len(res.folds) == 2
    for _, f in res.folds.iterrows():  # the best trial of the fold is the one reported, evaluated after its block
        best = res.trials[res.trials["fold"] == f["fold"]]["value"].max()
        assert f["train_value"] == pytest.approx(best)
        assert f["test_start_ns"] > f["train_start_ns"]
    dsr = res.oos.metrics["deflated_sharpe"]
    assert dsr["n_trials"] == 6 and res.oos.metrics["n_trials"] == 6
    # out-of-sample trades are all inside the test blocks
    first_test = res.folds["test_start_ns"].min()
    assert (res.oos.trades["entry_decision_ns"] >= first_test).all()
    # the same OOS curve with a single trial is deflated less
    from research.backtest import metrics as M
    from research.backtest.run import portfolio_equity
    assert dsr["sr0"] > 0 or dsr["dsr"] is None
    total = portfolio_equity(res.oos.equity)
    x = M.period_pnl(total["ts_ns"].to_numpy(), total["equity"].to_numpy(), 60.0)
    sr, moments = M.sharpe(x, 1.0), M.moments(x)  # per-period Sharpe of the chained OOS curve
    assert dsr["dsr"] == pytest.approx(M.deflated_sharpe(sr, len(x), *moments, 6, dsr["sr_var"])["dsr"])
    assert M.deflated_sharpe(sr, len(x), *moments, 1)["dsr"] > dsr["dsr"]
    out = res.save(tmp_path / "sweep")
    assert pd.read_parquet(out / "trials.parquet").shape[0] == 6 and (out / "metrics.json").exists()
    assert M.deflated_sharpe(0.1, 100, 0, 3, 1)["sr0"] == 0.0


def test_liquidity_cost_by_hand(tmp_path):
    # mid 100.00, bid 99.99 / ask 100.01 with 5 at each of 3 levels (0.01 apart)
    hm = steady(3, [100.0] * 3, half_spread=0.01, size=5.0, levels=3)
    root = hm.write(tmp_path / "data", end_t=T0 + 10 * S)
    tape = SymbolTape(root, "test", HAND_SYMBOL, 20)
    df = liquidity_costs(tape, np.array([T0 + S, T0 + 2 * S]), 7.0)
    # buy 7: 5 @ 100.01 + 2 @ 100.02; sell 7: 5 @ 99.99 + 2 @ 99.98 -> half the round trip in bps of 100
    want = ((5 * 100.01 + 2 * 100.02) / 7 - (5 * 99.99 + 2 * 99.98) / 7) / 2 / 100.0 * 1e4
    np.testing.assert_allclose(df["cost_bps"], [want, want])
    np.testing.assert_allclose(df["spread_bps"], [2.0, 2.0])
    assert np.isnan(liquidity_costs(SymbolTape(root, "test", HAND_SYMBOL, 20), np.array([T0 + S]), 16.0)["cost_bps"][0])


def test_execution_timing_model_is_evaluated_out_of_sample(sim_session):
    root, _ = sim_session
    r = execution_timing(root, "BTC-USD", 0.05, wait_s=5.0, step_s=1.0)
    assert r["samples_test"] > 100 and r["samples_fit"] > 100
    for key in ("mae_model_bps", "mae_no_change_bps", "policy_saving_bps", "oracle_saving_bps", "drift_sd_bps"):
        assert np.isfinite(r[key]), key
    assert r["policy_saving_bps"] <= r["oracle_saving_bps"] + 1e-12  # never better than hindsight
    with pytest.raises(ValueError, match="multiple of step_s"):
        execution_timing(root, "BTC-USD", 0.05, wait_s=2.5, step_s=1.0)


def test_cli_backtest_writes_outputs_and_reports_bad_input(sim_session, tmp_path, capsys):
    root, preds = sim_session
    pf = tmp_path / "preds.parquet"
    preds.to_parquet(pf)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("exchange: sim\nexits:\n  mode: horizon\n  horizon_s: 10\nmetrics:\n  capacity_multipliers: [1]\n")
    out = tmp_path / "out"
    rc = cli_main(["--data-root", str(root), "backtest", "--predictions", str(pf), "--config", str(cfg),
                   "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["trades"] == len(pd.read_parquet(out / "trades.parquet")) > 0
    assert m["net_pnl"] == pytest.approx(run_backtest(preds, root, cfg).metrics["net_pnl"])
    assert "sharpe" in capsys.readouterr().out
    preds.drop(columns="score").to_parquet(pf)
    assert cli_main(["--data-root", str(root), "backtest", "--predictions", str(pf), "--out", str(out)]) == 2
    assert "missing column(s) score" in capsys.readouterr().err
    cfg.write_text("exits:\n  mode: sideways\n")
    preds.to_parquet(pf)
    assert cli_main(["--data-root", str(root), "backtest", "--predictions", str(pf), "--config", str(cfg),
                     "--out", str(out)]) == 2
    assert "c.yaml.exits.mode" in capsys.readouterr().err


def test_prediction_errors_name_the_column_and_row(sim_session):
    root, preds = sim_session
    bad = preds.copy()
    bad.loc[5, "score"] = np.nan
    with pytest.raises(ValueError, match=r"predictions.score: 1 non-finite value\(s\), first at row 5"):
        run_backtest(bad, root, {"exchange": "sim"})
    with pytest.raises(ValueError, match="duplicate"):
        run_backtest(pd.concat([preds.iloc[:3], preds.iloc[:1]]), root, {"exchange": "sim"})
    with pytest.raises(ValueError, match="expected int64 UTC nanoseconds, got datetimes"):
        run_backtest(preds.assign(ts_ns=pd.to_datetime(preds["ts_ns"], utc=True)), root, {"exchange": "sim"})
    with pytest.raises(FileNotFoundError, match="no bronze l2_events"):
        run_backtest(preds.assign(symbol="XRP-USD"), root, {"exchange": "sim"})


def test_exchange_is_found_by_the_predictions_hour(tmp_path):
    from research.backtest.market import find_exchange

    for ex, day in (("coinbase", "2026-01-05"), ("sim", "2026-01-06")):
        (tmp_path / "bronze" / "l2_events" / f"exchange={ex}" / "symbol=BTC-USD" / f"date={day}" / "hour=03").mkdir(
            parents=True)
    t = int(np.datetime64("2026-01-06T03:20:00", "ns").astype(np.int64))
    assert find_exchange(tmp_path, "BTC-USD", None, t) == "sim"
    assert find_exchange(tmp_path, "BTC-USD", "coinbase", t) == "coinbase"
    with pytest.raises(FileNotFoundError, match="set config exchange"):
        find_exchange(tmp_path, "BTC-USD", None, t + 3600 * 10**9)

"""On a simulated session with planted alpha: predictions from the planted truth earn after low costs, a
random-direction control earns about zero minus costs, taker fees at short horizons eat the edge, and overlapping
hold-to-horizon trades inflate the naive per-trade t-statistic.

The fast tests use the simulator's latent order-flow signal (the planted truth) as the model; the slow test fits a
logistic model on silver OFI / imbalance features built by kernels.pipeline.build_all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from research.backtest import run_backtest
from simulator.config import load_config as sim_config
from simulator.l2 import MarketSimulator
from simulator.normalized import write_bronze

pytestmark = pytest.mark.timeout(300)

START = 1_767_574_680_000_000_000
SYMBOL = "BTC-USD"
BASE = {"exchange": "sim", "fees": {"tiers": [{"taker_bps": 0.0}]}, "gates": {"z_threshold": 0.5, "warmup_bars": 30},
        "exits": {"mode": "horizon", "horizon_s": 10.0}, "metrics": {"capacity_multipliers": [1.0, 16.0]}}


def cfg(**over):
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for k, v in over.items():
        out[k] = {**out.get(k, {}), **v}
    return out


def session(root, seconds: float):
    sim = MarketSimulator(sim_config(symbols=[SYMBOL]), seed=7, start_ns=START)
    write_bronze(sim, seconds, root, exchange="sim")
    return sim.latent_path()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    lat = session(root, 600.0)
    t = lat["t_ns"]
    grid = np.arange(t[0] + 1_000_000_000, t[-1], 1_000_000_000)
    s = lat[f"signal__{SYMBOL}"][np.searchsorted(t, grid, side="right") - 1]
    preds = pd.DataFrame({"symbol": SYMBOL, "ts_ns": grid, "score": 0.5 + 0.5 * np.tanh(s)})
    return root, preds


def random_direction(preds, seed):
    """The same scores with their direction replaced by a coin flip: no information about the future."""
    flip = np.random.default_rng(seed).choice([-1.0, 1.0], len(preds))
    out = preds.copy()
    out["score"] = 0.5 + flip * (preds["score"] - 0.5)
    return out


def test_planted_signal_earns_and_random_control_earns_zero_minus_costs(planted):
    root, preds = planted
    m = run_backtest(preds, root, cfg()).metrics
    assert m["trades"] >= 20
    assert m["net_pnl"] > 0 and m["trade_t_stat"] > 2.5
    assert m["costs"]["mid_pnl"] > m["costs"]["spread"] + m["costs"]["impact"] + m["costs"]["latency"] > 0
    controls = [run_backtest(random_direction(preds, k), root, cfg()).metrics for k in range(4)]
    for c in controls:
        assert abs(c["trade_t_stat"]) < 3.0  # the frictionless edge is zero within noise ...
        assert c["net_pnl"] < m["net_pnl"] / 2
    mid = np.array([c["costs"]["mid_pnl"] for c in controls])
    costs = np.array([c["costs"]["spread"] + c["costs"]["impact"] + c["costs"]["latency"] for c in controls])
    net = np.array([c["net_pnl"] for c in controls])
    np.testing.assert_allclose(net, mid - costs, rtol=1e-9, atol=1e-9)  # ... so what is left is minus costs
    assert abs(mid.mean()) < m["costs"]["mid_pnl"] / 3
    assert net.mean() < m["net_pnl"] / 3


def test_taker_fees_eat_a_short_horizon_edge(planted):
    root, preds = planted
    m = run_backtest(preds, root, cfg(fees={"tiers": [{"taker_bps": 5.0}]})).metrics
    assert m["gross_pnl"] > 0 > m["net_pnl"]


def test_overlapping_trades_inflate_the_trade_t_stat(planted):
    root, preds = planted
    non = run_backtest(preds, root, cfg()).metrics
    over = run_backtest(preds, root, cfg(exits={"overlap": True})).metrics
    assert over["trades"] > 4 * non["trades"]
    # ~10 overlapping lots share each 10 s return: the naive t grows with the trade count ...
    assert over["trade_t_stat"] > 2 * non["trade_t_stat"]
    # ... while the per-period PnL, which counts each minute once, is no more significant
    assert over["period_t_stat"] < 1.5 * non["period_t_stat"]


FEATURES = ["imbalance_l1", "imbalance_top5", "ofi_sum_1s", "ofi_sum_10s", "ofi_ewm_10s", "tf_imbalance_10s"]
LABEL = "label_dir_mid_5s"


@pytest.mark.slow
def test_fitted_model_on_silver_features_earns_out_of_sample(tmp_path):
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression

    from kernels.pipeline import build_all

    session(tmp_path, 1800.0)
    build_all(tmp_path, exchange="sim", grids_ms=(1000,), symbols=[SYMBOL])
    feats = pq.read_table(tmp_path / "silver" / "book_features_1s", columns=["ts_ns", "valid", *FEATURES]).to_pandas()
    labels = pq.read_table(tmp_path / "silver" / "labels_1s", columns=["ts_ns", LABEL]).to_pandas()
    df = feats.merge(labels, on="ts_ns").dropna()
    df = df[df["valid"]].sort_values("ts_ns")
    half = len(df) // 2
    x, y = df[FEATURES].to_numpy(float), df[LABEL].to_numpy() > 0
    test_ts = df["ts_ns"].to_numpy(np.int64)[half:]
    results = {}
    for name, labels_fit in (("model", y[:half]), ("shuffled", np.random.default_rng(0).permutation(y[:half]))):
        model = LogisticRegression(max_iter=1000).fit(x[:half], labels_fit)
        # the label counts flat moves as "down": P(up) = 0.5 is not "no view"; centre on the training mean
        center = float(model.predict_proba(x[:half])[:, 1].mean())
        preds = pd.DataFrame({"symbol": SYMBOL, "ts_ns": test_ts, "score": model.predict_proba(x[half:])[:, 1]})
        config = cfg(gates={"z_threshold": 0.1, "score_center": center}, exits={"horizon_s": 5.0})
        results[name] = run_backtest(preds, tmp_path, config).metrics
    m, c = results["model"], results["shuffled"]
    assert m["trades"] >= 30 and m["net_pnl"] > 0 and m["trade_t_stat"] > 1.5
    assert c["net_pnl"] < m["net_pnl"] / 2


@pytest.mark.parametrize("style", ["market", "passive"])
def test_cost_identities_hold_on_every_trade(planted, style):
    root, preds = planted
    res = run_backtest(preds, root, cfg(execution={"style": style}, fees={"tiers": [{"maker_bps": -0.5,
                                                                                   "taker_bps": 2.0}]}))
    t = res.trades
    assert len(t) >= 20
    np.testing.assert_allclose(t["net_pnl"], t["gross_pnl"] - t["fees"], atol=1e-9)
    np.testing.assert_allclose(t["gross_pnl"], t["mid_pnl"] - t["spread"] - t["impact"] - t["latency"], atol=1e-8)
    assert (t["qty"] <= t["requested"] + 1e-12).all()
    assert res.metrics["net_pnl"] == pytest.approx(t["net_pnl"].sum())
    if style == "passive":
        assert t["entry_maker"].any() and (t.loc[t["entry_maker"], "spread"] < 0).mean() > 0.5

"""The demo's chain at full size (2 simulated hours, the demo's parameters): the integrity figures against the
planted truth. Slow (several minutes on 2 cores): ``pytest -m slow tests/research/test_full_chain.py``."""

import json

import pytest

from l2lab.settings import Settings


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_chain_recovers_the_planted_truth(tmp_path):
    from research.demo import demo_step

    lines = demo_step(Settings.load(tmp_path / "data"), runs_root=tmp_path / "runs")
    [run_dir] = [p.parent for p in (tmp_path / "runs").glob("*/status.json")]
    m = json.loads((run_dir / "metrics.json").read_text())
    mod = m["04_modelling"]
    assert mod["folds"] == 4 and mod["oos_autogluon"] > 0.6  # the planted order-flow signal is found
    assert abs(mod["shuffled_label_auc"] - 0.5) < 0.05  # overlapping labels: far fewer independent rows than ~3k
    for r in mod["integrity_auc"]:  # nothing beats the Bayes-optimal oracle (beyond its Monte Carlo noise)
        if r["independent_windows"] < 10:
            continue  # e.g. 300 s horizons in an 18-minute test period: a handful of independent outcomes
        assert r["achieved_auc"] < r["oracle_auc"] + 3 * r["oracle_se"] + 0.02, r
    five = [r for r in mod["integrity_auc"] if r["horizon_s"] == 5]
    assert all(r["achieved_auc"] > 0.6 for r in five)
    lead = {r["symbol"]: r["recovered_lag_s"] for r in m["02_targets"]["lead_lag"]}
    assert lead == {"ETH-USD": 1.0, "SOL-USD": 2.5}
    for r in mod["planted_regime_vol"]:
        assert r["ratio_to_normal"] == pytest.approx(r["planted_ratio"], rel=0.25), r
    assert mod["vol_regime_macro_f1"] > 0.4
    assert any("report:" in line for line in lines)

"""The 01-06 chain under papermill on tiny data (real Jupyter kernels, real AutoGluon, real DuckDB), resume,
determinism, grids in parallel processes, failures kept with their partial output."""

import json
import os
import shutil
import textwrap

import duckdb
import pandas as pd
import pytest

from l2lab.settings import Settings
from research import model_artifact, runner
from tests.research.conftest import TINY_HOURS

TINY = {"horizons": [1, 5, 30], "horizon": 5, "target": "direction", "n_splits": 4, "selection_frac": 0.4,
        "hyperparameters": {"GBM": {"num_boost_round": 30}}, "time_limit": None, "num_cpus": 1, "seed": 7,
        "shap_rows": 300, "integrity_horizons": [5, 30], "shuffle_repeats": 2}


@pytest.fixture(scope="module")
def chain(tiny_root, tmp_path_factory):
    """The demo step on the tiny session: every notebook once, through the runner."""
    from research.demo import demo_step

    runs = tmp_path_factory.mktemp("runs")
    lines = demo_step(Settings.load(tiny_root), hours=TINY_HOURS, runs_root=runs, params=TINY, timeout=300)
    [run_dir] = [p.parent for p in runs.glob("*/status.json")]
    return runs, run_dir, lines


@pytest.mark.timeout(400)
def test_chain_runs_every_notebook_and_reports(chain, tiny_root):
    runs, run_dir, lines = chain
    status = json.loads((run_dir / "status.json").read_text())
    nbs = status["notebooks"]
    assert list(nbs) == list(runner.CHAIN)
    for name, st in nbs.items():
        assert (run_dir / f"{name}.ipynb").exists() and (run_dir / f"{name}.html").exists()
        assert st["status"] == "ok", (name, st.get("error"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("01_data_exploration", "02_targets", "03_selection", "04_modelling", "06_interpretability"):
        assert name in metrics
    assert metrics["01_data_exploration"]["trainset_source"] == "feast"
    # integrity: planted lead-lag recovered exactly on the 100 ms grid; shuffled labels near chance
    lead = {r["symbol"]: r for r in metrics["02_targets"]["lead_lag"]}
    assert lead["ETH-USD"]["recovered_lag_s"] == 1.0 and lead["SOL-USD"]["recovered_lag_s"] == 2.5
    mod = metrics["04_modelling"]
    assert 0.4 < mod["shuffled_label_auc"] < 0.6
    assert {r["horizon_s"] for r in mod["integrity_auc"]} == {5, 30}
    for r in mod["integrity_auc"]:
        assert 0.5 < r["oracle_auc"] < 1 and (r["achieved_auc"] is None or 0 <= r["achieved_auc"] <= 1)
    assert 0 <= mod["vol_regime_macro_f1"] <= 1
    assert metrics["06_interpretability"]["shap_additivity_max_err"] < 1e-6
    bt = metrics["05_backtest"]  # every prediction with taker fees, and the cost-gated passive variant
    assert bt["trades"] > 0 and bt["gated_trades"] >= 0 and isinstance(bt["gated_backtest"]["net_pnl"], float)
    # artifacts for notebooks 05/06 and `l2lab live`
    meta = model_artifact.load_meta(run_dir)
    assert meta.target == "label_dir_mid_5s" and meta.features == json.loads(
        (run_dir / "selected_features.json").read_text())["features"]
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    assert {"symbol", "ts_ns", "score", "horizon_s"} <= set(preds.columns) and preds["score"].between(0, 1).all()
    assert (run_dir / "index.html").exists() and run_dir.name in (runs / "index.html").read_text()
    assert sorted(p.name for p in (run_dir / "plots").glob("*.png"))[:2] == ["01_correlation.png", "01_intraday.png"]
    # the warehouse's runs table
    con = duckdb.connect(str(tiny_root / "warehouse.duckdb"), read_only=True)
    row = con.execute("SELECT status, params->>'$.horizon', metrics->>'$.\"04_modelling\".label' FROM runs "
                      "WHERE run_id = ?", [run_dir.name]).fetchone()
    con.close()
    assert row[1] == "5" and row[2] == "label_dir_mid_5s"
    assert any("lead-lag: ETH-USD follows BTC-USD by 1 s (planted 1 s" in line for line in lines)
    assert any("shuffled-label control" in line for line in lines)


@pytest.mark.timeout(200)
def test_resume_skips_completed_and_modelling_is_deterministic(chain, tiny_root, tmp_path):
    runs, run_dir, _ = chain
    before = json.loads((run_dir / "status.json").read_text())
    mtime = (run_dir / "04_modelling.ipynb").stat().st_mtime_ns
    params = json.loads((run_dir / "params.json").read_text())
    again = runner.run_one(run_dir, ["01", "02", "03", "04", "06"], params)
    assert (run_dir / "04_modelling.ipynb").stat().st_mtime_ns == mtime  # skipped
    for name in ("01_data_exploration", "04_modelling"):
        assert again["notebooks"][name] == before["notebooks"][name]
    # a notebook whose source changed since it ran runs again, and so does every later one
    st = json.loads((run_dir / "status.json").read_text())
    st["notebooks"]["03_selection"]["source_hash"] = "changed"
    (run_dir / "status.json").write_text(json.dumps(st))
    mtime02 = (run_dir / "02_targets.ipynb").stat().st_mtime_ns
    again = runner.run_one(run_dir, ["01", "02", "03", "04"], params)
    assert all(again["notebooks"][n]["status"] == "ok" for n in ("03_selection", "04_modelling"))
    assert (run_dir / "02_targets.ipynb").stat().st_mtime_ns == mtime02  # skipped
    assert (run_dir / "04_modelling.ipynb").stat().st_mtime_ns > mtime  # ran again after 03
    assert again["notebooks"]["03_selection"]["source_hash"] == runner.source_hash(runner.notebook_path("03"))
    # rebuilt features (new silver files, even with the same values) run the chain again, training set included
    mtime01 = (run_dir / "01_data_exploration.ipynb").stat().st_mtime_ns
    trainset = run_dir / "trainset" / "trainset.parquet"
    built = trainset.stat().st_mtime_ns
    part = next((tiny_root / "silver").rglob("*.parquet"))
    os.utime(part, ns=(part.stat().st_atime_ns, part.stat().st_mtime_ns + 1))
    again = runner.run_one(run_dir, ["01"], params)
    assert again["notebooks"]["01_data_exploration"]["status"] == "ok"
    assert (run_dir / "01_data_exploration.ipynb").stat().st_mtime_ns > mtime01
    assert trainset.stat().st_mtime_ns > built
    assert again["notebooks"]["01_data_exploration"]["inputs_hash"] == runner._inputs(params)
    mtime01 = (run_dir / "01_data_exploration.ipynb").stat().st_mtime_ns
    runner.run_one(run_dir, ["01"], params)
    assert (run_dir / "01_data_exploration.ipynb").stat().st_mtime_ns == mtime01  # unchanged inputs: skipped
    # same parameters in another folder, notebook 04 executed again: the same metrics to the last bit
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("ag", "model", "04_*", "05_*", "06_*",
                                                                 "metrics.json", "status.json"))
    st = runner.run_one(copy, ["04"], params)
    assert st["notebooks"]["04_modelling"]["status"] == "ok", st["notebooks"]["04_modelling"].get("error")
    first = json.loads((run_dir / "metrics.json").read_text())["04_modelling"]
    second = json.loads((copy / "metrics.json").read_text())["04_modelling"]
    assert second == first


@pytest.mark.timeout(200)
def test_grid_in_parallel_and_a_failure_keeps_its_output(tiny_root, tmp_path):
    from l2lab.cli import main

    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: eda
        notebooks: ["01"]
        base: {horizons: [1, 5]}
        grid: {horizon: [1, 5]}
    """))
    runs = tmp_path / "runs"
    assert main(["--data-root", str(tiny_root), "run", "--grid", str(grid), "--jobs", "2",
                 "--runs-root", str(runs)]) == 0
    dirs = sorted(p.parent for p in runs.glob("eda-*/status.json"))
    assert len(dirs) == 2
    assert {json.loads((d / "params.json").read_text())["horizon"] for d in dirs} == {1, 5}
    con = duckdb.connect(str(tiny_root / "warehouse.duckdb"), read_only=True)
    n = con.execute("SELECT count(*) FROM runs WHERE run_id LIKE 'eda-%' AND status = 'ok'").fetchone()[0]
    con.close()
    assert n == 2

    bad = tmp_path / "99_fails.py"
    bad.write_text(textwrap.dedent("""\
        # %% tags=["parameters"]
        run_dir = ""
        # %%
        from research import runlog
        runlog.record(run_dir, "99", reached=True)
        print("before the failure")
        # %%
        raise RuntimeError("planted failure")
    """))
    assert main(["--data-root", str(tiny_root), "run", str(bad), "--runs-root", str(runs), "--name", "bad"]) == 1
    [d] = [p.parent for p in runs.glob("bad-*/status.json")]
    st = json.loads((d / "status.json").read_text())["notebooks"]["99_fails"]
    assert st["status"] == "failed" and "planted failure" in st["error"]
    executed = (d / "99_fails.ipynb").read_text()
    assert "before the failure" in executed and "planted failure" in executed
    assert json.loads((d / "metrics.json").read_text())["99"] == {"reached": True}
    assert main(["run", "07"]) == 2  # unknown notebook: a clear error, exit 2


def test_grid_expansion_and_bad_grid_files(tmp_path):
    sets = runner.expand_grid({"base": {"seed": 1, "horizon": 5}, "grid": {"horizon": [5, 30], "target": ["a", "b"]}})
    assert sets == [{"seed": 1, "horizon": h, "target": t} for h in (5, 30) for t in ("a", "b")]
    assert runner.expand_grid({"base": {"x": 1}}) == [{"x": 1}]
    bad = tmp_path / "g.yaml"
    bad.write_text("grid: {horizon: 5}\n")
    with pytest.raises(runner.RunError, match="grid.horizon must be a non-empty list"):
        runner.load_grid(bad)
    bad.write_text("grid: [1,\n")
    with pytest.raises(runner.RunError, match="line"):
        runner.load_grid(bad)
    bad.write_text("grids: {}\n")
    with pytest.raises(runner.RunError, match="unknown key"):
        runner.load_grid(bad)
    assert runner.notebook_path("04").name == "04_modelling.py"
    assert runner.run_id_for({"a": 1}) == runner.run_id_for({"a": 1}) != runner.run_id_for({"a": 2})


def test_shared_parameters_have_one_default_and_are_not_warned_about():
    import logging

    from research.workflow import DEFAULTS, setup

    for name in runner.CHAIN:  # a shared default written again in a notebook could disagree with DEFAULTS
        declared = runner.declared_params(runner.notebook_path(name))
        assert "run_dir" in declared and not declared & set(DEFAULTS), (name, declared)
    assert runner.declared_params(runner.notebook_path("06")) == {"run_dir", "shap_rows", "keep_share"}
    expected = runner._ExpectedParams({"run_dir", "horizon", "shap_rows"})

    def passes(msg):
        return expected.filter(logging.LogRecord("papermill", logging.WARNING, "", 0, msg, None, None))

    assert not passes("Passed unknown parameter: horizon") and not passes("Passed unknown parameter: shap_rows")
    assert passes("Passed unknown parameter: horizn") and passes("Input Notebook: x")
    with pytest.raises(FileNotFoundError):  # setup fills defaults before it reads the session; values set stay
        setup(ns := {"run_dir": "", "horizon": 30, "data_root": "/nonexistent-l2lab-root"})
    assert ns["horizon"] == 30 and ns["target"] == DEFAULTS["target"] and ns["horizons"] == DEFAULTS["horizons"]
    assert ns["horizons"] is not DEFAULTS["horizons"]

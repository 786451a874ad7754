"""Feast's own command line on the repository: `feast apply` parses feature_repo/repo.py, `feast materialize` and
`feast materialize-incremental` fill the online store, and the data root decides where every file goes."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest
from feast_session import START

pytestmark = pytest.mark.timeout(300)
S = 10**9


def iso(ns):
    return pd.Timestamp(ns, tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")


def check_applied(root):
    from l2lab.featurestore import definitions
    from l2lab.featurestore.store import open_store

    store = open_store(root)
    defs = definitions.build(root)
    assert {v.name for v in store.list_feature_views()} == set(defs.views)
    assert {s.name for s in store.list_feature_services()} == set(defs.services)
    assert store.get_data_source("structural_1s_source").path.startswith(str(root.resolve()))
    mid = next(f for f in store.get_feature_view("structural_1s").features if f.name == "mid")
    assert mid.tags["forward_reach"] == "0" and mid.tags["family"] == "structural" and mid.description
    for svc in store.list_feature_services():  # the tag counts the service's own features, not its views'
        assert svc.tags["features"] == str(sum(len(p.features) for p in svc.feature_view_projections)), svc.name
    return store


def check_online(root, end_ns):
    from l2lab.featurestore import online
    from l2lab.featurestore.store import open_store

    got = online.get_online(open_store(root), ["ETH-USD"], ["mid", "structural_1s:ts_ns"])
    assert got["ts_ns"][0] == end_ns and got["mid"][0] > 0


def test_feast_cli_in_process(feast_root, tmp_path, monkeypatch):
    """Feast's click CLI in this process (no interpreter start): apply, materialize, materialize-incremental."""
    from click.testing import CliRunner
    from feast.cli.cli import cli

    from l2lab.featurestore.paths import REPO_PATH

    root = tmp_path / "data"
    shutil.copytree(feast_root / "silver", root / "silver")
    monkeypatch.chdir(tmp_path)  # feast apply changes directory into the repo
    monkeypatch.delitem(sys.modules, "repo", raising=False)  # Feast imports feature_repo/repo.py as `repo`
    runner = CliRunner()
    env = {"L2LAB_DATA": str(root)}

    def feast(*args):
        res = runner.invoke(cli, ["--chdir", str(REPO_PATH), *args], env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output[-2000:]
        return res.output

    assert "structural_1s" in feast("apply")
    monkeypatch.delitem(sys.modules, "repo", raising=False)
    check_applied(root)
    feast("materialize", iso(START), iso(START + 60 * S), "-v", "structural_1s")
    check_online(root, START + 60 * S)
    out = feast("materialize-incremental", iso(START + 100 * S), "-v", "structural_1s")
    assert "structural_1s" in out and "from" in out
    check_online(root, START + 100 * S)


@pytest.mark.slow
def test_l2lab_feast_wrapper_subprocess(feast_root, tmp_path):
    """`l2lab --data-root D feast ...` as a user runs it: its own process, Feast's CLI, files under D/feast/."""
    root = tmp_path / "data"
    shutil.copytree(feast_root / "silver", root / "silver")

    def l2lab(*args):
        proc = subprocess.run([sys.executable, "-m", "l2lab.cli", "--data-root", str(root), "feast", *args],
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    assert "structural_1s" in l2lab("apply")
    check_applied(root)
    l2lab("materialize", iso(START), iso(START + 60 * S), "-v", "structural_1s")
    check_online(root, START + 60 * S)


def test_wrapper_binds_serve_and_ui_to_localhost():
    from l2lab.featurestore.cli import feast_argv
    from l2lab.featurestore.paths import REPO_PATH

    argv = feast_argv(["ui", "--port", "0"])
    assert argv[-5:] == ["ui", "--host", "127.0.0.1", "--port", "0"] and argv[-7:-5] == ["--chdir", str(REPO_PATH)]
    assert feast_argv(["serve", "-h", "::1"])[-3:] == ["serve", "-h", "::1"]  # an explicit host is kept
    assert feast_argv(["apply"])[-1] == "apply"


def test_data_root_rule(monkeypatch, tmp_path):
    from l2lab.featurestore.paths import REPO_PATH, data_root_for

    monkeypatch.delenv("L2LAB_DATA", raising=False)
    assert data_root_for() == REPO_PATH.parent / "data"
    assert data_root_for(tmp_path / "repo") == tmp_path / "data"
    monkeypatch.setenv("L2LAB_DATA", str(tmp_path / "elsewhere"))
    assert data_root_for() == tmp_path / "elsewhere"


@pytest.mark.slow
def test_feast_ui_serves_the_registry_on_localhost(feast_root, feast_store):
    """`l2lab feast ui` on 127.0.0.1: the UI answers and its REST API lists the generated views."""
    import json
    import time
    import urllib.request

    from l2lab.featurestore.cli import feast_argv, feast_env
    from l2lab.featurestore.online import free_port

    port = free_port()
    proc = subprocess.Popen(feast_argv(["ui", "--port", str(port)]), env=feast_env(feast_root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and body is None:
            assert proc.poll() is None, "feast ui exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/projects-list.json", timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert body and body["projects"][0]["id"] == "l2lab"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/feature_views?project=l2lab", timeout=30) as r:
            text = r.read().decode()
        assert "structural_1s" in text and "cross_asset_100ms" in text
    finally:
        proc.terminate()
        proc.wait(30)


def test_l2lab_cli_start_up_does_not_import_feast():
    code = "import sys; from l2lab.cli import build_parser; build_parser(); print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] == 'feast'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout[-2000:] + proc.stderr[-2000:]


def test_opening_the_store_drops_only_the_file_registry_flag_warning(tmp_path, caplog):
    """Feast warns on every open that the yaml's serve_features_while_materializing does nothing on a file
    registry (it does); that one message is dropped, other warnings of the same logger still show."""
    import logging

    from l2lab.featurestore.store import open_store

    with caplog.at_level(logging.WARNING, logger="feast.repo_config"):
        assert open_store(tmp_path / "data").config.registry.serve_features_while_materializing
        logging.getLogger("feast.repo_config").warning("`serve_features_while_materializing` is enabled together "
                                                       "with `cache_mode='thread'`.")
    messages = [r.getMessage() for r in caplog.records]
    assert not any("registry_type" in m for m in messages), messages
    assert any("cache_mode='thread'" in m for m in messages), messages

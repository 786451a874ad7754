"""``l2lab demo`` end to end in a child process, on a throwaway data root."""

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(300)
def test_demo_runs_end_to_end(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "l2lab.cli", "--data-root", str(tmp_path), "demo", "--duration", "4", "--no-research"],
        capture_output=True, text=True, timeout=280,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "[6/10] summary" in text and "[8/10] feature store" in text and "gaps " in text and "cross-check" in text
    assert "linear perps listed" in text and "1-min bars" in text
    assert list((tmp_path / "bronze" / "ohlcv_1m").rglob("*.parquet"))
    assert list((tmp_path / "silver" / "book_features_100ms").rglob("*.parquet"))
    truth = json.loads((tmp_path / "sim" / "demo" / "l2" / "truth.json").read_text())
    assert truth["lead_lag"]["ETH-USD"]["lag_s"] == 1.0
    assert list((tmp_path / "bronze" / "l2_events").rglob("*.parquet"))
    assert list((tmp_path / "raw" / "exchange=coinbase").rglob("capture-*.jsonl.zst"))


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "l2lab.cli", "--help"], capture_output=True, text=True)
    for cmd in ("sim", "exchange", "collect", "ingest", "sql", "demo"):
        assert cmd in out.stdout


def test_demo_data_root_is_new_its_own_or_refused(tmp_path):
    from l2lab.cli import CLIError
    from l2lab.demo import DEMO_MARKER, prepare_data_root

    root = tmp_path / "data"
    prepare_data_root(root)  # new
    assert (root / DEMO_MARKER).exists()
    (root / "bronze" / "x").mkdir(parents=True)
    (root / "warehouse.duckdb").write_text("x")
    prepare_data_root(root)  # a previous demo's: emptied
    assert sorted(p.name for p in root.iterdir()) == [DEMO_MARKER]
    mine = tmp_path / "mine"
    (mine / "bronze").mkdir(parents=True)
    with pytest.raises(CLIError, match="previous demo did not write"):
        prepare_data_root(mine)
    assert (mine / "bronze").exists()

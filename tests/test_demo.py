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

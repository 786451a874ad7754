"""``l2lab.live.demo_step``: a short live session on the simulator (loopback exchange in its own process)."""

import json

import pyarrow.parquet as pq
import pytest

from l2lab.live import demo_step
from l2lab.settings import Settings

pytestmark = pytest.mark.timeout(180)


def test_demo_step_scores_the_simulator(tmp_path, model_run):
    out = tmp_path / "out"
    lines = demo_step(Settings.load(tmp_path / "data"), model_run, seconds=4.0, speed=10.0, feast=False, out_dir=out)
    text = "\n".join(lines)
    assert "signals from" in text and "event -> signal latency p50" in text, text
    signals = pq.read_table(out / "signals").to_pandas()
    assert len(signals) >= 3 * 20 and set(signals.symbol) == {"BTC-USD", "ETH-USD", "SOL-USD"}
    assert signals.score.between(0, 1).all()  # P(up) of a binary model
    metrics = json.loads((out / "metrics.json").read_text())
    for stage in ("normalize", "book", "features", "score", "event_to_signal"):
        assert metrics["stages"][stage]["n"] > 0 and metrics["stages"][stage]["p99_ms"] >= 0
    assert not (tmp_path / "data" / "bronze").exists()  # the session recorded beside its output, not in bronze
    assert (out / "capture" / "bronze").exists()

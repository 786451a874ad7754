"""The research session: bronze on exchange=sim from 2026-01-04, truth consistent with ``generate_l2``."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from research.sessions import load_session, load_truth, make_research_session, session_dir
from tests.research.conftest import TINY_HOURS


def test_session_layout_and_dates(tiny_root):
    rec = load_session(tiny_root)
    assert rec["exchange"] == "sim" and rec["built"] and rec["start"].startswith("2026-01-04")
    dates = {p.name for p in (tiny_root / "bronze" / "l2_events" / "exchange=sim").glob("symbol=*/date=*")}
    assert dates == {"date=2026-01-04"}  # never the demo's collected day (2026-01-05)
    assert not (tiny_root / "bronze" / "l2_events" / "exchange=coinbase").exists()
    assert rec["silver_rows"]["1s"] > 0
    times = pq.read_table(tiny_root / "bronze" / "trades", columns=["ts_exch_ns"]).column(0).to_numpy()
    assert rec["start_ns"] <= times.min() and times.max() < rec["end_ns"]
    # a second call with the same session is a no-op; a different one under the same name is refused
    assert make_research_session(tiny_root, hours=TINY_HOURS, seed=7) == rec
    with pytest.raises(ValueError, match="different session"):
        make_research_session(tiny_root, hours=TINY_HOURS, seed=8)


@pytest.mark.timeout(120)
def test_truth_equals_generate_l2_for_the_same_seed_and_duration(tiny_root, tmp_path):
    """The truth written beside the bronze is what ``simulator.session.generate_l2`` writes for the same
    configuration and duration (same regime path, same latent path), up to the Monte Carlo length."""
    from simulator.config import load_config
    from simulator.session import generate_l2

    rec = load_session(tiny_root)
    cfg = load_config(overrides={"seed": 7, "start": rec["start"]})
    generate_l2(tmp_path, cfg, TINY_HOURS * 3600)
    ref = json.loads((tmp_path / "l2" / "truth.json").read_text())
    got = load_truth(tiny_root)
    for t in (ref, got):
        t["oracle_direction_auc"].pop("monte_carlo")
        t["oracle_direction_auc"].pop("monte_carlo_hours")
    assert got == ref
    assert got["start_ns"] == rec["start_ns"]
    a = pq.read_table(session_dir(tiny_root) / "l2" / "latent.parquet")
    b = pq.read_table(tmp_path / "l2" / "latent.parquet")
    assert a.column_names == b.column_names
    for name in a.column_names:
        np.testing.assert_array_equal(a.column(name).to_numpy(), b.column(name).to_numpy())
    # the bronze trades are the venue's trades of that same session
    events = pq.read_table(tmp_path / "l2" / "venue_events.parquet").to_pandas()
    from simulator.events import KIND_TRADE

    n_trades = int((events["kind"] == KIND_TRADE).sum())
    assert n_trades == rec["rows"]["trades"]


def test_cli_reuses_the_session(tiny_root, capsys):
    from l2lab.cli import main

    assert main(["--data-root", str(tiny_root), "research-session", "--hours", str(TINY_HOURS)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == load_session(tiny_root)

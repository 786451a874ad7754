"""The research session: a long simulated session written to bronze by the perfect-collector path, with its
planted truth beside it, then every layer after bronze.

The demo's collected session (a few simulated minutes through ccxt) is too short for modelling. The research
session runs the simulator for ``hours`` on a start date that does not overlap it (default 2026-01-04, the
day before the simulator's default start), writes bronze under ``exchange=sim`` with
``simulator.normalized.write_bronze``, writes the truth files of **the same simulator object** (so the truth
cannot drift from the data: same seed, same start, same regime path), and builds silver/gold with
``kernels.pipeline.build_all(data_root, exchange="sim")``.

Layout (beside the other simulated data sets)::

    <data>/sim/<name>/l2/truth.json      planted parameters, regime path, oracle AUC (as ``generate_l2`` writes)
    <data>/sim/<name>/l2/latent.parquet  latent path every 100 ms (regime, signals, efficient log-prices)
    <data>/sim/<name>/l2/products.json
    <data>/sim/<name>/session.json       how the session was made (seed, start, hours, exchange, row counts)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa

from l2lab import atomic

RESEARCH_START = "2026-01-04T00:00:00Z"
RESEARCH_EXCHANGE = "sim"
DEFAULT_NAME = "research"


def session_dir(data_root: str | Path, name: str = DEFAULT_NAME) -> Path:
    return Path(data_root) / "sim" / name


def make_research_session(data_root: str | Path, hours: float = 2.0, seed: int = 7, *, start: str = RESEARCH_START,
                          symbols: list[str] | None = None, name: str = DEFAULT_NAME, exchange: str = RESEARCH_EXCHANGE,
                          mc_hours: float = 3.0, build: bool = True, overrides: dict | None = None) -> dict:
    """Simulate ``hours`` from ``start`` with ``seed``, write bronze (``exchange``), the truth files and (with
    ``build``) every derived layer. Idempotent: if ``session.json`` says the same session was already made, it
    returns that record without redoing anything (a different session under the same name is an error)."""
    from kernels.pipeline import build_all
    from simulator.config import load_config
    from simulator.l2 import MarketSimulator
    from simulator.normalized import write_bronze
    from simulator.truth import l2_truth

    root = Path(data_root)
    out = session_dir(root, name)
    cfg = load_config(symbols=symbols, overrides={"seed": seed, "start": start, **(overrides or {})})
    wanted = {"seed": seed, "start": start, "hours": hours, "exchange": exchange, "symbols": cfg.symbols,
              "overrides": overrides or {}}
    record_path = out / "session.json"
    if record_path.exists():
        done = json.loads(record_path.read_text())
        if {k: done.get(k) for k in wanted} != wanted:
            raise ValueError(f"{record_path}: a different session ({ {k: done.get(k) for k in wanted} }) already "
                             f"exists under the name {name!r}; wanted {wanted}")
        if not build or done.get("built"):
            return done
    t0 = time.perf_counter()
    sim = MarketSimulator(cfg)
    if sim.now_ns != cfg.start_ns:
        raise AssertionError("simulator did not start at the configured start")
    seconds = hours * 3600.0
    counts = write_bronze(sim, seconds, root, exchange=exchange)
    end_ns = cfg.start_ns + int(seconds * 1e9)
    l2 = out / "l2"
    path = sim.latent_path()
    keep = path["t_ns"] < end_ns
    atomic.write_parquet(l2 / "latent.parquet", pa.table({k: v[keep] for k, v in path.items()}))
    atomic.write_json(l2 / "products.json", {p.symbol: {"tick_size": str(p.tick_size),
                                                        "size_increment": str(p.size_increment),
                                                        "min_size": str(p.min_size), "base": p.base,
                                                        "quote": p.quote} for p in sim.products})
    truth = l2_truth(cfg, [(t, r) for t, r in sim.latent.switches if t < end_ns], mc_hours=mc_hours)
    truth["duration_s"] = seconds
    atomic.write_json(l2 / "truth.json", truth)
    record = {**wanted, "start_ns": cfg.start_ns, "end_ns": end_ns, "rows": counts,
              "simulate_s": round(time.perf_counter() - t0, 2), "built": False}
    atomic.write_json(record_path, record)
    if build:
        t1 = time.perf_counter()
        rep = build_all(root, exchange=exchange)
        record.update(built=True, build_s=round(time.perf_counter() - t1, 2),
                      silver_rows={k: int(v) for k, v in rep["rows"].items()})
        atomic.write_json(record_path, record)
    return record


def load_truth(data_root: str | Path, name: str = DEFAULT_NAME) -> dict:
    path = session_dir(data_root, name) / "l2" / "truth.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no truth file (make the session with research.sessions."
                                f"make_research_session or `l2lab sim --bronze`)")
    return json.loads(path.read_text())


def load_session(data_root: str | Path, name: str = DEFAULT_NAME) -> dict:
    path = session_dir(data_root, name) / "session.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no research session here")
    return json.loads(path.read_text())

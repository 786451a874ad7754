"""Gates and sizing (vectorized) against a bar-by-bar loop that only looks at the past; config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from research.backtest import gates
from research.backtest.bars import Bars
from research.backtest.config import ConfigError, load_config


def random_bars(n, seed):
    rng = np.random.default_rng(seed)
    t = 1_767_600_000_000_000_000 + np.cumsum(rng.integers(1, 3, n)) * 1_000_000_000
    mid = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    mid[rng.random(n) < 0.03] = np.nan  # bars where the book was not whole
    spread = rng.choice([0.01, 0.02, 0.05], n)
    high = mid + rng.random(n) * 0.05
    low = mid - rng.random(n) * 0.05
    return Bars(t, mid, mid - spread / 2, mid + spread / 2, high, low)


def loop_reference(score, bars, h, cfg):
    """Gates of research.backtest.gates written as a loop over bars, each using only bars <= i."""
    g, s = cfg.gates, cfg.sizing
    n = bars.n
    out_dir, out_size, zs = np.zeros(n, int), np.zeros(n), np.zeros(n)
    for i in range(n):
        lo = max(0, i - g.sigma_window + 1)
        r2 = tt = 0.0
        for k in range(lo, i + 1):
            if k == 0:
                continue
            lr = math.log(bars.mid[k] / bars.mid[k - 1])
            dt = (bars.t_ns[k] - bars.t_ns[k - 1]) / 1e9
            if np.isfinite(lr) and dt > 0:
                r2 += lr * lr
                tt += dt
        sig = max(math.sqrt(r2 / tt) if tt > 0 else 0.0, g.sigma_floor)
        sh = sig * math.sqrt(h)
        edge = (2 * score[i] - 1) * sh * math.sqrt(2 / math.pi) if g.score_kind == "prob" else score[i]
        z = edge / sh
        zs[i] = z
    for i in range(n):
        z = zs[i]
        d = int(np.sign(z))
        ok = i >= g.warmup_bars and np.isfinite(bars.mid[i]) and abs(z) >= g.z_threshold and d != 0
        if g.long_only:
            ok = ok and d > 0
        if g.ev_multiple > 0:
            sig_edge = abs(z) * max(_sigma_at(bars, i, g), g.sigma_floor) * math.sqrt(h)
            cost = bars.mid[i] * 2 * cfg.fees.tiers[0].taker_bps / 1e4 + (bars.ask[i] - bars.bid[i])
            ok = ok and sig_edge * bars.mid[i] >= g.ev_multiple * cost
        if g.quantile > 0:
            past = np.abs(zs[max(0, i - g.quantile_window):i])
            ok = ok and len(past) >= min(g.quantile_window, 20) and abs(z) > np.quantile(past, g.quantile)
        if g.persistence > 1:
            last = np.sign(zs[max(0, i - g.persistence + 1):i + 1])
            ok = ok and (last == d).sum() >= g.persistence_min
        size = s.base_size if s.base_size > 0 else s.base_notional / bars.mid[i]
        if s.z_ref > 0:
            size *= min(abs(z) / s.z_ref, s.edge_cap)
        size = min(size, s.max_size, s.max_notional / bars.mid[i]) if np.isfinite(bars.mid[i]) else 0.0
        size = size if np.isfinite(size) else 0.0
        ok = ok and size >= s.min_size and size > 0
        out_dir[i] = d if ok else 0
        out_size[i] = size if ok else 0.0
    return out_dir, out_size, zs


def _sigma_at(bars, i, g):
    lo = max(0, i - g.sigma_window + 1)
    lr = np.diff(np.log(bars.mid[max(0, lo - 1):i + 1]))[-(i - lo + (1 if lo > 0 else 0)):] if i > 0 else np.empty(0)
    dt = np.diff(bars.t_ns[max(0, lo - 1):i + 1])[-len(lr):] / 1e9 if len(lr) else np.empty(0)
    ok = np.isfinite(lr)
    return math.sqrt((lr[ok] ** 2).sum() / dt[ok].sum()) if ok.any() and dt[ok].sum() > 0 else 0.0


@pytest.mark.parametrize("seed, over", [
    (0, {}),
    (1, {"gates": {"z_threshold": 0.3, "warmup_bars": 10, "sigma_window": 15}}),
    (2, {"gates": {"quantile": 0.7, "quantile_window": 40, "warmup_bars": 0}}),
    (3, {"gates": {"persistence": 3, "persistence_min": 2, "long_only": True}}),
    (5, {"sizing": {"base_size": 0.0, "base_notional": 250.0, "max_notional": 200.0}}),
    (4, {"gates": {"ev_multiple": 1.0}, "fees": {"tiers": [{"taker_bps": 1.0}]},
         "sizing": {"z_ref": 0.5, "edge_cap": 2.0, "max_size": 0.015, "min_size": 0.004}}),
])
def test_gates_match_the_loop_reference(seed, over):
    bars = random_bars(300, seed)
    rng = np.random.default_rng(seed + 100)
    score = np.clip(0.5 + rng.normal(0, 0.15, bars.n), 0.01, 0.99)
    score[::17] = 0.5  # exact ties at "no view"
    cfg = load_config({"sizing": {"base_size": 0.01}, **over})
    sig = gates.compute(score, bars, 30.0, cfg)
    d, size, z = loop_reference(score, bars, 30.0, cfg)
    np.testing.assert_allclose(sig.z, z, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(sig.direction, d)
    np.testing.assert_allclose(sig.size, size, rtol=1e-12)
    assert (sig.direction != 0).any() or over  # the default config trades


def test_gates_are_point_in_time():
    bars = random_bars(200, 9)
    score = np.clip(0.5 + np.random.default_rng(9).normal(0, 0.2, bars.n), 0.01, 0.99)
    cfg = load_config({"gates": {"quantile": 0.6, "persistence": 3, "persistence_min": 2}})
    full = gates.compute(score, bars, 30.0, cfg)
    cut = 120
    head = Bars(*(getattr(bars, f)[:cut] for f in ("t_ns", "mid", "bid", "ask", "high", "low")))
    part = gates.compute(score[:cut], head, 30.0, cfg)
    np.testing.assert_array_equal(part.direction, full.direction[:cut])
    np.testing.assert_allclose(part.atr, full.atr[:cut])


def test_config_errors_name_the_field_and_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config.gates: unknown field\(s\) z_thresh"):
        load_config({"gates": {"z_thresh": 1}})
    with pytest.raises(ConfigError, match="config.execution.style: 'limit' is not one of market, passive"):
        load_config({"execution": {"style": "limit"}})
    with pytest.raises(ConfigError, match="config.latency.order_ns: expected an integer"):
        load_config({"latency": {"order_ns": 1.5}})
    with pytest.raises(ConfigError, match="must be a finite non-negative number"):
        load_config({"sizing": {"base_size": -1}})
    assert load_config({"fees": {"tiers": [{"maker_bps": -1.0}]}}).fees.tiers[0].maker_bps == -1.0
    bad = tmp_path / "c.yaml"
    bad.write_text("gates:\n  z_threshold: 1\n  persistence: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml line \d+: not valid YAML"):
        load_config(bad)
    good = tmp_path / "g.yaml"
    good.write_text("exits:\n  mode: horizon\n  horizon_s: 5\n")
    assert load_config(good).exits.horizon_s == 5.0
    bad.write_text("exits:\n  mode: sideways\n")
    with pytest.raises(ConfigError, match=r"c.yaml.exits.mode"):
        load_config(bad)

"""Cross-sectional family: every feature equals a slow dict-and-loop reference (listings, delistings, missing
rows, an outage hour below the 50% coverage filter and one exactly at it), no row reads a later hour, and the
planted funding-pressure effect of the simulated perp universe is visible through the feature."""

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from kernels import catalog
from kernels.cross_sectional import COLUMNS, FEATURES, HOUR_NS, compute_cross_sectional, panel_from_universe

H0 = 1_759_276_800_000_000_000  # 2025-10-01 00:00 UTC in ns
STAMP = HOUR_NS + 1_000_000


def random_panel(seed: int = 0, S: int = 8, T: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(S):
        first = 100 if i == S - 1 else 0  # a late listing
        last = 250 if i == S - 2 else T  # a delisting
        c = 50.0 * (i + 1)
        f = rng.normal(1e-4, 4e-4)
        for t in range(first, last):
            if t % 8 == 0:
                f = round(rng.normal(1e-4, 4e-4), 8)
            o = c * math.exp(rng.normal(0, 1e-4))
            c = o * math.exp(rng.normal(0, 0.01))
            if t == 50:
                keep = i % 4 == 0  # outage: 2 of 7 listed symbols have data (29% < 50%)
            elif t == 151:
                keep = i % 2 == 0  # exactly half of the 8 listed have data: the filter passes
            elif t in (60, 61):
                keep = i == 0  # one symbol alone: no cross-section
            else:
                keep = rng.random() >= 0.05  # a missing hour of this symbol
            if not keep:
                continue
            rows.append({"symbol": f"S{i}", "hour_start_ns": H0 + t * HOUR_NS, "ts_ns": H0 + t * HOUR_NS + STAMP,
                         "h_close": c, "h_log_return": math.log(c / o),
                         "h_turnover": 0.0 if rng.random() < 0.02 else rng.lognormal(10 + i, 1),
                         "h_rv": math.nan if rng.random() < 0.02 else rng.lognormal(-4, 0.3),
                         "h_funding_rate": math.nan if t < 3 else f})
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # row order must not matter


def reference(panel: pd.DataFrame, listed=None) -> pd.DataFrame:
    """Slow twin: dicts keyed by (symbol, hour index) and Python loops, straight from the module docstring."""
    rows = {(r.symbol, (r.hour_start_ns - H0) // HOUR_NS): r for r in panel.itertuples(index=False)}
    symbols = sorted({s for s, _ in rows})
    hours = sorted({h for _, h in rows})

    def get(sym, h, col):
        r = rows.get((sym, h))
        return math.nan if r is None else getattr(r, col)

    def is_listed(sym, h):
        if listed is not None:
            on, off = listed[sym]
            return (sym, h) in rows or (H0 + h * HOUR_NS >= on and (off is None or H0 + h * HOUR_NS < off))
        return any((sym, k) in rows for k in range(h - 23, h + 1))

    per_hour = {}
    for h in hours:
        here = [s for s in symbols if (s, h) in rows]
        n_listed = sum(is_listed(s, h) for s in symbols)
        cov = len(here) / n_listed
        fs = [get(s, h, "h_funding_rate") for s in here if not math.isnan(get(s, h, "h_funding_rate"))]
        vs = [get(s, h, "h_turnover") for s in here]
        rs = [get(s, h, "h_log_return") for s in here]
        med_f = statistics.median(fs) if fs else math.nan
        mad = statistics.median([abs(f - med_f) for f in fs]) if fs else math.nan
        per_hour[h] = dict(ok=len(here) >= 2 and cov >= 0.5, cov=cov, med_f=med_f, mad=mad,
                           med_v=statistics.median(vs), mean_r=sum(rs) / len(rs))
    out = []
    for r in panel.itertuples(index=False):
        s, h = r.symbol, (r.hour_start_ns - H0) // HOUR_NS
        ph = per_hour[h]
        nan = math.nan
        row = {"symbol": s, "hour_start_ns": r.hour_start_ns, "ts_ns": r.ts_ns, "xs_coverage": ph["cov"]}
        ok = ph["ok"]
        row["xs_funding_pressure"] = r.h_funding_rate - ph["med_f"] if ok else nan
        row["xs_funding_pressure_z"] = ((r.h_funding_rate - ph["med_f"]) / (1.4826 * ph["mad"])
                                        if ok and ph["mad"] > 0 else nan)
        row["xs_relative_volume"] = r.h_turnover / ph["med_v"] if ok and ph["med_v"] > 0 else nan
        row["xs_rel_return_1h"] = r.h_log_return - ph["mean_r"] if ok else nan
        prev = [get(s, k, "h_turnover") for k in range(h - 24, h) if (s, k) in rows]
        row["xs_turnover_ratio_24h"] = (r.h_turnover / (sum(prev) / len(prev))
                                        if len(prev) >= 12 and sum(prev) > 0 else nan)
        win = [get(s, k, "h_log_return") for k in range(h - 23, h + 1) if (s, k) in rows]
        den = sum(abs(x) for x in win)
        row["xs_efficiency_24h"] = abs(sum(win)) / den if len(win) >= 12 and den > 0 else nan
        for k in (1, 24, 168):
            row[f"xs_mom_{k}h"] = math.log(r.h_close / get(s, h - k, "h_close")) if (s, h - k) in rows else nan
        prev = [get(s, k, "h_rv") ** 2 for k in range(h - 168, h) if (s, k) in rows and not math.isnan(get(s, k, "h_rv"))]
        row["xs_vol_regime_168h"] = r.h_rv / math.sqrt(sum(prev) / len(prev)) if len(prev) >= 84 else nan
        out.append(row)
    return pd.DataFrame(out)


def test_specs_declare_the_cross_sectional_table():
    assert {s.name for s in FEATURES} == set(COLUMNS)
    for s in FEATURES:
        assert s.table == "cross_sectional" and s.forward_reach == 0 and s.name.startswith("xs_")
    assert set(COLUMNS) <= set(catalog.by_name())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("use_listing", [False, True])
def test_every_feature_equals_the_slow_reference(seed, use_listing):
    panel = random_panel(seed)
    listed = None
    if use_listing:
        listed = {f"S{i}": (H0, None) for i in range(8)}
        listed["S7"] = (H0 + 100 * HOUR_NS, None)
        listed["S6"] = (H0, H0 + 250 * HOUR_NS)
    got = compute_cross_sectional(panel, listed)
    ref = reference(panel, listed)
    assert list(got.columns) == ["symbol", "hour_start_ns", "ts_ns", *COLUMNS]
    assert (got.symbol.to_numpy() == ref.symbol.to_numpy()).all()
    for col in COLUMNS:
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(), rtol=1e-10, atol=1e-15, err_msg=col)
        assert got[col].notna().sum() > 0, col
    hour = (got.hour_start_ns - H0) // HOUR_NS
    assert got.xs_funding_pressure[hour.isin([50, 60, 61])].isna().all()  # filtered: 25% coverage, a lone symbol
    assert got.xs_funding_pressure[(hour == 151) & (got.xs_coverage == 0.5)].notna().sum() == 4  # exactly 50% passes
    assert got.xs_mom_24h[hour == 50].notna().any()  # time-series features survive the filter


def test_no_row_reads_a_later_hour():
    """Changing or deleting every row after hour t changes no feature of a row at or before t."""
    panel = random_panel(3)
    base = compute_cross_sectional(panel).set_index(["symbol", "hour_start_ns"]).sort_index()
    rng = np.random.default_rng(0)
    for t in (30, 120, 251, 380):
        cut = H0 + t * HOUR_NS
        later = panel.hour_start_ns > cut
        changed = panel.copy()
        for col in ("h_close", "h_log_return", "h_turnover", "h_rv", "h_funding_rate"):
            changed.loc[later, col] *= rng.uniform(0.2, 5, later.sum())
        for p in (changed, panel[~later]):
            out = compute_cross_sectional(p).set_index(["symbol", "hour_start_ns"]).sort_index()
            upto = base.index.get_level_values(1) <= cut
            pd.testing.assert_frame_equal(out[out.index.get_level_values(1) <= cut], base[upto])
    assert (base.ts_ns == base.index.get_level_values(1) + STAMP).all()


def test_planted_funding_pressure_effect_is_visible():
    """On the simulated perp universe (seed 7, 24 contracts, 95 days): the rank IC between the funding pressure
    at hour H and the next hour's relative return (minus the cross-sectional mean) is negative, |t| > 3."""
    from simulator.perps import PerpUniverse

    u = PerpUniverse(seed=7)
    panel = panel_from_universe(u)
    xs = compute_cross_sectional(panel)
    nxt = panel[["symbol", "hour_start_ns", "h_log_return"]].copy()
    nxt["hour_start_ns"] -= HOUR_NS  # next hour's return, joined to hour H (a label: test-only)
    nxt["label"] = nxt.h_log_return - nxt.groupby("hour_start_ns").h_log_return.transform("mean")
    df = xs.merge(nxt[["symbol", "hour_start_ns", "label"]], on=["symbol", "hour_start_ns"])
    df = df.dropna(subset=["xs_funding_pressure", "label"])
    ics = []
    for _, g in df.groupby("hour_start_ns"):
        if len(g) >= 10:
            ics.append(g.xs_funding_pressure.rank().corr(g.label.rank()))
    ics = np.array(ics)
    ic, t = ics.mean(), ics.mean() / (ics.std(ddof=1) / math.sqrt(len(ics)))
    print(f"\nplanted funding pressure: mean rank IC {ic:.4f}, t {t:.2f}, hours {len(ics)}")
    assert ic < 0 and t < -3
    # the planted venue outages (3 to 90 min) cut hours short for every symbol but never empty a whole hour, so
    # every hour keeps its cross-section; the cut hours' rows say so in their coverage
    assert xs.xs_coverage.min() >= 0.5 and (panel.h_coverage < 1).sum() >= 3 * 20


def test_a_partition_with_168_hours_of_warm_up_equals_the_batch():
    panel = random_panel(4)
    base = compute_cross_sectional(panel).set_index(["symbol", "hour_start_ns"]).sort_index()
    for c in (170, 300):
        start = H0 + c * HOUR_NS
        part = panel[panel.hour_start_ns >= start - 168 * HOUR_NS]
        out = compute_cross_sectional(part).set_index(["symbol", "hour_start_ns"]).sort_index()
        keep = base.index.get_level_values(1) >= start
        pd.testing.assert_frame_equal(out[out.index.get_level_values(1) >= start], base[keep])

"""Hourly family: bars equal the venue's own 1h klines, every feature equals a slow reference, and no row reads a
bar or a funding event after its stamp."""

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from kernels import catalog
from kernels.hourly import COLUMNS, FEATURES, HOUR_MS, MINUTE_MS, compute_hourly

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC


def random_bars(seed: int, hours: int = 30, start_ms: int = T0, gap_prob: float = 0.15):
    """Plausible 1-min bars with single missing minutes, whole missing hours, a 1-bar hour, zero volumes and
    flat bars."""
    rng = np.random.default_rng(seed)
    n = hours * 60
    t = start_ms + MINUTE_MS * np.arange(n, dtype=np.int64)
    r = rng.normal(0, 1e-3, n)
    c = np.round(100 * np.exp(np.cumsum(r)), 2)
    o = np.r_[100.0, c[:-1]]
    o = np.where(rng.random(n) < 0.2, np.round(o + rng.choice([-0.01, 0.01], n), 2), o)  # open != last close
    h = np.round(np.maximum(o, c) + rng.exponential(0.05, n), 2)
    lo = np.round(np.minimum(o, c) - rng.exponential(0.05, n), 2)
    v = np.round(rng.lognormal(1, 1, n), 3)
    v[rng.random(n) < 0.05] = 0.0
    flat = rng.random(n) < 0.03
    o[flat] = h[flat] = lo[flat] = c[flat]
    keep = rng.random(n) >= gap_prob
    keep[(t - start_ms) // HOUR_MS == 3] = False  # a whole hour missing (venue outage)
    hour5 = (t - start_ms) // HOUR_MS == 5
    keep[hour5] = False
    keep[np.flatnonzero(hour5)[17]] = True  # a one-bar hour
    hour7 = (t - start_ms) // HOUR_MS == 7
    v[hour7] = 0.0  # an hour without volume
    bars = pd.DataFrame({"open_time_ms": t, "open": o, "high": h, "low": lo, "close": c, "volume": v})
    return bars[keep].reset_index(drop=True)


def random_funding(seed: int, start_ms: int = T0, hours: int = 30):
    rng = np.random.default_rng(seed + 100)
    times = start_ms - 8 * HOUR_MS + 8 * HOUR_MS * np.arange(hours // 8 + 2, dtype=np.int64)
    times = np.r_[times, start_ms + 9 * HOUR_MS + 1, start_ms + 10 * HOUR_MS + 2]  # at a stamp, 1 ms after
    return pd.DataFrame({"funding_time_ms": times, "funding_rate": np.round(rng.normal(1e-4, 3e-4, len(times)), 8)})


def reference(bars: pd.DataFrame, funding: pd.DataFrame | None) -> pd.DataFrame:
    """Slow twin: one Python loop per hour, straight from the docstring's formulas."""
    rows = []
    by_hour = {}
    for b in bars.itertuples(index=False):
        by_hour.setdefault(b.open_time_ms // HOUR_MS * HOUR_MS, []).append(b)
    for H in sorted(by_hour):
        bs = by_hour[H]
        stamp = (H + HOUR_MS + 1) * 1_000_000
        O, C = bs[0].open, bs[-1].close
        Hi, Lo = max(b.high for b in bs), min(b.low for b in bs)
        vol = float(sum(Decimal(repr(b.volume)) for b in bs))  # the exact decimal sum, as printed
        turnover = math.fsum((b.high + b.low + b.close) / 3.0 * b.volume for b in bs)
        rets = [math.log(bs[k].close / bs[k - 1].close) for k in range(1, len(bs))
                if bs[k].open_time_ms - bs[k - 1].open_time_ms == MINUTE_MS]
        n = len(bs)
        mean_v = vol / n
        std_v = math.sqrt(sum((b.volume - mean_v) ** 2 for b in bs) / n)
        rate, age = math.nan, math.nan
        if funding is not None:
            past = [(ft, fr) for ft, fr in zip(funding.funding_time_ms, funding.funding_rate) if ft * 1_000_000 <= stamp]
            if past:
                ft, fr = max(past)
                rate, age = fr, (stamp - ft * 1_000_000) / 3.6e12
        hl, co = math.log(Hi / Lo), math.log(C / O)
        rows.append({
            "ts_ns": stamp, "hour_start_ns": H * 1_000_000,
            "h_open": O, "h_high": Hi, "h_low": Lo, "h_close": C, "h_volume": vol, "h_coverage": n / 60,
            "h_turnover": turnover, "h_log_return": co,
            "h_vwap_dev_bps": 1e4 * (C / (turnover / vol) - 1) if vol > 0 else math.nan,
            "h_rv": math.sqrt(60 / len(rets) * sum(r * r for r in rets)) if rets else math.nan,
            "h_parkinson_vol": math.sqrt(hl * hl / (4 * math.log(2))),
            "h_garman_klass_vol": math.sqrt(0.5 * hl * hl - (2 * math.log(2) - 1) * co * co),
            "h_volume_cv": std_v / mean_v if n >= 2 and mean_v > 0 else math.nan,
            "h_funding_rate": rate, "h_funding_age_h": age, "h_hour_of_day": float(H // HOUR_MS % 24),
        })
    return pd.DataFrame(rows)


def test_specs_declare_the_hourly_table_and_match_the_columns():
    assert {s.name for s in FEATURES} == set(COLUMNS)
    for s in FEATURES:
        assert s.table == "hourly" and s.forward_reach == 0 and s.name.startswith("h_") and s.unit and s.window
    assert set(COLUMNS) <= set(catalog.by_name())
    out = compute_hourly(random_bars(0), random_funding(0))
    assert list(out.columns) == ["ts_ns", "hour_start_ns", *COLUMNS]
    assert all(out[c].dtype == np.float64 for c in COLUMNS)


@pytest.mark.parametrize("seed", range(4))
def test_ohlcv_equals_pandas_resample_exactly(seed):
    bars = random_bars(seed)
    got = compute_hourly(bars, None)
    df = bars.set_index(pd.to_datetime(bars.open_time_ms, unit="ms", utc=True))
    ref = df.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
                                 "open_time_ms": "count"})
    ref = ref[ref.open_time_ms > 0]  # hours without a bar have no row: gaps are not filled
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got.hour_start_ns.to_numpy(), ref.index.as_unit("ns").asi8)
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[f"h_{col}"].to_numpy(), ref[col].to_numpy(), err_msg=col)
    # pandas sums floats (compensated), off by an ulp at times; the kernel's sum is the exact decimal sum
    np.testing.assert_allclose(got.h_volume.to_numpy(), ref.volume.to_numpy(), rtol=1e-15, atol=0)
    exact = bars.groupby(bars.open_time_ms // HOUR_MS).volume.agg(lambda v: float(sum(Decimal(repr(x)) for x in v)))
    np.testing.assert_array_equal(got.h_volume.to_numpy(), exact.to_numpy())
    np.testing.assert_array_equal(got.h_coverage.to_numpy(), ref.open_time_ms.to_numpy() / 60)
    assert 3 not in ((got.hour_start_ns // 1_000_000 - T0) // HOUR_MS).tolist()  # the outage hour is absent
    assert got.h_coverage.min() == 1 / 60


@pytest.mark.parametrize("seed", range(4))
def test_every_feature_equals_the_slow_reference(seed):
    bars, funding = random_bars(seed), random_funding(seed)
    got = compute_hourly(bars, funding)
    ref = reference(bars, funding)
    assert list(got.ts_ns) == list(ref.ts_ns)
    assert (got.ts_ns == got.hour_start_ns + 3_600_001_000_000).all()  # stamped at bar close + 1 ms
    for col in COLUMNS:
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(), rtol=1e-12, atol=1e-15, err_msg=col)
    # the one-bar hour has no return, the zero-volume hour no VWAP / CV; before the first funding: NaN
    assert got.h_rv.isna().any() and got.h_vwap_dev_bps.isna().any() and got.h_volume_cv.isna().any()
    assert compute_hourly(bars, funding.iloc[2:]).h_funding_rate.isna().any()


def test_funding_is_taken_from_its_publication_time_on():
    bars, funding = random_bars(1), random_funding(1)
    got = compute_hourly(bars, funding)
    hour = (got.hour_start_ns // 1_000_000 - T0) // HOUR_MS
    at_stamp = funding.funding_rate.iloc[-2]  # published at T0 + 9 h + 1 ms = the stamp of hour 8
    one_after = funding.funding_rate.iloc[-1]  # published at T0 + 10 h + 2 ms: 1 ms after the stamp of hour 9
    assert got.h_funding_rate[hour == 8].item() == at_stamp
    assert got.h_funding_age_h[hour == 8].item() == 0
    assert got.h_funding_rate[hour == 9].item() == at_stamp  # not yet the one published 1 ms later
    assert got.h_funding_rate[hour == 10].item() == one_after
    # a funding at the hour end (T0 + 16 h, an 8-hourly time) is in the row of hour 15 (stamp 16 h + 1 ms)
    f16 = funding.funding_rate[funding.funding_time_ms == T0 + 16 * HOUR_MS].item()
    assert got.h_funding_rate[hour == 15].item() == f16


@pytest.mark.parametrize("seed", range(3))
def test_no_row_uses_a_bar_or_funding_after_its_stamp(seed):
    """Replacing every bar and funding event after a cut changes no row stamped at or before the cut, and
    rows computed from truncated inputs (only what was available at each stamp) equal the full computation."""
    bars, funding = random_bars(seed), random_funding(seed)
    base = compute_hourly(bars, funding)
    rng = np.random.default_rng(seed)
    for stamp in base.ts_ns.to_numpy()[::3]:
        cut_ms = stamp // 1_000_000
        b2 = bars.copy()
        later = (b2.open_time_ms + MINUTE_MS) > cut_ms  # bars closing after the stamp
        for col in ("open", "high", "low", "close"):
            b2.loc[later, col] *= rng.uniform(0.5, 1.5, later.sum())
        b2.loc[later, "volume"] += 7.0
        f2 = funding.copy()
        f2.loc[f2.funding_time_ms > cut_ms, "funding_rate"] = 0.123
        out = compute_hourly(b2, f2)
        upto = base.ts_ns <= stamp
        pd.testing.assert_frame_equal(out[upto], base[upto])
        trunc = compute_hourly(bars[~later], funding[funding.funding_time_ms <= cut_ms])
        pd.testing.assert_frame_equal(trunc[trunc.ts_ns <= stamp], base[upto])


def test_open_hours_can_be_dropped():
    bars = random_bars(2)
    cut = T0 + 20 * HOUR_MS + 30 * MINUTE_MS
    got = compute_hourly(bars[bars.open_time_ms < cut], None, complete_through_ms=cut)
    assert (got.hour_start_ns // 1_000_000 + HOUR_MS <= cut).all()
    assert got.hour_start_ns.max() // 1_000_000 == T0 + 19 * HOUR_MS


@pytest.mark.timeout(60)
def test_hourly_bars_equal_the_venues_own_1h_klines():
    """Through the loopback Binance USD-M REST and unmodified ccxt: 1-min bars aggregated by this kernel equal
    the venue's 1h klines for the same range, including hours cut by a venue outage and a listing hour."""
    from loopback import clients
    from loopback.server import BackgroundExchange

    with BackgroundExchange(seed=7, speed=1.0) as ex:
        u = ex.universe
        client = clients.binanceusdm(ex.rest_url)
        client.load_markets()
        outage_start, outage_end = u.outages[0]
        late = min((c for c in u.contracts if c.onboard_ms > u.start_ms), key=lambda c: c.onboard_ms)
        cases = [("BTC", outage_start - outage_start % HOUR_MS - 6 * HOUR_MS),
                 ("ETH", outage_start - outage_start % HOUR_MS - 3 * HOUR_MS),
                 (late.base, late.onboard_ms - 4 * HOUR_MS)]
        hours = 12
        partial = 0
        for base, since in cases:
            sym = f"{base}/USDT:USDT"
            minute = []
            cursor = since
            while cursor < since + hours * HOUR_MS:
                page = client.fetch_ohlcv(sym, "1m", since=cursor, limit=1000,
                                          params={"endTime": since + hours * HOUR_MS - 1})
                if not page:
                    break
                minute += page
                cursor = page[-1][0] + MINUTE_MS
            venue = client.fetch_ohlcv(sym, "1h", since=since, limit=hours)
            venue = [r for r in venue if r[0] < since + hours * HOUR_MS]
            bars = pd.DataFrame(minute, columns=["open_time_ms", "open", "high", "low", "close", "volume"])
            got = compute_hourly(bars, None)
            assert len(got) == len(venue) > 0, base
            np.testing.assert_array_equal(got.hour_start_ns.to_numpy() // 1_000_000, [r[0] for r in venue])
            for k, col in enumerate(("open", "high", "low", "close"), start=1):
                np.testing.assert_array_equal(got[f"h_{col}"].to_numpy(), [r[k] for r in venue], err_msg=base)
            np.testing.assert_array_equal(got.h_volume.to_numpy(), [r[5] for r in venue], err_msg=base)
            partial += int((got.h_coverage < 1).sum())
        assert partial >= 2  # hours cut by the outage were compared too

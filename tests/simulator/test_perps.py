import math

import numpy as np
import pandas as pd
import pytest

from simulator.perps import HOUR_MS, MINUTE_MS, PerpUniverse


@pytest.fixture(scope="module")
def universe():
    return PerpUniverse(seed=7)


def test_universe_size_coverage_and_listings(universe):
    assert len(universe.contracts) >= 20
    assert (universe.end_ms - universe.start_ms) >= 90 * 86_400_000
    late = [c for c in universe.contracts if c.onboard_ms > universe.start_ms]
    gone = [c for c in universe.contracts if c.delist_ms is not None]
    assert late and gone
    for c in late + gone:
        bars = universe.klines(c.symbol, universe.start_ms, universe.end_ms)
        assert bars["open_time_ms"].min() >= c.onboard_ms
        if c.delist_ms is not None:
            assert bars["open_time_ms"].max() < c.delist_ms
            assert universe.funding(c.symbol, universe.start_ms, universe.end_ms)["funding_time_ms"].max() < c.delist_ms
    coverage = universe.listed_hourly.sum(axis=0)
    assert coverage.min() < coverage.max()


def test_bars_are_consistent_and_on_the_grid(universe):
    for c in universe.contracts[:6]:
        b = universe.klines(c.symbol, universe.start_ms, universe.end_ms)
        assert np.all(b["high"] >= np.maximum(b["open"], b["close"]))
        assert np.all(b["low"] <= np.minimum(b["open"], b["close"]))
        assert np.all(b["low"] > 0)
        assert np.all(b["open_time_ms"] % MINUTE_MS == 0)
        tick = float(c.tick_size)
        for f in ("open", "high", "low", "close"):
            assert np.allclose(np.round(b[f] / tick) * tick, b[f], rtol=0, atol=tick * 1e-6)
        assert np.all(b["taker_buy_volume"] <= b["volume"] + 1e-12)
        assert np.all(np.diff(b["open_time_ms"]) > 0)


def test_planted_outages_remove_bars_for_everyone(universe):
    assert universe.outages
    a, b = universe.outages[0]
    for c in universe.contracts[:5]:
        bars = universe.klines(c.symbol, a - 10 * MINUTE_MS, b + 10 * MINUTE_MS)
        t = bars["open_time_ms"]
        assert not np.any((t >= a) & (t < b))


def test_funding_schedule(universe):
    f = universe.funding("BTCUSDT", universe.start_ms, universe.end_ms)
    assert np.all(f["funding_time_ms"] % (8 * HOUR_MS) == 0)
    assert np.all(np.abs(f["funding_rate"]) <= 0.0075)
    assert len(f) == (universe.end_ms - universe.start_ms) // (8 * HOUR_MS)
    page = universe.funding("BTCUSDT", f["funding_time_ms"][3], f["funding_time_ms"][7])
    assert np.array_equal(page, f[3:8])


def test_planted_funding_pressure_effect_is_recoverable(universe):
    """Regress next-hour relative return (scaled by the contract's hourly vol) on the pressure z: slope ~ -k."""
    k = universe.spec.pressure_effect
    H = universe.n_hours
    rel = np.full((len(universe.contracts), H), np.nan)
    for i, c in enumerate(universe.contracts):
        b = universe.klines(c.symbol, universe.start_ms, universe.end_ms)
        hour = (b["open_time_ms"] - universe.start_ms) // HOUR_MS
        df = pd.DataFrame({"h": hour, "o": b["open"], "c": b["close"]}).groupby("h").agg(o=("o", "first"), c=("c", "last"))
        rel[i, df.index.values] = np.log(df["c"] / df["o"]).values
    rel -= np.nanmean(rel, axis=0)
    vm = np.asarray(universe.config.regimes.vol_multiplier)[universe.regime_hourly]
    sigma_h = np.array([c.idio_vol_annual for c in universe.contracts]) / math.sqrt(365 * 1440) * math.sqrt(60)
    y = rel / (sigma_h[:, None] * vm[None, :])
    z = universe.pressure
    ok = ~np.isnan(y) & ~np.isnan(z)
    slope = np.polyfit(z[ok], y[ok], 1)[0]
    assert slope < 0
    assert slope == pytest.approx(-k, rel=0.35)

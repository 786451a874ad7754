"""Backfill through unmodified ccxt binanceusdm against the loopback exchange's REST server."""

import numpy as np
import pytest

from collectors.backfill import Backfill, linear_perps, minute_gaps, validate_ohlcv
from collectors.bronze import read_dataset
from loopback.clients import binanceusdm
from loopback.server import BackgroundExchange

DAY = 86_400_000
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def venue():
    with BackgroundExchange(seed=7, speed=1.0) as ex:
        yield ex


def test_pages_checkpoints_topup_and_planted_gaps(venue, tmp_path):
    u = venue.universe
    client = binanceusdm(venue.rest_url)
    a, b = u.outages[0]
    since, mid, until = a - 2 * DAY, a - DAY // 2, a + DAY
    r1 = Backfill(client, tmp_path).run(["BTCUSDT"], since_ms=since, until_ms=mid)
    r2 = Backfill(client, tmp_path).run(["BTCUSDT"], since_ms=since, until_ms=until)  # incremental top-up
    bars = read_dataset(tmp_path / "bronze", "ohlcv_1m", symbol="BTCUSDT")
    t = np.sort(bars.column("open_time_ms").to_numpy())
    expected = u.klines("BTCUSDT", since, until - 60_000)
    assert np.array_equal(t, expected["open_time_ms"])  # every closed bar once, nothing invented
    got = bars.sort_by("open_time_ms")
    for f in ("open", "high", "low", "close", "volume"):
        assert np.allclose(got.column(f).to_numpy(), expected[f], rtol=0, atol=1e-9), f
    assert r1.requests > 2 and r2.rows["ohlcv_1m"] == len(expected) - r1.rows["ohlcv_1m"]
    gaps = read_dataset(tmp_path / "bronze", "venue_gaps", symbol="BTCUSDT")
    assert [(s, e) for s, e in zip(gaps.column("start_ms").to_pylist(), gaps.column("end_ms").to_pylist())] == [(a, b)]
    fund = read_dataset(tmp_path / "bronze", "funding", symbol="BTCUSDT")
    exp_f = u.funding("BTCUSDT", since, until)
    assert fund.column("funding_time_ms").to_pylist() == exp_f["funding_time_ms"].tolist()
    assert fund.column("funding_rate").to_pylist() == exp_f["funding_rate"].tolist()


def test_universe_includes_delisted_and_late_listings(venue, tmp_path):
    u = venue.universe
    client = binanceusdm(venue.rest_url)
    late = next(c for c in u.contracts if c.onboard_ms > u.start_ms)
    gone = next(c for c in u.contracts if c.delist_ms is not None)
    assert gone.symbol in {m["id"] for m in linear_perps(client)}
    rep = Backfill(client, tmp_path).run([late.symbol], since_ms=None, until_ms=late.onboard_ms + DAY // 4,
                                         datasets=("ohlcv_1m",))
    late_t = read_dataset(tmp_path / "bronze", "ohlcv_1m", symbol=late.symbol).column("open_time_ms").to_numpy()
    assert late_t.min() == late.onboard_ms  # starts at the listing (onboardDate), no invented history
    Backfill(client, tmp_path).run([gone.symbol], since_ms=gone.delist_ms - DAY // 4,
                                   until_ms=gone.delist_ms + DAY // 4, datasets=("ohlcv_1m",))
    gone_t = read_dataset(tmp_path / "bronze", "ohlcv_1m", symbol=gone.symbol).column("open_time_ms").to_numpy()
    assert len(gone_t) and gone_t.max() == gone.delist_ms - 60_000  # ends at the delisting
    assert rep.symbols == 1


def test_rate_limit_is_respected(venue, tmp_path):
    """A tight weight budget on the venue: the backfill backs off on HTTP 429 and still completes exactly.
    The venue's rate-limit window follows a test clock that the backfill's sleeps advance (no real waiting)."""
    u = venue.universe
    client = binanceusdm(venue.rest_url, {"enableRateLimit": False})
    now = [1_000_000.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = venue.rest.limiter
    saved = (limiter.limit, limiter.now_s)
    limiter.limit, limiter.now_s = 25, lambda: now[0]  # klines pages of 1500 weigh 10
    try:
        rep = Backfill(client, tmp_path, sleep=sleep, max_retries=10).run(
            ["ETHUSDT"], since_ms=u.start_ms, until_ms=u.start_ms + 4 * DAY, datasets=("ohlcv_1m",))
    finally:
        limiter.limit, limiter.now_s = saved
    n = read_dataset(tmp_path / "bronze", "ohlcv_1m", symbol="ETHUSDT").num_rows
    assert n == len(u.klines("ETHUSDT", u.start_ms, u.start_ms + 4 * DAY - 60_000))
    assert rep.rate_limited > 0 and sum(slept) >= 30


def test_validation_and_gap_helpers():
    rows = [[0, 1, 2, 0.5, 1.5, 3], [60_000, 1, 0.9, 0.5, 1.5, 3], [120_000, 1, 2, 0.5, 1.5, -1],
            [180_000, 1, 2, 0.5, 1.5, 1], [180_000, 1, 2, 0.5, 1.5, 1], [300_000, 1, 2, 0.5, 1.5, 1]]
    good, bad = validate_ohlcv(rows, None, "test")
    assert [r[0] for r in good] == [0, 180_000, 300_000]
    assert "field high" in bad[0]["reason"] and "field volume" in bad[1]["reason"] and "not after" in bad[2]["reason"]
    assert minute_gaps([0, 180_000, 300_000], None) == [(60_000, 180_000), (240_000, 300_000)]

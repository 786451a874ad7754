"""IC, per-block IC, Newey-West t-statistics and autocorrelation against statsmodels / scipy / pandas."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import pearsonr, spearmanr

from research.stats import autocorrelation, default_lags, ic, ic_series, ic_table, newey_west_tstat, time_blocks


def statsmodels_nw(x, lags):
    res = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
    return res.params[0], res.tvalues[0]


@pytest.mark.parametrize("seed,lags", [(0, 0), (1, 1), (2, 5), (3, 12), (4, None)])
def test_newey_west_matches_statsmodels_hac(seed, lags):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(400)
    x = np.empty_like(e)
    x[0] = e[0]
    for i in range(1, len(e)):  # AR(1): strongly autocorrelated, as overlapping labels are
        x[i] = 0.7 * x[i - 1] + e[i]
    x += 0.1
    mean, t, used = newey_west_tstat(x, lags)
    want_mean, want_t = statsmodels_nw(x, used)
    assert used == (default_lags(400) if lags is None else lags)
    assert mean == pytest.approx(want_mean, rel=1e-12)
    assert t == pytest.approx(want_t, rel=1e-10)


def test_newey_west_edges():
    x = np.array([0.1, np.nan, 0.3, 0.2, np.nan, 0.5])
    mean, t, _ = newey_west_tstat(x, 1)
    want = statsmodels_nw(x[np.isfinite(x)], 1)
    assert mean == pytest.approx(want[0]) and t == pytest.approx(want[1])
    assert np.isnan(newey_west_tstat([1.0])[1])
    assert np.isnan(newey_west_tstat([])[0])
    assert np.isnan(newey_west_tstat([2.0, 2.0, 2.0])[1])  # no variance: no t
    assert newey_west_tstat(np.arange(5.0), lags=50)[2] == 4  # capped at n - 1


@pytest.mark.parametrize("seed", range(4))
def test_ic_matches_scipy_with_ties_and_nans(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, 200).astype(float)  # heavy ties
    y = x + rng.standard_normal(200)
    x[rng.random(200) < 0.1] = np.nan
    y[rng.random(200) < 0.1] = np.inf
    ok = np.isfinite(x) & np.isfinite(y)
    assert ic(x, y) == pytest.approx(spearmanr(x[ok], y[ok])[0], rel=1e-12)
    assert ic(x, y, "pearson") == pytest.approx(pearsonr(x[ok], y[ok])[0], rel=1e-12)
    assert np.isnan(ic([1, 1, 1, 1], [1, 2, 3, 4]))
    assert np.isnan(ic([1, 2], [1, 2]))
    with pytest.raises(ValueError):
        ic(x, y, "kendall")


def test_ic_series_and_table_match_pandas_groupby():
    rng = np.random.default_rng(7)
    n = 3000
    df = pd.DataFrame({"symbol": np.tile(["A", "B", "C"], n // 3), "ts_ns": np.repeat(np.arange(n // 3), 3) * 10**9})
    df["f"] = rng.standard_normal(n)
    df["g"] = rng.standard_normal(n)
    df["y"] = 0.2 * df["f"] + rng.standard_normal(n)
    blocks = time_blocks(df, 60)
    series = ic_series(df["f"], df["y"], blocks)
    ref = df.assign(b=blocks).groupby("b")[["f", "y"]].apply(lambda d: d["f"].corr(d["y"], method="spearman")).to_numpy()
    np.testing.assert_allclose(series, ref, rtol=1e-12)
    tab = ic_table(df, ["g", "f"], "y", block_s=60)
    assert tab["feature"].tolist() == ["f", "g"]  # sorted by |t|
    assert tab.loc[0, "nw_t"] > 5 and abs(tab.loc[1, "nw_t"]) < 3
    assert tab.loc[0, "ic_mean"] == pytest.approx(np.nanmean(ref))


def test_autocorrelation_matches_brute_force():
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.standard_normal(500))
    acf = autocorrelation(x, 5)
    m = x.mean()
    for lag in range(1, 6):
        ref = np.sum((x[lag:] - m) * (x[:-lag] - m)) / np.sum((x - m) ** 2)
        assert acf[lag] == pytest.approx(ref)
    assert acf[0] == 1.0


def slow_ic_series(x, y, blocks, method, min_rows):
    out = []
    for b in range(int(blocks.max()) + 1):
        m = (blocks == b) & np.isfinite(x) & np.isfinite(y)
        out.append(ic(x[m], y[m], method) if m.sum() >= min_rows else np.nan)
    return np.array(out)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_vectorized_ic_series_equals_the_block_loop_on_adversarial_blocks(method):
    rng = np.random.default_rng(12)
    n = 2000
    blocks = np.sort(rng.integers(0, 40, n))
    x = rng.integers(0, 4, n).astype(float)  # ties
    y = x + rng.standard_normal(n)
    x[rng.random(n) < 0.2] = np.nan
    y[blocks == 3] = 1.0  # constant block: no IC
    x[blocks == 5] = np.nan  # empty block
    blocks[blocks == 7] = 8  # a missing block id
    got = ic_series(x, y, blocks, method, min_rows=10)
    np.testing.assert_allclose(got, slow_ic_series(x, y, blocks, method, 10), rtol=1e-10, atol=1e-12)
    assert np.isnan(got[[3, 5, 7]]).all()

"""Information coefficients and their Newey-West t-statistics.

* IC of a feature x for a forward return y: Spearman's rank correlation (Pearson on ranks, average ranks for
  ties) or Pearson's correlation, over the rows where both are finite.
* Per-block IC: the IC inside each consecutive time block (e.g. 5 minutes per symbol), a series whose mean is
  the feature's average predictive correlation. Overlapping labels make neighbouring blocks dependent, so the
  t-statistic of its mean uses the Newey-West (1987) HAC variance:

      t = xbar / sqrt(S / n),   S = gamma_0 + 2 sum_{l=1}^{L} (1 - l / (L + 1)) gamma_l,
      gamma_l = (1/n) sum_{t=l+1}^{n} (x_t - xbar)(x_{t-l} - xbar)

  with Bartlett weights; the default lag L = floor(4 (n / 100)^(2/9)) (Newey & West 1994). This is exactly
  statsmodels' OLS-on-a-constant with ``cov_type='HAC'`` (no small-sample correction).
* IC decay: the IC of one feature against the forward returns of increasing horizons.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def default_lags(n: int) -> int:
    return int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0))) if n > 0 else 0


def newey_west_tstat(x, lags: int | None = None) -> tuple[float, float, int]:
    """(mean, Newey-West t-statistic of the mean, lags used) of a series; NaNs are dropped."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return (float(x.mean()) if n else float("nan")), float("nan"), 0
    lags = default_lags(n) if lags is None else int(min(lags, n - 1))
    m = x.mean()
    e = x - m
    s = e @ e / n
    for lag in range(1, lags + 1):
        s += 2.0 * (1.0 - lag / (lags + 1.0)) * (e[lag:] @ e[:-lag]) / n
    if s <= 0:
        return float(m), float("nan"), lags
    return float(m), float(m / math.sqrt(s / n)), lags


def ic(x, y, method: str = "spearman") -> float:
    """Spearman (default) or Pearson correlation over rows where both are finite; NaN if < 3 rows or constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    x, y = x[ok], y[ok]
    if method == "spearman":
        x, y = rankdata(x), rankdata(y)
    elif method != "pearson":
        raise ValueError(f"method must be spearman or pearson, not {method!r}")
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


def time_blocks(df: pd.DataFrame, block_s: float) -> np.ndarray:
    """Block id per row: (symbol, floor(ts / block)) -> consecutive integers in time order."""
    b = (df["ts_ns"].to_numpy() // int(block_s * 1e9)).astype(np.int64)
    keys = pd.MultiIndex.from_arrays([b, df["symbol"].to_numpy()])
    return pd.factorize(keys, sort=True)[0]


def ic_series(x, y, blocks, method: str = "spearman", min_rows: int = 10) -> np.ndarray:
    """IC inside each block, in block order (blocks = consecutive integer ids 0..B-1, e.g. ``time_blocks``);
    NaN where a block has fewer than ``min_rows`` rows with both values finite or no variance.

    Vectorized: ranks within blocks (average ranks for ties) by a pandas group rank over the usable rows, then
    per block Pearson's r = S_xy / sqrt(S_xx S_yy) from group sums of centred values."""
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be spearman or pearson, not {method!r}")
    x, y, blocks = np.asarray(x, float), np.asarray(y, float), np.asarray(blocks, np.int64)
    n_blocks = int(blocks.max()) + 1 if len(blocks) else 0
    ok = np.isfinite(x) & np.isfinite(y)
    d = pd.DataFrame({"b": blocks[ok], "x": x[ok], "y": y[ok]})
    if method == "spearman":
        g = d.groupby("b")
        d["x"], d["y"] = g["x"].rank(), g["y"].rank()
    g = d.groupby("b")
    d["x"] -= g["x"].transform("mean")
    d["y"] -= g["y"].transform("mean")
    d["xx"], d["yy"], d["xy"] = d["x"] ** 2, d["y"] ** 2, d["x"] * d["y"]
    sums = d.groupby("b")[["xx", "yy", "xy"]].sum()
    counts = d.groupby("b").size()
    den = np.sqrt(sums["xx"] * sums["yy"])
    r = (sums["xy"] / den).where((den > 0) & (counts >= min_rows))
    out = np.full(n_blocks, np.nan)
    out[r.index.to_numpy()] = r.to_numpy()
    return out


def ic_table(df: pd.DataFrame, features: list[str], label: str, block_s: float = 300.0, method: str = "spearman",
             lags: int | None = None) -> pd.DataFrame:
    """Per feature: pooled IC, mean per-block IC, its Newey-West t-statistic, blocks used; sorted by |t|."""
    blocks = time_blocks(df, block_s)
    y = df[label].to_numpy(float)
    rows = []
    for f in features:
        x = df[f].to_numpy(float)
        series = ic_series(x, y, blocks, method)
        mean, t, used = newey_west_tstat(series, lags)
        rows.append({"feature": f, "ic": ic(x, y, method), "ic_mean": mean, "nw_t": t,
                     "blocks": int(np.isfinite(series).sum()), "lags": used})
    out = pd.DataFrame(rows)
    return out.reindex(out["nw_t"].abs().sort_values(ascending=False, na_position="last").index).reset_index(drop=True)


def ic_decay(df: pd.DataFrame, feature: str, returns: dict[float, str], method: str = "spearman") -> pd.Series:
    """IC of ``feature`` against each forward return column, indexed by horizon in seconds."""
    x = df[feature].to_numpy(float)
    return pd.Series({h: ic(x, df[col].to_numpy(float), method) for h, col in sorted(returns.items())},
                     name=feature)


def autocorrelation(x, max_lag: int) -> np.ndarray:
    """Sample autocorrelation r_l = sum (x_t - m)(x_{t-l} - m) / sum (x_t - m)^2 for l = 0..max_lag (NaN-free
    series; NaNs are dropped first)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    e = x - x.mean()
    den = e @ e
    return np.array([1.0] + [(e[lag:] @ e[:-lag]) / den if den > 0 and lag < len(e) else np.nan
                             for lag in range(1, max_lag + 1)])

"""Hourly features: one symbol per hour, from its 1-min bars and its funding events (table ``hourly``).

Row h describes the hour [H, H + 1 h) and is stamped ``ts_ns = (H + 1 h + 1 ms)`` in ns: the hour's last
1-min bar closes at H + 1 h, so the row is available at bar close + 1 ms (DESIGN.md, timestamps contract).
A row reads only bars with ``H <= open_time < H + 1 h`` and funding events published at or before its stamp,
so forward reach is 0 by construction. Hours without any bar get no row: venue gaps are never filled, and the
``h_coverage`` column says how much of a row's hour was there.

Notation for one hour: bars j = 0..n-1 present (n <= 60) with open time t_j, o_j, h_j, l_j, c_j, v_j;
O = o_0, H = max h_j, L = min l_j, C = c_{n-1}; p_j = (h_j + l_j + c_j) / 3 the typical price.

* ``h_open`` = O, ``h_high`` = H, ``h_low`` = L, ``h_close`` = C, ``h_volume`` = sum v_j: exactly the venue's
  1-hour kline aggregated from its 1-min bars (first open, max high, min low, last close, summed volume). The volume
  sum is exact in decimal (volumes are decimal quantities: summed as integers at their decimal scale), the
  turnover sum correctly rounded (``math.fsum``); neither depends on summation order or partitioning.
* ``h_coverage`` = n / 60 (bars present over minutes in the hour).
* ``h_turnover`` = sum p_j v_j (quote units, typical-price approximation of the quote volume).
* ``h_log_return`` = ln(C / O).
* ``h_vwap_dev_bps`` = 1e4 (C / VWAP - 1) with VWAP = sum p_j v_j / sum v_j (NaN if no volume).
* ``h_rv`` = sqrt(60 / m * sum_k r_k^2): realized volatility of the hour from its 1-min close-to-close log
  returns r_k = ln(c_j / c_{j-1}) between bars one minute apart inside the hour (m of them; a return across a
  gap or from the previous hour is not used), scaled to 60 returns. NaN if m = 0. (Andersen & Bollerslev 1998.)
* ``h_parkinson_vol`` = sqrt(ln(H / L)^2 / (4 ln 2))  (Parkinson 1980), from the hour's own high and low.
* ``h_garman_klass_vol`` = sqrt(0.5 ln(H / L)^2 - (2 ln 2 - 1) ln(C / O)^2)  (Garman & Klass 1980); the
  argument is >= (0.5 - 0.386) ln(H / L)^2 >= 0 because |ln(C / O)| <= ln(H / L).
* ``h_volume_cv`` = std(v_j) / mean(v_j) over the bars present (population std; NaN if n < 2 or no volume).
* ``h_funding_rate``: the latest funding rate with publication time ``funding_time <= ts_ns`` (forward-filled
  from its publication time, never from the future; NaN before the first one). ``h_funding_age_h``: hours from
  that publication to ``ts_ns``.
* ``h_hour_of_day``: the UTC hour of H (0..23).

Partitions: a row depends only on its own hour's bars and on the funding history up to its stamp, so hours can be
computed in any partition as long as the funding events before the partition are passed too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kernels.catalog import FeatureSpec

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MS_NS = 1_000_000
STAMP_DELAY_MS = 1  # a row is available at bar close + 1 ms
KERNEL = "kernels.hourly.compute_hourly"


def _spec(name, unit, window, description, reference=""):
    return FeatureSpec(name=name, family="hourly", kernel=KERNEL, table="hourly", unit=unit, window=window,
                       description=description, reference=reference)


FEATURES: list[FeatureSpec] = [
    _spec("h_open", "price", "60 bars", "open of the hour: the first 1-min bar's open"),
    _spec("h_high", "price", "60 bars", "high of the hour: max of the 1-min highs"),
    _spec("h_low", "price", "60 bars", "low of the hour: min of the 1-min lows"),
    _spec("h_close", "price", "60 bars", "close of the hour: the last 1-min bar's close"),
    _spec("h_volume", "base units", "60 bars", "volume of the hour: sum of the 1-min volumes"),
    _spec("h_coverage", "1", "60 bars", "1-min bars present / 60 (venue gaps are not filled)"),
    _spec("h_turnover", "quote units", "60 bars", "sum of typical price (h+l+c)/3 x volume over the 1-min bars"),
    _spec("h_log_return", "log return", "60 bars", "ln(close / open) of the hour"),
    _spec("h_vwap_dev_bps", "bps", "60 bars", "1e4 (close / VWAP - 1), VWAP from typical prices"),
    _spec("h_rv", "log return", "60 bars",
          "realized volatility: sqrt(60/m sum r^2) over the m 1-min close-to-close log returns in the hour",
          "Andersen & Bollerslev (1998), Answering the skeptics"),
    _spec("h_parkinson_vol", "log return", "60 bars", "sqrt(ln(H/L)^2 / (4 ln 2)) of the hour",
          "Parkinson (1980), The extreme value method for estimating the variance of the rate of return"),
    _spec("h_garman_klass_vol", "log return", "60 bars",
          "sqrt(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2) of the hour",
          "Garman & Klass (1980), On the estimation of security price volatilities from historical data"),
    _spec("h_volume_cv", "1", "60 bars", "coefficient of variation (population std / mean) of the 1-min volumes"),
    _spec("h_funding_rate", "rate per funding interval", "all funding up to the stamp",
          "latest funding rate published at or before the row stamp (forward-filled, never from the future)"),
    _spec("h_funding_age_h", "h", "all funding up to the stamp", "hours since that funding rate was published"),
    _spec("h_hour_of_day", "h", "0", "UTC hour of the hour start (0..23)"),
]
COLUMNS = [s.name for s in FEATURES]


def _col(data, name) -> np.ndarray:
    return np.asarray(data[name])


def row_stamp_ns(hour_start_ms) -> np.ndarray:
    """The availability stamp (ns) of the hour starting at ``hour_start_ms``: bar close + 1 ms."""
    return (np.asarray(hour_start_ms, np.int64) + HOUR_MS + STAMP_DELAY_MS) * MS_NS


def compute_hourly(bars, funding=None, symbol: str | None = None,
                   complete_through_ms: int | None = None) -> pd.DataFrame:
    """Hourly rows of one symbol (see the module docstring for the formulas).

    ``bars``: 1-min bars with columns ``open_time_ms, open, high, low, close, volume`` (a structured array, a
    dict of arrays or a DataFrame), strictly increasing minute-aligned open times. ``funding``: events with
    ``funding_time_ms, funding_rate`` (or None). ``complete_through_ms``: drop hours that end after this time
    (not yet closed). Returns a DataFrame with ``ts_ns`` (stamp), ``hour_start_ns``, optionally ``symbol``, and
    the ``FEATURES`` columns, one row per hour with at least one bar, in time order.
    """
    t = _col(bars, "open_time_ms").astype(np.int64)
    if len(t) and (np.any(np.diff(t) <= 0) or np.any(t % MINUTE_MS)):
        raise ValueError("1-min bars must have strictly increasing, minute-aligned open times")
    o, h, lo, c, v = (_col(bars, k).astype(np.float64) for k in ("open", "high", "low", "close", "volume"))
    hour = t - t % HOUR_MS
    if complete_through_ms is not None:
        keep = hour + HOUR_MS <= complete_through_ms
        t, o, h, lo, c, v, hour = (a[keep] for a in (t, o, h, lo, c, v, hour))
    if len(t) == 0:
        return _frame(np.empty(0, np.int64), {k: np.empty(0) for k in COLUMNS}, symbol)
    starts = np.r_[0, np.flatnonzero(np.diff(hour)) + 1]
    ends = np.r_[starts[1:], len(t)]
    n = (ends - starts).astype(np.float64)
    H = hour[starts]
    out: dict[str, np.ndarray] = {}
    O, C = o[starts], c[ends - 1]
    Hi, Lo = np.maximum.reduceat(h, starts), np.minimum.reduceat(lo, starts)
    vol = _decimal_sum_reduceat(v, starts, ends)
    out["h_open"], out["h_high"], out["h_low"], out["h_close"], out["h_volume"] = O, Hi, Lo, C, vol
    out["h_coverage"] = n / 60.0
    tp = (h + lo + c) / 3.0
    turnover = _fsum_reduceat(tp * v, starts, ends)
    out["h_turnover"] = turnover
    with np.errstate(divide="ignore", invalid="ignore"):
        out["h_log_return"] = np.log(C / O)
        vwap = np.where(vol > 0, turnover / np.where(vol > 0, vol, 1.0), np.nan)
        out["h_vwap_dev_bps"] = 1e4 * (C / vwap - 1.0)
        # 1-min close-to-close returns between bars one minute apart in the same hour
        r2 = np.zeros(len(t))
        ok = np.zeros(len(t), bool)
        ok[1:] = (np.diff(t) == MINUTE_MS) & (hour[1:] == hour[:-1])
        r2[1:] = np.where(ok[1:], np.log(c[1:] / c[:-1]) ** 2, 0.0)
        m = np.add.reduceat(ok.astype(np.float64), starts)
        ssq = np.add.reduceat(r2, starts)
        out["h_rv"] = np.where(m > 0, np.sqrt(60.0 / np.where(m > 0, m, 1.0) * ssq), np.nan)
        hl2 = np.log(Hi / Lo) ** 2
        co2 = np.log(C / O) ** 2
        out["h_parkinson_vol"] = np.sqrt(hl2 / (4.0 * math.log(2.0)))
        out["h_garman_klass_vol"] = np.sqrt(0.5 * hl2 - (2.0 * math.log(2.0) - 1.0) * co2)
        mean_v = vol / n
        dev2 = (v - np.repeat(mean_v, ends - starts)) ** 2
        std_v = np.sqrt(np.add.reduceat(dev2, starts) / n)
        out["h_volume_cv"] = np.where((n >= 2) & (mean_v > 0), std_v / np.where(mean_v > 0, mean_v, 1.0), np.nan)
    stamp = row_stamp_ns(H)
    rate, age = funding_asof(funding, stamp)
    out["h_funding_rate"], out["h_funding_age_h"] = rate, age
    out["h_hour_of_day"] = ((H // HOUR_MS) % 24).astype(np.float64)
    return _frame(H, out, symbol)


def _decimal_sum_reduceat(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sums of runs of decimal quantities (volumes printed by a venue with at most 12 decimals), exact: with the
    smallest k such that every x = m / 10^k for an integer m, sum the m as integers and divide once, which is the
    double nearest the exact decimal sum (what the venue prints). Falls back to ``math.fsum`` otherwise."""
    for k in range(13):
        scale = 10.0**k
        m = np.round(x * scale)
        if np.all(m / scale == x):
            if np.abs(m).sum() < 2.0**53:
                return np.add.reduceat(m.astype(np.int64), starts) / scale
            break
    return _fsum_reduceat(x, starts, ends)


def _fsum_reduceat(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Correctly rounded sum of each run ``x[starts[k]:ends[k]]`` (``math.fsum``): the nearest double to the
    exact sum, independent of the order and of how the bars were split into partitions."""
    xs = x.tolist()
    return np.array([math.fsum(xs[a:b]) for a, b in zip(starts.tolist(), ends.tolist())], np.float64)


def funding_asof(funding, stamp_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rate, age in hours) of the latest funding event published at or before each stamp (NaN if none)."""
    n = len(stamp_ns)
    if funding is None or len(_col(funding, "funding_time_ms")) == 0:
        return np.full(n, np.nan), np.full(n, np.nan)
    ft = _col(funding, "funding_time_ms").astype(np.int64) * MS_NS
    fr = _col(funding, "funding_rate").astype(np.float64)
    order = np.argsort(ft, kind="stable")
    ft, fr = ft[order], fr[order]
    idx = np.searchsorted(ft, stamp_ns, side="right") - 1
    has = idx >= 0
    j = np.maximum(idx, 0)
    rate = np.where(has, fr[j], np.nan)
    age = np.where(has, (stamp_ns - ft[j]) / (HOUR_MS * MS_NS), np.nan)
    return rate, age


def _frame(hour_start_ms: np.ndarray, out: dict, symbol: str | None) -> pd.DataFrame:
    cols: dict = {"ts_ns": row_stamp_ns(hour_start_ms), "hour_start_ns": hour_start_ms.astype(np.int64) * MS_NS}
    if symbol is not None:
        cols["symbol"] = np.full(len(hour_start_ms), symbol, dtype=object)
    cols.update({k: np.asarray(out[k], np.float64) for k in COLUMNS})
    return pd.DataFrame(cols)

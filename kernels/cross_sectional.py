"""Cross-sectional features: one symbol per hour, relative to the whole universe at that hour (table
``cross_sectional``).

Input: a panel of hourly rows (``kernels.hourly.compute_hourly`` with a ``symbol`` column) for every symbol of
the universe. Row (i, H) is stamped like the hourly rows of hour H (``ts_ns`` = H + 1 h + 1 ms): it reads the
hourly rows of every symbol for hours <= H only, all stamped at or before its own stamp, so forward reach is 0.
Nothing is filled: a missing hourly row stays missing (no forward or backward fill), and a window statistic is
computed from the rows present in its window, with a minimum count.

**Coverage filter.** A symbol is *listed* at H if it has an hourly row in the trailing 24 hours [H - 23 h, H]
(point-in-time: a symbol appears with its first bar and drops out 24 h after its last), or, when ``listed`` is
given (``{symbol: (onboard_ns, delist_ns or None)}`` from the venue's exchange info), if onboard <= H < delist.
``xs_coverage`` = (symbols with a row at H) / (symbols listed at H). The cross-section of hour H is computed
only if ``xs_coverage >= 0.5`` and at least 2 symbols have a row; otherwise the cross-sectional comparisons
(``xs_funding_pressure``, ``xs_funding_pressure_z``, ``xs_relative_volume``, ``xs_rel_return_1h``) are NaN for
that hour (e.g. during a venue outage most symbols have no bar, and a median of the few left is not the
universe's). The per-symbol time-series features below do not depend on the cross-section and are kept.

Notation at hour H over the set P_H of symbols with a row (and a finite value): F_i funding rate (latest
published at or before the stamp), r_i = ``h_log_return`` = ln(C_i / O_i) of the hour, V_i ``h_turnover``,
C_i close, s_i ``h_rv``.

* ``xs_funding_pressure`` = F_i - median_{j in P_H} F_j
* ``xs_funding_pressure_z`` = (F_i - median F) / (1.4826 MAD(F)), MAD the median absolute deviation (NaN if 0)
* ``xs_relative_volume`` = V_i / median_{j in P_H} V_j
* ``xs_rel_return_1h`` = r_i - mean_{j in P_H} r_j
* ``xs_turnover_ratio_24h`` = V_i(H) / mean of V_i over its rows at H - 24 h .. H - 1 h (>= 12 rows, else NaN)
* ``xs_efficiency_24h`` = |sum r_i| / sum |r_i| over its rows at H - 23 h .. H (>= 12 rows; NaN if the
  denominator is 0): 1 for a straight move, near 0 for noise (Kaufman's efficiency ratio on hourly returns)
* ``xs_mom_{k}h`` for k = 1, 24, 168: ln(C_i(H) / C_i(H - k h)), NaN if either row is missing
* ``xs_vol_regime_168h`` = s_i(H) / sqrt(mean of s_i^2 over its rows at H - 168 h .. H - 1 h) (>= 84 rows)
* ``xs_coverage``: share of listed symbols with a row at H (the filter's input)

Partitions: every value of hour H is a function of the rows of hours H - 168 h .. H only (window sums are taken
per window, not as differences of running totals), so a partition computed with the previous 168 hours of rows
prepended gives the same values as one batch; drop the prepended rows' outputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kernels.catalog import FeatureSpec

HOUR_NS = 3_600_000_000_000
MIN_COVERAGE = 0.5
LISTED_LOOKBACK_H = 24
TURNOVER_WINDOW_H, TURNOVER_MIN = 24, 12
EFFICIENCY_WINDOW_H, EFFICIENCY_MIN = 24, 12
MOMENTUM_H = (1, 24, 168)
VOL_REGIME_WINDOW_H, VOL_REGIME_MIN = 168, 84
MAD_SCALE = 1.4826
KERNEL = "kernels.cross_sectional.compute_cross_sectional"
INPUT_COLUMNS = ("symbol", "hour_start_ns", "ts_ns", "h_close", "h_log_return", "h_turnover", "h_rv",
                 "h_funding_rate")


def _spec(name, unit, window, description, reference="", params=None):
    return FeatureSpec(name=name, family="cross_sectional", kernel=KERNEL, table="cross_sectional", unit=unit,
                       window=window, description=description, reference=reference, params=params or {})


FEATURES: list[FeatureSpec] = [
    _spec("xs_funding_pressure", "rate per funding interval", "1 h x universe",
          "funding rate minus the cross-sectional median funding rate at the hour (coverage >= 50%)"),
    _spec("xs_funding_pressure_z", "1", "1 h x universe",
          "(funding - median) / (1.4826 MAD) across the universe at the hour (coverage >= 50%)"),
    _spec("xs_relative_volume", "1", "1 h x universe", "turnover / cross-sectional median turnover at the hour"),
    _spec("xs_rel_return_1h", "log return", "1 h x universe", "hour log return minus the cross-sectional mean"),
    _spec("xs_turnover_ratio_24h", "1", "25 h", "turnover / the symbol's mean turnover over the previous 24 h",
          params={"window_h": TURNOVER_WINDOW_H, "min_rows": TURNOVER_MIN}),
    _spec("xs_efficiency_24h", "1", "24 h", "|sum of hourly log returns| / sum of |hourly log returns| over 24 h",
          "Kaufman (1995), Smarter Trading (efficiency ratio)",
          params={"window_h": EFFICIENCY_WINDOW_H, "min_rows": EFFICIENCY_MIN}),
    *[_spec(f"xs_mom_{k}h", "log return", f"{k + 1} h", f"ln(close now / close {k} h ago)", params={"k_h": k})
      for k in MOMENTUM_H],
    _spec("xs_vol_regime_168h", "1", "169 h",
          "realized vol of the hour / RMS realized vol over the previous 168 h",
          params={"window_h": VOL_REGIME_WINDOW_H, "min_rows": VOL_REGIME_MIN}),
    _spec("xs_coverage", "1", "24 h x universe", "symbols with a row at the hour / symbols listed at the hour"),
]
COLUMNS = [s.name for s in FEATURES]


def _windows(x: np.ndarray, w: int, shift: int) -> np.ndarray:
    """(S, T, w) view: for each column t the values at t - shift - w + 1 .. t - shift (NaN before the start)."""
    s, t = x.shape
    pad = np.full((s, w - 1 + shift), np.nan)
    xp = np.concatenate([pad, x], axis=1)[:, : t + w - 1]
    return np.lib.stride_tricks.sliding_window_view(xp, w, axis=1)


def _rows_median(x: np.ndarray) -> np.ndarray:
    """Column-wise nanmedian of an (S, T) matrix, NaN (no warning) for an all-NaN column."""
    out = np.full(x.shape[1], np.nan)
    has = (~np.isnan(x)).any(axis=0)
    if has.any():
        out[has] = np.nanmedian(x[:, has], axis=0)
    return out


def compute_cross_sectional(panel: pd.DataFrame, listed: dict | None = None) -> pd.DataFrame:
    """Cross-sectional features for every row of ``panel`` (see the module docstring). ``panel`` needs the
    columns ``INPUT_COLUMNS``; one row per (symbol, hour). Returns ``symbol, hour_start_ns, ts_ns`` and the
    ``FEATURES`` columns, in the panel's row order."""
    missing = [c for c in INPUT_COLUMNS if c not in panel.columns]
    if missing:
        raise ValueError(f"panel lacks columns {missing}")
    if panel.duplicated(["symbol", "hour_start_ns"]).any():
        raise ValueError("panel has more than one row for a (symbol, hour)")
    hour = panel["hour_start_ns"].to_numpy(np.int64)
    if len(panel) == 0:
        return pd.DataFrame({k: [] for k in ("symbol", "hour_start_ns", "ts_ns", *COLUMNS)})
    if np.any(hour % HOUR_NS):
        raise ValueError("hour_start_ns must be whole hours")
    symbols, si = np.unique(panel["symbol"].to_numpy().astype(str), return_inverse=True)
    h0 = int(hour.min())
    ti = (hour - h0) // HOUR_NS
    S, T = len(symbols), int(ti.max()) + 1

    def mat(col):
        m = np.full((S, T), np.nan)
        m[si, ti] = panel[col].to_numpy(np.float64)
        return m

    present = np.zeros((S, T), bool)
    present[si, ti] = True
    close, ret, turn, rv, fund = (mat(c) for c in ("h_close", "h_log_return", "h_turnover", "h_rv", "h_funding_rate"))

    grid = h0 + HOUR_NS * np.arange(T, dtype=np.int64)
    if listed is None:
        is_listed = (_windows(present.astype(np.float64), LISTED_LOOKBACK_H, 0) > 0).any(axis=2)  # NaN pad: False
    else:
        is_listed = np.zeros((S, T), bool)
        for k, sym in enumerate(symbols):
            on, off = listed.get(sym, (None, None))
            is_listed[k] = (grid >= (on if on is not None else np.iinfo(np.int64).min)) & \
                           (grid < (off if off is not None else np.iinfo(np.int64).max))
        is_listed |= present  # a symbol with data is listed, whatever the metadata says
    n_listed = is_listed.sum(axis=0)
    n_present = present.sum(axis=0)
    coverage = np.where(n_listed > 0, n_present / np.maximum(n_listed, 1), np.nan)
    ok = (n_present >= 2) & (coverage >= MIN_COVERAGE)

    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        med_f = _rows_median(fund)
        mad = _rows_median(np.abs(fund - med_f))
        out["xs_funding_pressure"] = np.where(ok, fund - med_f, np.nan)
        out["xs_funding_pressure_z"] = np.where(ok & (mad > 0), (fund - med_f) / (MAD_SCALE * mad), np.nan)
        med_v = _rows_median(turn)
        out["xs_relative_volume"] = np.where(ok & (med_v > 0), turn / med_v, np.nan)
        cnt_r = (~np.isnan(ret)).sum(axis=0)
        mean_r = np.where(cnt_r > 0, np.nansum(ret, axis=0) / np.maximum(cnt_r, 1), np.nan)
        out["xs_rel_return_1h"] = np.where(ok, ret - mean_r, np.nan)

        w = _windows(turn, TURNOVER_WINDOW_H, 1)
        n = (~np.isnan(w)).sum(axis=2)
        mean_t = np.nansum(w, axis=2) / np.maximum(n, 1)
        out["xs_turnover_ratio_24h"] = np.where((n >= TURNOVER_MIN) & (mean_t > 0), turn / mean_t, np.nan)

        w = _windows(ret, EFFICIENCY_WINDOW_H, 0)
        n = (~np.isnan(w)).sum(axis=2)
        den = np.nansum(np.abs(w), axis=2)
        eff = np.abs(np.nansum(w, axis=2)) / den
        out["xs_efficiency_24h"] = np.where((n >= EFFICIENCY_MIN) & (den > 0), eff, np.nan)

        for k in MOMENTUM_H:
            past = np.full((S, T), np.nan)
            if k < T:
                past[:, k:] = close[:, : T - k]
            out[f"xs_mom_{k}h"] = np.log(close / past)

        w = _windows(rv * rv, VOL_REGIME_WINDOW_H, 1)
        n = (~np.isnan(w)).sum(axis=2)
        ms = np.nansum(w, axis=2) / np.maximum(n, 1)
        out["xs_vol_regime_168h"] = np.where((n >= VOL_REGIME_MIN) & (ms > 0), rv / np.sqrt(ms), np.nan)
        out["xs_coverage"] = np.broadcast_to(coverage, (S, T))

    res = {"symbol": panel["symbol"].to_numpy(), "hour_start_ns": hour, "ts_ns": panel["ts_ns"].to_numpy(np.int64)}
    for name in COLUMNS:
        res[name] = np.asarray(out[name], np.float64)[si, ti]
    return pd.DataFrame(res, index=panel.index)


def panel_from_universe(universe, symbols=None) -> pd.DataFrame:
    """Hourly rows of every contract of a :class:`simulator.perps.PerpUniverse` (or anything with ``contracts``,
    ``klines`` and ``funding`` answering like a venue's REST history), concatenated."""
    from kernels.hourly import compute_hourly

    frames = []
    for c in universe.contracts:
        if symbols is not None and c.symbol not in symbols:
            continue
        bars = universe.klines(c.symbol, universe.start_ms, universe.end_ms)
        fund = universe.funding(c.symbol, universe.start_ms, universe.end_ms)
        frames.append(compute_hourly(bars, fund, symbol=c.symbol, complete_through_ms=universe.end_ms))
    return pd.concat(frames, ignore_index=True)

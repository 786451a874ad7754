"""Trade-flow features: the taker flow of the bucket and of time windows over (t - W, t]. Forward reach 0.

Inputs per row i (the trades received in (t_{i-1}, t_i], see :class:`kernels.frame.MarketFrame`): B_i / S_i
taker-buy / taker-sell base volume, n^B_i / n^S_i counts, N_i notional (sum of price x size), M_i the largest
trade. Window sums over (t - W, t] carry their state across partitions (``kernels.dynamic.window_sums``).

Rule for invalid rows (``valid == False``: a sequence gap, a disconnect, the start of a recording, a stale
book). Coinbase numbers every frame of a connection in one sequence, and the collector reconnects on a gap, so a
row whose book is not whole may also have lost trades. Such a row contributes nothing to any window, and:

* every trade-flow feature is NaN on the row itself;
* sums over a window (volumes, signed volumes and counts, ``tf_trade_rate_10s``) are NaN while the window holds
  an invalid row: part of its flow is unknown, and a zero would read as a quiet market (so the first W seconds
  of a recording have no W-second sums);
* ratios (imbalances, VWAP, mean trade size, large-trade share) are taken over the window's valid rows.

``tf_mid_vwap_dev_bps_*`` is also NaN on a one-sided book. Ratios with an empty denominator (no trades in the
window's valid rows) are NaN.

Features (W in seconds)
    * ``tf_signed_volume``                 B_i - S_i (1 row)
    * ``tf_signed_volume_{W}s``            sum (B - S);  ``tf_volume_{W}s`` sum (B + S)
    * ``tf_signed_count_{W}s``             sum (n^B - n^S): signed trade count (every trade weighs the same, so
      a few large trades, e.g. pick-offs of stale quotes, cannot dominate it)
    * ``tf_imbalance_{W}s``                sum (B - S) / sum (B + S)      (Chordia & Subrahmanyam 2004)
    * ``tf_count_imbalance_{W}s``          sum (n^B - n^S) / sum (n^B + n^S)
    * ``tf_trade_rate_10s``                sum (n^B + n^S) / 10 s
    * ``tf_avg_trade_size_60s``            sum (B + S) / sum (n^B + n^S)
    * ``tf_vwap_{W}s``                     sum N / sum (B + S)
    * ``tf_mid_vwap_dev_bps_{W}s``         1e4 (mid_i - vwap) / vwap
    * ``tf_large_trade_share_60s``         sum_j M_j 1[M_j >= K mbar_j] / sum (B + S) over the window, where
      mbar_j = sum (B + S) / sum (n^B + n^S) over the 60 s window that ends at row j-1 (strictly before the
      bucket, so the threshold is causal) and K = 4. A bucket with no trade history before it has no large
      trade. The frame only keeps the largest trade of each bucket, so a bucket with several large trades
      counts only its largest: the share is a lower bound, exact when large trades fall in distinct buckets.
"""

from __future__ import annotations

import numpy as np

from kernels.catalog import FeatureSpec
from kernels.dynamic import check_clock, mid_of, new_window, run_window
from kernels.frame import MarketFrame

WINDOWS_S = (1, 10, 60)
COUNT_WINDOWS_S = (10, 60)
VWAP_WINDOWS_S = (10, 60)
LARGE_WINDOW_S = 60
LARGE_K = 4.0
KERNEL = "kernels.trade_flow.compute"
# window columns
C_BUY, C_SELL, C_NBUY, C_NSELL, C_NOTIONAL, C_INVALID = range(6)


def _spec(name, unit, window, description, reference="", params=None):
    return FeatureSpec(name=name, family="trade_flow", kernel=KERNEL, table="book", unit=unit, window=window,
                       description=description, reference=reference, params=params or {})


CS = "Chordia & Subrahmanyam (2004), Order imbalance and individual stock returns, J. Financial Economics"
FEATURES: list[FeatureSpec] = [_spec("tf_signed_volume", "base units", "1 row", "taker buy - sell volume in the bucket")]
for _w in WINDOWS_S:
    FEATURES += [
        _spec(f"tf_signed_volume_{_w}s", "base units", f"{_w} s", f"taker buy - sell volume over (t - {_w} s, t]",
              params={"window_s": _w}),
        _spec(f"tf_volume_{_w}s", "base units", f"{_w} s", f"traded volume over (t - {_w} s, t]",
              params={"window_s": _w}),
        _spec(f"tf_imbalance_{_w}s", "1", f"{_w} s", f"(buy - sell) / (buy + sell) volume over (t - {_w} s, t]", CS,
              {"window_s": _w}),
        _spec(f"tf_signed_count_{_w}s", "trades", f"{_w} s", f"taker buys - taker sells (count) over (t - {_w} s, t]",
              CS, {"window_s": _w}),
    ]
FEATURES += [
    _spec(f"tf_count_imbalance_{w}s", "1", f"{w} s", f"(buys - sells) / (buys + sells) trade counts over {w} s", CS,
          {"window_s": w})
    for w in COUNT_WINDOWS_S
]
FEATURES += [
    _spec("tf_trade_rate_10s", "1/s", "10 s", "trades per second over (t - 10 s, t]", params={"window_s": 10}),
    _spec("tf_avg_trade_size_60s", "base units", "60 s", "mean trade size over (t - 60 s, t]", params={"window_s": 60}),
]
for _w in VWAP_WINDOWS_S:
    FEATURES += [
        _spec(f"tf_vwap_{_w}s", "price", f"{_w} s", f"volume-weighted trade price over (t - {_w} s, t]",
              params={"window_s": _w}),
        _spec(f"tf_mid_vwap_dev_bps_{_w}s", "bps", f"{_w} s", f"1e4 (mid - vwap_{_w}s) / vwap_{_w}s",
              params={"window_s": _w}),
    ]
FEATURES += [
    _spec("tf_large_trade_share_60s", "1", "120 s (60 s window, threshold from the 60 s before each bucket)",
          f"share of 60 s volume in bucket-largest trades >= {LARGE_K:g} x the mean trade size of the preceding 60 s "
          "(lower bound: one large trade per bucket counted)",
          "Easley, Kiefer & O'Hara (1997); large-trade share as in Barclay & Warner (1993) stealth trading",
          {"window_s": LARGE_WINDOW_S, "k": LARGE_K}),
]


def new_state() -> dict:
    return {}


def _ratio(num, den):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def compute(f: MarketFrame, state: dict | None = None) -> dict[str, np.ndarray]:
    """Every trade-flow feature for every row of ``f`` (formulas: module docstring)."""
    state = {} if state is None else state
    check_clock(f, state)
    if "win" not in state:
        state["win"] = {w: new_window(w, state["step_ns"], 6) for w in WINDOWS_S}
        state["large"] = new_window(LARGE_WINDOW_S, state["step_ns"], 2)
        state["prev_sums"] = np.zeros(6)  # the 60 s window sums after the previous row
    n = f.n
    t = np.ascontiguousarray(f.t_ns, dtype=np.int64)
    valid = np.asarray(f.valid, dtype=bool)
    x = np.stack([f.buy_volume, f.sell_volume, f.buy_count, f.sell_count, f.notional, ~valid],
                 axis=1).astype(np.float64)
    x[~valid, :C_INVALID] = 0.0  # an invalid row's trades may be incomplete: it only counts as unknown
    sums = {w: run_window(state["win"][w], t, x) for w in WINDOWS_S}

    def known(s, value):  # a window sum: NaN while the window holds an invalid row
        return np.where(s[:, C_INVALID] > 0.5, np.nan, value)

    def on_valid(value):  # a ratio over the window's valid rows: NaN on an invalid row
        return np.where(valid, value, np.nan)

    out: dict[str, np.ndarray] = {"tf_signed_volume": on_valid(x[:, C_BUY] - x[:, C_SELL])}
    for w in WINDOWS_S:
        s = sums[w]
        out[f"tf_signed_volume_{w}s"] = known(s, s[:, C_BUY] - s[:, C_SELL])
        out[f"tf_volume_{w}s"] = known(s, s[:, C_BUY] + s[:, C_SELL])
        out[f"tf_imbalance_{w}s"] = on_valid(_ratio(s[:, C_BUY] - s[:, C_SELL], s[:, C_BUY] + s[:, C_SELL]))
        out[f"tf_signed_count_{w}s"] = known(s, s[:, C_NBUY] - s[:, C_NSELL])
    for w in COUNT_WINDOWS_S:
        s = sums[w]
        out[f"tf_count_imbalance_{w}s"] = on_valid(_ratio(s[:, C_NBUY] - s[:, C_NSELL], s[:, C_NBUY] + s[:, C_NSELL]))
    out["tf_trade_rate_10s"] = known(sums[10], (sums[10][:, C_NBUY] + sums[10][:, C_NSELL]) / 10.0)
    s60 = sums[60]
    out["tf_avg_trade_size_60s"] = on_valid(_ratio(s60[:, C_BUY] + s60[:, C_SELL], s60[:, C_NBUY] + s60[:, C_NSELL]))
    mid = mid_of(f)
    for w in VWAP_WINDOWS_S:
        s = sums[w]
        vwap = on_valid(_ratio(s[:, C_NOTIONAL], s[:, C_BUY] + s[:, C_SELL]))
        out[f"tf_vwap_{w}s"] = vwap
        out[f"tf_mid_vwap_dev_bps_{w}s"] = _ratio(1e4 * (mid - vwap), vwap)
    # large trades: threshold from the 60 s window as it stood after the previous row
    prev = np.vstack([state["prev_sums"][None, :], s60[:-1]]) if n else np.zeros((0, 6))
    mbar = _ratio(prev[:, C_BUY] + prev[:, C_SELL], prev[:, C_NBUY] + prev[:, C_NSELL])
    with np.errstate(invalid="ignore"):
        large = np.where(valid & (f.max_trade > 0) & (f.max_trade >= LARGE_K * mbar), f.max_trade, 0.0)
    ls = run_window(state["large"], t, np.stack([large, x[:, C_BUY] + x[:, C_SELL]], axis=1))
    out["tf_large_trade_share_60s"] = on_valid(_ratio(ls[:, 0], ls[:, 1]))
    if n:
        state["prev_sums"] = s60[-1].copy()
        state["last_t"] = int(t[-1])
    return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in out.items()}

"""Random and adversarial MarketFrames for kernel tests (shared by every family's tests)."""

from __future__ import annotations

import numpy as np

from kernels.frame import MarketFrame


def random_frame(n: int = 400, depth: int = 20, seed: int = 0, adversarial: bool = False,
                 step_ns: int = 100_000_000, symbol: str = "TEST-USD") -> MarketFrame:
    """A plausible book path: a random-walk mid, 1..depth levels per side at increasing distances, random
    sizes and trades. ``adversarial`` mixes in empty sides, single levels, crossed and locked books, invalid
    rows, zero-size rows, runs without trades and constant prices."""
    rng = np.random.default_rng(seed)
    mid = 100.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    tick = 0.01
    gaps_b = rng.integers(1, 5, (n, depth)) * tick
    gaps_a = rng.integers(1, 5, (n, depth)) * tick
    half = rng.integers(1, 4, n) * tick / 2
    bid_px = np.round((mid - half)[:, None] - np.cumsum(gaps_b, axis=1) + gaps_b[:, :1], 2)
    ask_px = np.round((mid + half)[:, None] + np.cumsum(gaps_a, axis=1) - gaps_a[:, :1], 2)
    bid_sz = np.round(rng.lognormal(0, 1, (n, depth)), 6)
    ask_sz = np.round(rng.lognormal(0, 1, (n, depth)), 6)
    valid = np.ones(n, bool)
    buys = rng.poisson(1.0, n)
    sells = rng.poisson(1.0, n)
    buy_vol = np.round(buys * rng.lognormal(-1, 1, n), 6)
    sell_vol = np.round(sells * rng.lognormal(-1, 1, n), 6)
    if adversarial:
        levels = rng.integers(0, depth + 1, (n, 2))
        kind = rng.integers(0, 10, n)
        levels[kind == 0, 0] = 0  # empty bid side
        levels[kind == 1, 1] = 0  # empty ask side
        levels[kind == 2] = 1  # one level each
        for side_px, side_sz, col in ((bid_px, bid_sz, 0), (ask_px, ask_sz, 1)):
            k = np.arange(depth)[None, :] >= levels[:, col:col + 1]
            side_px[k] = np.nan
            side_sz[k] = 0.0
        both = (bid_sz[:, 0] > 0) & (ask_sz[:, 0] > 0)
        crossed = (kind == 3) & both
        bid_px[crossed, 0] = ask_px[crossed, 0] + tick  # crossed
        locked = (kind == 4) & both
        bid_px[locked, 0] = ask_px[locked, 0]  # locked
        valid[kind == 5] = False
        flat = kind == 6
        buys[flat] = sells[flat] = 0
        buy_vol[flat] = sell_vol[flat] = 0.0
        run = slice(n // 3, n // 3 + min(30, n // 5))  # a run of identical books
        for a in (bid_px, bid_sz, ask_px, ask_sz):
            a[run] = a[run.start]
    last = np.where(buys + sells > 0, np.round(mid, 2), np.nan)
    idx = np.where(~np.isnan(last), np.arange(n), -1)
    idx = np.maximum.accumulate(idx)
    last_price = np.where(idx >= 0, last[np.maximum(idx, 0)], np.nan)
    t = 1_767_571_200_000_000_000 + step_ns * np.arange(1, n + 1, dtype=np.int64)
    return MarketFrame(
        symbol=symbol, step_ns=step_ns, t_ns=t, avail_ns=t - rng.integers(0, step_ns, n), valid=valid,
        bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz, buy_volume=buy_vol, sell_volume=sell_vol,
        buy_count=buys.astype(np.int64), sell_count=sells.astype(np.int64),
        notional=(buy_vol + sell_vol) * np.nan_to_num(last_price, nan=100.0),
        max_trade=np.maximum(buy_vol, sell_vol), last_price=last_price,
        book_rows=rng.integers(0, 50, n).astype(np.int64),
    )


def assert_chunked_equals_batch(module, f: MarketFrame, bounds, rows: bool = False):
    """``module.compute`` over ``f`` in the chunks ``bounds`` (and, with ``rows``, one row at a time: the live
    form), carrying ``module.new_state()``, equals the batch values bit for bit. Returns (batch, state after the
    chunked run)."""
    batch = module.compute(f)
    runs = {"chunks": [(a, b) for a, b in zip(bounds, bounds[1:])]}
    if rows:
        runs["rows"] = [(i, i + 1) for i in range(f.n)]
    for label, cuts in runs.items():
        st = module.new_state()
        parts = [module.compute(f.take(slice(a, b)), st) for a, b in cuts]
        for name in batch:
            np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), batch[name],
                                          err_msg=f"{name} ({label})")
    return batch, st

"""Spot L2 + trades market simulator: the venue side of a Coinbase-like exchange, with planted truth.

``MarketSimulator`` joins the latent processes (:mod:`simulator.latent`) with one order-book event engine per
symbol (:mod:`simulator.engine`) and hands out time-ordered venue events (:data:`SIM_EVENT_DTYPE`).

Events are produced in fixed blocks of latent steps, so the output depends only on the configuration and the
seed, never on how a caller slices time with :meth:`MarketSimulator.advance`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from simulator import engine
from simulator.config import SimConfig, load_config
from simulator.events import KIND_L2, SIM_EVENT_DTYPE
from simulator.latent import LatentBlock, LatentProcess
from simulator.products import Product

BLOCK_STEPS = 1000  # latent steps per generated block (10 s at the default 10 ms grid)
BOOK_CAPACITY = 4096  # levels per side
WARMUP_S = 120.0  # seconds of quoting with a still price before the session starts, to reach steady depth
LATENT_SAMPLE_MS = 100  # resolution of the recorded latent path (truth)


def product_of(p) -> Product:
    return Product(p.symbol, p.base, p.quote, p.tick_size, p.size_increment, p.min_size)


def engine_params(p, cfg: SimConfig) -> np.ndarray:
    params = np.zeros(engine.N_PARAMS)
    inc = float(p.size_increment)
    params[engine.P_MU_MARKET] = p.market_rate
    params[engine.P_LIMIT_RATE] = p.limit_rate
    params[engine.P_CANCEL_HAZARD] = p.cancel_hazard
    params[engine.P_BRANCHING] = p.hawkes_branching
    params[engine.P_DECAY_S] = p.hawkes_decay_s
    params[engine.P_BURST] = p.burst_limit_boost
    params[engine.P_MKT_SIZE_LOTS] = p.market_size_mean / inc
    params[engine.P_LIM_SIZE_LOTS] = p.limit_size_mean / inc
    params[engine.P_NEAR_FRACTION] = p.near_fraction
    params[engine.P_NEAR_TICKS] = p.near_offset_ticks
    params[engine.P_DEEP_BPS] = p.deep_offset_bps
    params[engine.P_MAX_BPS] = p.max_offset_bps
    params[engine.P_MIN_HALF_TICKS] = p.min_half_spread_ticks
    params[engine.P_GAMMA_M] = cfg.signal.market_flow_loading
    params[engine.P_GAMMA_L] = cfg.signal.limit_flow_loading
    params[engine.P_PICKOFF] = p.pickoff_probability
    params[engine.P_DT_S] = cfg.latent_dt_ms / 1000.0
    params[engine.P_TICK] = float(p.tick_size)
    return params


class MarketSimulator:
    """Venue events for every configured symbol. See the module docstring."""

    def __init__(self, config: SimConfig | None = None, *, seed: int | None = None, start_ns: int | None = None,
                 record_latent: bool = True):
        cfg = config or load_config()
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=int(seed))
        if start_ns is not None:
            cfg = dataclasses.replace(cfg, start_ns=int(start_ns))
        self.config = cfg
        self.products = [product_of(p) for p in cfg.products]
        self._index = {p.symbol: i for i, p in enumerate(self.products)}
        root = np.random.SeedSequence(cfg.seed)
        latent_seq, engine_seq = root.spawn(2)
        self.latent = LatentProcess(cfg, latent_seq)
        self._params = [engine_params(p, cfg) for p in cfg.products]
        seeds = engine_seq.generate_state(len(cfg.products), dtype=np.uint64)
        self._states = [engine.BookState(BOOK_CAPACITY, int(s)) for s in seeds]
        self._activity = np.asarray(cfg.regimes.activity_multiplier)
        self._dt_ns = cfg.latent_dt_ms * 1_000_000
        self._out_capacity = BLOCK_STEPS * 48 + 4 * BOOK_CAPACITY + 8192
        self._warm_up()
        self.now_ns = cfg.start_ns
        self._generated_ns = cfg.start_ns
        self._pending = np.empty(0, SIM_EVENT_DTYPE)
        self._block_start_states = [s.copy() for s in self._states]
        self._block_events = np.empty(0, SIM_EVENT_DTYPE)
        self.record_latent = record_latent
        self._latent_samples: list[dict] = []

    # -- public API ---------------------------------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return [p.symbol for p in self.products]

    def symbol_index(self, symbol: str) -> int:
        try:
            return self._index[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}: simulated symbols are {', '.join(self.symbols)}") from None

    def advance(self, until_ns: int) -> np.ndarray:
        """All events with ``now_ns <= ts_ns < until_ns``, time-ordered; then ``now_ns = until_ns``."""
        until_ns = int(until_ns)
        if until_ns < self.now_ns:
            raise ValueError(f"cannot go back in time: until_ns {until_ns} < now_ns {self.now_ns}")
        chunks = []
        while self._generated_ns < until_ns:
            chunks.append(self._pending)
            self._pending = self._generate_block()
        if chunks:
            chunks.append(self._pending)
            self._pending = np.concatenate(chunks)
        cut = int(np.searchsorted(self._pending["ts_ns"], until_ns, side="left"))
        out, self._pending = self._pending[:cut], self._pending[cut:]
        self.now_ns = until_ns
        return out

    def book(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks) at ``now_ns``: int64 arrays (n, 2) of (price ticks, size lots), best first."""
        k = self.symbol_index(symbol)
        start = self._block_start_states[k]
        ev = self._block_events
        ev = ev[(ev["symbol"] == k) & (ev["kind"] == KIND_L2) & (ev["ts_ns"] < self.now_ns)]
        sides = [dict(map(tuple, start.side(0).tolist())), dict(map(tuple, start.side(1).tolist()))]
        for side, price, size in zip(ev["side"].tolist(), ev["price"].tolist(), ev["size"].tolist()):
            if size == 0:
                sides[side].pop(price, None)
            else:
                sides[side][price] = size
        bids = np.array(sorted(sides[0].items(), reverse=True), dtype=np.int64).reshape(-1, 2)
        asks = np.array(sorted(sides[1].items()), dtype=np.int64).reshape(-1, 2)
        return bids, asks

    def latent_path(self) -> dict[str, np.ndarray]:
        """The recorded latent path at LATENT_SAMPLE_MS resolution up to the generated time (ground truth):
        ``t_ns``, ``regime`` and per symbol ``signal__S``, ``log_price__S`` (efficient), ``sigma__S``, and the
        venue's ``best_bid__S`` / ``best_ask__S`` in ticks just before ``t_ns`` (approximately: the state at the
        end of the previous latent step; the first sample of a block repeats its step's end state)."""
        if not self._latent_samples:
            return {}
        keys = self._latent_samples[0].keys()
        return {k: np.concatenate([s[k] for s in self._latent_samples]) for k in keys}

    # -- internals ----------------------------------------------------------------------------------------
    def _warm_up(self) -> None:
        steps = int(WARMUP_S * 1000 / self.config.latent_dt_ms)
        t = self.config.start_ns - steps * self._dt_ns + self._dt_ns * np.arange(steps, dtype=np.int64)
        self._last_top = []
        for k, p in enumerate(self.config.products):
            flat = np.full(steps, math.log(p.initial_price))
            _, top = self._run_engine(k, t, flat, np.zeros(steps), np.ones(steps))
            self._last_top.append(top[:, -1].copy())
            self._states[k].scalars[engine.S_TRADE_ID] = 1.0
            self._states[k].scalars[engine.S_EXCITATION] = 0.0

    _ENGINE_FIELDS = ("ts_ns", "kind", "side", "price", "size", "trade_id", "flags")

    def _run_engine(self, k: int, t_ns, log_price, signal, activity) -> tuple[np.ndarray, np.ndarray]:
        """Events of one symbol over the steps ``t_ns`` and the top of book (bid, ask ticks) after each step."""
        top = np.empty((2, len(t_ns)), dtype=np.int64)
        while True:
            saved = self._states[k].copy()
            st = self._states[k]
            n = max(self._out_capacity, len(t_ns) * 48 + 4 * BOOK_CAPACITY + 8192)
            cols = [np.empty(n, dtype=SIM_EVENT_DTYPE[f]) for f in self._ENGINE_FIELDS]
            m = engine.run_block(t_ns, self._dt_ns, log_price, signal, activity, self._params[k],
                                 st.keys, st.sizes, st.counts, st.rng, st.scalars, *cols, top[0], top[1])
            if m >= 0:
                out = np.empty(m, SIM_EVENT_DTYPE)
                for name, col in zip(self._ENGINE_FIELDS, cols):
                    out[name] = col[:m]
                out["symbol"] = k
                return out, top
            self._states[k] = saved  # buffers were too small: retry the block from the saved state
            self._out_capacity = 2 * n

    def _generate_block(self) -> np.ndarray:
        block: LatentBlock = self.latent.block(BLOCK_STEPS)
        self._block_start_states = [s.copy() for s in self._states]
        activity = self._activity[block.regime]
        runs = [
            self._run_engine(k, block.t_ns, block.log_price[k], block.signal[k], activity)
            for k in range(len(self.products))
        ]
        events = np.concatenate([events for events, _ in runs])
        previous_top = self._last_top
        self._last_top = [top[:, -1].copy() for _, top in runs]
        events = events[np.argsort(events["ts_ns"], kind="stable")]
        self._block_events = events
        self._generated_ns = int(block.t_ns[-1]) + self._dt_ns
        if self.record_latent:
            step = max(1, LATENT_SAMPLE_MS // self.config.latent_dt_ms)
            sample = {"t_ns": block.t_ns[::step], "regime": block.regime[::step]}
            for k, p in enumerate(self.products):
                sample[f"signal__{p.symbol}"] = block.signal[k, ::step]
                sample[f"log_price__{p.symbol}"] = block.log_price[k, ::step]
                sample[f"sigma__{p.symbol}"] = block.sigma[k, ::step]
                # observed top of book at t_i: the state after step i-1
                before = np.concatenate((previous_top[k][:, None], runs[k][1][:, :-1]), axis=1)[:, ::step]
                sample[f"best_bid__{p.symbol}"], sample[f"best_ask__{p.symbol}"] = before[0], before[1]
            self._latent_samples.append(sample)
        return events

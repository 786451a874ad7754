"""Perpetuals universe: 1-min OHLCV and funding for many linear perps, with a planted cross-sectional effect.

Model (all logs natural, times UTC, hour h = [H, H + 1 h)):

* Regime r_h: market-wide continuous-time Markov chain on the hourly grid (mean durations
  ``regime_mean_duration_h``), scaling volatility (``regimes.vol_multiplier``) and volume
  (``regimes.activity_multiplier``).
* Minute log return of contract i:  r_{i,m} = beta_i f_m + sigma_i v_{r(m)} e_{i,m} + d_{i,h(m)} / 60,
  with f_m the market factor (sigma_M v_r per minute) and e ~ N(0, 1).
* Crowding c_i: hourly OU, unit variance, half-life ``crowding_half_life_h``.
* Funding, published every ``funding_interval_h`` hours at T (funding_time = T exactly):
  F_i(T) = clip(base + L c_i(T) + noise, -0.0075, 0.0075).
* **Planted effect.** At each hour start H, with F_i the latest funding published at or before H and the median
  over contracts listed at H:  z_{i,h} = (F_i - median_j F_j) / L,
  d_{i,h} = -k z_{i,h} sigma^hour_i v_{r(h)}     (k = ``pressure_effect``, sigma^hour_i = sigma_i sqrt(60)).
  So funding pressure above the cross-sectional median predicts a lower next-hour return relative to the
  cross-section, with information coefficient about k.
* High and low: the exact distribution of a Brownian bridge's maximum/minimum given the minute's open and
  close: m = (x + sqrt(x^2 - 2 s^2 ln U)) / 2 above max(0, x) (each extreme drawn on its own).
* Listings start late for ``late_listings`` contracts, ``delistings`` contracts stop trading early; during
  ``venue_outages`` planted windows no contract has bars (the venue recorded none).

Hourly quantities are generated for the whole universe at construction; minute bars per contract on demand
(deterministic from the seed, cached).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from simulator.config import SimConfig, load_config
from simulator.products import decimals_of

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MINUTES_PER_YEAR = 365.0 * 1440.0
FUNDING_CAP = 0.0075

# base, initial price, tick size, step size: a listing in the style of a USD-M venue
LISTING = [
    ("BTC", 95000.0, "0.10", "0.001"), ("ETH", 3400.0, "0.01", "0.001"), ("SOL", 190.0, "0.010", "1"),
    ("BNB", 650.0, "0.010", "0.01"), ("XRP", 2.3, "0.0001", "0.1"), ("DOGE", 0.32, "0.00001", "1"),
    ("ADA", 0.85, "0.0001", "1"), ("AVAX", 38.0, "0.001", "1"), ("LINK", 21.0, "0.001", "0.01"),
    ("DOT", 7.2, "0.001", "0.1"), ("LTC", 105.0, "0.01", "0.001"), ("BCH", 450.0, "0.01", "0.001"),
    ("TRX", 0.24, "0.00001", "1"), ("NEAR", 5.1, "0.001", "1"), ("ATOM", 6.6, "0.001", "0.01"),
    ("UNI", 12.5, "0.001", "1"), ("APT", 9.4, "0.0001", "0.1"), ("ARB", 0.78, "0.0001", "0.1"),
    ("OP", 1.9, "0.0001", "0.1"), ("FIL", 5.3, "0.001", "0.1"), ("INJ", 24.0, "0.001", "0.1"),
    ("SUI", 4.1, "0.0001", "0.1"), ("SEI", 0.45, "0.0001", "1"), ("TIA", 5.8, "0.001", "1"),
    ("WIF", 2.1, "0.0001", "0.1"), ("PEPE", 0.000019, "0.0000001", "1"), ("AAVE", 310.0, "0.01", "0.1"),
    ("MKR", 1500.0, "0.1", "0.001"), ("ETC", 27.0, "0.001", "0.01"), ("XLM", 0.42, "0.00001", "1"),
    ("HBAR", 0.28, "0.00001", "1"), ("ALGO", 0.38, "0.0001", "0.1"), ("ICP", 10.5, "0.001", "1"),
    ("RUNE", 4.9, "0.001", "1"), ("STX", 1.7, "0.0001", "1"), ("IMX", 1.4, "0.0001", "1"),
    ("GRT", 0.24, "0.00001", "1"), ("LDO", 1.8, "0.0001", "1"), ("JUP", 1.0, "0.0001", "1"),
    ("ENA", 1.0, "0.0001", "1"),
]

KLINE_DTYPE = np.dtype(
    [
        ("open_time_ms", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
        ("volume", "<f8"), ("quote_volume", "<f8"), ("trades", "<i8"), ("taker_buy_volume", "<f8"),
        ("taker_buy_quote_volume", "<f8"),
    ]
)
FUNDING_DTYPE = np.dtype([("funding_time_ms", "<i8"), ("funding_rate", "<f8"), ("mark_price", "<f8")])


@dataclass(frozen=True)
class PerpContract:
    symbol: str  # venue id, e.g. "BTCUSDT"
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    onboard_ms: int
    delist_ms: int | None  # first minute with no trading; None = still trading at the end
    beta: float
    idio_vol_annual: float
    minute_volume_usd: float
    initial_price: float

    @property
    def price_decimals(self) -> int:
        return decimals_of(self.tick_size)

    @property
    def qty_decimals(self) -> int:
        return decimals_of(self.step_size)

    def price_str(self, x: float) -> str:
        return f"{x:.{self.price_decimals}f}"

    def qty_str(self, x: float) -> str:
        return f"{x:.{self.qty_decimals}f}"


class PerpUniverse:
    """See the module docstring. ``klines`` and ``funding`` answer like a venue's REST history."""

    def __init__(self, config: SimConfig | None = None, *, seed: int | None = None):
        cfg = config or load_config()
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=int(seed))
        self.config = cfg
        spec = self.spec = cfg.perps
        self.start_ms = spec.start_ms - spec.start_ms % HOUR_MS
        self.end_ms = self.start_ms + spec.days * 86_400_000
        self.n_hours = spec.days * 24
        self.n_minutes = self.n_hours * 60
        root = np.random.SeedSequence([cfg.seed, spec.seed_offset])
        s_universe, s_regime, s_market, s_crowd, s_fund, s_minutes = root.spawn(6)
        self._minute_seeds = s_minutes.spawn(spec.n_contracts)
        self.contracts = self._make_contracts(np.random.default_rng(s_universe))
        self._index = {c.symbol: i for i, c in enumerate(self.contracts)}
        self.regime_hourly = self._regime_path(np.random.default_rng(s_regime))
        vm = np.asarray(cfg.regimes.vol_multiplier)
        sigma_m = spec.market_vol_annual / math.sqrt(MINUTES_PER_YEAR)
        regime_min = np.repeat(self.regime_hourly, 60)
        self.market_minute = sigma_m * vm[regime_min] * np.random.default_rng(s_market).standard_normal(self.n_minutes)
        self.outages = self._outages(np.random.default_rng(s_universe))
        self.listed_hourly = self._listed_matrix()
        self.crowding = self._crowding(np.random.default_rng(s_crowd))
        self.funding_times_ms, self.funding_rates = self._funding(np.random.default_rng(s_fund))
        self.pressure, self.hourly_drift = self._planted_drift()

    # -- public API ---------------------------------------------------------------------------------------
    def contract(self, symbol: str) -> PerpContract:
        try:
            return self.contracts[self._index[symbol]]
        except KeyError:
            raise KeyError(f"unknown perp {symbol!r}") from None

    def klines(self, symbol: str, start_ms: int, end_ms: int) -> np.ndarray:
        """1-min bars with ``start_ms <= open_time_ms <= end_ms`` that exist (listed, no outage)."""
        bars = self._minute_bars(self._index_of(symbol))
        t = bars["open_time_ms"]
        lo, hi = np.searchsorted(t, start_ms, "left"), np.searchsorted(t, end_ms, "right")
        return bars[lo:hi].copy()

    def funding(self, symbol: str, start_ms: int, end_ms: int) -> np.ndarray:
        """Funding events with ``start_ms <= funding_time_ms <= end_ms`` while the contract was listed."""
        i = self._index_of(symbol)
        c = self.contracts[i]
        bars = self._minute_bars(i)
        times = self.funding_times_ms
        keep = (times >= max(start_ms, c.onboard_ms)) & (times <= end_ms) & (times < self.end_ms)
        if c.delist_ms is not None:
            keep &= times < c.delist_ms
        out = np.empty(int(keep.sum()), FUNDING_DTYPE)
        out["funding_time_ms"] = times[keep]
        out["funding_rate"] = self.funding_rates[i, keep]
        # mark price: the close of the minute before the funding time (the last bar at or before it)
        idx = np.searchsorted(bars["open_time_ms"], times[keep] - MINUTE_MS, "right") - 1
        out["mark_price"] = np.where(idx >= 0, bars["close"][np.maximum(idx, 0)], c.initial_price)
        return out

    # -- construction -------------------------------------------------------------------------------------
    def _index_of(self, symbol: str) -> int:
        if symbol not in self._index:
            raise KeyError(f"unknown perp {symbol!r}")
        return self._index[symbol]

    def _make_contracts(self, rng: np.random.Generator) -> list[PerpContract]:
        spec = self.spec
        n = spec.n_contracts
        late = set(range(n - spec.late_listings, n))
        delisted = set(range(n - spec.late_listings - spec.delistings, n - spec.late_listings))
        lo_v, hi_v = spec.minute_volume_usd
        out = []
        for i in range(n):
            base, price, tick, step = LISTING[i]
            onboard = self.start_ms
            if i in late:
                onboard = self.start_ms + int(rng.integers(10, spec.days - 20)) * 86_400_000 + int(rng.integers(0, 24)) * HOUR_MS
            delist = None
            if i in delisted:
                delist = self.start_ms + int(rng.integers(spec.days // 3, spec.days - 5)) * 86_400_000 + int(rng.integers(0, 24)) * HOUR_MS
            vol_usd = math.exp(math.log(hi_v) - (math.log(hi_v) - math.log(lo_v)) * i / max(1, n - 1))
            out.append(
                PerpContract(
                    symbol=f"{base}USDT", base=base, quote="USDT", tick_size=Decimal(tick), step_size=Decimal(step),
                    onboard_ms=onboard, delist_ms=delist,
                    beta=float(rng.uniform(*spec.beta_range)) if i else 1.0,
                    idio_vol_annual=float(rng.uniform(*spec.idio_vol_annual)) if i else spec.idio_vol_annual[0] * 0.5,
                    minute_volume_usd=vol_usd, initial_price=price,
                )
            )
        return out

    def _regime_path(self, rng: np.random.Generator) -> np.ndarray:
        reg = self.config.regimes
        out = np.empty(self.n_hours, dtype=np.int8)
        state, h = reg.initial, 0
        while h < self.n_hours:
            stay = max(1, int(round(rng.exponential(self.spec.regime_mean_duration_h[state]))))
            out[h : h + stay] = state
            h += stay
            probs = np.array(reg.jump_probabilities[state], dtype=float)
            probs[state] = 0.0
            if probs.sum() > 0:
                state = int(rng.choice(len(probs), p=probs / probs.sum()))
        return out

    def _outages(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        """Planted venue outages: (start_ms, end_ms) windows with no bars at all."""
        out = []
        for _ in range(self.spec.venue_outages):
            start = self.start_ms + int(rng.integers(1, self.n_minutes - 120)) * MINUTE_MS
            out.append((start, start + int(rng.integers(3, 90)) * MINUTE_MS))
        return sorted(out)

    def _listed_matrix(self) -> np.ndarray:
        hours = self.start_ms + HOUR_MS * np.arange(self.n_hours, dtype=np.int64)
        listed = np.zeros((len(self.contracts), self.n_hours), dtype=bool)
        for i, c in enumerate(self.contracts):
            listed[i] = hours >= c.onboard_ms
            if c.delist_ms is not None:
                listed[i] &= hours < c.delist_ms
        return listed

    def _crowding(self, rng: np.random.Generator) -> np.ndarray:
        decay = math.exp(-math.log(2.0) / self.spec.crowding_half_life_h)
        innov = math.sqrt(1 - decay * decay)
        c = np.empty((len(self.contracts), self.n_hours))
        c[:, 0] = rng.standard_normal(len(self.contracts))
        eps = rng.standard_normal((len(self.contracts), self.n_hours))
        for h in range(1, self.n_hours):
            c[:, h] = decay * c[:, h - 1] + innov * eps[:, h]
        return c

    def _funding(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        spec = self.spec
        step = spec.funding_interval_h
        hours = np.arange(0, self.n_hours, step)
        times = self.start_ms + hours.astype(np.int64) * HOUR_MS
        noise = spec.funding_noise * rng.standard_normal((len(self.contracts), len(hours)))
        rates = spec.funding_base + spec.funding_crowding_loading * self.crowding[:, hours] + noise
        rates = np.clip(np.round(rates, 8), -FUNDING_CAP, FUNDING_CAP)
        return times, rates

    def _planted_drift(self) -> tuple[np.ndarray, np.ndarray]:
        """z_{i,h} (NaN where not listed or no funding yet) and the hourly drift d_{i,h}."""
        spec = self.spec
        step = spec.funding_interval_h
        n, H = len(self.contracts), self.n_hours
        latest = np.full((n, H), np.nan)
        for j, t in enumerate(self.funding_times_ms):
            h0 = int((t - self.start_ms) // HOUR_MS)
            latest[:, h0 : h0 + step] = self.funding_rates[:, j : j + 1]
        onboard_h = np.array([(c.onboard_ms - self.start_ms) // HOUR_MS for c in self.contracts])
        for i in range(n):
            # the first funding a late listing has is the first funding time at or after its onboarding
            first = int(math.ceil(onboard_h[i] / step) * step) if onboard_h[i] > 0 else 0
            latest[i, :first] = np.nan
        latest[~self.listed_hourly] = np.nan
        median = np.nanmedian(np.where(np.isnan(latest), np.nan, latest), axis=0)
        z = (latest - median) / spec.funding_crowding_loading
        sigma_hour = np.array([c.idio_vol_annual for c in self.contracts]) / math.sqrt(MINUTES_PER_YEAR) * math.sqrt(60)
        vm = np.asarray(self.config.regimes.vol_multiplier)[self.regime_hourly]
        drift = -spec.pressure_effect * np.nan_to_num(z) * sigma_hour[:, None] * vm[None, :]
        return z, drift

    @functools.lru_cache(maxsize=6)
    def _minute_bars(self, i: int) -> np.ndarray:
        c = self.contracts[i]
        rng = np.random.default_rng(self._minute_seeds[i])
        vm = np.asarray(self.config.regimes.vol_multiplier)
        am = np.asarray(self.config.regimes.activity_multiplier)
        regime_min = np.repeat(self.regime_hourly, 60)
        sigma = c.idio_vol_annual / math.sqrt(MINUTES_PER_YEAR) * vm[regime_min]
        eps = rng.standard_normal(self.n_minutes)
        drift = np.repeat(self.hourly_drift[i], 60) / 60.0
        r = c.beta * self.market_minute + sigma * eps + drift
        total_sigma = np.sqrt((c.beta * self.market_minute.std()) ** 2 + sigma**2)
        log_close = math.log(c.initial_price) + np.cumsum(r)
        log_open = np.concatenate(([math.log(c.initial_price)], log_close[:-1]))
        u_hi, u_lo = rng.uniform(size=self.n_minutes), rng.uniform(size=self.n_minutes)
        hi = (r + np.sqrt(r * r - 2 * total_sigma**2 * np.log(u_hi))) / 2  # >= max(0, r)
        lo = (r - np.sqrt(r * r - 2 * total_sigma**2 * np.log(u_lo))) / 2  # <= min(0, r)
        tick = float(c.tick_size)
        o = np.round(np.exp(log_open) / tick) * tick
        cl = np.round(np.exp(log_close) / tick) * tick
        h = np.maximum(np.ceil(np.exp(log_open + hi) / tick) * tick, np.maximum(o, cl))
        lw = np.minimum(np.floor(np.exp(log_open + lo) / tick) * tick, np.minimum(o, cl))
        lw = np.maximum(lw, tick)
        hour_of_day = (np.arange(self.n_minutes) // 60 + self.start_ms // HOUR_MS) % 24
        season = 1.0 + 0.35 * np.sin(2 * np.pi * (hour_of_day - 9) / 24.0)
        vol_usd = c.minute_volume_usd * am[regime_min] * season * (0.6 + 0.8 * np.abs(r) / total_sigma)
        vol_usd *= rng.lognormal(-0.125, 0.5, self.n_minutes)
        vwap = (o + h + lw + cl) / 4.0
        step = float(c.step_size)
        volume = np.maximum(np.round(vol_usd / vwap / step) * step, step)
        buy_share = np.clip(0.5 + 0.25 * np.tanh(r / total_sigma) + 0.05 * rng.standard_normal(self.n_minutes), 0, 1)
        taker_buy = np.round(volume * buy_share / step) * step
        bars = np.empty(self.n_minutes, KLINE_DTYPE)
        bars["open_time_ms"] = self.start_ms + MINUTE_MS * np.arange(self.n_minutes, dtype=np.int64)
        bars["open"], bars["high"], bars["low"], bars["close"] = o, h, lw, cl
        bars["volume"] = volume
        bars["quote_volume"] = np.round(volume * vwap, 4)
        bars["trades"] = np.maximum(1, np.round(vol_usd / 2500.0)).astype(np.int64)
        bars["taker_buy_volume"] = taker_buy
        bars["taker_buy_quote_volume"] = np.round(taker_buy * vwap, 4)
        t = bars["open_time_ms"]
        keep = t >= c.onboard_ms
        if c.delist_ms is not None:
            keep &= t < c.delist_ms
        for a, b in self.outages:
            keep &= (t < a) | (t >= b)
        return bars[keep]

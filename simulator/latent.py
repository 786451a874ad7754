"""Latent processes with planted truth, on a fixed time grid of ``dt``.

Regime
    A continuous-time Markov chain over K volatility regimes; sojourn times are exponential with the configured
    means, the next regime is drawn from ``jump_probabilities``. The path (switch times) is recorded exactly.

Signal (one per symbol)
    Ornstein-Uhlenbeck with unit stationary variance and half-life h (kappa = ln 2 / h), simulated exactly:
        s_{t+dt} = s_t e^{-kappa dt} + sqrt(1 - e^{-2 kappa dt}) eps_t

Efficient log-price
    Leader (no ``leader`` in config):
        dX = alpha sigma_t s_t dt + sigma_t dW_t,     sigma_t = vol_annual / sqrt(year) * vol_multiplier[regime_t]
    Follower of leader L with lag l and beta b:
        X_f(t) = X_f(0) + b (X_L(t - l) - X_L(-l)) + Y_f(t),
        dY_f  = alpha sigma^idio_t s_f dt + sigma^idio_t dW^f_t
    so the follower's return over (t, t+h] contains b times the leader's return over (t-l, t+h-l]: for h <= l it
    is already known at t. The drift is on log-price (no Ito correction; it is < 1e-9 per step).

Everything is generated in fixed blocks with carried state, so the result does not depend on how a caller
slices time. Randomness comes from one ``numpy.random.Generator`` per component, spawned from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.config import SimConfig

SECONDS_PER_YEAR = 365.0 * 86400.0


@dataclass
class LatentBlock:
    """One block of the latent grid: ``t_ns[i]`` is the start of step i."""

    t_ns: np.ndarray  # int64 [n]
    regime: np.ndarray  # int8 [n]
    signal: np.ndarray  # float64 [n_symbols, n]
    log_price: np.ndarray  # float64 [n_symbols, n]
    sigma: np.ndarray  # float64 [n_symbols, n]: per-sqrt-second volatility of the symbol's own (idio) part


def per_second_vol(vol_annual: float) -> float:
    return vol_annual / math.sqrt(SECONDS_PER_YEAR)


class LatentProcess:
    def __init__(self, cfg: SimConfig, seed_seq: np.random.SeedSequence):
        self.cfg = cfg
        self.dt_s = cfg.latent_dt_ms / 1000.0
        self.dt_ns = cfg.latent_dt_ms * 1_000_000
        n = len(cfg.products)
        streams = seed_seq.spawn(1 + 2 * n)
        self.rng_regime = np.random.default_rng(streams[0])
        self.rng_signal = [np.random.default_rng(s) for s in streams[1 : 1 + n]]
        self.rng_price = [np.random.default_rng(s) for s in streams[1 + n :]]
        self.kappa = math.log(2.0) / cfg.signal.half_life_s
        self.index = {p.symbol: i for i, p in enumerate(cfg.products)}
        self.leader_of = [self.index[p.leader.symbol] if p.leader else -1 for p in cfg.products]
        self.lag_steps = [int(round(p.leader.lag_s / self.dt_s)) if p.leader else 0 for p in cfg.products]
        self.base_sigma = np.array(
            [per_second_vol(p.leader.idio_vol_annual if p.leader else p.vol_annual) for p in cfg.products]
        )
        self.vol_mult = np.array(cfg.regimes.vol_multiplier)
        # carried state
        self.t_ns = cfg.start_ns
        self.regime = cfg.regimes.initial
        self.next_switch_ns = cfg.start_ns + self._draw_sojourn_ns(self.regime)
        self.switches: list[tuple[int, int]] = [(cfg.start_ns, self.regime)]
        self.s = np.array([r.standard_normal() for r in self.rng_signal])
        self.x0 = np.log([p.initial_price for p in cfg.products])
        self.own = np.zeros(n)  # leader: X - X(0); follower: Y
        max_lag = max(self.lag_steps) if self.lag_steps else 0
        # own-path values before the next block start t: history[k, j] is the value at t - (j + 1) dt
        self.history = np.zeros((n, max_lag + 1))

    def _draw_sojourn_ns(self, regime: int) -> int:
        mean_s = self.cfg.regimes.mean_duration_s[regime]
        return max(self.dt_ns, int(self.rng_regime.exponential(mean_s) * 1e9))

    def regime_path(self, n_steps: int) -> np.ndarray:
        """Advance the regime chain by ``n_steps`` grid steps (recording switches); the regime at each step."""
        out = np.empty(n_steps, dtype=np.int8)
        t = self.t_ns
        i = 0
        while i < n_steps:
            if t >= self.next_switch_ns:
                probs = np.array(self.cfg.regimes.jump_probabilities[self.regime], dtype=float)
                probs[self.regime] = 0.0
                if probs.sum() > 0:
                    self.regime = int(self.rng_regime.choice(len(probs), p=probs / probs.sum()))
                self.switches.append((self.next_switch_ns, self.regime))
                self.next_switch_ns += self._draw_sojourn_ns(self.regime)
            # steps until the next switch or the block end
            until = min(n_steps, i + max(1, -(-(self.next_switch_ns - t) // self.dt_ns)))
            out[i:until] = self.regime
            t += (until - i) * self.dt_ns
            i = until
        return out

    def block(self, n_steps: int) -> LatentBlock:
        n_sym = len(self.cfg.products)
        t_ns = self.t_ns + self.dt_ns * np.arange(n_steps, dtype=np.int64)
        regime = self.regime_path(n_steps)
        vm = self.vol_mult[regime]
        decay = math.exp(-self.kappa * self.dt_s)
        innov = math.sqrt(1.0 - decay * decay)
        alpha = self.cfg.signal.drift_loading
        signal = np.empty((n_sym, n_steps))
        log_price = np.empty((n_sym, n_steps))
        sigma = np.empty((n_sym, n_steps))
        own_paths = np.empty((n_sym, n_steps))
        sqdt = math.sqrt(self.dt_s)
        for k in range(n_sym):
            eps = self.rng_signal[k].standard_normal(n_steps)
            s = _ou_path(self.s[k], decay, innov, eps)  # s[i] = value at t_i
            self.s[k] = s[-1] * decay + innov * self.rng_signal[k].standard_normal()
            sig = self.base_sigma[k] * vm
            dw = self.rng_price[k].standard_normal(n_steps)
            incr = alpha * sig * s * self.dt_s + sig * sqdt * dw  # increment over (t_i, t_{i+1}]
            own = self.own[k] + np.concatenate(([0.0], np.cumsum(incr[:-1])))  # value at t_i
            self.own[k] = own[-1] + incr[-1]
            signal[k], sigma[k], own_paths[k] = s, sig, own
        for k in range(n_sym):
            lead = self.leader_of[k]
            if lead < 0:
                log_price[k] = self.x0[k] + own_paths[k]
            else:
                lag = self.lag_steps[k]
                lagged = self._lagged(lead, own_paths[lead], lag)
                beta = self.cfg.products[k].leader.beta
                log_price[k] = self.x0[k] + beta * lagged + own_paths[k]
        # keep the tail of every path for the next block's lags
        width = self.history.shape[1]
        for k in range(n_sym):
            joined = np.concatenate((self.history[k][::-1], own_paths[k]))
            self.history[k] = joined[-width:][::-1]
        self.t_ns += n_steps * self.dt_ns
        return LatentBlock(t_ns, regime, signal, log_price, sigma)

    def _lagged(self, lead: int, path: np.ndarray, lag: int) -> np.ndarray:
        """Leader's own path shifted by ``lag`` steps, using the history ring for the start (0 before t=0)."""
        if lag == 0:
            return path.copy()
        prev = self.history[lead][0:lag][::-1]  # values at t-lag*dt .. t-dt (oldest first)
        joined = np.concatenate((prev, path))
        return joined[: len(path)]


def _ou_path(s0: float, decay: float, innov: float, eps: np.ndarray) -> np.ndarray:
    """s[0] = s0, s[i] = decay s[i-1] + innov eps[i-1]: a linear recursion solved with a scaled cumsum."""
    n = len(eps)
    out = np.empty(n)
    out[0] = s0
    if n == 1:
        return out
    # s[i] = decay^i s0 + innov * sum_{j<i} decay^(i-1-j) eps[j]; evaluate in short chunks to keep decay^-j finite
    chunk = 256
    cur = s0
    i = 1
    while i < n:
        m = min(chunk, n - i)
        powers = decay ** np.arange(1, m + 1)
        e = eps[i - 1 : i - 1 + m]
        acc = np.cumsum(e / powers) * powers
        out[i : i + m] = powers * cur + innov * acc
        cur = out[i + m - 1]
        i += m
    return out

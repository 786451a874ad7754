"""The planted truth, computed from the configuration and the latent paths, as machine-readable dicts.

Oracle direction AUC
    The best any model can do is to know the latent state. For a leader symbol the forward log-return over h
    given the signal s_t is Gaussian:
        r_h | s_t ~ N(alpha sigma g(h) s_t,  sigma^2 (h + alpha^2 V(h))),   g(h) = (1 - e^{-kappa h}) / kappa,
        V(h) = (2 / kappa) (h - 2 g(h) + (1 - e^{-2 kappa h}) / (2 kappa))      (integrated-OU variance)
    so rho = corr(s_t, r_h) = alpha g / sqrt(alpha^2 g^2 + h + alpha^2 V), independent of the regime. For jointly
    Gaussian (score, return) the AUC of the score for sign(return) is the orthant probability
        AUC = 1/2 + (2 / pi) arcsin(rho / sqrt(2)).
    A follower also knows the leader's path up to t (lagged by l), so its oracle uses
        m_t = b (X_L(min(t, t+h-l)) - X_L(t-l)) + b alpha sigma_L g(h-l)^+ s_L(t) + alpha sigma_f g(h) s_f(t),
    and its AUC is estimated by Monte Carlo on a long latent path (with its standard error).
"""

from __future__ import annotations

import math

import numpy as np

from simulator.config import SimConfig
from simulator.latent import LatentProcess

HORIZONS_S = (1.0, 5.0, 30.0, 60.0, 300.0)


def g(kappa: float, h: float) -> float:
    return (1.0 - math.exp(-kappa * h)) / kappa if h > 0 else 0.0


def integrated_ou_variance(kappa: float, h: float) -> float:
    """Var(int_0^h s_u du | s_0) for a unit-variance OU with mean reversion kappa."""
    return (2.0 / kappa) * (h - 2.0 * g(kappa, h) + (1.0 - math.exp(-2.0 * kappa * h)) / (2.0 * kappa))


def gaussian_auc(rho: float) -> float:
    """AUC of a score for the sign of a return when both are jointly Gaussian with correlation rho."""
    return 0.5 + (2.0 / math.pi) * math.asin(rho / math.sqrt(2.0))


def leader_oracle_auc(alpha: float, kappa: float, h: float) -> float:
    a = alpha * g(kappa, h)
    rho = a / math.sqrt(a * a + h + alpha * alpha * integrated_ou_variance(kappa, h))
    return gaussian_auc(rho)


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC of ``score`` for boolean ``label`` (ties count one half)."""
    from scipy.stats import rankdata

    score, label = np.asarray(score, float), np.asarray(label, bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def oracle_scores(cfg: SimConfig, path: dict[str, np.ndarray], symbol: str, h: float) -> tuple[np.ndarray, np.ndarray]:
    """(oracle score, realized latent log-return over h) at every usable sample of a latent path recorded at a
    regular step (as from ``MarketSimulator.latent_path``).

    The score is E[r_h | state] divided by the symbol's current volatility. Every conditional standard
    deviation scales with the regime's volatility multiplier, so this orders samples exactly as the posterior
    P(r_h > 0 | state) does (the Bayes-optimal ranking); the raw mean would not, across regimes."""
    t = path["t_ns"]
    step_s = (t[1] - t[0]) / 1e9
    kappa = math.log(2.0) / cfg.signal.half_life_s
    alpha = cfg.signal.drift_loading
    p = cfg.product(symbol)
    hs = int(round(h / step_s))
    x = path[f"log_price__{symbol}"]
    n = len(x) - hs
    realized = x[hs:] - x[:n]
    own = alpha * path[f"sigma__{symbol}"][:n] * g(kappa, h) * path[f"signal__{symbol}"][:n]
    scale = path[f"sigma__{symbol}"][:n]
    if p.leader is None:
        return own / scale, realized
    lead = p.leader.symbol
    ls = int(round(p.leader.lag_s / step_s))
    xl = path[f"log_price__{lead}"]
    idx = np.arange(n)
    start = idx - ls
    end = idx - ls + min(hs, ls)
    ok = start >= 0
    known = np.zeros(n)
    known[ok] = xl[end[ok]] - xl[start[ok]]
    rest = max(0.0, h - p.leader.lag_s)
    future = alpha * path[f"sigma__{lead}"][:n] * g(kappa, rest) * path[f"signal__{lead}"][:n]
    score = (p.leader.beta * (known + future) + own) / scale
    return score[ok], realized[ok]


def monte_carlo_oracle_auc(cfg: SimConfig, hours: float = 3.0, seed: int = 12345,
                           horizons: tuple[float, ...] = HORIZONS_S) -> dict[str, dict[str, dict[str, float]]]:
    """Oracle AUC per symbol and horizon on a fresh latent path of ``hours`` (independent seed), with the
    standard error from non-overlapping blocks."""
    proc = LatentProcess(cfg, np.random.SeedSequence(seed))
    dt_s = cfg.latent_dt_ms / 1000.0
    steps = int(hours * 3600 / dt_s)
    sub = max(1, int(round(0.1 / dt_s)))
    blocks = [proc.block(min(100_000, steps - i)) for i in range(0, steps, 100_000)]
    path = {"t_ns": np.concatenate([b.t_ns for b in blocks])[::sub]}
    for k, p in enumerate(cfg.products):
        path[f"signal__{p.symbol}"] = np.concatenate([b.signal[k] for b in blocks])[::sub]
        path[f"log_price__{p.symbol}"] = np.concatenate([b.log_price[k] for b in blocks])[::sub]
        path[f"sigma__{p.symbol}"] = np.concatenate([b.sigma[k] for b in blocks])[::sub]
    out: dict = {}
    for p in cfg.products:
        out[p.symbol] = {}
        for h in horizons:
            score, real = oracle_scores(cfg, path, p.symbol, h)
            keep = real != 0
            value = auc(score[keep], real[keep] > 0)
            parts = np.array_split(np.arange(keep.sum()), 10)
            per_block = [auc(score[keep][ix], real[keep][ix] > 0) for ix in parts]
            se = float(np.std(per_block, ddof=1) / math.sqrt(len(per_block)))
            out[p.symbol][f"{h:g}s"] = {"auc": round(value, 5), "se": round(se, 5)}
    return out


def l2_truth(cfg: SimConfig, regime_switches: list[tuple[int, int]], mc_hours: float = 3.0) -> dict:
    """The planted truth of an L2 session (everything but the latent path itself)."""
    kappa = math.log(2.0) / cfg.signal.half_life_s
    alpha = cfg.signal.drift_loading
    leaders = {}
    for p in cfg.products:
        if p.leader is None:
            leaders[p.symbol] = {f"{h:g}s": round(leader_oracle_auc(alpha, kappa, h), 5) for h in HORIZONS_S}
    return {
        "kind": "l2lab.sim.l2.truth",
        "version": 1,
        "seed": cfg.seed,
        "start_ns": cfg.start_ns,
        "symbols": cfg.symbols,
        "signal": {
            "process": "OU, unit stationary variance, one per symbol",
            "half_life_s": cfg.signal.half_life_s,
            "kappa_per_s": kappa,
            "drift": "dX = alpha * sigma_t * s_t dt + sigma_t dW (own part; sigma per sqrt-second)",
            "alpha": alpha,
            "market_order_side": "P(buy | s) = (1 + tanh(gamma_m s)) / 2",
            "gamma_m": cfg.signal.market_flow_loading,
            "limit_order_side": "P(bid | s) = (1 + tanh(gamma_l s)) / 2",
            "gamma_l": cfg.signal.limit_flow_loading,
        },
        "lead_lag": {
            p.symbol: {"leader": p.leader.symbol, "lag_s": p.leader.lag_s, "beta": p.leader.beta,
                       "idio_vol_annual": p.leader.idio_vol_annual}
            for p in cfg.products if p.leader is not None
        },
        "volatility": {p.symbol: {"vol_annual_normal_regime": p.vol_annual if p.leader is None else None,
                                  "idio_vol_annual": p.leader.idio_vol_annual if p.leader else p.vol_annual}
                       for p in cfg.products},
        "regimes": {
            "names": list(cfg.regimes.names),
            "vol_multiplier": list(cfg.regimes.vol_multiplier),
            "activity_multiplier": list(cfg.regimes.activity_multiplier),
            "mean_duration_s": list(cfg.regimes.mean_duration_s),
            "path": [{"start_ns": int(t), "regime": int(r), "name": cfg.regimes.names[r]} for t, r in regime_switches],
        },
        "oracle_direction_auc": {
            "definition": "AUC of E[r_h | latent state at t] for sign(r_h) of the efficient (latent) log-price;"
                          " an upper bound for any model of the observed mid",
            "closed_form_leaders": leaders,
            "monte_carlo": monte_carlo_oracle_auc(cfg, hours=mc_hours),
            "monte_carlo_hours": mc_hours,
        },
        "config": cfg.raw,
    }


def perp_truth(universe) -> dict:
    spec = universe.spec
    cfg = universe.config
    return {
        "kind": "l2lab.sim.perps.truth",
        "version": 1,
        "seed": cfg.seed,
        "start_ms": universe.start_ms,
        "end_ms": universe.end_ms,
        "planted_effect": {
            "name": "funding pressure predicts next-hour relative return",
            "pressure": "z_{i,h} = (F_i - median_j F_j) / L, F = latest funding published at or before hour start",
            "drift": "d_{i,h} = -k * z_{i,h} * sigma_hour_i * vol_multiplier(regime_h), spread evenly over the hour",
            "k": spec.pressure_effect,
            "L": spec.funding_crowding_loading,
            "sign": "negative: funding above the cross-sectional median -> lower next-hour relative return",
        },
        "funding": {"interval_h": spec.funding_interval_h, "base": spec.funding_base,
                    "noise": spec.funding_noise, "cap": 0.0075, "crowding_half_life_h": spec.crowding_half_life_h},
        "contracts": [
            {"symbol": c.symbol, "onboard_ms": c.onboard_ms, "delist_ms": c.delist_ms, "beta": round(c.beta, 6),
             "idio_vol_annual": round(c.idio_vol_annual, 6), "tick_size": str(c.tick_size),
             "step_size": str(c.step_size)}
            for c in universe.contracts
        ],
        "venue_outages": [{"start_ms": a, "end_ms": b} for a, b in universe.outages],
        "regime_hourly": universe.regime_hourly.tolist(),
        "config": cfg.raw.get("perps"),
    }

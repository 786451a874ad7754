"""Simulator configuration: every planted parameter, loaded from YAML and validated.

``load_config()`` reads ``simulator/default.yaml``; ``load_config(path, overrides)`` layers a user file and
dotted overrides (``{"signal.drift_loading": 0.5}``) on top. Invalid values raise :class:`ConfigError` naming
the file and the field.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the source and the field."""


@dataclass(frozen=True)
class LeaderSpec:
    symbol: str
    lag_s: float
    beta: float
    idio_vol_annual: float


@dataclass(frozen=True)
class ProductDynamics:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    size_increment: Decimal
    min_size: Decimal
    initial_price: float
    vol_annual: float
    leader: LeaderSpec | None
    limit_rate: float
    cancel_hazard: float
    market_rate: float
    hawkes_branching: float
    hawkes_decay_s: float
    burst_limit_boost: float
    market_size_mean: float
    limit_size_mean: float
    near_fraction: float
    near_offset_ticks: float
    deep_offset_bps: float
    max_offset_bps: float
    min_half_spread_ticks: int
    pickoff_probability: float


@dataclass(frozen=True)
class RegimeSpec:
    names: tuple[str, ...]
    vol_multiplier: tuple[float, ...]
    activity_multiplier: tuple[float, ...]
    mean_duration_s: tuple[float, ...]
    jump_probabilities: tuple[tuple[float, ...], ...]
    initial: int


@dataclass(frozen=True)
class SignalSpec:
    half_life_s: float
    drift_loading: float
    market_flow_loading: float
    limit_flow_loading: float


@dataclass(frozen=True)
class PerpSpec:
    seed_offset: int
    start_ms: int
    days: int
    n_contracts: int
    funding_interval_h: int
    regime_mean_duration_h: tuple[float, ...]
    minute_volume_usd: tuple[float, float]
    market_vol_annual: float
    idio_vol_annual: tuple[float, float]
    beta_range: tuple[float, float]
    crowding_half_life_h: float
    funding_base: float
    funding_crowding_loading: float
    funding_noise: float
    pressure_effect: float
    late_listings: int
    delistings: int
    venue_outages: int


@dataclass(frozen=True)
class SimConfig:
    seed: int
    start_ns: int
    latent_dt_ms: int
    regimes: RegimeSpec
    signal: SignalSpec
    products: tuple[ProductDynamics, ...]
    perps: PerpSpec
    raw: dict  # the merged mapping this was built from (written beside every data set)

    @property
    def symbols(self) -> list[str]:
        return [p.symbol for p in self.products]

    def product(self, symbol: str) -> ProductDynamics:
        for p in self.products:
            if p.symbol == symbol:
                return p
        raise ConfigError(f"unknown symbol {symbol!r}: configured symbols are {', '.join(self.symbols)}")


def parse_utc(text: str, where: str) -> int:
    """RFC 3339 / ISO 8601 UTC time -> int nanoseconds."""
    try:
        t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{where}: {text!r} is not an ISO-8601 time ({exc})") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(round(t.timestamp())) * 1_000_000_000 + t.microsecond * 1000


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    symbols: list[str] | None = None,
) -> SimConfig:
    """Defaults, then the YAML file at ``path`` (deep-merged), then dotted ``overrides``; ``symbols`` selects
    a subset of the configured products (leaders are kept implicitly only if selected)."""
    with open(DEFAULT_CONFIG_PATH) as fh:
        merged = yaml.safe_load(fh)
    source = str(DEFAULT_CONFIG_PATH)
    if path is not None:
        source = str(path)
        try:
            with open(path) as fh:
                user = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        merged = _deep_merge(merged, user)
    for dotted, value in (overrides or {}).items():
        _set_dotted(merged, dotted, value, source)
    if overrides:
        source += " with overrides " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    cfg = _build(merged, source)
    if symbols:
        unknown = [s for s in symbols if s not in cfg.symbols]
        if unknown:
            raise ConfigError(
                f"unknown symbol(s) {', '.join(unknown)}: configured symbols are {', '.join(cfg.symbols)}"
            )
        picked = tuple(p for p in cfg.products if p.symbol in symbols)
        for p in picked:
            if p.leader is not None and p.leader.symbol not in symbols:
                raise ConfigError(
                    f"{p.symbol} follows {p.leader.symbol} (products.{p.symbol}.leader): select both symbols"
                )
        raw = copy.deepcopy(merged)
        raw["products"] = {k: v for k, v in merged["products"].items() if k in symbols}
        cfg = SimConfig(cfg.seed, cfg.start_ns, cfg.latent_dt_ms, cfg.regimes, cfg.signal, picked, cfg.perps, raw)
    return cfg


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(tree: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"override {dotted!r}: no section {part!r} in {source}")
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(f"override {dotted!r}: unknown field {parts[-1]!r}")
    node[parts[-1]] = value


class _Reader:
    """Typed field access with errors that name the source file and the dotted field."""

    def __init__(self, tree: dict, source: str, prefix: str = ""):
        if not isinstance(tree, dict):
            raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping")
        self.tree, self.source, self.prefix = tree, source, prefix

    def where(self, key: str) -> str:
        return f"{self.source}: field {self.prefix}{key}"

    def get(self, key: str) -> Any:
        if key not in self.tree:
            raise ConfigError(f"{self.where(key)} is missing")
        return self.tree[key]

    def section(self, key: str) -> "_Reader":
        return _Reader(self.get(key), self.source, f"{self.prefix}{key}.")

    def number(self, key: str, lo: float | None = None, hi: float | None = None, *, strict_lo=False) -> float:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{self.where(key)} must be a finite number, got {v!r}")
        if lo is not None and (v < lo or (strict_lo and v == lo)):
            raise ConfigError(f"{self.where(key)} must be {'>' if strict_lo else '>='} {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise ConfigError(f"{self.where(key)} must be <= {hi}, got {v!r}")
        return float(v)

    def integer(self, key: str, lo: int | None = None) -> int:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{self.where(key)} must be an integer, got {v!r}")
        if lo is not None and v < lo:
            raise ConfigError(f"{self.where(key)} must be >= {lo}, got {v!r}")
        return v

    def decimal(self, key: str) -> Decimal:
        v = self.get(key)
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise ConfigError(f"{self.where(key)} must be a decimal string like \"0.01\", got {v!r}") from None
        if not d.is_finite() or d <= 0:
            raise ConfigError(f"{self.where(key)} must be positive, got {v!r}")
        return d

    def numbers(self, key: str, n: int | None, lo: float | None = None) -> tuple[float, ...]:
        v = self.get(key)
        if not isinstance(v, list) or (n is not None and len(v) != n):
            raise ConfigError(f"{self.where(key)} must be a list of {n} numbers, got {v!r}")
        out = []
        for i, x in enumerate(v):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ConfigError(f"{self.where(key)}[{i}] must be a number, got {x!r}")
            if lo is not None and x < lo:
                raise ConfigError(f"{self.where(key)}[{i}] must be >= {lo}, got {x!r}")
            out.append(float(x))
        return tuple(out)


def _pair(values: tuple[float, ...]) -> tuple[float, float]:
    return (values[0], values[1])


def _build(tree: dict, source: str) -> SimConfig:
    r = _Reader(tree, source)
    seed = r.integer("seed", 0)
    start_ns = parse_utc(r.get("start"), r.where("start"))
    latent_dt_ms = r.integer("latent_dt_ms", 1)
    if 1000 % latent_dt_ms:
        raise ConfigError(f"{r.where('latent_dt_ms')} must divide 1000, got {latent_dt_ms}")

    g = r.section("regimes")
    names = g.get("names")
    if not isinstance(names, list) or len(names) < 1 or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{g.where('names')} must be a list of regime names")
    k = len(names)
    jumps = g.get("jump_probabilities")
    if not isinstance(jumps, list) or len(jumps) != k:
        raise ConfigError(f"{g.where('jump_probabilities')} must be a {k}x{k} matrix")
    rows = []
    for i, row in enumerate(jumps):
        vals = _Reader({"row": row}, source, f"regimes.jump_probabilities[{i}].").numbers("row", k, 0.0)
        off = sum(v for j, v in enumerate(vals) if j != i)
        if k > 1 and abs(off - 1.0) > 1e-9:
            raise ConfigError(
                f"{source}: field regimes.jump_probabilities[{i}] off-diagonal entries must sum to 1, got {off}"
            )
        rows.append(vals)
    initial = g.integer("initial", 0)
    if initial >= k:
        raise ConfigError(f"{g.where('initial')} must index one of {k} regimes, got {initial}")
    regimes = RegimeSpec(
        names=tuple(names),
        vol_multiplier=g.numbers("vol_multiplier", k, 0.0),
        activity_multiplier=g.numbers("activity_multiplier", k, 0.0),
        mean_duration_s=g.numbers("mean_duration_s", k, 1e-3),
        jump_probabilities=tuple(rows),
        initial=initial,
    )

    s = r.section("signal")
    signal = SignalSpec(
        half_life_s=s.number("half_life_s", 0.0, strict_lo=True),
        drift_loading=s.number("drift_loading"),
        market_flow_loading=s.number("market_flow_loading"),
        limit_flow_loading=s.number("limit_flow_loading"),
    )

    prods_tree = r.get("products")
    if not isinstance(prods_tree, dict) or not prods_tree:
        raise ConfigError(f"{r.where('products')} must map symbols to product settings")
    products = []
    for sym, _ in prods_tree.items():
        p = r.section("products").section(sym)
        leader = None
        if p.get("leader") is not None:
            lr = p.section("leader")
            leader = LeaderSpec(
                symbol=str(lr.get("symbol")),
                lag_s=lr.number("lag_s", 0.0),
                beta=lr.number("beta"),
                idio_vol_annual=lr.number("idio_vol_annual", 0.0),
            )
            if leader.symbol not in prods_tree or leader.symbol == sym:
                raise ConfigError(f"{lr.where('symbol')}: {leader.symbol!r} is not another configured product")
            if prods_tree[leader.symbol].get("leader") is not None:
                raise ConfigError(f"{lr.where('symbol')}: leader {leader.symbol} must not follow another product")
        products.append(
            ProductDynamics(
                symbol=sym,
                base=str(p.get("base")),
                quote=str(p.get("quote")),
                tick_size=p.decimal("tick_size"),
                size_increment=p.decimal("size_increment"),
                min_size=p.decimal("min_size"),
                initial_price=p.number("initial_price", 0.0, strict_lo=True),
                vol_annual=p.number("vol_annual", 0.0),
                leader=leader,
                limit_rate=p.number("limit_rate", 0.0, strict_lo=True),
                cancel_hazard=p.number("cancel_hazard", 0.0, strict_lo=True),
                market_rate=p.number("market_rate", 0.0),
                hawkes_branching=p.number("hawkes_branching", 0.0, 0.95),
                hawkes_decay_s=p.number("hawkes_decay_s", 0.0, strict_lo=True),
                burst_limit_boost=p.number("burst_limit_boost", 0.0),
                market_size_mean=p.number("market_size_mean", 0.0, strict_lo=True),
                limit_size_mean=p.number("limit_size_mean", 0.0, strict_lo=True),
                near_fraction=p.number("near_fraction", 0.0, 1.0),
                near_offset_ticks=p.number("near_offset_ticks", 0.0, strict_lo=True),
                deep_offset_bps=p.number("deep_offset_bps", 0.0, strict_lo=True),
                max_offset_bps=p.number("max_offset_bps", 0.0, strict_lo=True),
                min_half_spread_ticks=p.integer("min_half_spread_ticks", 0),
                pickoff_probability=p.number("pickoff_probability", 0.0, 1.0),
            )
        )

    q = r.section("perps")
    idio = q.numbers("idio_vol_annual", 2, 0.0)
    betas = q.numbers("beta_range", 2)
    perps = PerpSpec(
        seed_offset=q.integer("seed_offset", 0),
        start_ms=parse_utc(q.get("start"), q.where("start")) // 1_000_000,
        days=q.integer("days", 1),
        n_contracts=q.integer("n_contracts", 2),
        funding_interval_h=q.integer("funding_interval_h", 1),
        regime_mean_duration_h=q.numbers("regime_mean_duration_h", len(regimes.names), 1e-3),
        minute_volume_usd=_pair(q.numbers("minute_volume_usd", 2, 0.0)),
        market_vol_annual=q.number("market_vol_annual", 0.0),
        idio_vol_annual=_pair(idio),
        beta_range=_pair(betas),
        crowding_half_life_h=q.number("crowding_half_life_h", 0.0, strict_lo=True),
        funding_base=q.number("funding_base"),
        funding_crowding_loading=q.number("funding_crowding_loading", 0.0, strict_lo=True),
        funding_noise=q.number("funding_noise", 0.0),
        pressure_effect=q.number("pressure_effect"),
        late_listings=q.integer("late_listings", 0),
        delistings=q.integer("delistings", 0),
        venue_outages=q.integer("venue_outages", 0),
    )
    if 24 % perps.funding_interval_h:
        raise ConfigError(f"{q.where('funding_interval_h')} must divide 24, got {perps.funding_interval_h}")
    if perps.n_contracts > 40:
        raise ConfigError(f"{q.where('n_contracts')} must be <= 40 (the simulated listing has 40 names)")
    if perps.late_listings + perps.delistings >= perps.n_contracts:
        raise ConfigError(f"{q.where('late_listings')} + delistings must leave some contracts listed throughout")
    return SimConfig(seed, start_ns, latent_dt_ms, regimes, signal, tuple(products), perps, tree)

"""Backtest configuration: one dataclass per concern, loaded from YAML or a dict with every field checked.

Units: times in ns unless the name says ``_s`` (seconds) or ``_bars`` (prediction rows); fees in basis points of
traded notional; sizes in base units (BTC for BTC-USD).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A bad configuration value; the message names the file and the field."""


@dataclass
class FeeTier:
    """Fees that apply once the cumulative traded notional (quote currency) reaches ``min_volume``."""

    min_volume: float = 0.0
    maker_bps: float = 0.0
    taker_bps: float = 5.0


@dataclass
class FeeConfig:
    tiers: list[FeeTier] = field(default_factory=lambda: [FeeTier()])
    starting_volume: float = 0.0  # notional already traded in the fee window before the backtest starts


@dataclass
class LatencyConfig:
    """``order_ns``: decision -> the order is at the venue. ``md_ns``: venue event -> our receive time. The venue's
    book at venue time A is the recorded book at receive time A + md_ns, so an order decided at t meets the
    recorded book at t + order_ns + md_ns (see research.backtest.latency)."""

    order_ns: int = 5_000_000
    md_ns: int = 1_000_000


@dataclass
class ExecutionConfig:
    """``style``: "market" (taker, walks the book) or "passive" (a limit order at our side's touch, queued behind
    the displayed size; after ``passive_ttl_s`` the rest is cancelled and, with ``passive_fallback`` "market",
    sent as a market order). Exits by stop-loss always go out as market orders. ``depth``: book levels visible
    to a market order (fills never exceed them)."""

    style: str = "market"
    passive_ttl_s: float = 2.0
    passive_fallback: str = "market"
    depth: int = 20


@dataclass
class GateConfig:
    """Entry gates, applied to each prediction row in order (see research.backtest.gates)."""

    score_kind: str = "prob"  # "prob": score = P(up); "return": score = predicted log return over the horizon
    # the score that means "no view" (default 0.5 for prob, 0 for return). A classifier whose label counts ties
    # as "down", or a regression fitted on a trending sample, has a base rate away from it: pass the training
    # mean of the model's scores, or every prediction leans one way
    score_center: float | None = None
    z_threshold: float = 0.0  # |z-edge| must be at least this
    ev_multiple: float = 0.0  # expected gain must exceed ev_multiple x expected round-trip cost (0: off)
    quantile: float = 0.0  # |edge| must be above its rolling quantile over quantile_window bars (0: off)
    quantile_window: int = 300
    persistence: int = 1  # the sign must agree in at least persistence_min of the last persistence bars
    persistence_min: int = 1
    warmup_bars: int = 60  # no entries before this many bars (sigma and ATR need history)
    sigma_window: int = 60  # bars in the realized-volatility estimate
    sigma_floor: float = 1e-5  # per-sqrt-second log-return volatility never below this
    long_only: bool = False


@dataclass
class SizingConfig:
    """q = q0 x min(|z| / z_ref, edge_cap) x min(sigma_ref / sigma, vol_cap), then capped at max_size and
    max_notional; below min_size no trade. q0 = base_size if it is > 0, else base_notional / mid (comparable sizes
    across symbols). ``z_ref`` 0 or ``sigma_ref`` 0 switch that factor off (1)."""

    base_size: float = 0.0
    base_notional: float = 1000.0
    z_ref: float = 0.0
    edge_cap: float = 3.0
    sigma_ref: float = 0.0
    vol_cap: float = 3.0
    max_size: float = 1.0
    max_notional: float = 1e9
    min_size: float = 0.0


@dataclass
class ExitConfig:
    """``mode``: "gated" (one position per symbol; exits by stop-loss / take-profit / timed exit) or "horizon"
    (hold exactly ``horizon_s`` then exit; ``overlap`` True opens a new position every bar even when one is open,
    the classic overlapping-trades mistake, kept to show the inflation). ATR multiples of 0 switch a leg off. The
    OCO is armed ``oco_arm_bars`` bars after the entry bar: with 1 the first bar after entry cannot trigger it."""

    mode: str = "gated"
    horizon_s: float | None = None  # default: the predictions' horizon_s, else 30 s
    overlap: bool = False
    stop_atr: float = 0.0
    take_atr: float = 0.0
    atr_window: int = 20
    oco_arm_bars: int = 1
    max_hold_s: float | None = None  # gated mode timed exit (default: the horizon)
    cooldown_s: float = 0.0  # no entry within this long after an exit


@dataclass
class MetricsConfig:
    period_s: float = 60.0  # PnL bucket for Sharpe / Sortino; annualized by sqrt(365 * 86400 / period_s)
    capacity_multipliers: list[float] = field(default_factory=lambda: [0.25, 1.0, 4.0, 16.0, 64.0, 256.0])
    n_trials: int = 1  # strategies tried before this one (deflated Sharpe); sweeps set it


@dataclass
class BacktestConfig:
    fees: FeeConfig = field(default_factory=FeeConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    exits: ExitConfig = field(default_factory=ExitConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    exchange: str | None = None  # bronze exchange partition; None: the only one present

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections) -> "BacktestConfig":
        """A copy with fields of sections changed: ``cfg.replace(gates={"z_threshold": 1.0})``."""
        d = self.to_dict()
        for sec, values in sections.items():
            if isinstance(values, dict):
                d[sec].update(values)
            else:
                d[sec] = values
        return from_dict(d)


_CHOICES = {("execution", "style"): ("market", "passive"), ("execution", "passive_fallback"): ("market", "cancel"),
            ("gates", "score_kind"): ("prob", "return"), ("exits", "mode"): ("gated", "horizon")}


def _build(cls, data, where: str):
    if data is None:
        return cls()
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(names)}")
    kwargs = {}
    for name, value in data.items():
        f = names[name]
        here = f"{where}.{name}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, here)
        elif name == "tiers":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{here}: expected a non-empty list of tiers")
            kwargs[name] = [_build(FeeTier, v, f"{here}[{i}]") for i, v in enumerate(value)]
        elif isinstance(default, list):
            if not isinstance(value, list):
                raise ConfigError(f"{here}: expected a list, got {value!r}")
            kwargs[name] = [_number(float, v, f"{here}[{i}]") for i, v in enumerate(value)]
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{here}: expected true/false, got {value!r}")
            kwargs[name] = value
        elif isinstance(default, int):
            kwargs[name] = _number(int, value, here)
        elif isinstance(default, float) or (default is None and (name.endswith("_s") or name == "score_center")):
            # fee rates may be negative (maker rebates)
            signed = name.endswith("_bps") or name == "score_center"
            kwargs[name] = None if value is None else _number(float, value, here, signed=signed)
        else:
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{here}: expected a string, got {value!r}")
            kwargs[name] = value
        section = where.rsplit(".", 1)[-1]
        choices = _CHOICES.get((section, name))
        if choices and kwargs[name] not in choices:
            raise ConfigError(f"{here}: {kwargs[name]!r} is not one of {', '.join(choices)}")
    return cls(**kwargs)


def _number(kind, value, where: str, signed: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    out = kind(value)
    if out != out or abs(out) == float("inf") or (out < 0 and not signed):
        raise ConfigError(f"{where}: must be a finite{'' if signed else ' non-negative'} number, got {value!r}")
    return out


def from_dict(data: dict | None, where: str = "config") -> BacktestConfig:
    return _build(BacktestConfig, data or {}, where)


def load_config(source=None) -> BacktestConfig:
    """A :class:`BacktestConfig` from None (defaults), a dict, a config, or a YAML file path."""
    if source is None or isinstance(source, BacktestConfig):
        return source or BacktestConfig()
    if isinstance(source, dict):
        return from_dict(source)
    import yaml

    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({exc})") from None
    return from_dict(data, where=str(path))

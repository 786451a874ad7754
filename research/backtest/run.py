"""``run_backtest``: predictions + bronze market data + config -> trades, equity, metrics, plots."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from l2lab import atomic
from research.backtest import capacity, gates, metrics
from research.backtest.bars import observe
from research.backtest.config import BacktestConfig, load_config
from research.backtest.engine import SymbolEngine
from research.backtest.fees import FeeSchedule
from research.backtest.market import SymbolTape, find_exchange

DEFAULT_HORIZON_S = 30.0
_BARS_CACHE: dict = {}  # (data root, exchange, symbol, prediction times, bronze files) -> Bars; sweeps re-use them
_BARS_CACHE_SIZE = 16


def observed_bars(data_root, exchange: str, symbol: str, ts: np.ndarray):
    """The observed bars (research.backtest.bars.observe) at ``ts``, cached for repeated runs on the same data
    (a bronze partition rewritten since changes the key through its file sizes and times)."""
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for ds in ("l2_events", "trades")
                  for p in sorted((Path(data_root) / "bronze" / ds / f"exchange={exchange}" / f"symbol={symbol}")
                                  .rglob("*.parquet")))
    key = (str(Path(data_root).resolve()), exchange, symbol, hash(ts.tobytes()), len(ts), hash(stamp))
    bars = _BARS_CACHE.get(key)
    if bars is None:
        bars = observe(SymbolTape(data_root, exchange, symbol, 1), ts)  # the strategy reads the touch only
        if len(_BARS_CACHE) >= _BARS_CACHE_SIZE:
            _BARS_CACHE.pop(next(iter(_BARS_CACHE)))
        _BARS_CACHE[key] = bars
    return bars


@dataclass
class BacktestResult:
    metrics: dict
    trades: pd.DataFrame
    equity: pd.DataFrame
    config: dict = field(default_factory=dict)

    def save(self, out_dir) -> Path:
        """metrics.json, trades.parquet, equity.parquet, config.json and PNG plots into ``out_dir``."""
        from research.backtest import plots

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / "metrics.json", self.metrics)
        atomic.write_json(out / "config.json", self.config)
        atomic.write_parquet(out / "trades.parquet", pa.Table.from_pandas(self.trades, preserve_index=False))
        atomic.write_parquet(out / "equity.parquet", pa.Table.from_pandas(self.equity, preserve_index=False))
        plots.save_all(self, out)
        return out


def check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Validated copy sorted by (symbol, ts_ns); errors name the column and the first bad row."""
    if not isinstance(predictions, pd.DataFrame):
        raise TypeError(f"predictions: expected a pandas DataFrame, got {type(predictions).__name__}")
    missing = [c for c in ("symbol", "ts_ns", "score") if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions: missing column(s) {', '.join(missing)} (have {list(predictions.columns)})")
    df = predictions.reset_index(drop=True)
    ts = df["ts_ns"]
    if not pd.api.types.is_integer_dtype(ts):
        if pd.api.types.is_datetime64_any_dtype(ts):
            raise ValueError("predictions.ts_ns: expected int64 UTC nanoseconds, got datetimes "
                             "(use .astype('int64') on UTC timestamps)")
        raise ValueError(f"predictions.ts_ns: expected int64 UTC nanoseconds, got {ts.dtype}")
    score = pd.to_numeric(df["score"], errors="coerce")
    bad = np.flatnonzero(~np.isfinite(score.to_numpy(float)))
    if len(bad):
        raise ValueError(f"predictions.score: {len(bad)} non-finite value(s), first at row {bad[0]} "
                         f"({df['score'].iloc[bad[0]]!r})")
    cols = {"symbol": df["symbol"].astype(str), "ts_ns": ts.astype(np.int64), "score": score.astype(float)}
    if "horizon_s" in df.columns:
        h = pd.to_numeric(df["horizon_s"], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~(h > 0))
        if len(bad):
            raise ValueError(f"predictions.horizon_s: must be > 0, row {bad[0]} has {df['horizon_s'].iloc[bad[0]]!r}")
        cols["horizon_s"] = h
    out = pd.DataFrame(cols).sort_values(["symbol", "ts_ns"], kind="stable").reset_index(drop=True)
    dup = out.duplicated(["symbol", "ts_ns"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"predictions: duplicate (symbol, ts_ns) = ({r.symbol}, {r.ts_ns})")
    return out


def _trade_rows(symbol: str, lots: list) -> list[dict]:
    rows = []
    for k, lot in enumerate(lots):
        if lot.state != "closed":
            continue
        e = lot.entry
        qty = e.filled
        x_notional = sum(x.notional for x in lot.exits)
        x_filled = sum(x.filled for x in lot.exits)
        gross = lot.d * (x_notional - e.notional)
        fees = e.fees + sum(x.fees for x in lot.exits)
        costs = e.costs()
        for x in lot.exits:
            for name, v in x.costs().items():
                costs[name] += v
        x_dec_mid = lot.exits[-1].dec_mid
        mid_pnl = lot.d * sum((x.dec_mid - e.dec_mid) * x.filled for x in lot.exits)
        first = next((ex for ex in e.execs if ex.filled > 0), None)
        rows.append({
            "symbol": symbol, "trade": k, "direction": lot.d, "qty": qty, "requested": e.target,
            "entry_decision_ns": e.dec_ns, "entry_ns": first.last_fill_ns if first else e.dec_ns,
            "entry_vwap": e.vwap, "entry_mid": e.dec_mid, "entry_maker": bool(first.maker) if first else False,
            "exit_decision_ns": lot.exits[-1].dec_ns, "exit_ns": max(x.last_fill_ns for lg in lot.exits for x in lg.execs),
            "exit_vwap": x_notional / x_filled if x_filled > 0 else np.nan, "exit_mid": x_dec_mid,
            "exit_reason": lot.exits[0].reason, "exit_legs": len(lot.exits),
            "entry_notional": e.notional, "exit_notional": x_notional,
            "gross_pnl": gross, "fees": fees, "net_pnl": gross - fees, "mid_pnl": mid_pnl,
            "spread": costs["spread"], "impact": costs["impact"], "latency": costs["latency"],
        })
    return rows


def run_backtest(predictions: pd.DataFrame, data_root, config=None, *, n_trials: int | None = None,
                 sr_var: float | None = None) -> BacktestResult:
    """Backtest ``predictions`` (symbol, ts_ns, score[, horizon_s]) on the bronze data under ``data_root``.
    ``config``: a :class:`BacktestConfig`, a dict, a YAML path or None (defaults). ``n_trials`` / ``sr_var``
    override the config's trial count for the deflated Sharpe (sweeps pass them)."""
    started = time.perf_counter()
    cfg: BacktestConfig = load_config(config)
    preds = check_predictions(predictions)
    all_rows, eq_parts, per_symbol, all_lots = [], [], {}, []
    rows_fed = trades_seen = 0
    for symbol, p in preds.groupby("symbol", sort=True):
        ts = p["ts_ns"].to_numpy(np.int64)
        horizon_s = float(np.median(p["horizon_s"])) if "horizon_s" in p else (cfg.exits.horizon_s or
                                                                              DEFAULT_HORIZON_S)
        exchange = find_exchange(data_root, symbol, cfg.exchange, int(ts[0]))
        bars = observed_bars(data_root, exchange, symbol, ts)
        sig = gates.compute(p["score"].to_numpy(float), bars, horizon_s, cfg)
        tape = SymbolTape(data_root, exchange, symbol, cfg.execution.depth)
        run = SymbolEngine(tape, bars, sig, horizon_s, cfg, FeeSchedule(cfg.fees)).run()
        rows_fed += run.rows_fed
        trades_seen += run.trades_seen
        rows = _trade_rows(symbol, run.lots)
        all_rows += rows
        all_lots += run.lots
        eq_parts.append(pd.DataFrame({"ts_ns": ts, "symbol": symbol, "equity": run.equity,
                                      "gross_equity": run.gross_equity, "position": run.position,
                                      "mid": bars.mid, "z": sig.z}))
        tr = pd.DataFrame(rows)
        per_symbol[symbol] = {
            "trades": len(rows), "net_pnl": float(run.equity[-1]) if len(ts) else 0.0,
            "gross_pnl": float(run.gross_equity[-1]) if len(ts) else 0.0,
            "entries_blocked": sig.blocked_counts(), "bars": int(bars.n), "exchange": exchange,
            "horizon_s": horizon_s, "rejected_orders": run.rejected,
            "void_entries": sum(lot.state == "void" for lot in run.lots),
            "hit_rate": float((tr["net_pnl"] > 0).mean()) if len(tr) else float("nan"),
        }
    trades = pd.DataFrame(all_rows)
    if trades.empty:
        trades = pd.DataFrame(columns=["symbol", "trade", "direction", "qty", "entry_notional", "exit_notional",
                                       "gross_pnl", "fees", "net_pnl", "mid_pnl", "spread", "impact", "latency"])
    equity = pd.concat(eq_parts, ignore_index=True) if eq_parts else pd.DataFrame(
        columns=["ts_ns", "symbol", "equity", "gross_equity", "position", "mid", "z"])
    total = portfolio_equity(equity)
    m = metrics.summarize(total["ts_ns"].to_numpy(np.int64), total["equity"].to_numpy(float),
                          total["gross_equity"].to_numpy(float), trades, cfg.metrics.period_s,
                          n_trials if n_trials is not None else cfg.metrics.n_trials, sr_var)
    m["per_symbol"] = per_symbol
    m["capacity"] = capacity.curve(all_lots, cfg.metrics.capacity_multipliers, cfg.fees.tiers[0].taker_bps)
    wall = time.perf_counter() - started
    m["run"] = {"wall_s": round(wall, 3), "l2_rows": int(rows_fed), "trades_in_data": int(trades_seen),
                "events_per_s": round((rows_fed + trades_seen) / wall) if wall > 0 else None,
                "predictions": int(len(preds))}
    return BacktestResult(clean(m), trades, equity, cfg.to_dict())


def clean(obj):
    """JSON-able copy: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def portfolio_equity(equity: pd.DataFrame) -> pd.DataFrame:
    """Sum of the symbols' equity curves on the union of their bar times (each carried forward)."""
    if equity.empty:
        return pd.DataFrame({"ts_ns": np.empty(0, np.int64), "equity": [], "gross_equity": []})
    wide = {}
    for col in ("equity", "gross_equity"):
        w = equity.pivot_table(index="ts_ns", columns="symbol", values=col, aggfunc="last").sort_index()
        wide[col] = w.ffill().fillna(0.0).sum(axis=1)
    return pd.DataFrame({"ts_ns": wide["equity"].index.to_numpy(np.int64), "equity": wide["equity"].to_numpy(),
                         "gross_equity": wide["gross_equity"].to_numpy()})

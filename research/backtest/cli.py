"""``l2lab backtest``: run a backtest of a predictions Parquet file and write metrics, trade log, equity, plots."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("backtest", help="cost-aware L2 backtest of model predictions",
                       description="Predictions Parquet: columns symbol, ts_ns (int64 UTC ns, when the prediction "
                                   "is available), score (P(up) or predicted log return), optional horizon_s. "
                                   "Market data: bronze l2_events and trades under the data root.")
    p.add_argument("--predictions", required=True, help="predictions Parquet file")
    p.add_argument("--config", default=None, help="YAML config (see research.backtest.config); default settings "
                                                  "otherwise")
    p.add_argument("--out", required=True, help="output folder (metrics.json, trades.parquet, equity.parquet, PNGs)")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    from pathlib import Path

    import pandas as pd

    from l2lab.cli import CLIError
    from l2lab.settings import resolve_data_root
    from research.backtest.config import ConfigError
    from research.backtest.run import run_backtest

    path = Path(args.predictions)
    if not path.exists():
        raise CLIError(f"{path}: no such file")
    try:
        preds = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise CLIError(f"{path}: not a readable Parquet file ({exc})") from None
    try:
        result = run_backtest(preds, resolve_data_root(args.data_root), args.config)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise CLIError(f"{exc}") from None
    out = result.save(args.out)
    m = result.metrics
    print(f"trades {m['trades']}  net {m['net_pnl']:.6g}  gross {m['gross_pnl']:.6g}  fees {m['fees']:.6g}  "
          f"sharpe {m['sharpe']}  ({m['sharpe_annualization']})  max drawdown {m['max_drawdown']:.6g}")
    print(f"wrote {out}")
    return 0

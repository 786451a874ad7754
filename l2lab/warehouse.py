"""The DuckDB warehouse: one database file with views over every layer's Parquet trees.

Views are (re)created on every open, so they always cover the files present now. A dataset with no files yet
gets an empty view with the right columns, so queries never fail for lack of data.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from l2lab.settings import Settings

_DUCK_TYPES = {
    pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT", pa.float64(): "DOUBLE", pa.float32(): "FLOAT", pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
}
# views that add exact-to-float conversions for fixed-point datasets
FLOAT_COLUMNS = {
    "l2_events": ", price / 10 ^ price_exp AS price_f, size / 10 ^ size_exp AS size_f",
    "trades": ", price / 10 ^ price_exp AS price_f, size / 10 ^ size_exp AS size_f",
}
HIVE_COLUMNS = {"exchange": "VARCHAR", "symbol": "VARCHAR", "date": "VARCHAR", "hour": "VARCHAR"}


def _empty_select(schema: pa.Schema, per_symbol: bool) -> str:
    cols = [f"NULL::{_DUCK_TYPES[f.type]} AS {f.name}" for f in schema]
    hive = ["exchange"] + (["symbol"] if per_symbol else []) + ["date", "hour"]
    cols += [f"NULL::{HIVE_COLUMNS[h]} AS {h}" for h in hive]
    return f"SELECT {', '.join(cols)} WHERE false"


def bronze_views(data_root: Path) -> dict[str, str]:
    from collectors.bronze import PER_SYMBOL, SCHEMAS

    views = {}
    for dataset, schema in SCHEMAS.items():
        base = data_root / "bronze" / dataset
        if any(base.rglob("*.parquet")) if base.exists() else False:
            glob = str(base / "**" / "*.parquet").replace("'", "''")
            sql = (f"SELECT *{FLOAT_COLUMNS.get(dataset, '')} FROM read_parquet('{glob}', hive_partitioning=true, "
                   f"hive_types_autocast=false, union_by_name=true)")
        else:
            sql = _empty_select(schema, dataset in PER_SYMBOL)
        views[f"bronze_{dataset}"] = sql
    return views


def derived_views(data_root: Path) -> dict[str, str]:
    """``silver_<dataset>`` and ``gold_<dataset>`` for every dataset folder that has Parquet files."""
    views = {}
    for layer in ("silver", "gold"):
        base = data_root / layer
        for d in sorted(base.iterdir()) if base.exists() else []:
            if d.name.startswith("_") or not d.is_dir() or not any(d.rglob("*.parquet")):
                continue
            glob = str(d / "**" / "*.parquet").replace("'", "''")
            views[f"{layer}_{d.name}"] = (f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true, "
                                          f"hive_types_autocast=false, union_by_name=true)")
    return views


def connect(settings: Settings | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file under the data root and refresh every view."""
    settings = settings or Settings.load()
    settings.data_root.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.warehouse_path))
    views = {**bronze_views(settings.data_root), **derived_views(settings.data_root)}
    for name, sql in views.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
    return con


def register(sub) -> None:
    p = sub.add_parser("sql", help="run a SQL query against the DuckDB warehouse",
                       description="Views: bronze_l2_events, bronze_trades, bronze_ohlcv_1m, bronze_funding, "
                                   "bronze_gaps, bronze_quarantine, bronze_venue_gaps, and silver_<dataset> / "
                                   "gold_<dataset> for every built dataset (e.g. silver_book_features_100ms).")
    p.add_argument("query", help='e.g. "SELECT symbol, count(*) FROM bronze_trades GROUP BY 1"')
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.set_defaults(func=run_sql)


def run_sql(args) -> int:
    import sys

    from l2lab.cli import CLIError

    con = connect(Settings.load(args.data_root))
    try:
        rel = con.sql(args.query)
    except duckdb.Error as exc:
        raise CLIError(f"query failed: {exc}") from None
    if rel is None:
        return 0
    df = rel.df()
    if args.csv:
        df.to_csv(sys.stdout, index=False)
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
            print(df.to_string(index=False))
    return 0

"""Training sets for the notebooks: point-in-time rows of labels + features in the shape INTERFACES.md fixes.

``trainset.parquet`` columns: ``symbol`` (string), ``ts_ns`` (int64 UTC ns, the label row's grid time),
``event_timestamp`` (timestamp[ns, UTC]), the label columns, then the feature columns (catalog names).
``manifest.json``: features, labels, grid, feature_service, catalog_hash, symbols, start_ns, end_ns, rows,
null_rates (+ ``source``: which builder made it).

Two builders, one shape:

* ``feast``: ``l2lab.featurestore.trainset.build_trainset`` (the feature store's point-in-time join). This is
  the path the notebooks and the runner use whenever the feature store is installed.
* ``silver``: :func:`silver_trainset`, an exact equi-join of silver feature rows and label rows on
  ``(symbol, ts_ns)`` (label rows with every requested label missing are left out, as ``build_trainset`` does). Features and labels of a grid share the grid times, and a feature row stamped g holds
  only inputs received at or before g (kernels.pipeline), so on the grid the as-of join and the equi-join
  agree; it is the reference the Feast path is compared against and the fallback when Feast is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from collectors.timeparse import to_utc_ns
from l2lab import atomic

KEY_COLUMNS = ("symbol", "ts_ns", "event_timestamp")


def book_features(grid: str | None = None) -> list[str]:
    """Catalog feature names computed on the book grids (tables book and cross_asset); with ``grid`` (``1s``,
    ``100ms``) only those with values on it (what its Feast views hold: a lag that is not a whole number of
    steps has none)."""
    from kernels import catalog
    from kernels.pipeline import grid_ms

    step_ns = None if grid is None else grid_ms(grid) * 1_000_000
    return [s.name for s in catalog.features()
            if s.table in ("book", "cross_asset") and (step_ns is None or s.defined_on(step_ns))]


def silver_trainset(data_root, out_dir, *, grid: str = "1s", labels: list[str], features: list[str] | None = None,
                    symbols=None, start=None, end=None, exchange: str | None = None) -> Path:
    """Equi-join of ``silver/labels_<grid>`` with ``silver/book_features_<grid>`` and
    ``silver/cross_asset_<grid>`` on (symbol, ts_ns); same files and shape as ``build_trainset``."""
    import duckdb

    from kernels import catalog
    from kernels.pipeline import catalog_hash

    root, out = Path(data_root), Path(out_dir)
    features = list(features) if features is not None else book_features(grid)
    if not labels:
        raise ValueError("silver_trainset: at least one label is needed")
    known_labels = {s.name for s in catalog.labels()}
    for name in labels:
        if name not in known_labels:
            raise ValueError(f"silver_trainset: {name!r} is not a catalog label")
    specs = catalog.by_name()
    for name in features:
        catalog.check_not_label(name)
        if name not in specs:
            raise ValueError(f"silver_trainset: {name!r} is not a catalog feature")
    book = [f for f in features if specs[f].table == "book"]
    xa = [f for f in features if specs[f].table == "cross_asset"]
    other = [f for f in features if specs[f].table not in ("book", "cross_asset")]
    if other:
        raise ValueError(f"silver_trainset: {other[:3]}... are not on the book grids (tables book/cross_asset)")

    def src(table: str) -> str:
        base = root / "silver" / f"{table}_{grid}"
        if not any(base.rglob("*.parquet")):
            raise FileNotFoundError(f"{base}: no silver Parquet files (run `l2lab features build`)")
        glob = str(base / "**" / "*.parquet").replace("'", "''")
        return f"read_parquet('{glob}', hive_partitioning=true, hive_types_autocast=false, union_by_name=true)"

    where = []
    if exchange:
        where.append(f"l.exchange = '{exchange}'")
    if symbols:
        where.append("l.symbol IN (" + ", ".join(f"'{s}'" for s in symbols) + ")")
    start_ns, end_ns = to_utc_ns(start), to_utc_ns(end)
    if start_ns is not None:
        where.append(f"l.ts_ns >= {start_ns}")
    if end_ns is not None:
        where.append(f"l.ts_ns < {end_ns}")
    cols = ", ".join([f'l."{c}"' for c in labels] + [f'b."{c}"' for c in book] + [f'x."{c}"' for c in xa])
    sql = (f"SELECT l.symbol::VARCHAR AS symbol, l.ts_ns, {cols} FROM {src('labels')} l "
           f"LEFT JOIN {src('book_features')} b ON b.symbol = l.symbol AND b.ts_ns = l.ts_ns AND b.exchange = l.exchange ")
    if xa:
        sql += (f"LEFT JOIN {src('cross_asset')} x ON x.symbol = l.symbol AND x.ts_ns = l.ts_ns "
                f"AND x.exchange = l.exchange ")
    sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY l.ts_ns, l.symbol"
    con = duckdb.connect()
    try:
        df = con.sql(sql).df()
    finally:
        con.close()
    df = df[df[list(labels)].notna().any(axis=1)].reset_index(drop=True)  # as build_trainset: a row needs a label
    df["ts_ns"] = df["ts_ns"].astype("int64")
    df.insert(2, "event_timestamp", pd.to_datetime(df["ts_ns"], unit="ns", utc=True))
    df = df[list(KEY_COLUMNS) + list(labels) + book + xa]
    manifest = {
        "source": "silver", "features": book + xa, "labels": list(labels), "grid": grid, "feature_service": None,
        "catalog_hash": catalog_hash(), "symbols": sorted(df["symbol"].unique().tolist()),
        "start_ns": int(df["ts_ns"].min()) if len(df) else None, "end_ns": int(df["ts_ns"].max()) if len(df) else None,
        "rows": int(len(df)), "null_rates": {c: float(df[c].isna().mean()) for c in book + xa + list(labels)},
        "exchange": exchange,
    }
    atomic.write_parquet(out / "trainset.parquet", pa.Table.from_pandas(df, preserve_index=False))
    atomic.write_json(out / "manifest.json", manifest)
    return out


def build_training_set(data_root, out_dir, *, grid: str = "1s", labels: list[str], features: list[str] | None = None,
                       feature_service: str | None = None, symbols=None, start=None, end=None,
                       exchange: str | None = None, source: str = "feast") -> Path:
    """Build a training set through the feature store (``source='feast'``, point in time) or the silver reference
    join (``'silver'``, the exact equi-join the tests compare the Feast path with)."""
    if source not in ("feast", "silver"):
        raise ValueError(f"source must be feast or silver, not {source!r}")
    if source == "silver":
        return silver_trainset(data_root, out_dir, grid=grid, labels=labels, features=features, symbols=symbols,
                               start=start, end=end, exchange=exchange)
    from l2lab.featurestore.trainset import build_trainset

    # neither features nor a service: build_trainset uses the service book_<grid> (every book + cross-asset feature)
    path = Path(build_trainset(data_root, out_dir, grid=grid, labels=list(labels), feature_service=feature_service,
                               features=None if feature_service else features, symbols=symbols, start=start, end=end,
                               exchange=exchange))
    man = json.loads((path / "manifest.json").read_text())
    if "source" not in man:
        man["source"] = "feast"
        atomic.write_json(path / "manifest.json", man)
    return path


def load_training_set(path) -> tuple[pd.DataFrame, dict]:
    """(rows sorted by time then symbol, manifest) from a folder written by either builder."""
    path = Path(path)
    man_path = path / "manifest.json"
    if not man_path.exists():
        raise FileNotFoundError(f"{man_path}: no training set manifest here")
    manifest = json.loads(man_path.read_text())
    missing = [k for k in ("features", "labels", "grid") if k not in manifest]
    if missing:
        raise ValueError(f"{man_path}: missing field(s) {', '.join(missing)}")
    df = pd.read_parquet(path / "trainset.parquet")
    absent = [c for c in ["symbol", "ts_ns"] + manifest["labels"] + manifest["features"] if c not in df.columns]
    if absent:
        raise ValueError(f"{path / 'trainset.parquet'}: column(s) {', '.join(absent[:5])} named in the manifest "
                         f"are missing")
    df["symbol"] = df["symbol"].astype(str)
    df = df.sort_values(["ts_ns", "symbol"], kind="stable").reset_index(drop=True)
    return df, manifest

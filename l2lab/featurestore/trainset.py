"""Point-in-time training sets through Feast: ``build_trainset`` (``l2lab trainset``).

Entity rows are label-table rows (``silver/labels_<grid>``: symbol, ``ts_ns``, the chosen labels), dropping rows
where every chosen label is missing (e.g. after a recording stops). Features come through a feature service (or a
list of catalog names) with ``FeatureStore.get_historical_features``: for each entity row, each view's latest row
stamped at or before the entity time and no older than the view's TTL.

Leakage guards, all refusing with ``LeakageError``:
* a requested feature must be in the catalog (which only holds forward reach 0) and not look like a label
  (``kernels.catalog.check_not_label``); its registered tags must say forward reach 0;
* every view must carry its row stamp (field ``ts_ns``); the stamps are joined with the features and every one
  must be at or before its entity time and within the TTL (a source stamped earlier than its data is caught);
  a row without a stamp must have no feature values.

Output: ``trainset.parquet`` (``symbol``, ``ts_ns``, ``event_timestamp``, labels, features; sorted by symbol and
time) and ``manifest.json`` (features, labels, grid, service, catalog hash, symbols, range, rows, null rates).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from collectors.timeparse import to_utc_ns
from kernels import catalog
from l2lab import atomic
from l2lab.featurestore import definitions
from l2lab.featurestore.store import ensure_applied

TRAINSET_FILE = "trainset.parquet"
MANIFEST_FILE = "manifest.json"


class LeakageError(ValueError):
    """A requested feature or a joined row could see the future."""


def entity_rows(data_root: Path, grid: str, labels: list[str], symbols=None, start_ns=None, end_ns=None,
                exchange=None) -> tuple[pd.DataFrame, int]:
    """Label rows on ``grid`` in [start, end) for the symbols/exchange; returns (rows, rows dropped because every
    requested label is missing)."""
    import duckdb

    base = data_root / "silver" / f"labels_{grid}"
    files = sorted(base.glob("exchange=*/symbol=*/date=*/hour=*/part-*.parquet"))
    if exchange:
        files = [f for f in files if f"exchange={exchange}" in f.parts]
    if symbols:
        files = [f for f in files if any(p in f.parts for p in (f"symbol={s}" for s in symbols))]
    if not files:
        raise FileNotFoundError(f"no label rows under {base} for exchange={exchange or '*'} "
                                f"symbols={','.join(symbols) if symbols else '*'} (run `l2lab features build`)")
    con = duckdb.connect()
    cols = ", ".join(f'"{c}"' for c in labels)
    where = []
    if start_ns is not None:
        where.append(f"ts_ns >= {int(start_ns)}")
    if end_ns is not None:
        where.append(f"ts_ns < {int(end_ns)}")
    sql = (f"SELECT symbol::VARCHAR AS symbol, ts_ns, {cols} FROM read_parquet($files, hive_partitioning=true, "
           f"hive_types_autocast=false, union_by_name=true)"
           + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY symbol, ts_ns")
    df = con.execute(sql, {"files": [str(f) for f in files]}).df()
    con.close()
    present = df[labels].notna().to_numpy()  # NaN and NULL both count as missing
    keep = present.any(axis=1)
    return df[keep].reset_index(drop=True), int((~keep).sum())


def resolve_features(store, defs: definitions.Definitions, grid: str, feature_service: str | None,
                     features: list[str] | None) -> list[tuple[str, str]]:
    """(view, feature) pairs requested, after the leakage guards on names and registered tags."""
    if feature_service and features:
        raise ValueError("give feature_service or features, not both")
    if feature_service:
        service = store.get_feature_service(feature_service)
        pairs = [(p.name_to_use(), f.name) for p in service.feature_view_projections for f in p.features
                 if f.name != definitions.STAMP_COLUMN]  # a service over whole views lists the stamp too
    else:
        pairs = []
        for name in features:
            check_feature(name)
            pairs.append((defs.view_of(name, grid), name))
    specs = catalog.by_name()
    seen: dict[str, str] = {}
    fields: dict[str, dict] = {}  # view -> its registered fields: Feast rebuilds a view from its proto on each get
    for view, name in pairs:
        check_feature(name, specs)
        if name in seen:
            raise ValueError(f"feature {name!r} requested from two views ({seen[name]}, {view})")
        seen[name] = view
        if view not in fields:
            fields[view] = {f.name: f for f in store.get_feature_view(view, allow_registry_cache=True).features}
        registered = fields[view]
        if name not in registered:
            raise KeyError(f"feature view {view!r} has no feature {name!r}")
        if definitions.STAMP_COLUMN not in registered:
            raise LeakageError(f"feature view {view!r} has no row stamp field {definitions.STAMP_COLUMN!r}: "
                               f"its rows cannot be proven point in time")
        reach = registered[name].tags.get("forward_reach")
        if reach != "0":
            raise LeakageError(f"{view}:{name} is registered with forward reach {reach!r}, not 0")
    return pairs


def check_feature(name: str, specs: dict | None = None) -> None:
    """Refuse a label-like name and anything outside the catalog (only the catalog declares forward reach 0)."""
    try:
        catalog.check_not_label(name)
    except ValueError as exc:
        raise LeakageError(str(exc)) from None
    specs = specs if specs is not None else catalog.by_name()
    if name not in specs:
        raise LeakageError(f"{name!r} is not in the feature catalog: its forward reach is unknown")
    if specs[name].forward_reach != 0:
        raise LeakageError(f"{name!r} has forward reach {specs[name].forward_reach}")


def check_stamps(joined: pa.Table, pairs: list[tuple[str, str]], store) -> None:
    """Every joined row stamped at or before its entity time and within its view's TTL; no values without a
    stamp. ``joined``: Feast's result with full feature names, as Arrow (int64 stamps stay exact)."""
    import pyarrow.compute as pc

    entity_ns = joined.column("ts_ns").to_numpy()
    symbol = joined.column("symbol")
    for view in dict.fromkeys(v for v, _ in pairs):
        col = joined.column(f"{view}__{definitions.STAMP_COLUMN}")
        have = pc.is_valid(col).to_numpy(zero_copy_only=False)
        stamp = pc.fill_null(col, 0).to_numpy().astype(np.int64)
        late = have & (stamp > entity_ns)
        if late.any():
            i = int(np.flatnonzero(late)[0])
            raise LeakageError(f"{view}: a joined row is stamped {int(stamp[i])} after its entity row "
                               f"({symbol[i].as_py()} {int(entity_ns[i])}): its source is stamped earlier than its "
                               f"data ({int(late.sum())} rows)")
        ttl = store.get_feature_view(view, allow_registry_cache=True).ttl
        if ttl:
            old = have & (entity_ns - stamp > int(ttl.total_seconds()) * 1_000_000_000)
            if old.any():
                raise LeakageError(f"{view}: {int(old.sum())} joined rows are older than the view's TTL {ttl}")
        for _, name in (p for p in pairs if p[0] == view):
            values = joined.column(f"{view}__{name}").to_numpy(zero_copy_only=False).astype(np.float64)
            if (~np.isnan(values[~have])).any():
                raise LeakageError(f"{view}:{name} has values on rows where no stamped row joined")


def build_trainset(data_root, out_dir, *, grid: str = "1s", labels: list[str], feature_service: str | None = None,
                   features: list[str] | None = None, symbols=None, start=None, end=None,
                   exchange=None) -> Path:
    """Write ``out_dir/trainset.parquet`` and ``out_dir/manifest.json``; returns ``out_dir``. Features: the
    ``feature_service``, or the catalog names in ``features``; neither means the service ``book_<grid>``."""
    from kernels.pipeline import catalog_hash

    started = time.perf_counter()
    data_root, out_dir = Path(data_root).resolve(), Path(out_dir)
    if grid not in definitions.GRIDS:
        raise ValueError(f"grid {grid!r} not in {definitions.GRIDS}")
    known = {s.name for s in catalog.labels()}
    unknown = [lb for lb in labels if lb not in known]
    if not labels or unknown:
        raise ValueError(f"labels must be catalog labels (`l2lab features list --labels`); unknown: {unknown}")
    symbols = [symbols] if isinstance(symbols, str) else (list(symbols) if symbols else None)
    start_ns, end_ns = to_utc_ns(start), to_utc_ns(end)
    if not features:
        feature_service = feature_service or f"book_{grid}"
    defs = definitions.build(data_root)
    store = ensure_applied(data_root, defs)
    pairs = resolve_features(store, defs, grid, feature_service, features)
    rows, dropped = entity_rows(data_root, grid, labels, symbols, start_ns, end_ns, exchange)
    if rows.empty:
        raise ValueError(f"no label rows with a value for {labels} in the requested range")
    views = list(dict.fromkeys(v for v, _ in pairs))
    refs = [f"{v}:{n}" for v, n in pairs] + [f"{v}:{definitions.STAMP_COLUMN}" for v in views]
    entity_df = rows[["symbol", "ts_ns"]].copy()
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["ts_ns"], utc=True)
    joined = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=True).to_arrow()
    if joined.num_rows != len(entity_df):
        raise RuntimeError(f"the offline store returned {joined.num_rows} rows for {len(entity_df)} entity rows")
    joined = joined.sort_by([("symbol", "ascending"), ("ts_ns", "ascending")])
    if not (np.array_equal(joined.column("ts_ns").to_numpy(), rows["ts_ns"].to_numpy())
            and joined.column("symbol").to_pylist() == rows["symbol"].tolist()):
        raise RuntimeError("the offline store returned different entity rows than it was given")
    check_stamps(joined, pairs, store)
    names = [n for _, n in pairs]
    table = pa.table({
        "symbol": pa.array(rows["symbol"].astype(str).to_numpy(), pa.string()),
        "ts_ns": pa.array(rows["ts_ns"].to_numpy(np.int64)),
        "event_timestamp": pa.array(rows["ts_ns"].to_numpy(np.int64), pa.timestamp("ns", tz="UTC")),
        **{lb: pa.array(rows[lb].to_numpy(np.float64)) for lb in labels},
        **{n: joined.column(f"{v}__{n}").cast(pa.float64()).combine_chunks() for v, n in pairs},
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_parquet(out_dir / TRAINSET_FILE, table)
    ts = rows["ts_ns"].to_numpy(np.int64)
    null_rates = {c: round(float(table.column(c).to_pandas().isna().mean()), 6) for c in [*labels, *names]}
    manifest = {
        "features": names, "labels": labels, "grid": grid, "feature_service": feature_service,
        "views": views, "catalog_hash": catalog_hash(), "symbols": sorted(rows["symbol"].unique().tolist()),
        "exchange": exchange, "start_ns": int(ts.min()), "end_ns": int(ts.max()),
        "requested_start_ns": start_ns, "requested_end_ns": end_ns,
        "rows": int(table.num_rows), "rows_without_label_dropped": dropped,
        "rows_per_symbol": {k: int(v) for k, v in rows["symbol"].value_counts().sort_index().items()},
        "null_rates": null_rates,
        "offline_store": store.config.offline_store.type,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - started, 3),
    }
    atomic.write_json(out_dir / MANIFEST_FILE, manifest)
    return out_dir


__all__ = ["LeakageError", "build_trainset", "entity_rows", "resolve_features"]

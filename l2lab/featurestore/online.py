"""Online serving for the live scorer: push live rows, look features up (SDK or HTTP), materialize, and run Feast's
HTTP feature server as a managed process.

* ``push(store, view, df)``: live rows of one grid view (``symbol``, ``ts_ns`` and/or ``event_timestamp``, the
  view's features) through its push source ``<view>_push`` straight to the online store.
* ``get_online(store, symbols, features, grid="1s")``: one row per symbol, features by catalog name (resolved to
  the grid's view), ``view:feature`` reference, or a feature service name; columns ``symbol`` + feature names.
* ``materialize`` / ``materialize_incremental``: Feast's, restricted by default to views whose files exist (the
  stock DuckDB store fails on a glob that matches nothing, e.g. gold before any perp backfill).
* ``FeatureServer``: ``with FeatureServer(data_root) as srv: srv.get_online(...)`` starts ``feast serve`` on
  127.0.0.1 and a free port, waits until ``/health`` answers, and stops it on exit.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import weakref
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.errors import PushSourceNotFoundException

from kernels import catalog
from l2lab.featurestore import definitions
from l2lab.featurestore.cli import feast_argv, feast_env


@functools.lru_cache(maxsize=256)
def feature_refs(features: tuple[str, ...], grid: str = "1s") -> tuple[str, ...]:
    """``view:feature`` references for catalog names (on ``grid``) or references given as such."""
    specs = catalog.by_name()
    refs = []
    for f in features:
        if ":" in f:
            refs.append(f)
        elif f in specs:
            refs.append(f"{definitions.view_name(specs[f].family, grid)}:{f}")
        else:
            raise KeyError(f"{f!r} is neither a catalog feature nor a view:feature reference")
    return tuple(refs)


_PER_STORE: "weakref.WeakKeyDictionary[FeatureStore, dict]" = weakref.WeakKeyDictionary()


def _once(store: FeatureStore, key: tuple, compute):
    """``compute()`` once per store object and key. Feast rebuilds a service or view from its proto (with type
    checks) on every ``get_feature_service`` / ``get_feature_view`` / ``list_feature_views``: ~20 ms for a
    223-feature service, ~8 ms for the 111-feature structural view. Re-open the store after re-applying changed
    definitions."""
    cache = _PER_STORE.setdefault(store, {})
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def service_refs(store: FeatureStore, name: str) -> list[str]:
    """The ``view:feature`` references of a feature service (a list of references costs nothing to pass)."""
    def refs():
        svc = store.get_feature_service(name, allow_cache=True)
        return [f"{p.name_to_use()}:{f.name}" for p in svc.feature_view_projections for f in p.features]
    return _once(store, ("service", name), refs)


def _features_arg(store: FeatureStore, features, grid: str) -> list[str]:
    if isinstance(features, str):
        return service_refs(store, features)
    return list(feature_refs(tuple(features), grid))


def get_online(store: FeatureStore, symbols, features, grid: str = "1s") -> pd.DataFrame:
    """Latest online values: one row per symbol (in the order given), ``symbol`` then the feature columns."""
    symbols = [symbols] if isinstance(symbols, str) else list(symbols)
    resp = store.get_online_features(features=_features_arg(store, features, grid),
                                     entity_rows=[{"symbol": s} for s in symbols])
    proto = resp.proto
    columns = {}
    for name, vector in zip(proto.metadata.feature_names.val, proto.results):
        if name == "symbol":
            columns[name] = [v.string_val for v in vector.values]
        elif _is_stamp(name):
            columns[name] = [v.int64_val if v.WhichOneof("val") else None for v in vector.values]
        else:  # every catalog feature is a double; a value never written has no field set
            columns[name] = [v.double_val if v.WhichOneof("val") else np.nan for v in vector.values]
    return _frame(columns)


def online_matrix(store: FeatureStore, symbols, features, grid: str = "1s") -> np.ndarray:
    """The live scorer's lookup: float64 ``[symbol, feature]`` in the order given (never written: NaN), no
    DataFrame built. ``features``: catalog names or ``view:feature`` references of double features."""
    symbols = [symbols] if isinstance(symbols, str) else list(symbols)
    refs = feature_refs(tuple(features), grid)
    proto = store.get_online_features(features=list(refs), entity_rows=[{"symbol": s} for s in symbols]).proto
    by_name = dict(zip(proto.metadata.feature_names.val, proto.results))
    out = np.empty((len(refs), len(symbols)), np.float64)
    for i, ref in enumerate(refs):
        out[i] = [v.double_val if v.WhichOneof("val") else np.nan for v in by_name[ref.split(":", 1)[1]].values]
    return out.T


def _is_stamp(name: str) -> bool:
    return name == definitions.STAMP_COLUMN or name.endswith(f"__{definitions.STAMP_COLUMN}")


def _frame(columns: dict) -> pd.DataFrame:
    """Columns of Python values -> one frame: ``symbol``, stamps as nullable int64 (exact ns), features float64
    (missing: NaN), in the given order; built in one go (the float columns as one block)."""
    names = list(columns)
    floats = [c for c in names if c != "symbol" and not _is_stamp(c)]
    n = len(next(iter(columns.values()))) if columns else 0
    matrix = np.array([[np.nan if v is None else v for v in columns[c]] for c in floats], np.float64).reshape(-1, n)
    parts = {c: pd.array(columns[c], dtype="Int64") for c in names if _is_stamp(c)}
    if "symbol" in columns:
        parts["symbol"] = pd.array(columns["symbol"], dtype=object)
    df = pd.concat([pd.DataFrame(parts), pd.DataFrame(matrix.T, columns=floats)], axis=1) if parts else \
        pd.DataFrame(matrix.T, columns=floats)
    return df[names]


def push_views(store: FeatureStore, source: str) -> list[str]:
    """The views a push source feeds (``FeatureStore.push`` resolves them on every call by deserializing every
    view and, after the write, every feature service: ~130 ms a call in Feast 0.67)."""
    def views():
        found = [fv.name for fv in store.list_feature_views(allow_cache=True)
                 if fv.stream_source is not None and fv.stream_source.name == source]
        if not found:
            raise PushSourceNotFoundException(source)
        return found
    return _once(store, ("push", source), views)


def feature_view(store: FeatureStore, view: str):
    """The registered ``FeatureView`` (once per store object, see ``_once``)."""
    return _once(store, ("view", view), lambda: store.get_feature_view(view, allow_registry_cache=True))


def view_features(store: FeatureStore, view: str) -> list[str]:
    """A view's feature names without its stamp ``ts_ns``."""
    return _once(store, ("features", view), lambda: [f.name for f in feature_view(store, view).features
                                                     if f.name != definitions.STAMP_COLUMN])


def push(store: FeatureStore, view: str, df: pd.DataFrame) -> int:
    """Write live rows of ``view`` to the online store through ``<view>_push``; returns the rows pushed.

    What ``FeatureStore.push(<view>_push, df, to=ONLINE)`` does (``write_to_online_store`` for every view the
    source feeds) with the source's views resolved once (``push_views``); none of l2lab's services asks Feast to
    precompute vectors, the one other thing ``push`` does. ``df`` needs ``symbol``, the stamp (``ts_ns`` int64 UTC
    ns and/or ``event_timestamp``) and every feature of the view (catalog names). Last write wins: the online store
    keeps, per symbol, the row pushed last. A row whose features are all missing is dropped by Feast (with a
    warning), as by ``FeatureStore.push``."""
    names = view_features(store, view)
    missing = [n for n in ("symbol", *names) if n not in df.columns]
    if missing:
        raise KeyError(f"push to {view}: missing columns {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    out = df[["symbol", *names]].copy()
    if "ts_ns" in df.columns:
        ts = df["ts_ns"].to_numpy(np.int64)
    elif "event_timestamp" in df.columns:
        ts = pd.to_datetime(df["event_timestamp"], utc=True).to_numpy().astype("datetime64[ns]").astype(np.int64)
    else:
        raise KeyError(f"push to {view}: needs ts_ns or event_timestamp")
    out[definitions.STAMP_COLUMN] = ts
    out[definitions.TIMESTAMP_FIELD] = pd.to_datetime(ts, utc=True)
    for target in push_views(store, f"{view}_push"):
        store.write_to_online_store(target, out, allow_registry_cache=True)
    return len(out)


def write_rows(store: FeatureStore, view: str, symbols, ts_ns, columns: dict) -> int:
    """Live rows of ``view`` straight to the online store through Feast's provider
    (``Provider.online_write_batch``, what ``write_to_online_store`` ends in), no DataFrame: the live scorer's
    write. ``symbols``: one per row; ``ts_ns``: int UTC ns per row (also written as the ``ts_ns`` stamp field);
    ``columns``: feature name -> one float per row; the view's features not given are written as missing (a
    stale value never survives a new row). Unlike ``push``, a row whose features are all missing is written (it
    replaces the previous row: features invalid until warm). Returns the rows written."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from l2lab.featurestore.online_store import from_ns
    from l2lab.featurestore.provider import double_values

    names = view_features(store, view)
    unknown = set(columns) - set(names)
    if unknown:
        raise KeyError(f"write to {view}: not features of the view: {sorted(unknown)[:5]}")
    symbols, ts_ns = list(symbols), [int(t) for t in ts_ns]
    if not symbols:
        return 0
    missing = [np.nan] * len(symbols)
    values = {n: double_values(np.asarray(columns.get(n, missing), np.float64).tolist()) for n in names}
    values[definitions.STAMP_COLUMN] = [ValueProto(int64_val=t) for t in ts_ns]
    rows = [(EntityKeyProto(join_keys=["symbol"], entity_values=[ValueProto(string_val=symbol)]),
             {n: v[i] for n, v in values.items()}, from_ns(t), None)
            for i, (symbol, t) in enumerate(zip(symbols, ts_ns))]
    store._get_provider().online_write_batch(store.config, feature_view(store, view), rows, None)
    return len(rows)


def views_with_data(data_root) -> list[str]:
    """Generated views whose source glob matches at least one file under ``data_root``."""
    defs = definitions.build(data_root)
    return [name for name, src in defs.sources.items() if glob.glob(src.path)]


def _utc(t) -> datetime:
    if isinstance(t, (int, np.integer)):
        return datetime.fromtimestamp(int(t) / 1e9, tz=timezone.utc)
    ts = pd.Timestamp(t)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def materialize(store: FeatureStore, data_root, start, end, views: list[str] | None = None,
                quiet: bool = True) -> list[str]:
    """Feast ``materialize`` over [start, end] for ``views`` (default: every view with data)."""
    views = views if views is not None else views_with_data(data_root)
    if views:
        with _quiet(quiet):
            store.materialize(start_date=_utc(start), end_date=_utc(end), feature_views=views)
    return views


def materialize_incremental(store: FeatureStore, data_root, end, views: list[str] | None = None,
                            quiet: bool = True) -> list[str]:
    """Feast ``materialize-incremental`` up to ``end``: each view from its last materialized end (or end - TTL)."""
    views = views if views is not None else views_with_data(data_root)
    if views:
        with _quiet(quiet):
            store.materialize_incremental(end_date=_utc(end), feature_views=views)
    return views


def _quiet(quiet: bool):
    """Feast prints its materialization plan to stdout; the library helpers keep stdout for the caller."""
    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FeatureServer:
    """Feast's HTTP feature server (``feast serve``) for a data root, as a context manager."""

    def __init__(self, data_root, port: int | None = None, ready_timeout_s: float = 60.0, log_path=None):
        self.data_root = Path(data_root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_timeout_s = ready_timeout_s
        self.log_path = Path(log_path) if log_path else self.data_root / "feast" / "serve.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "FeatureServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # --max-requests 0: Feast's default (1000) restarts the only worker every ~1000 requests, resetting the
        # live scorer's keep-alive connection and serving nothing for a second
        argv = feast_argv(["serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                           "--max-requests", "0"])
        self.proc = subprocess.Popen(argv, env=feast_env(self.data_root), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"feast serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"feast serve not ready after {self.ready_timeout_s} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def post(self, path: str, body: dict, timeout: float = 10.0) -> dict:
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def get_online(self, symbols, features, grid: str = "1s") -> pd.DataFrame:
        """``POST /get-online-features``; same frame as ``get_online``. ``features``: a service name (sent as
        ``feature_service``: the server resolves it, ~20 ms per request in Feast 0.67) or a list."""
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        body: dict = {"entities": {"symbol": symbols}}
        if isinstance(features, str):
            body["feature_service"] = features
        else:
            body["features"] = list(feature_refs(tuple(features), grid))
        return response_frame(self.post("/get-online-features", body))

    def online_matrix(self, symbols, features, grid: str = "1s") -> np.ndarray:
        """``online_matrix`` over HTTP: float64 ``[symbol, feature]`` in the order given, missing as NaN."""
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        refs = feature_refs(tuple(features), grid)
        resp = self.post("/get-online-features", {"entities": {"symbol": symbols}, "features": list(refs)})
        by_name = dict(zip(resp["metadata"]["feature_names"], resp["results"]))
        return np.array([[np.nan if v is None else v for v in by_name[r.split(":", 1)[1]]["values"]] for r in refs],
                        np.float64).reshape(len(refs), len(symbols)).T


def response_frame(resp: dict) -> pd.DataFrame:
    """The feature server's JSON answer as a frame: one column per feature name, one row per entity."""
    names = resp["metadata"]["feature_names"]
    return _frame({n: r["values"] for n, r in zip(names, resp["results"])})

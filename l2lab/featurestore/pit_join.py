"""Point-in-time row matching with a DuckDB ``ASOF LEFT JOIN`` on narrow tables.

For every entity row (keys ``k``, time ``t_e``) pick the feature row (same keys, time ``t_f``, created time
``c_f``) that Feast's point-in-time join picks (feast/infra/offline_stores/ibis.py ``point_in_time_join``):

    candidates(e) = { f : k_f = k_e  and  t_f <= t_e  and  (ttl = 0  or  t_f + ttl >= t_e)
                                                      [and  c_f <= t_e   if filter_by_created] }
    match(e)      = argmax over candidates(e) of (t_f, c_f)                (none -> no match)

The TTL bound is inclusive (Feast keeps a row whose ``event_timestamp + ttl >= entity timestamp``). Equal keys
compare with SQL ``=``, so a null key never matches. Times are int64 nanoseconds since the epoch (UTC).

Without the created-time cutoff the candidate set is a prefix in ``t_f``, so the match is the ASOF match
(``t_e >= t_f``, nearest ``t_f``) of a feature table that keeps one row per ``(k, t_f)`` -- the one with the
largest ``c_f`` -- and the TTL only has to be checked on that single row: if the nearest earlier row is too old,
every earlier row is. DuckDB sorts both sides once, so the cost is O((E + F) log(E + F)) instead of the
O(E x rows-per-key) of Feast's join-then-rank. With the cutoff (``filter_by_created_timestamp``) the candidates
are no longer a prefix, so that case falls back to an inequality join ranked per entity row, Feast's own plan.

Rows tied on both ``t_f`` and ``c_f`` are a tie Feast leaves to the engine (``row_number`` over equal sort keys);
here the last row read wins, so the result is deterministic.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

# A TTL longer than this (about 146 years) is unlimited; it also keeps ``t_e - ttl`` inside int64.
MAX_TTL_NS = 2**62


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up for ASOF joins.

    DuckDB rewrites an ASOF join whose left side it estimates to be small (``asof_loop_join_threshold``,
    default 64 rows) into a nested-loop join plus ``arg_max``; it cannot estimate the size of a registered
    Arrow table, so that rewrite also fires for a million entity rows, and the join's cost then grows with
    entity rows x feature rows instead of one sorted pass over both.
    """
    con = duckdb.connect()
    con.execute("SET asof_loop_join_threshold = 0")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def match_rows(con: duckdb.DuckDBPyConnection, entity: pa.Table, features: pa.Table, n_keys: int,
               ttl_ns: int | None = None, filter_by_created: bool = False) -> np.ndarray:
    """Index of the matching feature row for every entity row, or -1 (see the module docstring).

    ``entity``: columns ``__k0..__k{n_keys-1}`` and ``__ts`` (int64 ns, nulls allowed), one row per entity row
    in output order. ``features``: the same key columns, ``__ts`` and optionally ``__cts`` (created time, int64
    ns); the returned index is a row position in ``features``. ``ttl_ns`` None or 0 means unlimited.
    """
    n = entity.num_rows
    ent = pa.table({**{f"__k{i}": entity[f"__k{i}"] for i in range(n_keys)},
                    "__ts": entity["__ts"], "__row": pa.array(np.arange(n, dtype=np.int64))})
    has_created = "__cts" in features.column_names
    feat_cols = {f"__k{i}": features[f"__k{i}"] for i in range(n_keys)}
    feat_cols["__ts"] = features["__ts"]
    if has_created:
        feat_cols["__cts"] = features["__cts"]
    feat_cols["__fid"] = pa.array(np.arange(features.num_rows, dtype=np.int64))
    feat = pa.table(feat_cols)
    ttl = int(ttl_ns) if ttl_ns and 0 < ttl_ns < MAX_TTL_NS else None
    keys = [f"__k{i}" for i in range(n_keys)]
    con.register("__pit_entity", ent)
    con.register("__pit_features", feat)
    try:
        if filter_by_created and has_created:
            sql = _ranked_sql(keys, ttl)
        else:
            sql = _asof_sql(keys, ttl, has_created)
        rows, fids = con.execute(sql).fetchnumpy().values()
    finally:
        con.unregister("__pit_entity")
        con.unregister("__pit_features")
    out = np.full(n, -1, dtype=np.int64)
    fids = np.ma.filled(np.ma.asarray(fids), -1).astype(np.int64)
    out[np.asarray(rows, dtype=np.int64)] = fids
    return out


def _asof_sql(keys: list[str], ttl: int | None, has_created: bool) -> str:
    order = "__cts DESC NULLS LAST, __fid DESC" if has_created else "__fid DESC"
    parts = ", ".join(keys + ["__ts"])
    # one row per (keys, t_f): the latest created, then the last read (ASOF picks arbitrarily among ties)
    dedup = (f"SELECT * FROM __pit_features WHERE __ts IS NOT NULL "
             f"QUALIFY row_number() OVER (PARTITION BY {parts} ORDER BY {order}) = 1")
    fid = f"CASE WHEN f.__ts >= e.__ts - {ttl} THEN f.__fid END" if ttl else "f.__fid"
    on = " AND ".join([f"e.{k} = f.{k}" for k in keys] + ["e.__ts >= f.__ts"])
    # rows without an entity time match nothing (DuckDB's ASOF would still pair them with a row)
    probe = "(SELECT * FROM __pit_entity WHERE __ts IS NOT NULL)"
    return f"SELECT e.__row, {fid} AS __fid FROM {probe} e ASOF LEFT JOIN ({dedup}) f ON {on}"


def _ranked_sql(keys: list[str], ttl: int | None) -> str:
    cond = [f"e.{k} = f.{k}" for k in keys] + ["f.__ts <= e.__ts", "f.__cts <= e.__ts"]
    if ttl:
        cond.append(f"f.__ts >= e.__ts - {ttl}")
    return (f"SELECT e.__row, f.__fid FROM __pit_entity e JOIN __pit_features f ON {' AND '.join(cond)} "
            f"QUALIFY row_number() OVER (PARTITION BY e.__row ORDER BY f.__ts DESC, f.__cts DESC, f.__fid DESC) = 1")

"""L2labOfflineStore beyond what the stock store can do, and its ASOF matcher against a brute-force reference.

The matcher (``pit_join.match_rows``) is checked on random adversarial tables; the store, through Feast's API, on
a repo whose source is a relative hive-partitioned *folder* with an int64-nanosecond time column (l2lab's silver
layout, which the stock store cannot read), with entity rows given as a DataFrame, as DuckDB SQL, with string or
naive timestamps, plus materialization pulls, saved datasets, schema inference and the error messages.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.infra.offline_stores.file_source import SavedDatasetFileStorage
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64
from offline_store_reference import RefView, brute_force, write_hive

from l2lab.featurestore import pit_join
from l2lab.featurestore.offline_store import MAX_IN_LIST, STORE_TYPE, L2labOfflineStore, key_filter

T0_NS = 1_767_225_600_000_000_000  # 2026-01-01 UTC
SEC = 1_000_000_000


def _narrow(rng, n_ent: int, n_feat: int, n_keys: int, created: bool):
    keys = np.array(["a", "b", "c", "d"], dtype=object)
    feat = {f"__k{i}": rng.choice(keys[:3], n_feat) for i in range(n_keys)}
    feat["__ts"] = T0_NS + rng.integers(0, 60, n_feat) * SEC          # many rows share an event time
    if created:
        feat["__cts"] = feat["__ts"] + rng.permutation(n_feat) * 1000   # distinct created times
    fdf = pd.DataFrame(feat)
    if not created:
        fdf = fdf.drop_duplicates([c for c in fdf.columns]).reset_index(drop=True)
    fdf.loc[fdf.sample(5, random_state=0).index, "__k0"] = None           # null keys never match
    ent = {f"__k{i}": rng.choice(keys, n_ent) for i in range(n_keys)}      # "d" has no rows
    ts = T0_NS + rng.integers(-5, 70, n_ent) * SEC
    ts[: n_ent // 4] = rng.choice(fdf["__ts"].to_numpy(), n_ent // 4)     # equal to a feature time
    ts[n_ent // 4: n_ent // 2] = rng.choice(fdf["__ts"].to_numpy(), n_ent // 4) + 7 * SEC  # at a 7 s TTL edge
    edf = pd.DataFrame({**ent, "__ts": ts})
    edf.loc[edf.sample(6, random_state=1).index, "__k0"] = None
    ts_list = [int(t) for t in edf["__ts"]]
    for i in edf.sample(4, random_state=2).index:                         # null entity times
        ts_list[i] = None
    return edf, ts_list, fdf


@pytest.mark.parametrize("n_keys,created,ttl_s,filter_created", [
    (1, True, None, False), (1, True, 7, False), (2, True, 7, False), (1, False, 7, False), (1, False, None, False),
    (1, True, 7, True), (2, True, None, True), (0, True, 7, False)])
def test_match_rows_equals_brute_force(n_keys, created, ttl_s, filter_created):
    rng = np.random.default_rng(n_keys * 100 + (ttl_s or 0) + created * 7 + filter_created * 3)
    edf, ts, fdf = _narrow(rng, 300, 250, max(n_keys, 1), created)
    if n_keys == 0:
        edf, fdf = edf.drop(columns="__k0"), fdf.drop(columns="__k0")
    entity = pa.table({**{c: pa.array(edf[c], pa.string()) for c in edf.columns if c.startswith("__k")},
                       "__ts": pa.array(ts, pa.int64())})
    features = pa.Table.from_pandas(fdf, preserve_index=False)
    con = pit_join.connect()
    got = pit_join.match_rows(con, entity, features, n_keys, ttl_s and ttl_s * SEC, filter_by_created=filter_created)
    rows = fdf.rename(columns={"__ts": "ts", "__cts": "created"}).assign(fid=np.arange(len(fdf)))
    view = RefView(rows, {f"__k{i}": f"__k{i}" for i in range(n_keys)}, {"fid": "fid"},
                   ttl_s and ttl_s * SEC, created=created)
    ref = brute_force(edf, ts, [view], filter_by_created=filter_created)["fid"]
    np.testing.assert_array_equal(got, ref.fillna(-1).astype(np.int64).to_numpy())
    assert (got >= 0).sum() > 30 and (got < 0).sum() > 5


def test_match_rows_with_no_feature_rows():
    con = pit_join.connect()
    entity = pa.table({"__k0": ["a", None], "__ts": pa.array([T0_NS, None], pa.int64())})
    empty = pa.table({"__k0": pa.array([], pa.string()), "__ts": pa.array([], pa.int64())})
    assert pit_join.match_rows(con, entity, empty, 1).tolist() == [-1, -1]


def test_key_filter_lists_the_distinct_entity_keys():
    keys = pa.chunked_array([["a", None, "a"], ["b'c"]])
    assert key_filter("symbol", "VARCHAR", keys) == """"symbol" IN ('a', 'b''c')"""
    assert key_filter("id", "BIGINT", pa.chunked_array([[3, 1, 3]])) == '"id" IN (3, 1)'
    assert key_filter("id", "VARCHAR", pa.chunked_array([[3, 1]])) is None          # types differ: no filter
    assert key_filter("x", "DOUBLE", pa.chunked_array([[1.5]])) is None
    assert key_filter("s", "VARCHAR", pa.chunked_array([[None, None]], pa.string())) == "false"
    many = pa.chunked_array([[str(i) for i in range(MAX_IN_LIST + 1)]])
    assert key_filter("s", "VARCHAR", many) is None


# ---- the store through Feast, on l2lab's layout ------------------------------------------------------------

TTL = timedelta(seconds=30)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("l2lab_offline")
    rng = np.random.default_rng(3)
    parts = []
    for sym in ["BTC-USD", "ETH-USD"]:
        ts = np.unique(T0_NS + rng.integers(0, 7200, 120) * SEC + rng.integers(0, 1000, 120))  # ns, 2 hours
        parts.append(pd.DataFrame({"symbol": sym, "ts_ns": ts, "valid": True,
                                   "mid": rng.normal(100, 1, len(ts)), "depth": rng.integers(0, 9, len(ts))}))
    rows = pd.concat(parts, ignore_index=True)
    write_hive(rows, root / "data" / "silver" / "book_1s", times=pd.to_datetime(rows["ts_ns"], unit="ns", utc=True))
    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    src = FileSource(name="book_src", path="data/silver/book_1s", timestamp_field="ts_ns",
                     field_mapping={"mid": "mid_px"})
    book = FeatureView(name="book", entities=[symbol], ttl=TTL, source=src,
                       schema=[Field(name="mid_px", dtype=Float64), Field(name="depth", dtype=Int64)])
    inferred = FeatureView(name="inferred", entities=[symbol], ttl=TTL,
                           source=FileSource(name="inferred_src", path="data/silver/book_1s",
                                             timestamp_field="ts_ns"))
    cfg = RepoConfig(project="l2", provider="local", repo_path=str(root), registry=str(root / "registry.db"),
                     offline_store={"type": STORE_TYPE}, entity_key_serialization_version=3,
                     online_store={"type": "sqlite", "path": str(root / "online.db")})
    store = FeatureStore(config=cfg)
    store.apply([symbol, book, inferred])

    at = rows.sample(80, random_state=4)
    ent_ts = np.concatenate([at["ts_ns"].to_numpy()[:60], at["ts_ns"].to_numpy()[60:] - 1,  # exact, 1 ns before
                             T0_NS + rng.integers(-60, 7300, 80) * SEC])
    syms = np.concatenate([at["symbol"].to_numpy(), rng.choice(np.array(["BTC-USD", "ETH-USD", "SOL-USD"],
                                                                        dtype=object), 80)])
    entity = pd.DataFrame({"symbol": syms, "event_timestamp": pd.to_datetime(ent_ts, unit="ns", utc=True)})
    entity["rid"] = np.arange(len(entity))
    ref_rows = rows.rename(columns={"ts_ns": "ts", "mid": "mid_px"})
    ref = brute_force(entity, [int(t) for t in ent_ts],
                      [RefView(ref_rows, {"symbol": "symbol"}, {"mid_px": "mid_px", "depth": "depth"},
                               int(TTL.total_seconds()) * SEC, created=False)])
    return {"root": root, "store": store, "entity": entity, "ref": pd.concat([entity, ref], axis=1), "rows": rows}


def _hist(store, entity, **kw) -> pd.DataFrame:
    return store.get_historical_features(entity_df=entity, features=["book:mid_px", "book:depth"], **kw).to_df()


def test_folder_source_with_int_ns_time_equals_brute_force(repo):
    got = _hist(repo["store"], repo["entity"])
    pd.testing.assert_frame_equal(got, repo["ref"].astype(got.dtypes.to_dict()))
    assert got["mid_px"].iloc[:60].notna().all()  # an entity at a feature row's exact time sees that row
    at_row = repo["rows"].set_index(["symbol", "ts_ns"])["mid"]
    exact = [at_row[(s, t.value)] for s, t in zip(got["symbol"].iloc[:60], got["event_timestamp"].iloc[:60])]
    assert got["mid_px"].iloc[:60].tolist() == exact
    assert list(got.columns) == ["symbol", "event_timestamp", "rid", "mid_px", "depth"]


def test_entity_as_duckdb_sql_and_as_strings_or_naive_times(repo):
    ent = repo["entity"]
    ent = ent.assign(event_timestamp=ent["event_timestamp"].dt.floor("us"))  # DuckDB's TIMESTAMPTZ is in us
    path = repo["root"] / "entity.parquet"
    pq.write_table(pa.Table.from_pandas(ent, preserve_index=False), path)
    from_sql = _hist(repo["store"], f"SELECT * FROM read_parquet('{path}')")
    want = _hist(repo["store"], ent)
    pd.testing.assert_frame_equal(from_sql, want, check_dtype=False)
    as_text = ent.assign(event_timestamp=ent["event_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z"))
    text = _hist(repo["store"], as_text)
    pd.testing.assert_frame_equal(text.drop(columns="event_timestamp"), want.drop(columns="event_timestamp"))
    assert str(text["event_timestamp"].dtype).endswith("UTC]")
    ny = ent.assign(event_timestamp=ent["event_timestamp"].dt.tz_convert("America/New_York"))
    pd.testing.assert_frame_equal(_hist(repo["store"], ny).drop(columns="event_timestamp"),
                                  want.drop(columns="event_timestamp"))


def test_saved_dataset_persists_the_result(repo):
    job = repo["store"].get_historical_features(entity_df=repo["entity"], features=["book:mid_px"])
    target = repo["root"] / "saved" / "train.parquet"
    repo["store"].create_saved_dataset(from_=job, name="train", storage=SavedDatasetFileStorage(str(target)))
    pd.testing.assert_frame_equal(pd.read_parquet(target), job.to_df())
    with pytest.raises(Exception, match="already exists"):
        repo["store"].create_saved_dataset(from_=job, name="train2", storage=SavedDatasetFileStorage(str(target)))


def test_pull_latest_and_all_match_pandas(repo):
    cfg, src = repo["store"].config, repo["store"].get_data_source("book_src")
    rows = repo["rows"]
    start_ns = int(rows["ts_ns"].iloc[10])
    start = pd.Timestamp(start_ns - start_ns % 1000, unit="ns", tz="UTC").to_pydatetime()  # inclusive bounds
    end_ns = int(rows["ts_ns"].iloc[150])
    end = pd.Timestamp(end_ns - end_ns % 1000, unit="ns", tz="UTC").to_pydatetime()
    lo, hi = int(pd.Timestamp(start).value), int(pd.Timestamp(end).value)
    window = rows[(rows["ts_ns"] >= lo) & (rows["ts_ns"] <= hi)]
    all_rows = L2labOfflineStore.pull_all_from_table_or_query(cfg, src, ["symbol"], ["mid"], "ts_ns", None,
                                                              start, end).to_df()
    assert list(all_rows.columns) == ["symbol", "mid", "ts_ns"]
    assert str(all_rows["ts_ns"].dtype) == "datetime64[ns, UTC]"
    got = all_rows.assign(ts_ns=all_rows["ts_ns"].astype("int64")).sort_values(["symbol", "ts_ns"])
    want = window[["symbol", "mid", "ts_ns"]].sort_values(["symbol", "ts_ns"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
    latest = L2labOfflineStore.pull_latest_from_table_or_query(cfg, src, ["symbol"], ["mid", "depth"], "ts_ns",
                                                               None, start, end).to_df()
    want = window.sort_values("ts_ns").groupby("symbol").tail(1).sort_values("symbol")
    assert latest.sort_values("symbol")["mid"].tolist() == want["mid"].tolist()


def test_materialize_then_online_lookup(repo):
    store, rows = repo["store"], repo["rows"]
    end = datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)
    store.materialize(start_date=end - timedelta(hours=2), end_date=end, feature_views=["book"])
    got = store.get_online_features(features=["book:mid_px"], entity_rows=[{"symbol": "BTC-USD"}]).to_dict()
    btc = rows[(rows["symbol"] == "BTC-USD") & (rows["ts_ns"] <= pd.Timestamp(end).value)]
    assert got["mid_px"] == [btc.sort_values("ts_ns")["mid"].iloc[-1]]


def test_schema_inference_reads_hive_folders(repo):
    fv = repo["store"].get_feature_view("inferred")
    names = {f.name for f in fv.features}
    assert {"mid", "depth", "valid"} <= names and "ts_ns" not in names


def test_empty_entity_and_entity_before_all_rows(repo):
    empty = repo["entity"].iloc[:0]
    got = _hist(repo["store"], empty)
    assert len(got) == 0 and list(got.columns) == ["symbol", "event_timestamp", "rid", "mid_px", "depth"]
    early = repo["entity"].assign(event_timestamp=pd.Timestamp("2025-06-01", tz="UTC"))
    assert _hist(repo["store"], early)[["mid_px", "depth"]].isna().all().all()


def test_feature_store_yaml_selects_the_store_by_its_dotted_type(tmp_path):
    (tmp_path / "feature_store.yaml").write_text(
        "project: y\nprovider: local\nregistry: registry.db\nentity_key_serialization_version: 3\n"
        f"offline_store:\n  type: {STORE_TYPE}\nonline_store:\n  type: sqlite\n  path: online.db\n")
    store = FeatureStore(repo_path=str(tmp_path))
    assert type(store.config.offline_store).__name__ == "L2labOfflineStoreConfig"
    assert isinstance(store._get_provider().offline_store, L2labOfflineStore)


def test_clear_errors(repo, tmp_path):
    store = repo["store"]
    with pytest.raises(ValueError, match="clashes"):
        _hist(store, repo["entity"].assign(mid_px=1.0))
    with pytest.raises(Exception, match="symbol"):
        _hist(store, repo["entity"].drop(columns="symbol"))
    with pytest.raises(NotImplementedError, match="entity_df"):
        store.get_historical_features(features=["book:mid_px"], start_date=datetime(2026, 1, 1),
                                      end_date=datetime(2026, 1, 2))
    src = FileSource(name="missing", path=str(tmp_path / "nothing"), timestamp_field="ts_ns")
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        L2labOfflineStore.pull_all_from_table_or_query(store.config, src, ["symbol"], ["mid"], "ts_ns").to_df()
    with pytest.raises(ValueError, match="has no column nope"):
        L2labOfflineStore.pull_all_from_table_or_query(store.config, store.get_data_source("book_src"),
                                                       ["symbol"], ["nope"], "ts_ns").to_df()

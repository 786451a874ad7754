"""l2lab's offline store == Feast's stock DuckDB offline store == a brute-force reference, through Feast's API.

One small random data set with the adversarial cases built in: event-time ties broken by created time, entity
times equal to feature times, entity times exactly at the TTL edge and 1 ms past it, keys with no rows, null keys,
entity rows before any feature row, duplicate entity rows, NaN features, four views with different TTLs over a
hive-partitioned folder (two of them sharing source and TTL) and a single file, a field mapping, full feature
names, an on-demand view, a projection with an alias and a join-key map, ``filter_by_created_timestamp`` and
materialization.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64
from offline_store_reference import RefView, brute_force, write_hive

from l2lab.featurestore.offline_store import STORE_TYPE, L2labOfflineStoreConfig

T0 = pd.Timestamp("2026-01-01", tz="UTC")
FAST_TTL = timedelta(minutes=10)
DAILY_TTL = timedelta(hours=1)
STORES = {"stock": "duckdb", "l2lab": STORE_TYPE}


def _ns(ts) -> np.ndarray:
    return pd.to_datetime(ts, utc=True).astype("int64").to_numpy() if len(ts) else np.zeros(0, np.int64)


def _book_rows(rng) -> pd.DataFrame:
    parts = []
    for sym in ["A", "B", "C"]:
        sec = rng.integers(0, 7200, 90)                       # repeats -> several rows per event time
        df = pd.DataFrame({"symbol": sym, "sec": np.sort(sec)})
        tie = df.groupby("sec").cumcount().to_numpy()         # created = event + distinct offsets within a tie
        df["event_timestamp"] = T0 + pd.to_timedelta(df["sec"], unit="s")
        df["created"] = df["event_timestamp"] + pd.to_timedelta(rng.permutation(len(df)) % 7 * 10 + tie, unit="s")
        parts.append(df.drop(columns="sec"))
    book = pd.concat(parts, ignore_index=True)
    book = book.drop_duplicates(["symbol", "event_timestamp", "created"]).reset_index(drop=True)
    book["px_raw"] = rng.normal(100, 5, len(book)).round(3)
    book["qty"] = rng.integers(1, 50, len(book)).astype(np.int64)
    spread = rng.random(len(book))
    spread[rng.random(len(book)) < 0.05] = np.nan
    book["spread"] = spread
    book["imbalance"] = rng.uniform(-1, 1, len(book))
    return book


def _daily_rows(rng) -> pd.DataFrame:
    parts = []
    for sym in ["A", "B"]:
        sec = np.sort(rng.choice(np.arange(0, 7200, 60), 25, replace=False))
        parts.append(pd.DataFrame({"symbol": sym, "event_timestamp": T0 + pd.to_timedelta(sec, unit="s")}))
    daily = pd.concat(parts, ignore_index=True)
    daily["vol"] = rng.random(len(daily))
    return daily


def _entities(rng, book: pd.DataFrame, daily: pd.DataFrame) -> pd.DataFrame:
    n = 160
    sym = rng.choice(np.array(["A", "B", "C", "D"], dtype=object), n)
    ts = list(T0 + pd.to_timedelta(rng.integers(-600, 8400, n), unit="s"))
    pick = book.sample(40, random_state=1)
    psym = pick["symbol"].to_numpy()
    sym = np.concatenate([sym, psym, psym[:20], psym[:20]])
    ts += list(pick["event_timestamp"])                                            # equal to a feature time
    ts += list(pick["event_timestamp"].iloc[:20] + FAST_TTL)                        # exactly at the TTL edge
    ts += list(pick["event_timestamp"].iloc[:20] + FAST_TTL + timedelta(milliseconds=1))  # just past it
    dpick = daily.sample(10, random_state=2)
    sym = np.concatenate([sym, dpick["symbol"].to_numpy(), dpick["symbol"].to_numpy()])
    dts = dpick["event_timestamp"] + DAILY_TTL
    ts += list(dts) + list(dts + timedelta(milliseconds=1))
    ent = pd.DataFrame({"symbol": sym, "event_timestamp": pd.to_datetime(ts, utc=True)})
    ent.loc[[3, 17, 60], "symbol"] = None                                            # null keys
    ent = pd.concat([ent, ent.iloc[:12]], ignore_index=True)                         # duplicate entity rows
    ent["label"] = rng.random(len(ent))
    ent["rid"] = np.arange(len(ent))
    return ent.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("feast_offline")
    rng = np.random.default_rng(11)
    book, daily = _book_rows(rng), _daily_rows(rng)
    write_hive(book, root / "book")
    root.joinpath("daily").mkdir()
    pq.write_table(pa.Table.from_pandas(daily, preserve_index=False), root / "daily" / "daily.parquet")

    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    # the stock store reads paths with ibis.read_parquet, so give both stores an absolute glob
    book_src = FileSource(name="book_src", path=str(root / "book" / "**" / "*.parquet"),
                          timestamp_field="event_timestamp", created_timestamp_column="created",
                          field_mapping={"px_raw": "px"})
    daily_src = FileSource(name="daily_src", path=str(root / "daily" / "daily.parquet"),
                           timestamp_field="event_timestamp")
    book_fast = FeatureView(name="book_fast", entities=[symbol], ttl=FAST_TTL, source=book_src,
                            schema=[Field(name="px", dtype=Float64), Field(name="qty", dtype=Int64)])
    # same source, keys and TTL as book_fast: the l2lab store reads and matches them once
    book_more = FeatureView(name="book_more", entities=[symbol], ttl=FAST_TTL, source=book_src,
                            schema=[Field(name="imbalance", dtype=Float64)])
    book_slow = FeatureView(name="book_slow", entities=[symbol], ttl=timedelta(0), source=book_src,
                            schema=[Field(name="spread", dtype=Float64)])
    daily_fv = FeatureView(name="daily", entities=[symbol], ttl=DAILY_TTL, source=daily_src,
                           schema=[Field(name="vol", dtype=Float64)])

    @on_demand_feature_view(sources=[book_fast], schema=[Field(name="notional", dtype=Float64)], mode="pandas")
    def notional(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"notional": df["px"] * df["qty"]})

    aliased = FeatureService(name="aliased", features=[
        book_fast.with_name("fast2").with_join_key_map({"symbol": "other_symbol"})])
    objects = [symbol, book_fast, book_more, book_slow, daily_fv, notional, aliased]

    stores = {}
    for name, kind in STORES.items():
        repo = root / f"repo_{name}"
        repo.mkdir()
        cfg = RepoConfig(project="eq", provider="local", repo_path=str(repo), registry=str(repo / "registry.db"),
                         offline_store={"type": kind}, entity_key_serialization_version=3,
                         online_store={"type": "sqlite", "path": str(repo / "online.db")})
        store = FeatureStore(config=cfg)
        store.apply(objects)
        stores[name] = store
    entity = _entities(rng, book, daily)

    def ref_rows(df: pd.DataFrame, created: bool) -> pd.DataFrame:
        out = df.rename(columns={"px_raw": "px"}).assign(ts=_ns(df["event_timestamp"]))
        return out.assign(created=_ns(df["created"])) if created else out

    ref = {"book": ref_rows(book, True), "daily": ref_rows(daily, False)}
    return {"stores": stores, "entity": entity, "ref": ref, "book": book, "daily": daily}


def _run(store: FeatureStore, entity: pd.DataFrame, features, **kw) -> pd.DataFrame:
    df = store.get_historical_features(entity_df=entity.copy(), features=features, **kw).to_df()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return df.sort_values("rid").reset_index(drop=True)


def _reference(world, views: list[RefView], **kw) -> pd.DataFrame:
    ent = world["entity"].sort_values("rid").reset_index(drop=True)
    ts = [int(t) for t in _ns(ent["event_timestamp"])]
    return pd.concat([ent, brute_force(ent, ts, views, **kw)], axis=1)


def _views(world, full: bool, prefix_fast: str = "book_fast", key_col: str = "symbol") -> list[RefView]:
    name = (lambda v, f: f"{v}__{f}") if full else (lambda v, f: f)
    book, daily = world["ref"]["book"], world["ref"]["daily"]
    fast_ns, daily_ns = int(FAST_TTL.total_seconds() * 1e9), int(DAILY_TTL.total_seconds() * 1e9)
    return [RefView(book, {"symbol": key_col}, {f: name(prefix_fast, f) for f in ("px", "qty")}, fast_ns),
            RefView(book, {"symbol": "symbol"}, {"spread": name("book_slow", "spread")}, None),
            RefView(book, {"symbol": "symbol"}, {"imbalance": name("book_more", "imbalance")}, fast_ns),
            RefView(daily, {"symbol": "symbol"}, {"vol": name("daily", "vol")}, daily_ns, created=False)]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


FEATURES = ["book_fast:px", "book_fast:qty", "book_slow:spread", "daily:vol", "book_more:imbalance"]


@pytest.mark.parametrize("full", [False, True])
def test_four_views_match_stock_and_brute_force(world, full):
    got = {name: _run(s, world["entity"], FEATURES, full_feature_names=full) for name, s in world["stores"].items()}
    views = _views(world, full)
    ref = _reference(world, [views[0], views[1], views[3], views[2]]).astype(got["stock"].dtypes.to_dict())
    _same(got["l2lab"], got["stock"])
    _same(got["l2lab"], ref)
    # the data really exercises the cases: matches, TTL expiries, misses and NaN values
    df = got["l2lab"]
    px, spread = df["book_fast__px" if full else "px"], df["book_slow__spread" if full else "spread"]
    assert 0.2 < px.isna().mean() < 0.9
    assert (px.isna() & spread.notna()).sum() >= 5  # expired under the 10 min TTL, seen without a TTL


def test_ttl_edge_is_inclusive_like_stock(world):
    """An entity exactly ttl after a row still sees it; 1 ms later it does not (unless a newer row exists)."""
    book = world["book"]
    last = book.sort_values(["event_timestamp", "created"]).groupby("symbol").tail(1)  # nothing newer follows
    ent = pd.DataFrame({"symbol": list(last["symbol"]) * 2,
                        "event_timestamp": list(last["event_timestamp"] + FAST_TTL)
                        + list(last["event_timestamp"] + FAST_TTL + timedelta(milliseconds=1))})
    ent["rid"] = np.arange(len(ent))
    for store in world["stores"].values():
        df = _run(store, ent, ["book_fast:px"])
        n = len(last)
        assert df["px"].iloc[:n].notna().all() and df["px"].iloc[n:].isna().all()


def test_untied_view_takes_the_one_pass_join_with_the_same_ttl_edge(world, monkeypatch):
    """A view without event-time ties (daily) is joined by one ASOF join reading its features in the same pass
    (``direct_asof``); a view with ties at the matched rows takes the general path. The TTL edge is inclusive
    there too."""
    from l2lab.featurestore import offline_store

    calls = []
    real = offline_store.direct_asof
    def spy(*a, **k):
        out = real(*a, **k)
        calls.append((a[2], out is not None))
        return out

    monkeypatch.setattr(offline_store, "direct_asof", spy)
    daily = world["daily"]
    ent = pd.DataFrame({"symbol": list(daily["symbol"]) * 3,
                        "event_timestamp": list(daily["event_timestamp"] + DAILY_TTL)
                        + list(daily["event_timestamp"] + DAILY_TTL + timedelta(milliseconds=1))
                        + list(daily["event_timestamp"] - timedelta(microseconds=1))})
    ent["rid"] = np.arange(len(ent))
    got = {name: _run(store, ent, ["daily:vol", "book_fast:px"]) for name, store in world["stores"].items()}
    _same(got["l2lab"], got["stock"])
    assert [ok for sql, ok in calls if "daily" in sql] == [True]  # one pass; the tied book view falls back
    n = len(daily)
    vol = got["l2lab"]["vol"]
    nxt = daily.groupby("symbol")["event_timestamp"].shift(-1)  # rows are in time order per symbol
    alone = (nxt.isna() | (nxt - daily["event_timestamp"] > DAILY_TTL)).to_numpy()  # no newer row in reach
    assert vol.iloc[:n].notna().all()
    assert vol.iloc[n:2 * n][alone].isna().all() and vol.iloc[n:2 * n][alone].size > 0


def test_on_demand_view_matches_stock(world):
    got = {n: _run(s, world["entity"], ["book_fast:px", "notional:notional"]) for n, s in world["stores"].items()}
    _same(got["l2lab"], got["stock"])
    ok = got["l2lab"]["px"].notna()
    assert ok.any() and "qty" in got["l2lab"].columns  # Feast adds the on-demand view's inputs
    df = got["l2lab"][ok]
    np.testing.assert_allclose(df["notional"], df["px"] * df["qty"])


def test_alias_and_join_key_map_match_stock(world):
    rng = np.random.default_rng(5)
    ent = world["entity"].assign(other_symbol=rng.choice(np.array(["A", "B", "C", "D"], dtype=object),
                                                         len(world["entity"])))
    got = {}
    for name, store in world["stores"].items():
        df = store.get_historical_features(entity_df=ent.copy(), features=store.get_feature_service("aliased"),
                                           full_feature_names=True).to_df()
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
        got[name] = df.sort_values("rid").reset_index(drop=True)
    _same(got["l2lab"], got["stock"])
    assert {"fast2__px", "fast2__qty"} <= set(got["l2lab"].columns)
    ref_world = dict(world, entity=ent)
    ref = _reference(ref_world, _views(world, True, prefix_fast="fast2", key_col="other_symbol")[:1])
    _same(got["l2lab"], ref.astype(got["l2lab"].dtypes.to_dict()))


def test_filter_by_created_timestamp_matches_stock(world):
    got = {n: _run(s, world["entity"], ["book_fast:px", "book_slow:spread"], filter_by_created_timestamp=True)
           for n, s in world["stores"].items()}
    _same(got["l2lab"], got["stock"])
    fast, slow = _views(world, False)[:2]
    fast.features = {"px": "px"}
    ref = _reference(world, [fast, slow], filter_by_created=True)
    _same(got["l2lab"], ref.astype(got["l2lab"].dtypes.to_dict()))
    plain = _run(world["stores"]["l2lab"], world["entity"], ["book_fast:px"])
    assert (plain["px"].notna() & got["l2lab"]["px"].isna()).any()  # the cutoff really removed some rows


def test_materialize_fills_the_online_store_like_stock(world):
    end = (T0 + timedelta(minutes=75)).to_pydatetime()
    online = {}
    for name, store in world["stores"].items():
        store.materialize(start_date=datetime(2025, 12, 31, tzinfo=timezone.utc), end_date=end,
                          feature_views=["book_fast", "daily"])
        online[name] = store.get_online_features(features=["book_fast:px", "book_fast:qty", "daily:vol"],
                                                 entity_rows=[{"symbol": s} for s in "ABCD"]).to_dict()
    assert online["l2lab"] == online["stock"]
    book = world["book"]
    upto = book[book["event_timestamp"] <= end].sort_values(["event_timestamp", "created"]).groupby("symbol").tail(1)
    assert online["l2lab"]["px"][:3] == list(upto.set_index("symbol").loc[["A", "B", "C"], "px_raw"])
    assert online["l2lab"]["px"][3] is None


def test_yaml_type_string_selects_the_store(world):
    config = world["stores"]["l2lab"].config
    assert isinstance(config.offline_store, L2labOfflineStoreConfig)
    assert type(world["stores"]["l2lab"]._get_provider().offline_store).__name__ == "L2labOfflineStore"

"""l2lab's online store and provider against Feast's own: the same repository applied twice on the same data, once
with l2lab's store and provider (feature_store.yaml) and once with Feast's SQLite store and local provider; every
lookup answers the same response proto, Value for Value. The provider's fast frame conversion equals Feast's on
random and adversarial frames."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.infra.passthrough_provider import PassthroughProvider
from feast.types import Bool, Float32, Float64, Int32, Int64, String

from l2lab.featurestore import definitions, online
from l2lab.featurestore.online_store import L2labOnlineStore
from l2lab.featurestore.provider import frame_rows
from l2lab.featurestore.store import apply, open_stock_store, open_store

from feast_session import START

pytestmark = pytest.mark.timeout(300)
S = 10**9
VIEWS = ["structural_1s", "dynamic_1s", "rolling_1s", "cross_asset_1s"]


@pytest.fixture(scope="module")
def pair(feast_root, tmp_path_factory):
    """(l2lab's store, Feast's stock store) over the same data, both materialized over the same interval; each
    with its own registry and online store (the session's shared store is left alone)."""
    ours = apply(feast_root, store=open_store(feast_root, tmp_path_factory.mktemp("ours")))
    stock = apply(feast_root, store=open_stock_store(feast_root, tmp_path_factory.mktemp("stock")))
    assert isinstance(ours._get_provider().online_store, L2labOnlineStore)
    for st in (ours, stock):
        online.materialize(st, feast_root, START, START + 70 * S, views=VIEWS)
    return ours, stock


def _both(pair, whole_seconds: bool = False, **kw):
    """The two stores' response protos. ``whole_seconds``: drop the sub-second part of our event timestamps;
    Feast's SQLite store keeps whole seconds (it stores ``int(datetime.timestamp())``), ours microseconds."""
    ours, stock = pair
    a = ours.get_online_features(**kw).proto
    if whole_seconds:
        for r in a.results:
            for ts in r.event_timestamps:
                ts.nanos = 0
    return a, stock.get_online_features(**kw).proto


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("symbols", [["ETH-USD"], ["NOPE-USD"], ["SOL-USD", "BTC-USD", "NOPE-USD", "SOL-USD"]])
def test_lookup_equals_feasts_sqlite_store(pair, symbols, full):
    ours, _ = pair
    refs = [r for r in online.service_refs(ours, "book_1s") if r.split(":")[0] in VIEWS]
    refs += ["structural_1s:ts_ns", "rolling_1s:ts_ns"] if full else ["structural_1s:ts_ns"]
    a, b = _both(pair, features=refs, entity_rows=[{"symbol": s} for s in symbols], full_feature_names=full)
    assert a == b
    assert len(a.results) == len(refs) + 1 and any(s == 1 for r in a.results[1:] for s in r.statuses) == (
        symbols != ["NOPE-USD"])


def test_feature_service_lookup_equals_feasts(pair):
    ours, _ = pair
    svc = ours.get_feature_service("book_1s")
    a, b = _both(pair, features=svc, entity_rows=[{"symbol": "BTC-USD"}, {"symbol": "ETH-USD"}])
    assert a == b
    present = sum(s == 1 for r in a.results for s in r.statuses)
    assert present > 100  # materialized views answer; unmaterialized ones are NOT_FOUND in both


def test_pushes_and_partial_writes_equal_feasts(pair):
    ours, stock = pair
    fv = ours.get_feature_view("dynamic_1s")
    names = [f.name for f in fv.features if f.name != definitions.STAMP_COLUMN]
    rng = np.random.default_rng(8)
    t = START + 71 * S + 123_456_789
    df = pd.DataFrame({"symbol": ["ETH-USD", "ZED-USD", "ETH-USD"], **{n: rng.normal(size=3) for n in names}})
    df.loc[0, names[1]] = np.nan
    df["ts_ns"] = np.array([t, t, t + S], np.int64)
    df[definitions.TIMESTAMP_FIELD] = pd.to_datetime(df["ts_ns"], utc=True)
    for st in pair:
        st.push("dynamic_1s_push", df)
    refs = [f"dynamic_1s:{n}" for n in names] + ["dynamic_1s:ts_ns"]
    rows = [{"symbol": s} for s in ("ETH-USD", "ZED-USD", "BTC-USD")]
    a, b = _both(pair, whole_seconds=True, features=refs, entity_rows=rows)
    assert a == b
    assert _value(a, names[0], 0) == df[names[0]].iloc[2]  # last write wins
    ts = ours.get_online_features(features=refs, entity_rows=rows).proto.results[3].event_timestamps
    assert [(t.seconds * S + t.nanos) for t in ts[:2]] == [t + S - 789, t - 789]  # microseconds kept
    # a write carrying only some features keeps the others (Feast's per-feature rows do)
    key = ours._get_provider().online_store
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    ek = EntityKey(join_keys=["symbol"], entity_values=[Value(string_val="ETH-USD")])
    when = pd.Timestamp(t + 2 * S - 789, unit="ns", tz="UTC").to_pydatetime()
    for st in pair:
        st._get_provider().online_write_batch(st.config, fv, [(ek, {names[0]: Value(double_val=-7.5)}, when, None)],
                                              None)
    a, b = _both(pair, features=refs, entity_rows=rows)
    for proto in (a, b):  # Feast's store reports the time of whichever feature row it reads last; ours the row's
        for r in proto.results:
            del r.event_timestamps[:]
    assert a == b and _value(a, names[0], 0) == -7.5
    assert _value(a, names[2], 0) == df[names[2]].iloc[2]
    assert key.online_read(ours.config, fv, [ek])[0][0] == when


def test_server_json_conversion_equals_feasts(pair):
    from feast.feature_server_utils import convert_response_to_dict

    from l2lab.featurestore import serving

    ours, _ = pair
    refs = online.service_refs(ours, "book_1s") + ["structural_1s:ts_ns"]
    for symbols, full in ((["ETH-USD"], False), (["NOPE-USD", "BTC-USD", "BTC-USD"], True)):
        proto = ours.get_online_features(features=refs, entity_rows=[{"symbol": s} for s in symbols],
                                         full_feature_names=full).proto
        proto.results[1].values[0].double_val = float("nan")
        proto.results[2].values[0].double_val = float("-inf")
        assert serving.response_dict(proto) == convert_response_to_dict(proto)
    import feast.feature_server

    assert feast.feature_server.convert_response_to_dict is serving.response_dict  # the provider installed it


def _value(proto, name: str, row: int) -> float:
    return proto.results[list(proto.metadata.feature_names.val).index(name)].values[row].double_val


def _random_frame(rng, n):
    df = pd.DataFrame({
        "symbol": rng.choice(np.array(["A", "BB", "ünï", "", "A B"], dtype=object), n),
        "f64": rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n),
        "f32": rng.normal(size=n).astype(np.float32),
        "i64": rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64),
        "i32": rng.integers(-2**31, 2**31 - 1, n).astype(np.int32),
        "flag": rng.random(n) < 0.5,
        "name": rng.choice(np.array(["x", "yy", "ω", ""], dtype=object), n),
        "ts": pd.to_datetime(1_767_574_800_000_000_000 + rng.integers(0, 10**12, n), utc=True),
        "created": pd.to_datetime(1_767_574_800_000_000_000 + rng.integers(0, 10**12, n)),
    })
    f = df["f64"].to_numpy().copy()
    f[rng.random(n) < 0.2] = np.nan
    f[:3] = [np.inf, -np.inf, -0.0]
    df["f64"] = f
    df.loc[rng.random(n) < 0.2, "name"] = None
    return df


def _view(created: bool):
    sym = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    src = FileSource(name="s", path="unused.parquet", timestamp_field="ts",
                     created_timestamp_column="created" if created else "")
    return FeatureView(name="v", entities=[sym], ttl=timedelta(0), source=src, schema=[
        Field(name="symbol", dtype=String), Field(name="f64", dtype=Float64), Field(name="f32", dtype=Float32),
        Field(name="i64", dtype=Int64), Field(name="i32", dtype=Int32), Field(name="flag", dtype=Bool),
        Field(name="name", dtype=String)])


def _wire(rows):
    return [(k.SerializeToString(), {n: v.SerializeToString() for n, v in d.items()}, ts, c) for k, d, ts, c in rows]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("created", [False, True])
def test_frame_rows_equal_feasts_conversion(seed, created):
    df = _random_frame(np.random.default_rng(seed), 200)
    fv = _view(created)
    ours = frame_rows(fv, df)
    assert ours is not None
    assert _wire(ours) == _wire(PassthroughProvider._prep_rows_to_write_for_ingestion(fv, df))


def test_frame_rows_leaves_other_frames_to_feast():
    df = _random_frame(np.random.default_rng(9), 10)
    fv = _view(False)
    assert frame_rows(fv, df, field_mapping={"f64": "g"}) is None
    assert frame_rows(fv, df.astype({"i64": "Int64"})) is None  # nullable extension dtype
    assert frame_rows(fv, df.astype({"i64": np.float64})) is None  # ints held as floats
    assert frame_rows(fv, df.assign(name=[1] * 10)) is None  # not strings
    assert frame_rows(fv, df.drop(columns=["i32"])) is None  # Feast raises its own error


def test_write_rows_equals_a_push_of_the_same_rows(pair):
    ours, _ = pair
    names = [f.name for f in ours.get_feature_view("rolling_1s").features if f.name != definitions.STAMP_COLUMN]
    rng = np.random.default_rng(4)
    t = START + 90 * S
    values = {n: rng.normal(size=2) for n in names}
    values[names[3]][1] = np.nan
    refs = [f"rolling_1s:{n}" for n in names] + ["rolling_1s:ts_ns"]
    rows = [{"symbol": "AAA-USD"}, {"symbol": "BBB-USD"}]
    online.push(ours, "rolling_1s", pd.DataFrame({"symbol": ["AAA-USD", "BBB-USD"], "ts_ns": [t, t + 1], **values}))
    pushed = ours.get_online_features(features=refs, entity_rows=rows).proto
    assert online.write_rows(ours, "rolling_1s", ["BBB-USD", "AAA-USD"], [t + 1, t],
                             {n: v[::-1] for n, v in values.items()}) == 2
    assert ours.get_online_features(features=refs, entity_rows=rows).proto == pushed
    # features not given are written as missing; an all-missing row is written, not dropped
    online.write_rows(ours, "rolling_1s", ["AAA-USD"], [t + 5], {})
    got = online.online_matrix(ours, ["AAA-USD", "BBB-USD"], [f"rolling_1s:{n}" for n in names[:4]])
    assert np.isnan(got[0]).all() and got[1, 0] == values[names[0]][1] and np.isnan(got[1, 3])
    assert online.get_online(ours, ["AAA-USD"], ["rolling_1s:ts_ns"])["ts_ns"][0] == t + 5
    with pytest.raises(KeyError, match="not features of the view"):
        online.write_rows(ours, "rolling_1s", ["AAA-USD"], [t], {"nope": [1.0]})

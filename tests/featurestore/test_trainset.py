"""Training sets through Feast: values equal a brute-force as-of join of the silver tables, leakage guards refuse
label-like, uncatalogued and mis-stamped features."""

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast_session import read_tree

from kernels import catalog
from l2lab.featurestore import definitions
from l2lab.featurestore.trainset import LeakageError, build_trainset

pytestmark = pytest.mark.timeout(300)
LABELS = ["label_dir_mid_5s", "fwd_ret_mid_5s"]


def brute_force(root, entity: pd.DataFrame, features: list[str], ttl: timedelta) -> pd.DataFrame:
    """For each entity row, per view, the latest silver row with ts_ns <= the entity time and within the TTL;
    a Python loop over rows, no join library."""
    by_table = {"book": read_tree(root, "book_features_1s"), "cross_asset": read_tree(root, "cross_asset_1s")}
    specs = catalog.by_name()
    ttl_ns = int(ttl.total_seconds()) * 10**9
    out = {f: np.full(len(entity), np.nan) for f in features}
    for table, src in by_table.items():
        cols = [f for f in features if specs[f].table == table]
        if not cols:
            continue
        for sym, grp in src.groupby("symbol"):
            grp = grp.sort_values("ts_ns")
            ts = grp["ts_ns"].to_numpy()
            vals = grp[cols].to_numpy(float)
            for i in np.flatnonzero(entity["symbol"].to_numpy() == sym):
                t = entity["ts_ns"].iat[i]
                j = np.searchsorted(ts, t, side="right") - 1  # latest ts <= t
                if j >= 0 and t - ts[j] <= ttl_ns:
                    for k, c in enumerate(cols):
                        out[c][i] = vals[j, k]
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def book_trainset(feast_root, feast_store, tmp_path_factory):
    out = build_trainset(feast_root, tmp_path_factory.mktemp("ts"), grid="1s", labels=LABELS)  # book_1s
    return out


def test_trainset_equals_brute_force_asof(feast_root, book_trainset):
    t = pq.read_table(book_trainset / "trainset.parquet")
    m = json.loads((book_trainset / "manifest.json").read_text())
    book_features = [s.name for s in catalog.features() if s.table in ("book", "cross_asset") and s.defined_on(10**9)]
    assert m["features"] == book_features and len(book_features) == 219  # 223 less 4 lags of no 1 s value
    assert t.column_names == ["symbol", "ts_ns", "event_timestamp", *LABELS, *book_features]
    assert t.schema.field("event_timestamp").type == pa.timestamp("ns", tz="UTC")
    assert t.schema.field("symbol").type == pa.string() and t.schema.field("ts_ns").type == pa.int64()
    df = t.to_pandas()
    # entity rows: the label table's rows with a label, in order
    labels = read_tree(feast_root, "labels_1s").sort_values(["symbol", "ts_ns"])
    labels = labels[labels[LABELS].notna().any(axis=1)].reset_index(drop=True)
    assert m["rows"] == len(df) == len(labels) > 300
    assert m["rows_without_label_dropped"] > 0  # the invalid rest of hour 01 after the session
    np.testing.assert_array_equal(df["ts_ns"], labels["ts_ns"])
    assert df["symbol"].tolist() == labels["symbol"].tolist()
    assert (df["event_timestamp"].astype("int64") == df["ts_ns"]).all()
    for lb in LABELS:
        np.testing.assert_array_equal(df[lb].to_numpy(), labels[lb].to_numpy())
    want = brute_force(feast_root, df[["symbol", "ts_ns"]], book_features, definitions.GRID_TTL["1s"])
    for f in book_features:
        np.testing.assert_array_equal(df[f].to_numpy(float), want[f].to_numpy(), err_msg=f)
    # the leader has no cross-asset rows; every other symbol has them, and most book features are defined
    btc = df["symbol"] == "BTC-USD"
    assert df.loc[btc, "xa_beta_300s"].isna().all() and df.loc[~btc, "xa_leader_ret_1s"].notna().mean() > 0.9
    assert df["mid"].notna().all()
    assert m["null_rates"]["mid"] == 0.0 and m["null_rates"]["xa_leader_ret_1s"] >= 1 / 3 - 0.01
    assert m["symbols"] == ["BTC-USD", "ETH-USD", "SOL-USD"] and m["grid"] == "1s"
    assert m["start_ns"] == int(df["ts_ns"].min()) and m["end_ns"] == int(df["ts_ns"].max())
    from kernels.pipeline import catalog_hash

    assert m["catalog_hash"] == catalog_hash() and m["feature_service"] == "book_1s"


def test_feature_list_range_and_symbols_through_the_cli(feast_root, feast_store, tmp_path, capsys):
    from l2lab.cli import main

    start = int(pq.read_table(next((feast_root / "silver" / "labels_1s").rglob("part-0.parquet")))
                .column("ts_ns")[0].as_py()) + 30 * 10**9
    end = start + 40 * 10**9
    rc = main(["--data-root", str(feast_root), "trainset", "--out", str(tmp_path), "--labels", "fwd_ret_mid_5s",
               "--features", "ofi_L0,xa_leader_ret_1s,tf_signed_count_10s", "--symbols", "ETH-USD",
               "--start", str(start), "--end", pd.Timestamp(end, tz="UTC").isoformat()])
    assert rc == 0 and "trainset.parquet" in capsys.readouterr().out
    df = pd.read_parquet(tmp_path / "trainset.parquet")
    assert df.columns.tolist() == ["symbol", "ts_ns", "event_timestamp", "fwd_ret_mid_5s", "ofi_L0",
                                   "xa_leader_ret_1s", "tf_signed_count_10s"]
    assert set(df["symbol"]) == {"ETH-USD"} and df["ts_ns"].min() == start and df["ts_ns"].max() == end - 10**9
    want = brute_force(feast_root, df[["symbol", "ts_ns"]], ["ofi_L0", "xa_leader_ret_1s", "tf_signed_count_10s"],
                       definitions.GRID_TTL["1s"])
    for f in want:
        np.testing.assert_array_equal(df[f].to_numpy(float), want[f].to_numpy(), err_msg=f)
    # a label asked for as a feature: a clear error, no traceback
    rc = main(["--data-root", str(feast_root), "trainset", "--out", str(tmp_path / "x"), "--labels",
               "fwd_ret_mid_5s", "--features", "mid,fwd_ret_mid_30s"])
    assert rc == 2 and "looks like a label" in capsys.readouterr().err


def canary_objects(feast_root, feast_store, tmp_path, *, field_name, reach="0", early_ns=0):
    """A test-only view over the label table whose values are the future (the 5 s forward return), registered
    beside the real views, with a service over it."""
    from feast import FeatureService, FeatureView, Field, FileSource
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64, String

    lab = read_tree(feast_root, "labels_1s")
    df = pd.DataFrame({"symbol": lab["symbol"], "ts_ns": lab["ts_ns"],
                       "event_timestamp": pd.to_datetime(lab["ts_ns"] - early_ns, utc=True),
                       field_name: lab["fwd_ret_mid_5s"]})
    path = tmp_path / "canary.parquet"
    df.to_parquet(path)
    name = "canary_1s"
    src = FileSource(name="canary_1s_source", path=str(path), file_format=ParquetFormat(),
                     timestamp_field="event_timestamp")
    view = FeatureView(name=name, entities=[feast_store.get_entity("symbol")], ttl=definitions.GRID_TTL["1s"], source=src,
                       schema=[Field(name="symbol", dtype=String), Field(name=definitions.STAMP_COLUMN, dtype=Int64),
                               Field(name=field_name, dtype=Float64, tags={"forward_reach": reach})])
    service = FeatureService(name="canary", features=[view])
    feast_store.apply([src, view, service])
    return view, service


@pytest.mark.parametrize("field_name, reach, early_ns, match", [
    ("fwd_ret_mid_5s", "0", 0, "looks like a label"),
    ("future_mid", "0", 0, "looks like a label"),
    ("canary_signal", "0", 0, "not in the feature catalog"),
    ("ofi_L0", "5", 0, "forward reach '5'"),
    ("ofi_L0", "0", 5 * 10**9, "stamped .* after its entity row"),
])
def test_planted_leaky_canary_is_rejected(feast_root, feast_store, tmp_path, field_name, reach, early_ns, match):
    """The canary's values are the future 5 s return. Named like a label, named outside the catalog, registered
    with a forward reach, or named like a real feature but stamped 5 s before its data: refused every time."""
    view, service = canary_objects(feast_root, feast_store, tmp_path, field_name=field_name, reach=reach,
                                   early_ns=early_ns)
    try:
        with pytest.raises(LeakageError, match=match):
            build_trainset(feast_root, tmp_path / "out", labels=["fwd_ret_mid_5s"], feature_service="canary")
        assert not (tmp_path / "out" / "trainset.parquet").exists()
    finally:
        feast_store.delete_feature_service(service.name)
        feast_store.delete_feature_view(view.name)


def test_features_outside_the_catalog_or_label_like_are_refused(feast_root, feast_store, tmp_path):
    for bad, match in (("fwd_ret_mid_5s", "looks like a label"), ("target_x", "looks like a label"),
                       ("made_up_feature", "not in the feature catalog")):
        with pytest.raises(LeakageError, match=match):
            build_trainset(feast_root, tmp_path, labels=["fwd_ret_mid_5s"], features=["mid", bad])
    with pytest.raises(ValueError, match="unknown"):
        build_trainset(feast_root, tmp_path, labels=["mid"], features=["ofi_L0"])

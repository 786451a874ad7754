"""Training sets: the INTERFACES.md shape, values equal to the silver rows, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest

from research.trainsets import build_training_set, load_training_set, silver_trainset

LABELS = ["label_dir_mid_5s", "fwd_ret_mid_5s"]
FEATURES = ["imbalance_l1", "spread_bps", "ofi_sum_1s", "xa_leader_ret_1s"]


def test_silver_trainset_shape_and_values(tiny_root, tmp_path):
    out = silver_trainset(tiny_root, tmp_path / "ts", labels=LABELS, features=FEATURES, exchange="sim",
                          symbols=["BTC-USD", "ETH-USD"])
    df = pd.read_parquet(out / "trainset.parquet")
    man = json.loads((out / "manifest.json").read_text())
    assert list(df.columns) == ["symbol", "ts_ns", "event_timestamp"] + LABELS + FEATURES
    assert str(df["event_timestamp"].dtype) == "datetime64[ns, UTC]" and df["ts_ns"].dtype == np.int64
    assert (df["event_timestamp"].astype("int64") == df["ts_ns"]).all()
    for key in ("features", "labels", "grid", "feature_service", "catalog_hash", "symbols", "start_ns", "end_ns",
                "rows", "null_rates"):
        assert key in man
    assert man["symbols"] == ["BTC-USD", "ETH-USD"] and man["rows"] == len(df)
    # reference: pandas merge of the silver Parquet files
    base = tiny_root / "silver"
    lab = pd.read_parquet(base / "labels_1s" / "exchange=sim" / "symbol=ETH-USD")
    lab = lab[lab[LABELS].notna().any(axis=1)]  # rows past the session's end have no label
    feat = pd.read_parquet(base / "book_features_1s" / "exchange=sim" / "symbol=ETH-USD")
    xa = pd.read_parquet(base / "cross_asset_1s" / "exchange=sim" / "symbol=ETH-USD")
    ref = lab[["ts_ns"] + LABELS].merge(feat[["ts_ns"] + FEATURES[:3]], on="ts_ns", how="left").merge(
        xa[["ts_ns", "xa_leader_ret_1s"]], on="ts_ns", how="left").sort_values("ts_ns").reset_index(drop=True)
    got = df[df["symbol"] == "ETH-USD"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["ts_ns"] + LABELS + FEATURES], ref, check_dtype=False)
    # BTC-USD leads: it has no cross-asset rows, so its leader features are missing, not invented
    assert df.loc[df["symbol"] == "BTC-USD", "xa_leader_ret_1s"].isna().all()


def test_time_range_and_loader(tiny_root, tmp_path):
    t = pd.Timestamp("2026-01-04T00:02:00Z")
    out = build_training_set(tiny_root, tmp_path / "r", labels=LABELS, features=FEATURES, start=t,
                             end="2026-01-04T00:03:00", exchange="sim", source="silver")
    df, man = load_training_set(out)
    assert df["ts_ns"].min() == t.value and df["ts_ns"].max() < t.value + 60 * 10**9
    assert df["ts_ns"].is_monotonic_increasing and man["source"] == "silver"


def test_errors_name_the_problem(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="not a catalog label"):
        silver_trainset(tiny_root, tmp_path, labels=["imbalance_l1"])
    with pytest.raises(ValueError, match="label"):
        silver_trainset(tiny_root, tmp_path, labels=LABELS, features=["fwd_ret_mid_5s"])
    with pytest.raises(FileNotFoundError, match="features build"):
        silver_trainset(tmp_path / "empty", tmp_path / "o", labels=LABELS, features=FEATURES)
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_training_set(tmp_path / "nothing")
    with pytest.raises(ValueError, match="source"):
        build_training_set(tiny_root, tmp_path, labels=LABELS, source="parquet")


@pytest.mark.timeout(300)
def test_feast_trainset_equals_the_silver_reference(tiny_root, tmp_path):
    feast = build_training_set(tiny_root, tmp_path / "f", labels=LABELS, features=FEATURES, exchange="sim",
                               source="feast")
    silver = build_training_set(tiny_root, tmp_path / "s", labels=LABELS, features=FEATURES, exchange="sim",
                                source="silver")
    a, _ = load_training_set(feast)
    b, _ = load_training_set(silver)
    cols = ["symbol", "ts_ns"] + LABELS + FEATURES
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)

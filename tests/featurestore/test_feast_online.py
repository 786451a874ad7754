"""Online serving against real Feast: materialization (incremental), SDK and HTTP lookups equal the silver rows,
pushed live rows reach the online store, reads stay correct while materialization writes."""

import threading

import numpy as np
import pandas as pd
import pytest

from l2lab.featurestore import online
from l2lab.featurestore.store import open_store

from feast_session import START, read_tree

pytestmark = pytest.mark.timeout(300)
S = 10**9
VIEWS = ["structural_1s", "dynamic_1s", "cross_asset_1s"]


def silver(root, dataset="book_features_1s"):
    return read_tree(root, dataset).sort_values(["symbol", "ts_ns"]).reset_index(drop=True)


def latest(df, symbol, t_ns):
    """The silver row of ``symbol`` with the largest ts_ns <= t_ns."""
    rows = df[(df["symbol"] == symbol) & (df["ts_ns"] <= t_ns)]
    return rows.iloc[-1]


@pytest.fixture(scope="module")
def book(feast_root):
    return silver(feast_root)


@pytest.fixture(scope="module")
def served(feast_root, feast_store):
    """Materialized up to 60 s into the session, with Feast's HTTP server running on it."""
    online.materialize(feast_store, feast_root, START, START + 60 * S, views=VIEWS)
    with online.FeatureServer(feast_root) as srv:
        yield srv


def test_views_with_data_are_the_built_ones(feast_root, feast_store):
    views = online.views_with_data(feast_root)
    assert set(views) == {f"{f}_1s" for f in ("structural", "dynamic", "rolling", "advanced", "trade_flow",
                                              "technical", "cross_asset")}


def test_lookup_sdk_and_http_equal_the_silver_row(feast_root, feast_store, served, book):
    feats = ["mid", "spread_bps", "ofi_L0", "xa_leader_ret_1s", "structural_1s:ts_ns"]
    got = online.get_online(feast_store, ["BTC-USD", "ETH-USD", "NOPE-USD"], feats)
    over_http = served.get_online(["BTC-USD", "ETH-USD", "NOPE-USD"], feats)
    pd.testing.assert_frame_equal(got, over_http[got.columns])
    assert got["symbol"].tolist() == ["BTC-USD", "ETH-USD", "NOPE-USD"]
    xa = silver(feast_root, "cross_asset_1s")
    for i, sym in enumerate(["BTC-USD", "ETH-USD"]):
        row = latest(book, sym, START + 60 * S)
        assert got["ts_ns"][i] == row["ts_ns"] == START + 60 * S
        for f in ("mid", "spread_bps", "ofi_L0"):
            assert got[f][i] == row[f], f
    assert np.isnan(got["xa_leader_ret_1s"][0])  # the leader has no cross-asset row
    assert got["xa_leader_ret_1s"][1] == latest(xa, "ETH-USD", START + 60 * S)["xa_leader_ret_1s"]
    assert got.iloc[2, 1:].isna().all()  # unknown symbol: every value missing
    # a whole service: one row, every feature of the grid, same values over HTTP
    svc = online.get_online(feast_store, "ETH-USD", "book_1s")
    svc_http = served.get_online("ETH-USD", "book_1s")
    assert svc.shape == (1, 220) and svc_http.shape == (1, 220)
    pd.testing.assert_frame_equal(svc, svc_http[svc.columns])
    assert svc["mid"][0] == latest(book, "ETH-USD", START + 60 * S)["mid"]


def test_incremental_materialization_moves_forward(feast_root, feast_store, served, book):
    end = START + 100 * S
    online.materialize_incremental(feast_store, feast_root, end, views=["structural_1s"])
    fv = open_store(feast_root).get_feature_view("structural_1s")
    (s1, e1), (s2, e2) = [(a.timestamp() * 1e9, b.timestamp() * 1e9) for a, b in fv.materialization_intervals[-2:]]
    assert e1 == START + 60 * S and s2 == e1 and e2 == end  # the second run starts where the first ended
    got = online.get_online(feast_store, ["SOL-USD"], ["mid", "structural_1s:ts_ns"])
    row = latest(book, "SOL-USD", end)
    assert got["ts_ns"][0] == end and got["mid"][0] == row["mid"]
    # the dynamic view was not part of it: still the first materialization's row
    assert online.get_online(feast_store, ["SOL-USD"], ["ofi_L0"])["ofi_L0"][0] == \
        latest(book, "SOL-USD", START + 60 * S)["ofi_L0"]


def test_pushed_live_rows_reach_the_online_store(feast_root, feast_store, served, book):
    live = book[book["symbol"] == "ETH-USD"].iloc[[-1]].copy()  # a row shaped like silver, values planted
    live["ts_ns"] = START + 500 * S
    live["mid"] = 12345.5
    live["spread_bps"] = 0.25
    assert online.push(feast_store, "structural_1s", live) == 1
    got = online.get_online(feast_store, ["ETH-USD"], ["mid", "spread_bps", "structural_1s:ts_ns"])
    assert got["mid"][0] == 12345.5 and got["spread_bps"][0] == 0.25 and got["ts_ns"][0] == START + 500 * S
    assert served.get_online(["ETH-USD"], ["mid"])["mid"][0] == 12345.5  # the server reads the same store
    with pytest.raises(KeyError, match="missing columns"):
        online.push(feast_store, "structural_1s", live.drop(columns=["microprice"]))


@pytest.mark.timeout(120)
def test_reads_during_materialization_see_old_or_new_rows(feast_root, feast_store, served, book):
    """A reader thread (own store, own SQLite connection) and the HTTP server read BTC-USD while materialization
    rewrites it; every (stamp, mid) pair read is a real silver row: the one before or the one after."""
    before = START + 60 * S
    online.materialize(feast_store, feast_root, START, before, views=["dynamic_1s"])
    online.materialize(feast_store, feast_root, START, before, views=["structural_1s"])
    after = START + 140 * S
    mids = dict(zip(book.loc[book["symbol"] == "BTC-USD", "ts_ns"], book.loc[book["symbol"] == "BTC-USD", "mid"]))
    reads, errors, stop = [], [], threading.Event()

    def reader(lookup):
        while not stop.is_set():
            try:
                df = lookup(["BTC-USD"], ["mid", "structural_1s:ts_ns"])
                reads.append((int(df["ts_ns"][0]), float(df["mid"][0])))
            except Exception as exc:  # any error is a failure
                errors.append(repr(exc))

    reader_store = open_store(feast_root)
    threads = [threading.Thread(target=reader, args=(lambda s, f: online.get_online(reader_store, s, f),)),
               threading.Thread(target=reader, args=(served.get_online,))]
    for t in threads:
        t.start()
    try:
        for _ in range(2):  # rewrite old -> new -> old -> new
            online.materialize(feast_store, feast_root, START, after, views=["structural_1s"])
            online.materialize(feast_store, feast_root, START, before, views=["structural_1s"])
        online.materialize(feast_store, feast_root, START, after, views=["structural_1s"])
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert len(reads) > 10
    assert {ts for ts, _ in reads} == {before, after}  # both states seen, nothing else
    for ts, mid in reads:
        assert mid == mids[ts]
    assert online.get_online(feast_store, ["BTC-USD"], ["structural_1s:ts_ns"])["ts_ns"][0] == after

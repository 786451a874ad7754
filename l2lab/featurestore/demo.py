"""The feature-store step of ``make demo``: apply the repository, build a training set from the built silver,
materialize, and look one symbol up through the SDK and through Feast's HTTP server."""

from __future__ import annotations

import json
import time

import numpy as np

DEMO_LABELS = ("label_dir_mid_5s", "fwd_ret_mid_5s")
DEMO_SERVICE = "book_1s"


def demo_step(settings, labels=DEMO_LABELS, feature_service: str = DEMO_SERVICE, out_dir=None) -> list[str]:
    """Returns summary lines; the training set goes to ``out_dir`` (default ``<data root>/trainsets/demo``)."""
    from l2lab.featurestore import online
    from l2lab.featurestore.store import apply
    from l2lab.featurestore.trainset import MANIFEST_FILE, build_trainset

    root = settings.data_root
    lines = []
    t = time.perf_counter()
    store = apply(root)
    n_views, n_services = len(store.list_feature_views()), len(store.list_feature_services())
    lines.append(f"feast apply: {n_views} feature views, {n_services} feature services, registry "
                 f"{root / 'feast' / 'registry.db'} ({time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    out = build_trainset(root, out_dir or root / "trainsets" / "demo", grid="1s", labels=list(labels),
                         feature_service=feature_service)
    m = json.loads((out / MANIFEST_FILE).read_text())
    rates = np.array(list(m["null_rates"].values()))
    worst = sorted(((v, k) for k, v in m["null_rates"].items() if k in m["features"]), reverse=True)[:2]
    lines.append(f"training set ({feature_service}, labels {', '.join(labels)}): {m['rows']:,} rows x "
                 f"{len(m['features'])} features, symbols {', '.join(m['symbols'])} "
                 f"({time.perf_counter() - t:.1f} s, {m['offline_store']} offline store) -> {out}")
    lines.append(f"  null rates: median {np.median(rates):.1%}, highest {worst[0][1]} {worst[0][0]:.0%} and "
                 f"{worst[1][1]} {worst[1][0]:.0%}")

    t = time.perf_counter()
    views = online.materialize(store, root, m["start_ns"], m["end_ns"])
    lines.append(f"materialized {len(views)} feature views to the SQLite online store up to "
                 f"{np.datetime64(m['end_ns'], 'ns').astype('datetime64[s]')}Z ({time.perf_counter() - t:.1f} s)")

    symbol = m["symbols"][-1]
    online.get_online(store, [symbol], feature_service)  # first call loads the registry
    t = time.perf_counter()
    row = online.get_online(store, [symbol], feature_service)
    sdk_ms = (time.perf_counter() - t) * 1e3
    lines.append(f"online lookup (SDK) {symbol} x {row.shape[1] - 1} features: {sdk_ms:.2f} ms, "
                 f"mid {row['mid'][0]:.2f}, spread {row['spread_bps'][0]:.3f} bps")
    refs = online.service_refs(store, feature_service)  # a list: the server rebuilds a named service per request
    with online.FeatureServer(root) as srv:
        srv.get_online([symbol], refs)
        t = time.perf_counter()
        over_http = srv.get_online([symbol], refs)
        http_ms = (time.perf_counter() - t) * 1e3
    same = bool(np.array_equal(over_http[row.columns[1:]].to_numpy(float), row[row.columns[1:]].to_numpy(float),
                               equal_nan=True))
    lines.append(f"online lookup (HTTP, feast serve on 127.0.0.1) {symbol} x {over_http.shape[1] - 1} features: "
                 f"{http_ms:.2f} ms, {'same values as the SDK' if same else 'VALUES DIFFER FROM THE SDK'}")
    return lines

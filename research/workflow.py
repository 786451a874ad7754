"""The glue every notebook shares: resolve its parameters, build (once per run) and load the training set,
name the target label of a (target, horizon) pair.

A notebook's parameters cell lists only ``run_dir`` and the parameters no other notebook reads; the parameters
notebooks share (:data:`DEFAULTS`: the training set's, the target, the folds, the AutoGluon settings, the seed)
have their defaults here once, so the notebooks of a run cannot disagree on one. A notebook's setup line is
``ctx = workflow.setup(globals())``: it sets each shared parameter the notebook does not already have (from its
parameters cell or papermill's injected cell) to its default, then calls :func:`prepare`.

A run folder holds one training set (``<run_dir>/trainset/``) built through the feature store from the research
session's data range, with every label the chain needs; notebooks 01-06 of the same run all read it. Without a
run folder (interactive use) it goes to ``<data>/research_cache/<hash of the parameters>/``. Either is rebuilt
when the code or the research session's data changed since it was built (``research.fingerprint``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l2lab.settings import Settings

TARGETS = {
    "direction": "label_dir_mid_{h}s",  # binary, AUC
    "return": "fwd_ret_mid_{h}s",  # regression
    "3class": "label_3c_mid_{h}s",  # down / flat / up with the half-spread dead zone
    "regime": "label_vol_regime_{h}s",  # forward volatility terciles, thresholds fitted on training rows only
}
REGIME_HORIZONS = (60, 300)
PRICE_HORIZONS = (1, 5, 30, 60, 300)

# The parameters notebooks share (``l2lab run --set NAME=VALUE`` or a grid file sets them for every notebook).
DEFAULTS = {
    "data_root": None,  # default: $L2LAB_DATA, else data/ in the repository
    "session": "research",  # research session under <data>/sim/<session> (research.sessions.make_research_session)
    "symbols": None,  # None: every symbol of the session
    "start": None,  # None: the session's start (ISO UTC or int ns)
    "end": None,
    "grid": "1s",
    "horizons": list(PRICE_HORIZONS),
    "horizon": 5,  # seconds: the horizon of the target
    "target": "direction",  # direction | return | 3class | regime
    "feature_service": None,  # Feast feature service (None: every book + cross-asset feature of the grid)
    "n_splits": 4,  # walk-forward folds
    "embargo_s": 0.0,
    "selection_frac": 0.4,  # notebook 03 selects on the first 40% of the time; 04 evaluates only after it
    "presets": "medium_quality",
    "time_limit": 60,  # seconds per AutoGluon fit (None: no limit)
    "hyperparameters": None,  # AutoGluon hyperparameters (None: the presets' models minus RF/XT/KNN)
    "num_cpus": 2,
    "seed": 7,
}
TRAINSET_PARAMS = ("data_root", "session", "symbols", "start", "end", "grid", "horizons", "feature_service")


def target_label(target: str, horizon_s: float) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    h = int(horizon_s)
    if target == "regime" and h not in REGIME_HORIZONS:
        raise ValueError(f"the volatility regime exists for horizons {REGIME_HORIZONS} s, not {horizon_s}")
    if target != "regime" and h not in PRICE_HORIZONS:
        raise ValueError(f"horizon {horizon_s} s: labels exist for {PRICE_HORIZONS} s")
    return TARGETS[target].format(h=h)


def labels_for(horizons) -> list[str]:
    """Every silver label column the chain reads for these horizons (regime labels are derived from fwd_rv)."""
    out = []
    for h in sorted({int(h) for h in horizons}):
        out += [f"fwd_ret_mid_{h}s", f"label_dir_mid_{h}s", f"label_3c_mid_{h}s"]
    out += [f"fwd_rv_{h}s" for h in REGIME_HORIZONS]
    return out


@dataclass
class Context:
    data_root: Path
    run_dir: Path | None
    trainset_dir: Path
    session: dict
    truth: dict | None
    df: pd.DataFrame
    manifest: dict

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def setup(namespace: dict) -> Context:
    """A notebook's setup line, ``ctx = workflow.setup(globals())``: every shared parameter the notebook does not
    have yet is set to its default (:data:`DEFAULTS`), then :func:`prepare` builds (once per run) and loads the
    training set with them."""
    for k, v in DEFAULTS.items():
        namespace.setdefault(k, copy.deepcopy(v))
    return prepare(run_dir=namespace.get("run_dir") or None, **{k: namespace[k] for k in TRAINSET_PARAMS})


def prepare(*, data_root=None, run_dir=None, session="research", symbols=None, start=None, end=None, grid="1s",
            horizons=PRICE_HORIZONS, feature_service=None, features=None, trainset_source="feast") -> Context:
    """Resolve the data root, read the research session and its truth, build the training set once, load it."""
    from research.fingerprint import inputs_fingerprint
    from research.sessions import load_session, load_truth
    from research.trainsets import build_training_set, load_training_set

    root = Settings.load(data_root).data_root
    sess = load_session(root, session)
    try:
        truth = load_truth(root, session)
    except FileNotFoundError:
        truth = None
    want = {"session": session, "symbols": symbols, "start": start, "end": end, "grid": grid,
            "labels": labels_for(horizons), "feature_service": feature_service, "features": features,
            "source": trainset_source, "inputs": inputs_fingerprint(root, sess.get("exchange"))}
    out = (Path(run_dir) / "trainset" if run_dir
           else root / "research_cache" / params_hash({k: v for k, v in want.items() if k != "inputs"}))
    request_path = out / "request.json"
    if not (request_path.exists() and json.loads(request_path.read_text()) == json.loads(json.dumps(want))):
        build_training_set(root, out, grid=grid, labels=want["labels"], features=features,
                           feature_service=feature_service, symbols=symbols,
                           start=start if start is not None else sess["start_ns"],
                           end=end if end is not None else sess["end_ns"], exchange=sess["exchange"],
                           source=trainset_source)
        from l2lab import atomic

        atomic.write_json(request_path, want)
    df, manifest = load_training_set(out)
    return Context(root, Path(run_dir) if run_dir else None, out, sess, truth, df, manifest)


def with_regime_label(df: pd.DataFrame, horizon_s: int, train_mask) -> tuple[pd.DataFrame, tuple[float, float]]:
    """Add ``label_vol_regime_{h}s`` from ``fwd_rv_{h}s`` with tercile thresholds fitted on the training rows
    only (``kernels.labels.fit_regime_thresholds``)."""
    from kernels.labels import apply_regime_thresholds, fit_regime_thresholds

    rv = df[f"fwd_rv_{horizon_s}s"].to_numpy(float)
    th = fit_regime_thresholds(rv[np.asarray(train_mask, bool)])
    out = df.copy()
    out[f"label_vol_regime_{horizon_s}s"] = apply_regime_thresholds(rv, th)
    return out, tuple(float(v) for v in th)

"""The model artifact: what notebook 04 saves and what ``l2lab live`` (and notebooks 05/06) load.

Layout, inside a run folder (``papermill_runs/<run-id>/``)::

    model/model.json      metadata (below)
    model/predictor/      the AutoGluon ``TabularPredictor`` folder

``model.json`` fields:
    target            label name from the catalog (e.g. ``label_dir_mid_5s``)
    problem_type      ``binary`` | ``multiclass`` | ``regression``
    grid              clock grid of the features, e.g. ``1s``
    horizon_s         the label's horizon in seconds
    features          catalog feature names, in the order the predictor was trained on
    feature_service   the Feast FeatureService the training set came through (or null)
    positive_class    for binary targets, the class whose probability is the score
    trainset          the training set manifest (features, catalog hash, data range, row counts)
    created_utc       ISO time of saving
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from l2lab import atomic

PROBLEM_TYPES = ("binary", "multiclass", "regression")


@dataclass
class ModelMeta:
    target: str
    problem_type: str
    grid: str
    horizon_s: float
    features: list[str]
    feature_service: str | None = None
    positive_class: object = None
    trainset: dict = field(default_factory=dict)
    created_utc: str = ""

    def __post_init__(self):
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"model.json: problem_type {self.problem_type!r} not in {PROBLEM_TYPES}")
        if not self.features:
            raise ValueError("model.json: a model needs at least one feature")


def model_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "model"


def save_meta(run_dir: str | Path, meta: ModelMeta) -> Path:
    """Write ``model/model.json`` atomically (the predictor folder is written by AutoGluon beside it)."""
    if not meta.created_utc:
        meta.created_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = model_dir(run_dir) / "model.json"
    atomic.write_json(path, asdict(meta))
    return path


def load_meta(run_dir: str | Path) -> ModelMeta:
    path = model_dir(run_dir) / "model.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model here (notebook 04 writes model/model.json and model/predictor/)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    missing = [k for k in ("target", "problem_type", "grid", "horizon_s", "features") if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    known = set(ModelMeta.__dataclass_fields__)
    return ModelMeta(**{k: v for k, v in raw.items() if k in known})


def predictor_dir(run_dir: str | Path) -> Path:
    return model_dir(run_dir) / "predictor"


def load_predictor(run_dir: str | Path):
    """The AutoGluon predictor saved by notebook 04 (imported lazily: AutoGluon is slow to import)."""
    from autogluon.tabular import TabularPredictor

    path = predictor_dir(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no AutoGluon predictor folder")
    return TabularPredictor.load(str(path), require_version_match=True, require_py_version_match=False)

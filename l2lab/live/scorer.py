"""The model: the AutoGluon predictor of a papermill run (``research.model_artifact``), reloaded without a restart.

Score (the backtest's contract, ``research.backtest``): binary -> P(positive class); regression -> the
prediction; multiclass with numeric classes (e.g. -1/0/+1 with a dead zone) -> P(highest class) - P(lowest
class), otherwise P(positive class). The feature vector is the model's ``features`` in training order, one
float64 column each (NaN where a value is missing, as in the training set).

Reload: :meth:`ModelScorer.maybe_reload` looks at ``model/model.json``'s mtime at most every ``check_every_s``;
when it changed, the new metadata and predictor are loaded beside the old one and swapped in only if both load
(a half-written or broken model keeps the old one scoring and is reported).

Threads: the scorer predicts one row (or a handful) at a time, where OpenMP threads (LightGBM, XGBoost) only
add synchronization; on a busy 2-core machine a one-row LightGBM predict took 16 ms p50 with the default
threads and 1.2 ms with one (``bench/bench_live.py`` history). Loading a scorer therefore limits OpenMP to one
thread in this process (``threadpoolctl``); the live process does nothing else that uses OpenMP.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from kernels.pipeline import grid_ms
from research.model_artifact import ModelMeta, load_meta, load_predictor, model_dir

log = logging.getLogger("l2lab.live")


class ModelScorer:
    def __init__(self, run_dir: str | Path, *, check_every_s: float = 1.0):
        self.run_dir = Path(run_dir)
        self.check_every_s = float(check_every_s)
        self.reload_errors: list[str] = []
        self._next_check = 0.0
        meta, predictor, self._mtime = self._load()
        # one tuple, swapped in one assignment: a scoring thread takes a consistent snapshot of it
        self.current: tuple[ModelMeta, object, int] = (meta, predictor, 1)

    @property
    def meta(self) -> ModelMeta:
        return self.current[0]

    @property
    def version(self) -> int:
        return self.current[2]

    @property
    def meta_path(self) -> Path:
        return model_dir(self.run_dir) / "model.json"

    def _load(self) -> tuple[ModelMeta, object, int]:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")
        mtime = self.meta_path.stat().st_mtime_ns if self.meta_path.exists() else 0
        meta = load_meta(self.run_dir)
        predictor = load_predictor(self.run_dir)
        # keep the model in memory: unpersisted, AutoGluon loads it from disk on every predict call
        predictor.persist("best", with_ancestors=True)
        # the predictor may have dropped inputs it found useless (constant, duplicate), never added any
        missing = [f for f in predictor.features() if f not in meta.features]
        if missing:
            raise ValueError(f"{self.meta_path}: the predictor reads {missing[:5]}, which model.json does not list")
        return meta, predictor, mtime

    @property
    def features(self) -> list[str]:
        return self.meta.features

    @property
    def grid_ms(self) -> int:
        return grid_ms(self.meta.grid)

    def maybe_reload(self, accept=None) -> bool:
        """Reload if model.json changed since the last load; True when a new model was swapped in. ``accept(meta)``
        may refuse the new model by returning the reason (e.g. it reads features the session does not compute)."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_every_s
        try:
            mtime = self.meta_path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._mtime:
            return False
        try:
            meta, predictor, mtime = self._load()
        except Exception as exc:  # keep scoring with the old model
            self._mtime = mtime
            self.reload_errors.append(f"{type(exc).__name__}: {exc}")
            log.error("model reload failed, keeping version %d: %s", self.version, exc)
            return False
        refused = (f"grid changed from {self.meta.grid} to {meta.grid}" if grid_ms(meta.grid) != self.grid_ms
                   else accept(meta) if accept is not None else None)
        if refused:
            self._mtime = mtime
            self.reload_errors.append(f"refused, needs a restart: {refused}")
            log.error("model reload refused, keeping version %d: %s", self.version, refused)
            return False
        self._mtime = mtime
        self.current = (meta, predictor, self.version + 1)
        return True

    def score(self, vectors: np.ndarray, current: tuple | None = None) -> np.ndarray:
        """Scores for rows of feature values (n, len(features)) in the model's order; ``current``: the
        (meta, predictor, version) snapshot to use (default: the current one)."""
        import pandas as pd

        meta, predictor, _ = current or self.current
        X = pd.DataFrame(np.asarray(vectors, dtype=np.float64).reshape(-1, len(meta.features)), columns=meta.features)
        return score_frame(predictor, meta, X)


def score_frame(predictor, meta: ModelMeta, X) -> np.ndarray:
    """The score of every row of ``X`` (a DataFrame of the model's features); see the module docstring."""
    if meta.problem_type == "regression":
        return np.asarray(predictor.predict(X), dtype=np.float64)
    proba = predictor.predict_proba(X, as_multiclass=True)
    classes = list(proba.columns)
    if meta.problem_type == "binary" or meta.positive_class is not None:
        pos = meta.positive_class if meta.positive_class is not None else predictor.positive_class
        if pos not in classes:  # JSON may turn a numeric class into another type
            pos = next(c for c in classes if str(c) == str(pos))
        return proba[pos].to_numpy(dtype=np.float64)
    try:
        numeric = sorted(classes, key=float)
    except (TypeError, ValueError):
        raise ValueError(f"multiclass model with classes {classes}: set positive_class in model.json") from None
    return (proba[numeric[-1]] - proba[numeric[0]]).to_numpy(dtype=np.float64)



"""Walk-forward cross-validation with purging and an embargo (Lopez de Prado 2018, *Advances in Financial
Machine Learning*, ch. 7).

Every row i has a label window [t0_i, t1_i]: t0 is the row's time (its features are known then) and t1 the
last instant its label reads (t0 + horizon). Rows are split into ``n_splits + 1`` consecutive blocks by time;
fold k tests block k+1 and trains on what came before it (expanding window, or the last ``max_train`` rows
with a rolling window). The test window is W = [min t0 over the test rows, max t1 over the test rows] (its
start is the first test row's *start* time and its end the *largest* label end: issue #295 of mlfinlab and
openquant #65 are both about getting one of these wrong). A training row is **purged** when its window
intersects W, i.e. t1_i >= W.start and t0_i <= W.end (closed intervals: a label ending exactly where a test
label starts shares that instant's price). The **embargo** additionally drops training rows with
t0 in (W.end, W.end + embargo]; in a walk-forward split it matters only for :func:`purged_kfold`, where training
rows may come after the test block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    train: np.ndarray  # row indices (into the arrays given), sorted
    test: np.ndarray
    purged: int  # training rows removed because their label window overlaps the test window
    embargoed: int


def _check(t0, t1) -> tuple[np.ndarray, np.ndarray]:
    t0, t1 = np.asarray(t0, np.int64), np.asarray(t1, np.int64)
    if t0.shape != t1.shape or t0.ndim != 1:
        raise ValueError("t0 and t1 must be 1-d arrays of the same length")
    if (t1 < t0).any():
        i = int(np.argmax(t1 < t0))
        raise ValueError(f"row {i}: label end t1={t1[i]} is before its start t0={t0[i]}")
    if len(t0) > 1 and (np.diff(t0) < 0).any():
        raise ValueError("rows must be sorted by t0 (time)")
    return t0, t1


def _purge(candidates: np.ndarray, t0, t1, test: np.ndarray, embargo_ns: int) -> tuple[np.ndarray, int, int]:
    w_start, w_end = t0[test].min(), t1[test].max()
    overlap = (t1[candidates] >= w_start) & (t0[candidates] <= w_end)
    embargo = (~overlap) & (t0[candidates] > w_end) & (t0[candidates] <= w_end + embargo_ns)
    keep = candidates[~overlap & ~embargo]
    return keep, int(overlap.sum()), int(embargo.sum())


def _blocks(t0: np.ndarray, n_blocks: int) -> list[np.ndarray]:
    """Consecutive blocks of about equal row count that never split rows sharing a timestamp."""
    n = len(t0)
    if n_blocks < 2 or n < n_blocks:
        raise ValueError(f"need at least {n_blocks} rows and 2 blocks (have {n} rows)")
    cuts = [int(round(n * k / n_blocks)) for k in range(1, n_blocks)]
    cuts = [int(np.searchsorted(t0, t0[c], "left")) if 0 < c < n else c for c in cuts]
    edges = [0] + cuts + [n]
    return [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def walk_forward(t0, t1, n_splits: int = 4, embargo_ns: int = 0, max_train: int | None = None,
                 min_train: int = 1, test_from_ns: int | None = None) -> list[Fold]:
    """Purged walk-forward folds. By default the rows are cut into ``n_splits + 1`` blocks and fold k trains on
    blocks 0..k (purged) and tests block k+1. With ``test_from_ns`` the rows from that time on are cut into
    ``n_splits`` test blocks, each trained on every row before it (purged): an evaluation period that starts
    after, say, a feature-selection period."""
    t0, t1 = _check(t0, t1)
    if test_from_ns is None:
        blocks = _blocks(t0, n_splits + 1)[1:]
    else:
        first = int(np.searchsorted(t0, test_from_ns, "left"))
        if first == 0:
            raise ValueError("test_from_ns leaves no rows to train on")
        blocks = [b + first for b in _blocks(t0[first:], n_splits)]
    folds = []
    for test in blocks:
        cand = np.arange(0, test[0])
        if max_train is not None:
            cand = cand[-max_train:]
        train, purged, emb = _purge(cand, t0, t1, test, embargo_ns)
        if len(train) >= min_train:
            folds.append(Fold(train, test, purged, emb))
    return folds


def purged_kfold(t0, t1, n_splits: int = 5, embargo_ns: int = 0) -> list[Fold]:
    """Purged k-fold (AFML snippet 7.3): each block tests once, training on every other row, purged of label
    overlap with the test window and embargoed after it."""
    t0, t1 = _check(t0, t1)
    blocks = _blocks(t0, n_splits)
    folds = []
    for test in blocks:
        cand = np.setdiff1d(np.arange(len(t0)), test, assume_unique=True)
        train, purged, emb = _purge(cand, t0, t1, test, embargo_ns)
        folds.append(Fold(train, test, purged, emb))
    return folds


def label_end(ts_ns, horizon_s: float) -> np.ndarray:
    """t1 = t0 + horizon for a time-based label (the last instant the label reads)."""
    return np.asarray(ts_ns, np.int64) + int(round(horizon_s * 1e9))

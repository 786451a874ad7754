"""Purged walk-forward / k-fold CV against a brute-force overlap check, with overlapping label windows."""

import numpy as np
import pytest

from research.cv import label_end, purged_kfold, walk_forward


def overlaps(t0, t1, i, j) -> bool:
    return t0[i] <= t1[j] and t0[j] <= t1[i]


def brute_train(t0, t1, candidates, test, embargo_ns):
    """Keep a candidate iff its window meets no test row's window and it is not in the embargo after the test."""
    end = max(t1[j] for j in test)
    keep = []
    for i in candidates:
        if any(overlaps(t0, t1, i, j) for j in test):
            continue
        if end < t0[i] <= end + embargo_ns:
            continue
        keep.append(i)
    return np.array(keep, dtype=np.int64)


def random_events(rng, n, max_len):
    t0 = np.sort(rng.integers(0, 10 * n, n)).astype(np.int64)  # ties on purpose
    t1 = t0 + rng.integers(0, max_len, n)
    return t0, t1


@pytest.mark.parametrize("seed", range(5))
def test_walk_forward_matches_brute_force_and_never_overlaps(seed):
    rng = np.random.default_rng(seed)
    t0, t1 = random_events(rng, 300, 80)
    folds = walk_forward(t0, t1, n_splits=4)
    assert len(folds) == 4
    for f in folds:
        assert f.train.max() < f.test.min()  # walk-forward: the past only
        ref = brute_train(t0, t1, np.arange(f.test[0]), f.test, 0)
        np.testing.assert_array_equal(f.train, ref)
        assert not any(overlaps(t0, t1, i, j) for i in f.train for j in f.test)
        assert f.purged == f.test[0] - len(f.train)


@pytest.mark.parametrize("seed", range(5))
def test_purged_kfold_matches_brute_force_with_embargo(seed):
    rng = np.random.default_rng(100 + seed)
    t0, t1 = random_events(rng, 250, 60)
    folds = purged_kfold(t0, t1, n_splits=5, embargo_ns=40)
    tested = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(t0)))
    for f in folds:
        cand = np.setdiff1d(np.arange(len(t0)), f.test)
        np.testing.assert_array_equal(f.train, brute_train(t0, t1, cand, f.test, 40))
        assert not any(overlaps(t0, t1, i, j) for i in f.train for j in f.test)


def test_mlfinlab_295_label_ending_at_test_start_and_spanning_labels_are_purged():
    """Daily bars with 3-day labels (mlfinlab #295): a training label that ends exactly where the first test
    label starts, and one that spans the whole test window, must both be purged."""
    day = 86_400 * 10**9
    t0 = np.arange(10, dtype=np.int64) * day
    t1 = t0 + 2 * day
    t1[1] = t0[1] + 30 * day  # a long label starting long before the test block and ending after it
    folds = walk_forward(t0, t1, n_splits=1)  # test = rows 5..9
    [f] = folds
    np.testing.assert_array_equal(f.test, np.arange(5, 10))
    # row 3 ends at day 5 == test start (shared instant), row 4 ends at day 6, row 1 spans the test window
    np.testing.assert_array_equal(f.train, [0, 2])
    assert f.purged == 3


def test_rows_sharing_a_timestamp_stay_in_one_block():
    t0 = np.repeat(np.arange(10, dtype=np.int64), 3)  # 3 symbols per grid time
    folds = walk_forward(t0, t0, n_splits=3)
    for f in folds:
        assert t0[f.train].max() < t0[f.test].min()
        assert set(t0[f.test]).isdisjoint(set(t0[np.setdiff1d(np.arange(30), f.test)]))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="sorted"):
        walk_forward(np.array([2, 1]), np.array([3, 3]), n_splits=1)
    with pytest.raises(ValueError, match="row 0"):
        walk_forward(np.array([5, 6]), np.array([4, 7]), n_splits=1)
    with pytest.raises(ValueError, match="rows"):
        walk_forward(np.array([1]), np.array([1]), n_splits=3)
    assert label_end(np.array([0, 10]), 1.5).tolist() == [1_500_000_000, 1_500_000_010]


def test_walk_forward_with_an_evaluation_period():
    rng = np.random.default_rng(9)
    t0, t1 = random_events(rng, 400, 50)
    start = int(t0[160])
    folds = walk_forward(t0, t1, n_splits=3, test_from_ns=start)
    assert len(folds) == 3
    tested = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(tested, np.arange(np.searchsorted(t0, start), len(t0)))
    for f in folds:
        np.testing.assert_array_equal(f.train, brute_train(t0, t1, np.arange(f.test[0]), f.test, 0))
    with pytest.raises(ValueError, match="no rows to train"):
        walk_forward(t0, t1, n_splits=2, test_from_ns=int(t0[0]))

"""Catalog-wide properties: every declared feature is computed and nothing else; no feature reads the future;
the incremental (one more row) value equals the batch value."""

import importlib

import numpy as np
import pytest

from kernels import catalog
from kernel_frames import random_frame

BOOK_FAMILIES = sorted({s.kernel for s in catalog.features() if s.table == "book"})


def kernel(path):
    mod, fn = path.rsplit(".", 1)
    return getattr(importlib.import_module(mod), fn)


def test_catalog_is_well_formed():
    specs = catalog.features()
    assert len({s.name for s in specs}) == len(specs)
    for s in specs:
        assert s.forward_reach == 0 and s.description and s.unit and s.window
        assert s.name.replace("_L", "_l") == s.name.replace("_L", "_l").lower(), s.name


@pytest.mark.parametrize("path", BOOK_FAMILIES)
def test_family_computes_exactly_its_declared_columns(path):
    declared = {s.name for s in catalog.features() if s.kernel == path}
    out = kernel(path)(random_frame(200, seed=1))
    assert set(out) == declared
    for name, v in out.items():
        assert v.shape == (200,) and v.dtype == np.float64, name


@pytest.mark.parametrize("path", BOOK_FAMILIES)
@pytest.mark.parametrize("adversarial", [False, True])
def test_no_feature_reads_the_future(path, adversarial):
    """Changing any input after row t never changes a feature at or before t."""
    f = random_frame(300, seed=2, adversarial=adversarial)
    base = kernel(path)(f)
    rng = np.random.default_rng(3)
    for t in (0, 57, 150, 298):
        g = f.take(slice(None))
        later = slice(t + 1, None)
        for arr in (g.bid_px, g.ask_px):
            arr[later] = arr[later] * (1 + rng.normal(0, 0.01, arr[later].shape))
        for arr in (g.bid_sz, g.ask_sz):
            arr[later] = arr[later] * rng.uniform(0.1, 3, arr[later].shape)
        g.buy_volume[later] += rng.uniform(0, 5, g.buy_volume[later].shape)
        g.valid[later] = rng.random(g.valid[later].shape) < 0.7
        out = kernel(path)(g)
        for name in base:
            np.testing.assert_array_equal(out[name][: t + 1], base[name][: t + 1], err_msg=f"{name} at t={t}")


@pytest.mark.parametrize("path", BOOK_FAMILIES)
def test_incremental_equals_batch(path):
    """Computing on rows [0, t] and reading the last value equals the batch value at t (bit for bit)."""
    f = random_frame(120, seed=4, adversarial=True)
    batch = kernel(path)(f)
    for t in (0, 1, 37, 119):
        part = kernel(path)(f.take(slice(0, t + 1)))
        for name, v in part.items():
            np.testing.assert_array_equal(v[-1], batch[name][t], err_msg=f"{name} at {t}")

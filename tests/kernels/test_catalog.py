"""Catalog-wide properties: every declared feature is computed and nothing else; no feature reads the future;
the incremental (one more row) value equals the batch value."""

import importlib

import numpy as np
import pytest

from kernels import catalog
from kernel_frames import assert_chunked_equals_batch, random_frame

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


def perturb_after(f, t, rng):
    """A copy of ``f`` with every input after row t changed (times stay increasing)."""
    g = f.take(slice(None))
    later = slice(t + 1, None)
    m = g.n - t - 1
    if m <= 0:
        return g
    for name, arr in vars(g).items():
        if not isinstance(arr, np.ndarray):
            continue
        if name == "t_ns":
            arr[later] += np.cumsum(rng.integers(0, g.step_ns, m))
        elif name == "avail_ns":
            arr[later] = g.t_ns[later] - rng.integers(0, g.step_ns, m)
        elif name == "valid":
            arr[later] = rng.random(m) < 0.7
        elif arr.dtype.kind == "f":
            arr[later] = arr[later] * rng.uniform(0.5, 1.5, arr[later].shape) + rng.normal(0, 0.01, arr[later].shape)
        elif arr.dtype.kind in "iu":
            arr[later] = arr[later] + rng.integers(0, 5, arr[later].shape)
    return g


@pytest.mark.parametrize("path", BOOK_FAMILIES)
@pytest.mark.parametrize("adversarial", [False, True])
def test_no_feature_reads_the_future(path, adversarial):
    """Changing any input after row t never changes a feature at or before t. A 2 s grid over 1,400 s fills
    every window (the longest reads 600 s), so the comparison covers defined values, not NaN."""
    f = random_frame(700, seed=2, adversarial=adversarial, step_ns=2_000_000_000)
    base = kernel(path)(f)
    if not adversarial:
        undefined = [name for name, v in base.items() if np.isnan(v[-50:]).all()]
        assert not undefined, f"never defined on a full-window frame: {undefined}"
    rng = np.random.default_rng(3)
    for t in (0, 57, 350, 698):
        out = kernel(path)(perturb_after(f, t, rng))
        for name in base:
            np.testing.assert_array_equal(out[name][: t + 1], base[name][: t + 1], err_msg=f"{name} at t={t}")


@pytest.mark.parametrize("path", BOOK_FAMILIES)
def test_incremental_and_chunked_equal_batch(path):
    """Row by row with carried state (the live form), and in uneven chunks (partitions), equal the batch
    values bit for bit."""
    f = random_frame(150, seed=4, adversarial=True)
    assert_chunked_equals_batch(importlib.import_module(path.rsplit(".", 1)[0]), f, [0, 1, 40, 41, 97, 150], rows=True)

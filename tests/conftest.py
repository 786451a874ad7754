import os

import pytest

# keep numba/BLAS from oversubscribing the 2-core machines
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("L2LAB_DATA", str(root))
    return root

"""Where the Feast repository is and where it keeps its files: everything under ``<data root>/feast/``.

The data root follows l2lab's rule: ``$L2LAB_DATA`` if set, else ``data/`` beside ``feature_repo/`` (the
repository's own ``data/``). No Feast import here: the ``l2lab`` command line loads this on every start.
"""

from __future__ import annotations

import os
from pathlib import Path

from l2lab.settings import DATA_ENV_VAR, REPO_ROOT

REPO_PATH = REPO_ROOT / "feature_repo"
FEAST_DIR = "feast"


def data_root_for(repo_path: str | os.PathLike | None = None) -> Path:
    """``$L2LAB_DATA`` if set, else ``<repo_path>/../data`` (``repo_path`` defaults to ``feature_repo/``)."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return (Path(repo_path or REPO_PATH).resolve().parent / "data").resolve()


def under_data_root(path: str, repo_path=None) -> Path:
    """``path`` if absolute, else ``path`` under the data root of ``repo_path``."""
    p = Path(path)
    return p if p.is_absolute() else data_root_for(repo_path) / p

"""Where the Feast repository keeps its files: everything under ``<data root>/feast/``.

The data root follows l2lab's rule: ``$L2LAB_DATA`` if set, else ``data/`` beside ``feature_repo/`` (the repository's
own ``data/``). Feast resolves a relative registry or SQLite path against the repo folder only, so
``feature_store.yaml`` names two thin subclasses of Feast's file registry store and SQLite online store that
resolve their relative ``path`` against the data root instead. A plain ``cd feature_repo && feast apply`` then
writes to the same files as ``l2lab feast apply`` and as a test with its own temporary data root.
"""

from __future__ import annotations

import os
from pathlib import Path

from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.infra.registry.file import FileRegistryStore
from feast.repo_config import RegistryConfig, RepoConfig
from pydantic import StrictStr

from l2lab.settings import DATA_ENV_VAR, REPO_ROOT

REPO_PATH = REPO_ROOT / "feature_repo"
FEAST_DIR = "feast"


def data_root_for(repo_path: str | os.PathLike | None = None) -> Path:
    """``$L2LAB_DATA`` if set, else ``<repo_path>/../data`` (``repo_path`` defaults to ``feature_repo/``)."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return (Path(repo_path or REPO_PATH).resolve().parent / "data").resolve()


def under_data_root(path: str, repo_path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else data_root_for(repo_path) / p


class DataRootRegistryStore(FileRegistryStore):
    """Feast's file registry; a relative ``path`` is relative to the l2lab data root, not the repo folder."""

    def __init__(self, registry_config: RegistryConfig, repo_path: Path):
        super().__init__(registry_config, repo_path)
        self._filepath = under_data_root(registry_config.path, repo_path)
        self._filepath.parent.mkdir(parents=True, exist_ok=True)


class DataRootSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: StrictStr = "l2lab.featurestore.paths.DataRootSqliteOnlineStore"  # type: ignore[assignment]
    path: StrictStr = f"{FEAST_DIR}/online.db"


class DataRootSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store; a relative ``path`` is relative to the l2lab data root."""

    @staticmethod
    def _get_db_path(config: RepoConfig) -> str:
        path = under_data_root(config.online_store.path, config.repo_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

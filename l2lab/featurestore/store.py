"""Open and apply l2lab's Feast repository for a given data root, in this process.

``feature_repo/feature_store.yaml`` is the one configuration; ``open_store(data_root)`` reads it the way Feast does
(environment variables expanded) and points the registry and the SQLite online store at absolute paths under
``<data root>/feast/``, so code and tests can serve any data root without touching the environment. The same
files are what ``cd feature_repo && L2LAB_DATA=<data root> feast ...`` uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig

from l2lab.featurestore import definitions
from l2lab.featurestore.paths import FEAST_DIR, REPO_PATH

YAML_NAME = "feature_store.yaml"


def repo_config(data_root: str | os.PathLike, folder: str | os.PathLike | None = None) -> RepoConfig:
    """The repository's configuration for ``data_root``: registry and online store files under
    ``<data_root>/feast/`` (or under ``folder``: a second, independent registry and online store on the same
    data, as tests and benchmarks use to compare stores)."""
    root = Path(data_root).resolve()
    base = Path(folder).resolve() if folder is not None else root
    raw = yaml.safe_load(os.path.expandvars((REPO_PATH / YAML_NAME).read_text()))
    for key in ("registry", "online_store"):
        section = raw[key] if isinstance(raw[key], dict) else {"path": raw[key]}
        if not Path(section["path"]).is_absolute():
            section["path"] = str(base / section["path"])
        raw[key] = section
    (base / FEAST_DIR).mkdir(parents=True, exist_ok=True)
    config = RepoConfig(**raw)
    config.repo_path = REPO_PATH
    return config


def open_store(data_root: str | os.PathLike, folder: str | os.PathLike | None = None) -> FeatureStore:
    """A ``FeatureStore`` on the repository's configuration with its files under ``<data_root>/feast/`` (or
    ``<folder>/feast/``, see ``repo_config``)."""
    return FeatureStore(repo_path=str(REPO_PATH), config=repo_config(data_root, folder))


def open_stock_store(data_root: str | os.PathLike, folder: str | os.PathLike) -> FeatureStore:
    """The same repository on Feast's own local provider and SQLite online store (registry and ``online.db`` in
    ``folder``; same offline store and data): the baseline l2lab's online store is tested and benchmarked against.
    Apply it with ``apply(data_root, store=...)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = repo_config(data_root, folder).model_dump(by_alias=True, exclude={"repo_path"})
    raw.update(provider="local", registry={"registry_type": "file", "path": str(folder / "registry.db")},
               online_store={"type": "sqlite", "path": str(folder / "online.db")})
    return FeatureStore(config=RepoConfig(repo_path=folder, **raw))


def apply(data_root: str | os.PathLike, store: FeatureStore | None = None,
          defs: definitions.Definitions | None = None) -> FeatureStore:
    """Register every generated definition (what ``feast apply`` does with ``feature_repo/repo.py``); ``defs``:
    ``definitions.build(data_root)`` if the caller has it already."""
    store = store or open_store(data_root)
    store.apply((defs or definitions.build(data_root)).objects())
    return store


def ensure_applied(data_root: str | os.PathLike, defs: definitions.Definitions | None = None) -> FeatureStore:
    """The store, applied first if its registry does not exist yet; refuses a registry whose generated sources
    were applied for another data root (they would read other files). ``defs`` as in ``apply``."""
    store = open_store(data_root)
    defs = defs or definitions.build(data_root)
    try:
        sources = store.list_data_sources()
    except FileNotFoundError:
        return apply(data_root, store, defs)
    if not sources:
        return apply(data_root, store, defs)
    want = str(Path(data_root).resolve())
    generated = {src.name for src in defs.sources.values()}
    for src in sources:
        path = getattr(src, "path", None)
        if src.name in generated and path and not path.startswith(want + os.sep):
            raise RuntimeError(f"the Feast registry under {want}/{FEAST_DIR} was applied for other data ({path}); "
                               f"run `l2lab --data-root {want} feast apply`")
    return store

"""Feast's file registry store, with a relative ``path`` resolved against the l2lab data root
(``l2lab.featurestore.paths``) instead of the repo folder.

Feast resolves a relative registry path against the repo folder only, and ``feature_store.yaml`` cannot say
"``$L2LAB_DATA``, else ``../data``". This thin subclass, named in ``feature_store.yaml``, makes a plain
``cd feature_repo && feast apply`` write to the same file as ``l2lab feast apply`` and as a test with its own
temporary data root (the online store, ``l2lab.featurestore.online_store``, resolves its path the same way).

The registry is also written atomically (temporary file + rename): Feast's own store truncates the file and writes
it in place, so a reader refreshing its registry while a materialization records its interval (a feature server,
a live scorer) could read an empty or partial registry ("Entity symbol does not exist").

Importing this module (Feast does, while it validates ``feature_store.yaml``, before it builds the registry) also
drops one warning Feast 0.67 logs on every store open: that ``serve_features_while_materializing`` "typically
has no effect" on a ``file`` registry. It does have one (``feast.utils`` serves a view in ``MATERIALIZING`` only
when the registry's flag is set, and the file ``Registry`` sets it from the config), and the yaml sets it on
purpose. Only that message is filtered; every other warning of ``feast.repo_config`` still shows.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

from feast.infra.registry.file import FileRegistryStore
from feast.repo_config import RegistryConfig

from l2lab import atomic
from l2lab.featurestore.paths import under_data_root

FILE_REGISTRY_FLAG_WARNING = "`serve_features_while_materializing` is enabled but `registry_type` is 'file'"


def _not_the_file_registry_flag_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(FILE_REGISTRY_FLAG_WARNING)


logging.getLogger("feast.repo_config").addFilter(_not_the_file_registry_flag_warning)


class DataRootRegistryStore(FileRegistryStore):
    """Feast's file registry; a relative ``path`` is relative to the l2lab data root, not the repo folder."""

    def __init__(self, registry_config: RegistryConfig, repo_path: Path):
        super().__init__(registry_config, repo_path)
        self._filepath = under_data_root(registry_config.path, repo_path)
        self._filepath.parent.mkdir(parents=True, exist_ok=True)

    def _write_registry(self, registry_proto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(datetime.now(timezone.utc))
        atomic.write_bytes(self._filepath, registry_proto.SerializeToString())

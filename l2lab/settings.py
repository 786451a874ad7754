"""Settings shared by every l2lab command.

One data root holds every layer (raw captures, bronze, silver, gold, the DuckDB warehouse). It resolves, first
match wins: the ``--data-root`` option, the ``L2LAB_DATA`` environment variable, then ``data/`` in the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV_VAR = "L2LAB_DATA"


def resolve_data_root(cli_value: str | os.PathLike | None = None) -> Path:
    """The data root, by precedence: explicit value, ``$L2LAB_DATA``, ``<repo>/data``."""
    if cli_value:
        return Path(cli_value).expanduser().resolve()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT / "data"


@dataclass(frozen=True)
class Settings:
    data_root: Path

    @classmethod
    def load(cls, data_root: str | os.PathLike | None = None) -> "Settings":
        return cls(data_root=resolve_data_root(data_root))

    @property
    def raw_dir(self) -> Path:
        return self.data_root / "raw"

    @property
    def sim_dir(self) -> Path:
        return self.data_root / "sim"

    def layer_dir(self, layer: str) -> Path:
        if layer not in ("bronze", "silver", "gold"):
            raise ValueError(f"unknown layer {layer!r}: expected bronze, silver or gold")
        return self.data_root / layer

    @property
    def warehouse_path(self) -> Path:
        return self.data_root / "warehouse.duckdb"

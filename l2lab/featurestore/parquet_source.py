"""A Feast ``FileSource`` over (hive-partitioned) Parquet as a DuckDB relation.

The source path may be a single file, a folder (every ``*.parquet`` below it) or a glob; relative paths are
relative to the feature repo, as in Feast (``FileSource.get_uri_for_file_path``). Folders are read with
``hive_partitioning=true, hive_types_autocast=false, union_by_name=true``, exactly like l2lab's warehouse views:
``exchange=…/symbol=…/date=…/hour=…`` become VARCHAR columns, so ``symbol`` comes from the path.

Time columns may be any DuckDB timestamp type (naive ones are UTC, as in Feast) or an integer count of
nanoseconds since the epoch (l2lab's ``ts_ns``); ``ns_expr`` turns either into int64 ns.
"""

from __future__ import annotations

import glob as globmod
from pathlib import Path

import duckdb
import pyarrow as pa
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores.file_source import FileSource

_INTEGER_TYPES = {"BIGINT", "INTEGER", "HUGEINT", "UBIGINT"}


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


class ParquetSource:
    """Where a FileSource's rows live and what columns they have."""

    def __init__(self, data_source: DataSource, repo_path: str | Path | None):
        if not isinstance(data_source, FileSource):
            raise TypeError(f"source '{data_source.name}' is a {type(data_source).__name__}; l2lab's offline store "
                            "reads FileSource Parquet only")
        if data_source.file_format is not None and not isinstance(data_source.file_format, ParquetFormat):
            raise TypeError(f"source '{data_source.name}': file format {type(data_source.file_format).__name__} "
                            "is not supported, only Parquet")
        self.name = data_source.name
        self.location = FileSource.get_uri_for_file_path(repo_path, data_source.path)
        if "://" in self.location:
            raise ValueError(f"source '{self.name}': remote path {self.location} is not supported, only local files")
        p = Path(self.location)
        self.pattern = str(p / "**" / "*.parquet") if p.is_dir() else self.location
        self._types: dict[str, str] | None = None

    def sql(self) -> str:
        """The FROM-clause expression that reads every row of the source."""
        return (f"read_parquet({literal(self.pattern)}, hive_partitioning=true, hive_types_autocast=false, "
                f"union_by_name=true)")

    def has_files(self) -> bool:
        return bool(globmod.glob(self.pattern, recursive=True))

    def types(self, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Column name -> DuckDB type name (file columns and hive partition columns)."""
        if self._types is None:
            if not self.has_files():
                raise FileNotFoundError(f"source '{self.name}': no Parquet files match {self.pattern}")
            self._types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {self.sql()}").fetchall()}
        return self._types

    def arrow_schema(self, con: duckdb.DuckDBPyConnection) -> pa.Schema:
        return con.execute(f"SELECT * FROM {self.sql()} LIMIT 0").to_arrow_table().schema

    def require(self, con: duckdb.DuckDBPyConnection, columns: dict[str, str]) -> None:
        """Raise a clear error if a needed column (name -> its role, for the message) is missing."""
        have = self.types(con)
        missing = [f"{c} ({role})" for c, role in columns.items() if c not in have]
        if missing:
            raise ValueError(f"source '{self.name}' ({self.pattern}) has no column {', '.join(missing)}; "
                             f"columns: {', '.join(have)}")

    def ns_expr(self, con: duckdb.DuckDBPyConnection, column: str) -> str:
        """SQL for ``column`` as int64 nanoseconds since the epoch (UTC)."""
        kind = self.types(con)[column]
        if kind in _INTEGER_TYPES:
            return f"CAST({quote(column)} AS BIGINT)"
        if kind.startswith("TIMESTAMP"):
            return f"epoch_ns({quote(column)})"
        if kind == "DATE":
            return f"epoch_ns(CAST({quote(column)} AS TIMESTAMP))"
        raise TypeError(f"source '{self.name}': time column '{column}' has type {kind}; expected a timestamp or "
                        "int64 nanoseconds since the epoch")

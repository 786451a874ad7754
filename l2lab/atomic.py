"""Atomic file writes: write to a temporary file in the target folder, fsync, then rename over the target.

A reader sees either the old file or the complete new one, never a torn write, and a crash leaves at most a
``.tmp-*`` file behind (ignored by every reader).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed to ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode a plain open() would
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def write_parquet(target: str | os.PathLike, table, **options) -> None:
    """Write a pyarrow Table (or pandas DataFrame) atomically, zstd-compressed unless ``options`` (more
    ``pyarrow.parquet.write_table`` arguments) say otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **{"compression": "zstd", **options})


def _jsonable(obj: Any) -> Any:
    import numpy as np
    from decimal import Decimal

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Decimal, Path)):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")

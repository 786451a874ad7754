"""What a research result was computed from, as short hashes, so a resumed run or a cached training set is
reused only while its inputs are unchanged.

* :func:`code_fingerprint`: the bytes of the code the notebooks run (the packages ``research`` without its
  notebooks, ``kernels``, ``l2lab``, ``collectors``, ``simulator`` and ``feature_repo``, ``*.py`` and
  ``*.yaml``); each notebook's own source is hashed separately (``research.runner.source_hash``), so editing one
  notebook re-runs only it and the ones after it. Read on every call (~2 MB): an interactive kernel that
  reloads edited modules gets a new fingerprint too.
* :func:`data_fingerprint`: every Parquet file of the data root's ``bronze``, ``silver`` and ``gold`` layers
  (notebook 01 and the backtest read bronze, the training sets silver, the reports gold) for one exchange, and
  the research sessions' JSON, by (path, size, modification time): rewriting a file, even with the same values,
  counts as a change. Statting costs about 5 us a file, not a read of the data.
* :func:`files_fingerprint`: the contents of files a run's parameters name (e.g. a backtest configuration).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_PROJECT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("research", "kernels", "l2lab", "collectors", "simulator", "feature_repo")
CODE_SUFFIXES = (".py", ".yaml")
DATA_LAYERS = ("bronze", "silver", "gold")


def code_fingerprint() -> str:
    """Hash of the code's ``*.py`` and ``*.yaml`` files, notebooks excluded."""
    h = hashlib.sha256()
    for package in CODE_PACKAGES:
        for f in sorted(p for p in (_PROJECT / package).rglob("*") if p.suffix in CODE_SUFFIXES):
            rel = f.relative_to(_PROJECT)
            if "notebooks" in rel.parts or "__pycache__" in rel.parts or not f.is_file():
                continue
            h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def data_fingerprint(data_root: str | Path, exchange: str | None = None) -> str:
    """Hash of (relative path, size, mtime) of the data root's bronze, silver and gold Parquet files of
    ``exchange`` (every exchange if None) and of the session files."""
    root = Path(data_root)
    h = hashlib.sha256()
    pattern = f"*/exchange={exchange}/**/*.parquet" if exchange else "**/*.parquet"
    files = [f for layer in DATA_LAYERS for f in (root / layer).glob(pattern)]
    files += list((root / "sim").rglob("session.json")) + list((root / "sim").rglob("truth.json"))
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def files_fingerprint(paths) -> str:
    """Hash of the contents of the given files (those that exist), in the given order."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        if p.is_file():
            h.update(str(p).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def inputs_fingerprint(data_root: str | Path, exchange: str | None = None, files=()) -> str:
    """Code, data and named files together: what a notebook's result depends on besides its parameters and
    source."""
    return f"{code_fingerprint()}-{data_fingerprint(data_root, exchange)}-{files_fingerprint(files)}"

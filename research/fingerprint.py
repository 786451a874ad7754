"""What a research result was computed from, as short hashes, so a resumed run or a cached training set is
reused only while its inputs are unchanged.

* :func:`code_fingerprint`: the bytes of the library code the notebooks run (the packages ``research`` without
  its notebooks, ``kernels``, ``l2lab`` and ``feature_repo``); each notebook's own source is hashed separately
  (``research.runner.source_hash``), so editing one notebook re-runs only it and the ones after it.
* :func:`data_fingerprint`: every Parquet file of the data root's ``silver`` and ``gold`` layers (what the
  training sets and the notebooks read, rebuilt whenever bronze changes) and the research sessions' JSON, by
  (path, size, modification time): rebuilding the features, even to the same values, counts as a change.
  Statting costs about 5 us a file, not a read of the data.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

_PROJECT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("research", "kernels", "l2lab", "feature_repo")
DATA_LAYERS = ("silver", "gold")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the library code's ``*.py`` files (computed once per process)."""
    h = hashlib.sha256()
    for package in CODE_PACKAGES:
        for f in sorted((_PROJECT / package).rglob("*.py")):
            if "notebooks" in f.relative_to(_PROJECT).parts or "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(_PROJECT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def data_fingerprint(data_root: str | Path) -> str:
    """Hash of (relative path, size, mtime) of the data root's silver and gold Parquet files and session files."""
    root = Path(data_root)
    h = hashlib.sha256()
    files = [f for layer in DATA_LAYERS for f in (root / layer).rglob("*.parquet")]
    files += list((root / "sim").rglob("session.json")) + list((root / "sim").rglob("truth.json"))
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def inputs_fingerprint(data_root: str | Path) -> str:
    """Code and data together: what a notebook's result depends on besides its parameters and source."""
    return f"{code_fingerprint()}-{data_fingerprint(data_root)}"

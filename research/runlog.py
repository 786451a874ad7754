"""What each notebook reports: headline metrics into ``<run_dir>/metrics.json`` and plots into
``<run_dir>/plots/``.

``metrics.json`` is one object keyed by notebook section, e.g. ``{"04_modelling": {"auc_oos": 0.55, ...}}``;
``record`` merges (a re-run of a notebook replaces its own section only). Values must be JSON numbers, strings,
booleans, lists or dicts (numpy scalars are converted); NaN is written as null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from l2lab import atomic


def _clean(v):
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"runlog: {type(v).__name__} is not a JSON metric value")


def read_metrics(run_dir) -> dict:
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record(run_dir, section: str, **metrics) -> dict:
    """Merge ``metrics`` into ``section`` of ``<run_dir>/metrics.json`` (atomic); returns the whole file."""
    if not run_dir:
        return {section: _clean(metrics)}  # interactive use without a run folder: nothing to write
    doc = read_metrics(run_dir)
    doc.setdefault(section, {}).update(_clean(metrics))
    atomic.write_json(Path(run_dir) / "metrics.json", doc)
    return doc


def save_plot(run_dir, fig, name: str) -> Path | None:
    """``<run_dir>/plots/<name>.png`` (atomic); the figure is also left for the notebook to display."""
    if not run_dir:
        return None
    path = Path(run_dir) / "plots" / f"{name}.png"
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    return path

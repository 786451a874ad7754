"""Where the scorer gets the model's feature vector from.

* :class:`FeastOnline` (default): every new row is written to the Feast online store and the model's vector is
  read back with a Feast online lookup (``online_matrix``: the SDK; or the HTTP feature server with
  ``http=True``). The views holding the model's features are written before the lookup (on the signal's path);
  the others right after the signal is out, so the online store holds every feature of the row for other
  readers. ``write="direct"`` (default) hands the rows to Feast's provider (``online.write_rows``: what
  ``write_to_online_store`` ends in, without a DataFrame); ``write="push"`` goes through each view's push source
  with a DataFrame (``online.push``: Feast's public push path, a few ms more per view).
* :class:`KernelDirect`: the vector straight from the engine's row (no Feast): the baseline the benchmark
  compares with, and what ``l2lab live --no-feast`` runs.
"""

from __future__ import annotations

import numpy as np

from kernels import catalog


def _family_of() -> dict[str, str]:
    return {s.name: s.family for s in catalog.features() if s.table in ("book", "cross_asset")}


class KernelDirect:
    name = "kernel"

    def push_needed(self, rows, features) -> None:
        pass

    def push_rest(self, rows) -> None:
        pass

    def fetch(self, rows, features: list[str]) -> np.ndarray:
        return np.array([[r.values.get(f, np.nan) for f in features] for r in rows], dtype=np.float64)

    def close(self) -> None:
        pass


class FeastOnline:
    """``data_root``: the data root whose Feast repository (``<data>/feast/``) is used; applied if needed."""

    name = "feast"

    def __init__(self, data_root, grid: str, *, http: bool = False, write: str = "direct"):
        from l2lab.featurestore.store import ensure_applied

        if write not in ("push", "direct"):
            raise ValueError(f"write must be push or direct, got {write!r}")
        self.write = write
        self.name = "feast" if write == "direct" else "feast-push"
        self.grid = grid
        self.store = ensure_applied(data_root)
        self.server = None
        if http:
            from l2lab.featurestore.online import FeatureServer

            self.server = FeatureServer(data_root)
            self.server.start()
        self._family = _family_of()
        self._by_family: dict[str, list[str]] = {}
        for name, fam in self._family.items():
            self._by_family.setdefault(fam, []).append(name)
        self._pushed: set[int] = set()

    def _view(self, family: str) -> str:
        from l2lab.featurestore.definitions import view_name

        return view_name(family, self.grid)

    def _push(self, rows, families) -> None:
        from l2lab.featurestore.online import push, view_features, write_rows

        for fam in families:
            view = self._view(fam)
            names = view_features(self.store, view)
            use = [r for r in rows if fam != "cross_asset" or r.xa_avail_ns is not None]
            if not use:
                continue
            ts = [r.t_ns for r in use]
            columns = {n: [r.values.get(n, np.nan) for r in use] for n in names}
            if self.write == "direct":
                write_rows(self.store, view, [r.symbol for r in use], ts, columns)
            else:
                import pandas as pd

                push(self.store, view, pd.DataFrame({"symbol": [r.symbol for r in use],
                                                     "ts_ns": np.array(ts, np.int64),
                                                     **{n: np.array(v, np.float64) for n, v in columns.items()}}))

    def push_needed(self, rows, features) -> None:
        fams = list(dict.fromkeys(self._family[f] for f in features))
        self._push(rows, fams)
        self._pushed = set(fams)

    def push_rest(self, rows) -> None:
        """The views not pushed before the lookup, for the families the engine computed."""
        if not rows:
            return
        have = rows[0].values
        rest = [f for f, names in self._by_family.items() if f not in self._pushed and names[0] in have]
        self._push(rows, rest)

    def fetch(self, rows, features: list[str]) -> np.ndarray:
        symbols = [r.symbol for r in rows]
        if self.server is not None:
            return self.server.online_matrix(symbols, features, self.grid)
        from l2lab.featurestore.online import online_matrix

        return online_matrix(self.store, symbols, features, self.grid)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

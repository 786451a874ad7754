"""Per-event stage timings of the live path and their percentiles.

Stages, in order, for the received frame that made a grid row final (``event -> signal``): ``queue`` (normalized
-> taken by the consumer), ``normalize`` (received -> normalized), ``book``, ``features``, ``push`` (Feast push),
``fetch`` (Feast online lookup), ``score`` (model), ``emit`` (signal written); ``event_to_signal`` is the sum from
receipt to emit. Frames that finalize no row only record ``normalize``, ``queue`` and ``book``. Durations are
``time.perf_counter_ns`` differences (one process, monotonic).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from l2lab import atomic

STAGES = ("normalize", "queue", "book", "features", "push", "fetch", "score", "emit", "event_to_signal")


class LatencyRecorder:
    def __init__(self):
        self._ns: dict[str, list[int]] = defaultdict(list)

    def add(self, stage: str, ns: int) -> None:
        self._ns[stage].append(int(ns))

    def values_ms(self, stage: str) -> np.ndarray:
        return np.asarray(self._ns.get(stage, ()), dtype=np.float64) / 1e6

    def summary(self) -> dict[str, dict]:
        """stage -> {n, p50_ms, p99_ms, max_ms, mean_ms} (percentiles by linear interpolation)."""
        out = {}
        for stage in [*STAGES, *sorted(set(self._ns) - set(STAGES))]:
            v = self.values_ms(stage)
            if len(v):
                out[stage] = {"n": int(len(v)), "p50_ms": round(float(np.percentile(v, 50)), 4),
                              "p99_ms": round(float(np.percentile(v, 99)), 4), "max_ms": round(float(v.max()), 4),
                              "mean_ms": round(float(v.mean()), 4)}
        return out

    def lines(self) -> list[str]:
        return [f"{stage:<16} n {s['n']:>7,}  p50 {s['p50_ms']:>9.3f} ms  p99 {s['p99_ms']:>9.3f} ms  "
                f"max {s['max_ms']:>9.3f} ms" for stage, s in self.summary().items()]

    def write(self, path, **extra) -> None:
        atomic.write_json(path, {"stages": self.summary(), **extra})

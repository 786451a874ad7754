"""Where signals go: JSON Lines on stdout, the structured log, and Parquet part files.

A signal record: ``symbol``, ``ts_ns`` (grid time of the feature row), ``ts_avail_ns`` (receive time of its last
input), ``ts_signal_ns`` (receive clock when the signal was emitted), ``score``, ``position`` (-1/0/+1; 0 while
the kill-switch is tripped), ``killed``, ``model_version``, ``alarm`` (a CUSUM alarm on this row, or null),
``latency_ms`` (receipt of the frame that made the row final -> emit; null for rows a timer finalized).
Parquet: ``<out>/signals/part-<n>.parquet``, one file per flush (atomic), so a crash loses at most one interval.
"""

from __future__ import annotations

import sys
import time

import orjson
import pyarrow as pa

from l2lab import atomic

SIGNAL_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("ts_ns", pa.int64()), ("ts_avail_ns", pa.int64()), ("ts_signal_ns", pa.int64()),
    ("score", pa.float64()), ("position", pa.int8()), ("killed", pa.bool_()), ("model_version", pa.int32()),
    ("alarm", pa.string()), ("latency_ms", pa.float64()),
])


class SignalSink:
    def __init__(self, out_dir, jlog=None, stdout: bool = True, flush_every_s: float = 5.0):
        self.dir = out_dir / "signals"
        self.jlog = jlog
        self.stdout = stdout
        self.flush_every_s = flush_every_s
        self._buf: list[dict] = []
        self._parts = 0
        self._last_flush = time.monotonic()
        self.count = 0

    def emit(self, rec: dict) -> None:
        self.count += 1
        self._buf.append(rec)
        if self.stdout:
            sys.stdout.buffer.write(orjson.dumps(rec) + b"\n")
            sys.stdout.flush()
        if self.jlog is not None:
            self.jlog.write("signal", **rec)

    def tick(self) -> None:
        """Write the buffered signals to Parquet if ``flush_every_s`` has passed; called after a round of signals
        is out, so the file write (fsync) is never inside a signal's latency."""
        if time.monotonic() - self._last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buf:
            return
        cols = {f.name: [r.get(f.name) for r in self._buf] for f in SIGNAL_SCHEMA}
        self._parts += 1
        atomic.write_parquet(self.dir / f"part-{self._parts:06d}.parquet", pa.table(cols, schema=SIGNAL_SCHEMA))
        self._buf = []

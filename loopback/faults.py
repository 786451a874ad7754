"""Seedable fault injection on the WebSocket feed, and the machine-readable log of every injected fault.

Faults are decided per connection, per outgoing data frame, by a ``random.Random`` seeded from
``FaultConfig.seed`` and the connection id, so a run with the same seed, the same clients and the same feed
injects the same faults. Kinds (at most one per frame; checked in this order):

``disconnect``  the server closes the connection (close code 1011) instead of sending the frame.
``gap``         the connection's sequence counter skips ``1..gap_max`` numbers; no data is lost.
``drop``        the frame is not sent but its sequence number is used up (the client sees a gap and has lost data).
``malformed``   the first half of the frame's text is sent (invalid JSON); its sequence number is used up.
``duplicate``   the frame is sent twice with the same sequence number.
``reorder``     the frame is swapped with the next queued frame (sent n+1, then n); only when one is queued.
``error``       an error frame ``{"type":"error","message":...}`` is sent before the frame.

``slow_consumer`` is not random: it is logged when a client's outgoing queue overflows (it does not read), and the
server then closes the connection (close code 1008, reason ``ErrSlowConsume``), as a real venue does.

Each log record is one JSON line: ``{"wall_ns", "venue_ts_ns", "conn", "kind", "seq", "channel", "products",
...}`` where ``seq`` lists the sequence numbers affected (for ``gap``: the skipped numbers; for ``reorder``:
``[n, n+1]`` in original order; for ``disconnect`` and ``slow_consumer``: ``[]`` and ``last_seq`` holds the
last number sent).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

FAULT_KINDS = ("disconnect", "gap", "drop", "malformed", "duplicate", "reorder", "error")
ALL_KINDS = FAULT_KINDS + ("slow_consumer",)


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities (per eligible frame) and limits of injected faults. All zero: a clean venue.

    ``channels``: subscription channels whose frames are eligible (snapshots are never touched).
    ``warmup_frames``: eligible frames each connection gets clean before any fault.
    ``max_per_connection``: cap per kind per connection (``None``: unlimited).
    """

    seed: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    gap: float = 0.0
    disconnect: float = 0.0
    malformed: float = 0.0
    error: float = 0.0
    gap_max: int = 3
    channels: tuple[str, ...] = ("level2", "market_trades")
    warmup_frames: int = 0
    max_per_connection: int | None = None
    error_message: str = "internal server error"

    def __post_init__(self):
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault probability {kind}={p} is not in [0, 1]")
        if self.gap_max < 1:
            raise ValueError(f"gap_max must be >= 1, got {self.gap_max}")

    @property
    def active(self) -> bool:
        return any(getattr(self, k) > 0 for k in FAULT_KINDS)

    @classmethod
    def from_spec(cls, spec: str | None, **overrides) -> "FaultConfig":
        """Parse ``"drop=0.01,gap=0.001,seed=3,warmup_frames=10"`` (the CLI's ``--faults`` syntax)."""
        values: dict = {}
        names = {f.name: f for f in dataclasses.fields(cls)}
        for item in filter(None, (s.strip() for s in (spec or "").split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ValueError(f"bad fault setting {item!r}: expected NAME=VALUE with NAME in {', '.join(names)}")
            if key == "channels":
                values[key] = tuple(c for c in raw.split("+") if c)
            elif key in ("seed", "gap_max", "warmup_frames", "max_per_connection"):
                values[key] = int(raw)
            elif key == "error_message":
                values[key] = raw
            else:
                values[key] = float(raw)
        values.update(overrides)
        return cls(**values)


@dataclass
class FaultLog:
    """Fault records in memory and, if ``path`` is given, appended to a JSONL file (flushed per record)."""

    path: Path | None = None
    records: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._fh = None
        if self.path is not None:
            self.path = Path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")

    def write(self, kind: str, conn: int, seq: list[int], *, venue_ts_ns: int = 0, channel: str | None = None,
              products=None, **extra) -> dict:
        record = {"wall_ns": time.time_ns(), "venue_ts_ns": int(venue_ts_ns), "conn": conn, "kind": kind,
                  "seq": [int(s) for s in seq], "channel": channel,
                  "products": list(products) if products else None, **extra}
        with self._lock:
            self.records.append(record)
            if self._fh is not None:
                self._fh.write(orjson.dumps(record) + b"\n")
                self._fh.flush()
        return record

    def of_kind(self, kind: str) -> list[dict]:
        return [r for r in self.records if r["kind"] == kind]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class FaultInjector:
    """Per-connection fault decisions. ``decide(frame)`` returns a fault kind or ``None``."""

    def __init__(self, config: FaultConfig, conn_id: int):
        self.config = config
        self.rng = random.Random(config.seed * 1_000_003 + conn_id)
        self.eligible_seen = 0
        self.counts = {k: 0 for k in FAULT_KINDS}

    def eligible(self, frame) -> bool:
        return (frame.kind == "data" or frame.kind == "raw") and frame.channel in self.config.channels

    def decide(self, frame, *, next_available: bool) -> str | None:
        cfg = self.config
        if not cfg.active or not self.eligible(frame):
            return None
        self.eligible_seen += 1
        if self.eligible_seen <= cfg.warmup_frames:
            return None
        for kind in FAULT_KINDS:
            p = getattr(cfg, kind)
            if p <= 0.0:
                continue
            if kind == "gap" and not frame.sequenced:
                continue  # a replayed frame carries its recorded number: nothing to skip
            if kind == "reorder" and not next_available:
                continue
            if cfg.max_per_connection is not None and self.counts[kind] >= cfg.max_per_connection:
                continue
            if self.rng.random() < p:
                self.counts[kind] += 1
                return kind
        return None

    def gap_size(self) -> int:
        return self.rng.randint(1, self.config.gap_max)

"""The venue clock: how venue (simulated or recorded) time maps to wall time, and the loop that follows it.

Three modes:

* ``speed > 0`` finite: venue time runs ``speed`` times as fast as wall time from ``(venue_start_ns,
  wall_start_ns)``: ``venue = venue_start + (wall - wall_start) * speed``. ``speed=1`` is real time.
* ``speed = inf``: as fast as possible; venue time is whatever the feed has produced so far (clients set the
  pace through back-pressure: the feed waits while a client queue is half full).
* ``speed = None`` (manual): venue time only moves when the owner calls ``advance_to`` (tests).

:meth:`Clock.to_dict` is what ``GET /l2lab/clock`` serves, so a collector at N x can map its receive times back
to venue time.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

DEFAULT_TICK_S = 0.005  # wall time between feed steps when paced
MAX_SPEED_STEP_NS = 100_000_000  # venue time per feed step at speed=inf


@dataclass
class Clock:
    venue_start_ns: int
    speed: float | None = 1.0
    wall_start_ns: int = field(default_factory=time.time_ns)
    mode: str = "sim"  # sim | replay
    _mono_start_ns: int = field(default_factory=time.monotonic_ns, repr=False)
    _venue_now_ns: int | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.speed is not None and not (self.speed > 0):
            raise ValueError(f"speed must be > 0 (or inf, or None for manual), got {self.speed}")

    @property
    def paced(self) -> bool:
        return self.speed is not None and math.isfinite(self.speed)

    @property
    def manual(self) -> bool:
        return self.speed is None

    def restart(self, venue_start_ns: int | None = None) -> None:
        """Re-anchor the mapping at the current wall time (e.g. when a replay starts playing)."""
        if venue_start_ns is not None:
            self.venue_start_ns = int(venue_start_ns)
        self.wall_start_ns = time.time_ns()
        self._mono_start_ns = time.monotonic_ns()
        self._venue_now_ns = None

    def venue_now(self) -> int:
        """Venue time now: from the wall clock when paced, else the latest time the feed reached."""
        if self.paced:
            elapsed = time.monotonic_ns() - self._mono_start_ns
            return self.venue_start_ns + int(elapsed * self.speed)
        return self.venue_start_ns if self._venue_now_ns is None else self._venue_now_ns

    def set_venue_now(self, venue_ns: int) -> None:
        """Used by the feed in manual and as-fast-as-possible modes."""
        self._venue_now_ns = int(venue_ns)

    def wall_at(self, venue_ns: int) -> float:
        """Monotonic time (s) at which venue time ``venue_ns`` is due (paced mode only)."""
        if not self.paced:
            raise RuntimeError("wall_at is only defined for a finite speed")
        return (self._mono_start_ns + (venue_ns - self.venue_start_ns) / self.speed) / 1e9

    def to_dict(self) -> dict:
        speed = self.speed
        return {
            "mode": self.mode,
            "pacing": "manual" if speed is None else ("max" if math.isinf(speed) else "paced"),
            "speed": None if speed is None or math.isinf(speed) else speed,
            "venue_start_ns": self.venue_start_ns,
            "wall_start_ns": self.wall_start_ns,
            "venue_now_ns": self.venue_now(),
            "wall_now_ns": time.time_ns(),
            "formula": "venue_ns = venue_start_ns + (wall_ns - wall_start_ns) * speed" if self.paced
            else "venue time is set by the feed; see venue_now_ns",
        }


async def run_paced(feed, clock: Clock, tick_s: float = DEFAULT_TICK_S, until_ns: int | None = None) -> None:
    """Drive ``feed.advance_to`` by the clock until cancelled (or until ``until_ns`` venue time)."""
    while until_ns is None or feed.now_ns < until_ns:
        if clock.paced:
            target = clock.venue_now()
            if target > feed.now_ns:
                await feed.advance_to(target if until_ns is None else min(target, until_ns))
            await asyncio.sleep(tick_s)
        else:  # as fast as possible: fixed venue steps, yielding to the writers in between
            target = feed.now_ns + MAX_SPEED_STEP_NS
            if until_ns is not None:
                target = min(target, until_ns)
            await feed.advance_to(target)
            clock.set_venue_now(feed.now_ns)
            await asyncio.sleep(0)

"""Latency model: which recorded book an order meets.

Bronze stamps every row with our receive time ``ts_recv_ns`` = venue time + market-data latency ``md_ns``. An
order decided at local time t reaches the venue at venue time t + ``order_ns``; the venue's book then holds every
event with venue time <= t + order_ns, i.e. every row we recorded at or before

    arrival (recorded clock) = t + order_ns + md_ns.

So market-data latency delays what the strategy sees (its decision book is the recorded book at t, already md_ns
old) and an order always meets a later book than the one it was decided on. A fill at venue time F is known to
the strategy at F + md_ns, which is the fill row's own receive time: fills are stamped with it.
"""

from __future__ import annotations

from research.backtest.config import LatencyConfig


def arrival_ns(decision_ns: int, lat: LatencyConfig) -> int:
    """Recorded-clock time at which an order decided at local time ``decision_ns`` (the recorded clock is our
    local clock) meets the venue's book."""
    return int(decision_ns) + int(lat.order_ns) + int(lat.md_ns)

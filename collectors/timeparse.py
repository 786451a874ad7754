"""RFC 3339 UTC timestamps with up to nanosecond fractions -> int64 nanoseconds, exactly and fast."""

from __future__ import annotations

import calendar
import numbers

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_cache_key = None
_cache_val = 0


def rfc3339_to_ns(text: str) -> int:
    """``2023-02-09T20:32:50.714964855Z`` -> ns since the epoch. Accepts ``Z`` or ``+00:00``; no other offsets.
    Raises ValueError on anything else, including times an int64 of ns cannot hold."""
    global _cache_key, _cache_val
    if len(text) < 20 or text[10] != "T":
        raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    head = text[:19]
    rest = text[19:]
    if rest.endswith("Z"):
        rest = rest[:-1]
    elif rest.endswith("+00:00"):
        rest = rest[:-6]
    else:
        raise ValueError(f"not a UTC RFC 3339 time: {text!r}")
    if head != _cache_key:
        try:
            y, mo, d = int(head[0:4]), int(head[5:7]), int(head[8:10])
            h, mi, s = int(head[11:13]), int(head[14:16]), int(head[17:19])
        except ValueError:
            raise ValueError(f"not an RFC 3339 UTC time: {text!r}") from None
        if head[4] != "-" or head[7] != "-" or head[13] != ":" or head[16] != ":":
            raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
        _cache_val = calendar.timegm((y, mo, d, h, mi, s)) * 1_000_000_000
        _cache_key = head
    if not rest:
        ns = _cache_val
    elif rest[0] != "." or not rest[1:].isdigit() or len(rest) > 10:
        raise ValueError(f"bad fraction in RFC 3339 time: {text!r}")
    else:
        ns = _cache_val + int(rest[1:].ljust(9, "0"))
    if not INT64_MIN <= ns <= INT64_MAX:
        raise ValueError(f"RFC 3339 time out of the int64 ns range (years 1678-2262): {text!r}")
    return ns


def to_utc_ns(value) -> int | None:
    """A time given as int ns, ISO string, datetime or pandas Timestamp -> int64 ns UTC (naive times are UTC);
    None or an empty string -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, numbers.Integral):  # int and numpy integers
        return int(value)
    import pandas as pd

    ts = pd.Timestamp(value)
    return int((ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).value)

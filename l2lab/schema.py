"""The normalized event layout shared by collectors, kernels and tests: fields, dtypes and flag meanings.

Exact numbers
    Prices and sizes are stored as int64 fixed-point mantissas with a per-symbol decimal exponent:
    ``value = mantissa * 10**-exp`` (``price_exp`` / ``size_exp``, e.g. BTC-USD 2 and 8). A venue quotes on a
    decimal grid (tick 0.01, size increment 1e-8), so every quoted number is an exact integer mantissa: no
    float rounding can make two equal prices differ or cross a book (cryptofeed #232/#762), integer keys are
    what the numba book ladders index by, and int64 covers 9.2e18 mantissa units (BTC sizes to 9.2e10 BTC at
    1e-8). The exponents live in the product table and in each Parquet file's metadata; float64 copies are
    derived columns for SQL convenience only.

Times
    int64 UTC nanoseconds. ``ts_recv_ns`` is when the frame was received (the availability time of anything
    computed from it); ``ts_exch_ns`` is the venue's own event time.

L2 stream
    One row per level change, in receive order. A snapshot is a run of ``L2_SNAPSHOT`` rows whose first row
    carries ``FLAG_BOOK_RESET`` (the book is cleared before it is applied). ``FLAG_FRAME_END`` marks the last row
    of a venue frame: the book is consistent only after it. ``L2_GAP`` rows (no price) mark lost data (sequence
    gap, disconnect, staleness, and the start and end of every recording): the book is invalid from there until
    the next snapshot completes.
"""

from __future__ import annotations

import numpy as np

SIDE_BID = 0  # L2: bid side. Trades: the taker bought (aggressor lifted an ask)
SIDE_ASK = 1  # L2: ask ("offer") side. Trades: the taker sold

L2_SNAPSHOT = 0  # a level of a snapshot
L2_UPDATE = 1  # level set to a new size > 0
L2_DELETE = 2  # level removed (venue sent quantity 0)
L2_GAP = 3  # data were lost here; price/size are 0

FLAG_BOOK_RESET = 1  # first row of a snapshot: clear the book before applying this row
FLAG_FRAME_END = 2  # last row of a venue frame: the book is consistent after applying this row
FLAG_DUPLICATE = 4  # the collector saw this frame twice (kept for audit; kernels skip it)

L2_EVENT_DTYPE = np.dtype(
    [
        ("ts_recv_ns", "<i8"),
        ("ts_exch_ns", "<i8"),
        ("seq", "<i8"),  # venue frame sequence number (per connection for Coinbase), -1 if none
        ("kind", "i1"),  # L2_*
        ("side", "i1"),  # SIDE_*
        ("price", "<i8"),  # mantissa, exponent price_exp
        ("size", "<i8"),  # mantissa, exponent size_exp; new total size at the level (0 for deletes)
        ("flags", "u1"),  # FLAG_*
    ]
)

TRADE_DTYPE = np.dtype(
    [
        ("ts_recv_ns", "<i8"),
        ("ts_exch_ns", "<i8"),
        ("seq", "<i8"),
        ("trade_id", "<i8"),  # venue trade id (numeric on Coinbase), increasing per symbol
        ("side", "i1"),  # taker side, SIDE_*
        ("price", "<i8"),
        ("size", "<i8"),
    ]
)

GAP_SEQUENCE = 0  # sequence_num jumped
GAP_DISCONNECT = 1  # connection lost
GAP_STALE = 2  # no frame or heartbeat within the staleness limit
GAP_RESYNC = 3  # a fresh snapshot restored the book
GAP_START = 4  # recording started: nothing is known about the book before this row
GAP_STOP = 5  # recording stopped: nothing is known after this row


def to_float(mantissa: np.ndarray, exp: int) -> np.ndarray:
    """Derived float64 view of fixed-point values (for display and SQL only)."""
    return np.asarray(mantissa, dtype=np.float64) / (10.0**exp)


def parse_fixed(text: str, exp: int) -> int:
    """Exact decimal string -> mantissa at ``exp`` decimals. Raises ValueError for anything that is not a plain
    non-negative decimal, that has more significant decimals than ``exp`` or whose mantissa reaches 2**63 (the
    int64 columns could not hold it)."""
    s = text.strip()
    if not s:
        raise ValueError(f"not a decimal number: {text!r}")
    whole, dot, frac = s.partition(".")
    if not whole:
        whole = "0"
    if not (whole.isdigit() and (frac.isdigit() or frac == "") and whole.isascii() and frac.isascii()):
        raise ValueError(f"not a plain decimal number: {text!r}")
    frac = frac.rstrip("0")
    if len(frac) > exp:
        raise ValueError(f"{text!r} has more than {exp} decimals")
    mantissa = int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if exp else 0)
    if mantissa >= 2**63:
        raise ValueError(f"{text!r} does not fit an int64 mantissa at {exp} decimals")
    return mantissa

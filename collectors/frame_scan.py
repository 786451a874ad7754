"""Compiled scanner for raw capture lines carrying Coinbase ``l2_data`` and ``market_trades`` frames (the bulk path
of ``l2lab ingest``).

A capture line is ``{"ts_recv_ns":<int>,"raw":"<frame, JSON-escaped>"[,"conn":<int>]}``. :func:`scan` walks a
buffer of whole lines once, byte by byte (numba), and for every line it *fully understands* writes the line's
receive time, connection, ``sequence_num``, frame ``timestamp``, where the frame text lies in the buffer (the
duplicate check compares it there, see ``collectors.normalizer_store.RecentFrames``) and the L2 rows
the frame yields (``l2lab.schema.L2_EVENT_DTYPE``, exactly what :class:`collectors.coinbase.CoinbaseNormalizer`
stages for it). Every other line is marked ``SLOW``: the caller parses it with the ordinary reader and feeds the
frame to the normalizer one by one. The scanner decides nothing about sequence numbers, gaps, quarantine or
dedupe; that stays in the normalizer (``CoinbaseNormalizer.feed_scanned``).

What the scanner understands (anything else is ``SLOW``; ``SLOW`` is always correct, only slower)
    The capture line exactly as ``orjson`` writes it, no whitespace, non-negative integers below 2**63 without
    leading zeros. The frame exactly in the venue's key order::

        {"channel":"l2_data","client_id":"<printable ASCII>","timestamp":"<T>","sequence_num":<int>,
         "events":[{"type":"snapshot"|"update","product_id":"<known product>","updates":[
           {"side":"bid"|"offer"|"ask","event_time":"<T>","price_level":"<D>","new_quantity":"<D>"}, ...]}, ...]}

    or ``{"channel":"market_trades", <same envelope>, "events":[{"type":"snapshot"|"update","trades":[
    {"trade_id":"<int>","product_id":"<known product>","price":"<D>","size":"<D>","side":"BUY"|"SELL",
    "time":"<T>"}, ...]}, ...]}`` (rows: the trades oldest first, the taker side as in the normalizer),
    with at least one event and at least one update or trade per event; the only escape inside the frame
    text is ``\\"`` (so the escaped text is exactly ``orjson.dumps(frame)`` without its quotes: equal bytes,
    equal frames).
    ``<T>``: ``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` with year 1900-2200 and month 01-12 (day, hour, minute, second
    are added arithmetically like ``calendar.timegm``). ``<D>``: ``digits[.digits]`` with at most ``exp``
    significant decimals and a mantissa below 10**18 (``l2lab.schema.parse_fixed`` gives the same integer).
    Scientific notation, signs, whitespace, ``.5``, ``5.``, unknown products, empty lists, other channels,
    extra or reordered fields, other escapes: ``SLOW``.

How it is compiled
    Every helper is ``forceinline`` (LLVM ``alwaysinline``), so a line is parsed by one machine function with no
    calls: numba's calling convention passes each array as seven words and checks a status after every call, which
    had cost ~20% of the scan. ``_scan`` hands the helpers owner-less views of its arrays (:func:`_borrowed`), so
    the reference counting numba emits around them never touches an atomic counter. Literals of 8+ bytes are
    compared eight bytes at a time; digit runs are measured a word at a time (:func:`_digit_run`) and read eight
    digits at a time (:func:`_digits_value`); the last date-hour-minute is remembered (:func:`_time`); product ids
    of 1-7 bytes are found with one load (:func:`_product`). The result is the byte-by-byte parse's, digit for
    digit (``tests/collectors/test_frame_scan.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_SNAPSHOT, L2_UPDATE, SIDE_ASK, SIDE_BID,
)

FAST = 0  # an l2_data frame the scanner fully parsed
SLOW = 1  # anything else: parse the line with collectors.capture and feed the frame one by one
FAST_TRADES = 2  # a market_trades frame the scanner fully parsed (rows: its trades in stored order)


def _readonly(buf: np.ndarray) -> np.ndarray:
    """A read-only view (one compiled signature for every buffer the scanner sees)."""
    if buf.flags.writeable:
        buf = buf.view()
        buf.flags.writeable = False
    return buf


def _lit(text: bytes) -> np.ndarray:
    return np.frombuffer(text, dtype=np.uint8).copy()


# the capture envelope (plain JSON) and the frame inside it (every quote escaped as \")
L_TS = _lit(b'{"ts_recv_ns":')
L_RAW = _lit(b',"raw":"')
L_CONN = _lit(b',"conn":')
L_CHANNEL = _lit(b'{\\"channel\\":\\"')
L_L2_DATA = _lit(b'l2_data\\"')
L_MARKET_TRADES = _lit(b'market_trades\\"')
L_CLIENT = _lit(b',\\"client_id\\":\\"')
L_TRADES = _lit(b',\\"trades\\":[')
L_TRADE_ID = _lit(b'{\\"trade_id\\":\\"')
L_TPRICE = _lit(b',\\"price\\":\\"')
L_TSIZE = _lit(b',\\"size\\":\\"')
L_TSIDE = _lit(b',\\"side\\":\\"')
L_BUY = _lit(b'BUY\\"')
L_SELL = _lit(b'SELL\\"')
L_TIME = _lit(b',\\"time\\":\\"')
L_TIMESTAMP = _lit(b',\\"timestamp\\":\\"')
L_SEQ = _lit(b',\\"sequence_num\\":')
L_EVENTS = _lit(b',\\"events\\":[')
L_TYPE = _lit(b'{\\"type\\":\\"')
L_SNAPSHOT = _lit(b'snapshot\\"')
L_UPDATE = _lit(b'update\\"')
L_PRODUCT = _lit(b',\\"product_id\\":\\"')
L_UPDATES = _lit(b',\\"updates\\":[')
L_SIDE = _lit(b'{\\"side\\":\\"')
L_BID = _lit(b'bid\\"')
L_OFFER = _lit(b'offer\\"')
L_ASK = _lit(b'ask\\"')
L_EVENT_TIME = _lit(b',\\"event_time\\":\\"')
L_PRICE = _lit(b',\\"price_level\\":\\"')
L_QTY = _lit(b',\\"new_quantity\\":\\"')
L_QUOTE = _lit(b'\\"')

NL, BSL, DQ = 10, 92, 34
MAX_DIGITS = 18  # 10**18 - 1 < 2**63: no overflow check needed below this

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, forceinline=True)
def _mix(h):
    """SplitMix64 finalizer (Steele, Lea & Flood 2014): a bijective avalanche of a 64-bit word."""
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


@njit(cache=True)
def bytes_key(buf, start, end):
    """64-bit key of ``buf[start:end]`` (the product-id hash table): each little-endian 8-byte word w_i
    (zero-padded tail) is folded as ``h = mix(h ^ w_i) * M1`` starting from ``h = mix(len)``, with ``mix`` the SplitMix64 finalizer.
    Equal bytes give equal keys; different texts collide with probability ~2**-64."""
    h = _mix(np.uint64(end - start) + _M1)
    i = start
    while i < end:
        w = np.uint64(0)
        n = min(8, end - i)
        for k in range(n):
            w |= np.uint64(buf[i + k]) << np.uint64(8 * k)
        h = _mix(h ^ w) * _M1
        i += 8
    return _mix(h)


# -- compiled primitives: owner-less array views, unaligned 8-byte loads, eight digits at a time ------------------
@intrinsic
def _borrowed(typingctx, arr):
    """``arr`` with a null owner (meminfo): same data, shape and strides. Passing it on costs no atomic reference
    counting; whoever calls keeps ``arr`` alive."""
    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()
    return arr(arr), codegen


@intrinsic
def _load8(typingctx, arr, idx):
    """The 8 bytes ``arr[idx:idx + 8]`` as one little-endian uint64 (an unaligned load; the caller keeps
    ``idx + 8 <= len(arr)``)."""
    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.load(builder.bitcast(ptr, llvm_ir.IntType(64).as_pointer()), align=1)
    return types.uint64(arr, types.int64), codegen


_X30 = np.uint64(0x3030303030303030)
_XFF = np.uint64(0x000000FF000000FF)
_MUL1 = np.uint64(100 + (1000000 << 32))
_MUL2 = np.uint64(1 + (10000 << 32))


@njit(cache=True, forceinline=True)
def _eight_digits_value(w):
    """The value of 8 ASCII digits read little-endian (first digit in the low byte): ``w - '0'*8`` gives the
    digits d0..d7; ``w*10 + (w >> 8)`` puts each pair 10*d_i + d_(i+1) in the even bytes; two multiplications by
    ``100 + 10**6 << 32`` and ``1 + 10**4 << 32`` sum the four pairs with weights 10**6, 10**4, 10**2, 1 in the high
    half (fast_float's ``parse_eight_digits_unrolled``; Lemire, SPE 2021)."""
    w = w - _X30
    w = w * np.uint64(10) + (w >> np.uint64(8))
    w = (((w & _XFF) * _MUL1) + (((w >> np.uint64(16)) & _XFF) * _MUL2)) >> np.uint64(32)
    return np.int64(w)


@intrinsic
def _trailing_zeros(typingctx, x):
    """Count of trailing zero bits of a uint64 (LLVM ``cttz``; 64 for 0)."""
    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], llvm_ir.Constant(llvm_ir.IntType(1), 0))
    return types.uint64(types.uint64), codegen


_X46 = np.uint64(0x4646464646464646)
_X80 = np.uint64(0x8080808080808080)
POW10 = np.array([10**k for k in range(MAX_DIGITS + 1)], np.int64)


@njit(cache=True, forceinline=True)
def _digit_run(buf, pos, end):
    """How many of the 8 bytes at ``pos`` are ASCII digits before the first other byte (0-8; -1 if fewer than 8
    bytes are left). A byte in 0x3A-0xAF gets its high bit from ``+ 0x46``, one below '0' or from 0xB0 up from
    ``- 0x30``; digits get neither and pass no carry or borrow on, and carries and borrows only run towards
    later bytes, so the first flagged byte is exact."""
    if pos + 8 > end:
        return -1
    w = _load8(buf, pos)
    m = ((w + _X46) | (w - _X30)) & _X80
    return 8 if m == 0 else np.int64(_trailing_zeros(m) >> np.uint64(3))


@njit(cache=True, forceinline=True)
def _digits_value(w, n):
    """The value of the first ``n`` (1-8) bytes of ``w``, ASCII digits: shifted to the top of the word with '0'
    bytes below (leading zeros), then read as eight digits."""
    if n == 8:
        return _eight_digits_value(w)
    return _eight_digits_value((w << np.uint64(64 - 8 * n)) | (_X30 >> np.uint64(8 * n)))


@njit(cache=True, forceinline=True)
def _match(buf, pos, end, lit):
    """``pos + len(lit)`` if ``buf[pos:end]`` starts with ``lit``, else -1 (also for ``pos < 0``, so a failed step
    fails every step after it)."""
    n = lit.shape[0]
    if pos < 0 or pos + n > end:
        return -1
    if n >= 8:  # eight bytes at a time, the last word overlapping the one before
        k = 0
        while k + 8 < n:
            if _load8(buf, pos + k) != _load8(lit, k):
                return -1
            k += 8
        return pos + n if _load8(buf, pos + n - 8) == _load8(lit, n - 8) else -1
    for k in range(n):
        if buf[pos + k] != lit[k]:
            return -1
    return pos + n


@njit(cache=True, forceinline=True)
def _uint(buf, pos, end):
    """JSON non-negative integer up to 2**63 - 1 (no leading zero) -> (value, next pos) or (0, -1)."""
    if pos < 0:
        return 0, -1
    v = 0
    i = pos
    while i - pos + 8 <= MAX_DIGITS and _digit_run(buf, i, end) == 8:  # eight digits at a time while they last
        v = v * 100_000_000 + _eight_digits_value(_load8(buf, i))
        i += 8
    while i < end and 48 <= buf[i] <= 57 and i - pos < MAX_DIGITS:
        v = v * 10 + (np.int64(buf[i]) - 48)
        i += 1
    if i < end and 48 <= buf[i] <= 57:  # a 19th digit: only if the value stays below 2**63
        d = np.int64(buf[i]) - 48
        if v > 922337203685477580 or (v == 922337203685477580 and d > 7):
            return 0, -1
        v = v * 10 + d
        i += 1
        if i < end and 48 <= buf[i] <= 57:
            return 0, -1
    n = i - pos
    if n == 0 or (n > 1 and buf[pos] == 48):
        return 0, -1
    return v, i


@njit(cache=True, forceinline=True)
def _digits(buf, pos, n):
    v = 0
    for k in range(n):
        c = np.int64(buf[pos + k])
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(cache=True, forceinline=True)
def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant, "chrono-compatible low-level date
    algorithms", days_from_civil)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, forceinline=True)
def _time(buf, pos, end, memo):
    """``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` -> (UTC ns, next pos) or (0, -1); the arithmetic of
    ``collectors.timeparse.rfc3339_to_ns`` (``calendar.timegm``: day, hour, minute, second are not range-checked).
    ``memo`` (int64[4]): the 16 bytes ``YYYY-MM-DDTHH:MM`` of the last time whose date, hour and minute were valid,
    as two words, their value in ns and 1 once set; a time starting with the same 16 bytes reuses that value."""
    if pos < 0 or pos + 20 > end:
        return 0, -1
    w0, w1 = np.int64(_load8(buf, pos)), np.int64(_load8(buf, pos + 8))
    if memo[3] == 1 and w0 == memo[0] and w1 == memo[1]:
        base = memo[2]
    else:
        if buf[pos + 4] != 45 or buf[pos + 7] != 45 or buf[pos + 10] != 84 or buf[pos + 13] != 58:
            return 0, -1
        y = _digits(buf, pos, 4)
        mo = _digits(buf, pos + 5, 2)
        d = _digits(buf, pos + 8, 2)
        h = _digits(buf, pos + 11, 2)
        mi = _digits(buf, pos + 14, 2)
        if y < 1900 or y > 2200 or mo < 1 or mo > 12 or d < 0 or h < 0 or mi < 0:
            return 0, -1
        days = _days_from_civil(y, mo, 1) + d - 1
        base = ((days * 24 + h) * 60 + mi) * 60_000_000_000
        memo[0], memo[1], memo[2], memo[3] = w0, w1, base, 1
    s = _digits(buf, pos + 17, 2)
    if buf[pos + 16] != 58 or s < 0:
        return 0, -1
    ns = base + s * 1_000_000_000
    i = pos + 19
    if buf[i] == 46:  # '.'
        i += 1
        f = 0
        k = 0
        n = _digit_run(buf, i, end)
        if n > 0:
            f = _digits_value(_load8(buf, i), n)
            i += n
            k = n
        while i < end and 48 <= buf[i] <= 57 and k < 10:
            f = f * 10 + (np.int64(buf[i]) - 48)
            i += 1
            k += 1
        if k == 0 or k > 9:
            return 0, -1
        ns += f * POW10[9 - k]
    if i >= end or buf[i] != 90:  # 'Z'
        return 0, -1
    return ns, i + 1


@njit(cache=True, forceinline=True)
def _decimal(buf, pos, end, exp):
    """``digits[.digits]`` -> (mantissa at ``exp`` decimals, next pos) or (0, -1): the integer
    ``parse_fixed`` returns (trailing fraction zeros ignored), refused when it has more than ``exp`` significant
    decimals or could reach 10**18."""
    if pos < 0 or exp < 0 or exp > MAX_DIGITS:
        return 0, -1
    i = pos
    whole = 0
    n = _digit_run(buf, pos, end)
    if 0 < n < 8 and n + exp <= MAX_DIGITS:  # the whole part ends inside one word and cannot reach 10**18
        whole = _digits_value(_load8(buf, pos), n)
        i = pos + n
    else:
        sig = 0  # significant whole digits (after leading zeros)
        while i < end and 48 <= buf[i] <= 57:
            c = np.int64(buf[i]) - 48
            if sig > 0 or c != 0:
                sig += 1
                if sig + exp > MAX_DIGITS:
                    return 0, -1
            whole = whole * 10 + c
            i += 1
        if i == pos:
            return 0, -1
    frac = 0
    k = 0
    if i < end and buf[i] == 46:
        i += 1
        n = _digit_run(buf, i, end)
        if 0 < n < 8 and n <= exp:  # the fraction ends inside one word, within exp decimals
            frac = _digits_value(_load8(buf, i), n)
            k = n
            i += n
        else:
            start = i
            if n == 8 and exp >= 8:
                frac = _eight_digits_value(_load8(buf, i))
                i += 8
                k = 8
            while i < end and 48 <= buf[i] <= 57:
                c = np.int64(buf[i]) - 48
                k += 1
                if k <= exp:
                    frac = frac * 10 + c
                elif c != 0:
                    return 0, -1  # more significant decimals than exp
                i += 1
            if i == start:
                return 0, -1
            k = min(k, exp)
    return whole * POW10[exp] + frac * POW10[exp - k], i


_X01 = np.uint64(0x0101010101010101)
_X5C = np.uint64(0x5C5C5C5C5C5C5C5C)  # backslash
_X22 = np.uint64(0x2222222222222222)  # double quote
_X20 = np.uint64(0x2020202020202020)


@njit(cache=True, forceinline=True)
def _first_below(w, v):
    """Index of the first byte of ``w`` below ``v`` (``v`` = 0x01.. for zero bytes), 8 if none: the classic
    ``(w - v) & ~w & 0x80..`` flags can be wrong only above the first true one (borrows run towards later bytes)."""
    m = (w - v) & ~w & _X80
    return 8 if m == 0 else np.int64(_trailing_zeros(m) >> np.uint64(3))


@njit(cache=True, forceinline=True)
def _short_slot(key, mask):
    """Home slot of a 1-7 byte product id (its bytes as one little-endian integer) in ``ProductTable.short``: bits
    40-63 of ``key * M1`` (a multiplicative hash), masked to the table."""
    return np.int64((np.uint64(key) * _M1) >> np.uint64(40)) & mask


@njit(cache=True, forceinline=True)
def _product(buf, pos, end, names, offs, table, short):
    """A known product id (its exact UTF-8 bytes, then ``\\"``) -> (index, pos after the quote) or (-1, -1).
    Ids of 1-7 bytes are found with one load: the backslash that ends them, any quote or control byte before it
    (refused), then the id's bytes as one integer looked up in ``short`` (:class:`ProductTable`)."""
    if pos < 0:
        return -1, -1
    if pos + 8 <= end:
        w = _load8(buf, pos)
        n = _first_below(w ^ _X5C, _X01)
        if 0 < n < 8:
            if _first_below(w, _X20) < n or _first_below(w ^ _X22, _X01) < n:
                return -1, -1
            if pos + n + 1 >= end or buf[pos + n + 1] != DQ:
                return -1, -1
            key = w & ((np.uint64(1) << np.uint64(8 * n)) - np.uint64(1))
            mask = short.shape[0] - 1
            slot = _short_slot(key, mask)
            while short[slot, 2] >= 0:
                if short[slot, 0] == np.int64(key) and short[slot, 1] == n:
                    return short[slot, 2], pos + n + 2
                slot = (slot + 1) & mask
            return -1, -1
    i = pos
    while i < end and buf[i] != BSL:
        if buf[i] == DQ or buf[i] < 32:
            return -1, -1
        i += 1
    if i + 1 >= end or buf[i + 1] != DQ:
        return -1, -1
    mask = table.shape[0] - 1
    slot = np.int64(bytes_key(buf, pos, i) & np.uint64(mask))
    while table[slot] >= 0:
        p = table[slot]
        a, b = offs[p], offs[p + 1]
        if b - a == i - pos:
            same = True
            for k in range(b - a):
                if names[a + k] != buf[pos + k]:
                    same = False
                    break
            if same:
                return p, i + 2
        slot = (slot + 1) & mask
    return -1, -1


@njit(cache=True, forceinline=True)
def _line(buf, s, end, names, offs, table, short, pexp, sexp, out, r0, r_cap, lines, li, memo):
    """Parse one line starting at ``s``; on success write its fields to ``lines[li]``/``out`` and return the
    position of its newline and the row count, else (-1, 0)."""
    pos = _match(buf, s, end, L_TS)
    ts, pos = _uint(buf, pos, end)
    pos = _match(buf, pos, end, L_RAW)
    if pos < 0:
        return -1, 0
    raw0 = pos
    pos = _match(buf, pos, end, L_CHANNEL)
    if pos < 0:
        return -1, 0
    p2 = _match(buf, pos, end, L_L2_DATA)
    trades = p2 < 0
    if trades:
        p2 = _match(buf, pos, end, L_MARKET_TRADES)
    pos = _match(buf, p2, end, L_CLIENT)
    if pos < 0:
        return -1, 0
    while pos < end and buf[pos] != BSL:  # client_id: printable ASCII, no quote
        c = buf[pos]
        if c < 32 or c > 126 or c == DQ:
            return -1, 0
        pos += 1
    pos = _match(buf, pos, end, L_QUOTE)
    frame_ns, pos = _time_field(buf, pos, end, L_TIMESTAMP, memo)
    pos = _match(buf, pos, end, L_SEQ)
    seq, pos = _uint(buf, pos, end)
    pos = _match(buf, pos, end, L_EVENTS)
    if pos < 0:
        return -1, 0
    if trades:
        pos, r = _trades_body(buf, pos, end, names, offs, table, short, pexp, sexp, out, r0, r_cap, memo)
        n_snap = 0
    else:
        pos, r, n_snap = _l2_body(buf, pos, end, names, offs, table, short, pexp, sexp, out, r0, r_cap, frame_ns, memo)
    if pos < 0:
        return pos, 0  # -2: no room for the rows
    return _tail(buf, pos, end, out, r0, r, lines, li, ts, seq, frame_ns, raw0, n_snap, trades)


@njit(cache=True, forceinline=True)
def _time_field(buf, pos, end, key, memo):
    """``key`` then ``<T>`` and its closing ``\\"`` -> (UTC ns, next pos) or (0, -1)."""
    pos = _match(buf, pos, end, key)
    t, pos = _time(buf, pos, end, memo)
    return t, _match(buf, pos, end, L_QUOTE)


@njit(cache=True, forceinline=True)
def _decimal_field(buf, pos, end, key, exp):
    """``key`` then ``<D>`` and its closing ``\\"`` -> (mantissa, next pos) or (0, -1)."""
    pos = _match(buf, pos, end, key)
    v, pos = _decimal(buf, pos, end, exp)
    return v, _match(buf, pos, end, L_QUOTE)


@njit(cache=True, forceinline=True)
def _event_type(buf, pos, end):
    """``{"type":"snapshot"|"update"`` opening an event -> (next pos, snapshot?); next pos -1 if neither."""
    pos = _match(buf, pos, end, L_TYPE)
    p2 = _match(buf, pos, end, L_SNAPSHOT)
    if p2 >= 0:
        return p2, True
    return _match(buf, pos, end, L_UPDATE), False


@njit(cache=True, forceinline=True)
def _close_item(buf, pos, end):
    """``}`` ending a list item, then ``,`` -> (pos after it, 1: another item) or ``]`` -> (pos after it, 0: the
    list ended); anything else -> (pos, -1)."""
    if pos < 0 or pos + 1 >= end or buf[pos] != 125:
        return pos, -1
    if buf[pos + 1] == 44:
        return pos + 2, 1
    if buf[pos + 1] == 93:
        return pos + 2, 0
    return pos, -1


@njit(cache=True, forceinline=True)
def _l2_body(buf, pos, end, names, offs, table, short, pexp, sexp, out, r0, r_cap, frame_ns, memo):
    """The ``events`` of an ``l2_data`` frame -> (pos after ``]``, row end, snapshot events) or (-1|-2, 0, 0)."""
    r = r0
    n_snap = 0
    while True:  # events
        pos, snap = _event_type(buf, pos, end)
        pos = _match(buf, pos, end, L_PRODUCT)
        prod, pos = _product(buf, pos, end, names, offs, table, short)
        if prod < 0:
            return -1, 0, 0
        pos = _match(buf, pos, end, L_UPDATES)
        if pos < 0:
            return -1, 0, 0
        first = r
        while True:  # updates
            if r >= r_cap:
                return -2, 0, 0  # no room for the rows: the caller scans this line again
            pos = _match(buf, pos, end, L_SIDE)
            if pos < 0:
                return -1, 0, 0
            side = SIDE_BID
            p2 = _match(buf, pos, end, L_BID)
            if p2 < 0:
                side = SIDE_ASK
                p2 = _match(buf, pos, end, L_OFFER)
                if p2 < 0:
                    p2 = _match(buf, pos, end, L_ASK)
            t_exch, pos = _time_field(buf, p2, end, L_EVENT_TIME, memo)
            price, pos = _decimal_field(buf, pos, end, L_PRICE, pexp[prod])
            size, pos = _decimal_field(buf, pos, end, L_QTY, sexp[prod])
            pos, more = _close_item(buf, pos, end)
            if more < 0:
                return -1, 0, 0
            out[r]["ts_exch_ns"] = frame_ns if t_exch == 0 else t_exch
            out[r]["kind"] = L2_SNAPSHOT if snap else (L2_DELETE if size == 0 else L2_UPDATE)
            out[r]["side"] = side
            out[r]["price"] = price
            out[r]["size"] = size
            out[r]["flags"] = 0
            out[r]["prod"] = prod
            r += 1
            if more == 0:
                break
        if snap:
            out[first]["flags"] |= FLAG_BOOK_RESET
            n_snap += 1
        out[r - 1]["flags"] |= FLAG_FRAME_END
        pos, more = _close_item(buf, pos, end)
        if more < 0:
            return -1, 0, 0
        if more == 0:
            return pos, r, n_snap


@njit(cache=True, forceinline=True)
def _tail(buf, pos, end, out, r0, r, lines, li, ts, seq, frame_ns, raw0, n_snap, trades):
    """The end of the frame and of the capture line; on success fill the line's fields."""
    if pos + 2 >= end or buf[pos] != 125 or buf[pos + 1] != DQ:  # '}' ends the frame, '"' the raw string
        return -1, 0
    raw1 = pos + 1
    pos += 2
    conn = 0
    if buf[pos] == 44:
        pos = _match(buf, pos, end, L_CONN)
        conn, pos = _uint(buf, pos, end)
    if pos < 0 or pos + 1 >= end or buf[pos] != 125 or buf[pos + 1] != NL:
        return -1, 0
    for k in range(r0, r):
        out[k]["ts_recv_ns"] = ts
        out[k]["seq"] = seq
    lines[li]["status"] = FAST_TRADES if trades else FAST
    lines[li]["ts_recv_ns"] = ts
    lines[li]["conn"] = conn
    lines[li]["seq"] = seq
    lines[li]["frame_ns"] = frame_ns
    lines[li]["raw0"] = raw0
    lines[li]["raw1"] = raw1
    lines[li]["n_snap"] = n_snap
    return pos + 1, r - r0


@njit(cache=True, forceinline=True)
def _reverse(out, a, b):
    """Reverse rows ``a:b`` in place (the fields trades use)."""
    b -= 1
    while a < b:
        t, u, v = out[a]["ts_exch_ns"], out[a]["trade_id"], out[a]["side"]
        w, x, y = out[a]["price"], out[a]["size"], out[a]["prod"]
        out[a]["ts_exch_ns"], out[a]["trade_id"], out[a]["side"] = out[b]["ts_exch_ns"], out[b]["trade_id"], out[b]["side"]
        out[a]["price"], out[a]["size"], out[a]["prod"] = out[b]["price"], out[b]["size"], out[b]["prod"]
        out[b]["ts_exch_ns"], out[b]["trade_id"], out[b]["side"] = t, u, v
        out[b]["price"], out[b]["size"], out[b]["prod"] = w, x, y
        a += 1
        b -= 1


@njit(cache=True, forceinline=True)
def _trades_body(buf, pos, end, names, offs, table, short, pexp, sexp, out, r0, r_cap, memo):
    """The ``events`` of a ``market_trades`` frame -> (pos after ``]``, row end) or (-1|-2, 0). Rows hold the
    trades oldest first (the venue lists them newest first within an event), the taker side in ``side``."""
    r = r0
    while True:  # events
        pos, _ = _event_type(buf, pos, end)
        pos = _match(buf, pos, end, L_TRADES)
        if pos < 0:
            return -1, 0
        first = r
        while True:  # trades
            if r >= r_cap:
                return -2, 0
            pos = _match(buf, pos, end, L_TRADE_ID)
            tid, pos = _uint(buf, pos, end)
            pos = _match(buf, pos, end, L_QUOTE)
            pos = _match(buf, pos, end, L_PRODUCT)
            prod, pos = _product(buf, pos, end, names, offs, table, short)
            if prod < 0:
                return -1, 0
            price, pos = _decimal_field(buf, pos, end, L_TPRICE, pexp[prod])
            size, pos = _decimal_field(buf, pos, end, L_TSIZE, sexp[prod])
            pos = _match(buf, pos, end, L_TSIDE)
            side = SIDE_ASK  # the wire side is the maker's: BUY -> the taker sold
            p2 = _match(buf, pos, end, L_BUY)
            if p2 < 0:
                side = SIDE_BID
                p2 = _match(buf, pos, end, L_SELL)
            t_exch, pos = _time_field(buf, p2, end, L_TIME, memo)
            pos, more = _close_item(buf, pos, end)
            if more < 0:
                return -1, 0
            out[r]["ts_exch_ns"] = t_exch
            out[r]["trade_id"] = tid
            out[r]["side"] = side
            out[r]["price"] = price
            out[r]["size"] = size
            out[r]["kind"] = 0
            out[r]["flags"] = 0
            out[r]["prod"] = prod
            r += 1
            if more == 0:
                break
        _reverse(out, first, r)  # oldest first
        pos, more = _close_item(buf, pos, end)
        if more < 0:
            return -1, 0
        if more == 0:
            return pos, r


@njit(cache=True)
def _scan(buf, pos, end, names, offs, table, short, pexp, sexp, lines, out, memo):
    """Scan whole lines from ``pos`` until ``end`` or the output is full; returns (lines, rows, next pos).
    ``memo``: the last date-hour-minute parsed (:func:`_time`)."""
    buf, names, offs, table = _borrowed(buf), _borrowed(names), _borrowed(offs), _borrowed(table)
    short = _borrowed(short)
    pexp, sexp, lines, out, memo = _borrowed(pexp), _borrowed(sexp), _borrowed(lines), _borrowed(out), _borrowed(memo)
    n_lines = np.int64(0)  # typed, not literal: one compiled _line instead of two
    r = np.int64(0)
    line_cap = lines.shape[0] - 1  # the last entry holds only the row count after the last line
    r_cap = out.shape[0]
    while pos < end and n_lines < line_cap:
        nl, n = _line(buf, pos, end, names, offs, table, short, pexp, sexp, out, r, r_cap, lines, n_lines, memo)
        lines[n_lines]["start"] = pos
        lines[n_lines]["row0"] = r
        if nl >= 0:
            lines[n_lines]["stop"] = nl
            r += n
            pos = nl + 1
        else:
            if nl == -2 and n_lines > 0:
                break  # the rows are full: the caller scans the rest again
            lines[n_lines]["status"] = SLOW
            e = pos
            while e < end and buf[e] != NL:
                e += 1
            lines[n_lines]["stop"] = e
            pos = e + 1
        n_lines += 1
    lines[n_lines]["row0"] = r
    return n_lines, r, pos


LINE_DTYPE = np.dtype([("start", "<i8"), ("stop", "<i8"), ("status", "i1"), ("ts_recv_ns", "<i8"), ("conn", "<i8"),
                       ("seq", "<i8"), ("frame_ns", "<i8"), ("raw0", "<i8"), ("raw1", "<i8"), ("n_snap", "<i4"),
                       ("row0", "<i8")])
ROW_DTYPE = np.dtype(L2_EVENT_DTYPE.descr + [("prod", "<i4"), ("trade_id", "<i8")])


class ProductTable:
    """The normalizer's products in scanner form: index = position in ``names`` (the normalizer's order)."""

    def __init__(self, products: dict):
        self.names = list(products)
        encoded = [p.encode("utf-8") for p in self.names]
        self.bytes = _lit(b"".join(encoded) or b"\0")
        self.offs = np.zeros(len(encoded) + 1, np.int64)
        self.offs[1:] = np.cumsum([len(b) for b in encoded])
        self.price_exp = np.array([products[p].price_exp for p in self.names] or [0], np.int64)
        self.size_exp = np.array([products[p].size_exp for p in self.names] or [0], np.int64)
        size = 8
        while size < 2 * len(encoded):
            size *= 2
        self.table = np.full(size, -1, np.int64)
        for i, b in enumerate(encoded):
            slot = int(bytes_key(_readonly(_lit(b or b"\0")), 0, len(b))) & (size - 1)
            while self.table[slot] >= 0:
                slot = (slot + 1) & (size - 1)
            self.table[slot] = i
        # ids of 1-7 bytes by their bytes as one little-endian integer: rows (key, length, index), index -1 = empty;
        # home slot _short_slot(key), probed linearly
        self.short = np.full((size, 3), -1, np.int64)
        for i, b in enumerate(encoded):
            if 0 < len(b) < 8:
                key = int.from_bytes(b, "little")
                slot = int(_short_slot(np.uint64(key), size - 1))
                while self.short[slot, 2] >= 0:
                    slot = (slot + 1) & (size - 1)
                self.short[slot] = (key, len(b), i)


class BlockRows:
    """The rows of a :class:`ScanBlock` without its text buffer: what the normalizer's row stores keep until they
    are drained (so a piece's text is freed once no recent frame refers to it, and the next piece reuses its
    memory). ``rows`` in ``ROW_DTYPE``; ``status``/``row0``: the block's per-line scan status and first rows."""

    def __init__(self, rows: np.ndarray, status: np.ndarray, row0: np.ndarray, n: int, table_names: list):
        self.rows, self.table_names = rows, table_names
        self.prod = np.ascontiguousarray(rows["prod"])
        self.trade_id = np.ascontiguousarray(rows["trade_id"])
        self._status, self._row0, self._n = status, row0, n
        self._row_status = None
        self._trade_rows = None

    @property
    def row_status(self) -> np.ndarray:
        """The scan status of each row's line (``FAST`` rows are L2 events, ``FAST_TRADES`` rows trades)."""
        if self._row_status is None:
            self._row_status = np.repeat(self._status[:self._n], np.diff(self._row0[:self._n + 1]))
        return self._row_status

    @property
    def trade_rows(self) -> np.ndarray:
        """Row numbers of the trades (rows of FAST_TRADES lines), increasing."""
        if self._trade_rows is None:
            self._trade_rows = np.flatnonzero(self.row_status == FAST_TRADES)
        return self._trade_rows

    def rows_as(self, idx, dtype: np.dtype) -> np.ndarray:
        """Rows at ``idx`` in ``dtype`` (``L2_EVENT_DTYPE`` or ``TRADE_DTYPE``: a subset of the row fields)."""
        if _is_prefix(dtype):  # L2 events: each row's first bytes are the record, gathered as raw bytes
            head = np.dtype({"names": ["head"], "formats": [(np.void, dtype.itemsize)], "offsets": [0],
                             "itemsize": ROW_DTYPE.itemsize})
            return self.rows.view(head)["head"][idx].view(dtype)  # 9x faster than field by field
        out = np.empty(len(idx), dtype)
        for name in dtype.names:  # column by column: twice as fast as gathering whole rows first
            out[name] = self.rows[name][idx]
        return out


@dataclass
class ScanBlock:
    """One scanned buffer: ``lines[i]`` for each line (``status``, fields, ``row0``: first row; rows of line i are
    ``rows[lines.row0[i]:lines.row0[i + 1]]``), ``rows`` in ``ROW_DTYPE`` (``L2_EVENT_DTYPE`` plus product index
    and trade id); ``block_rows``: the rows alone (:class:`BlockRows`: row status, trade rows, ``rows_as``)."""

    buf: np.ndarray
    lines: np.ndarray  # LINE_DTYPE, n + 1 entries (the last holds only row0)
    rows: np.ndarray  # ROW_DTYPE
    n: int
    first_line: int  # line number (1-based, in its file) of lines[0]
    table_names: list  # product names by index (rows["prod"])

    def __post_init__(self):  # contiguous columns for the compiled run finder (collectors.coinbase)
        for name in ("status", "conn", "seq", "row0", "n_snap"):
            setattr(self, name, np.ascontiguousarray(self.lines[name]))
        self.block_rows = BlockRows(self.rows, self.status, self.row0, self.n, self.table_names)
        self.prod, self.trade_id = self.block_rows.prod, self.block_rows.trade_id

    def trades_of(self, i: int) -> list:
        """(product, ``TRADE_DTYPE`` row tuple) of FAST_TRADES line ``i``, oldest first."""
        r = self.rows[self.row0[i]:self.row0[i + 1]]
        names = self.table_names
        return [(names[p], (a, b, c, d, e, f, g)) for p, a, b, c, d, e, f, g in zip(
            r["prod"].tolist(), r["ts_recv_ns"].tolist(), r["ts_exch_ns"].tolist(), r["seq"].tolist(),
            r["trade_id"].tolist(), r["side"].tolist(), r["price"].tolist(), r["size"].tolist())]

    def raw_bytes(self, i: int) -> bytes:
        """The frame text of FAST line ``i`` as the capture holds it (escaped, without the quotes)."""
        return self.buf[self.lines["raw0"][i]:self.lines["raw1"][i]].tobytes()

    def line_bytes(self, i: int) -> bytes:
        return self.buf[self.lines["start"][i]:self.lines["stop"][i]].tobytes()


def _is_prefix(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is packed and its fields are the first fields of ``ROW_DTYPE``, at the same offsets."""
    names = dtype.names
    return (ROW_DTYPE.names[:len(names)] == names and dtype.itemsize == ROW_DTYPE.fields[names[-1]][1]
            + dtype.fields[names[-1]][0].itemsize and all(dtype.fields[n] == ROW_DTYPE.fields[n] for n in names))


@njit(cache=True)
def group_runs(r0, lens, ord0, prod, row_status, status, n_products):
    """The block rows of runs ``r0[k]:r0[k] + lens[k]`` whose line has scan status ``status``, grouped by product
    (a stable counting sort): (rows, their keys ``2 * (ord0[k] + offset in the run) + 1``, ``n_products + 1``
    group bounds)."""
    bounds = np.zeros(n_products + 1, np.int64)
    for k in range(r0.shape[0]):
        for r in range(r0[k], r0[k] + lens[k]):
            if row_status[r] == status:
                bounds[prod[r] + 1] += 1
    for p in range(n_products):
        bounds[p + 1] += bounds[p]
    fill = bounds[:-1].copy()
    rows = np.empty(bounds[-1], np.int64)
    keys = np.empty(bounds[-1], np.int64)
    for k in range(r0.shape[0]):
        for i in range(lens[k]):
            r = r0[k] + i
            if row_status[r] == status:
                q = fill[prod[r]]
                rows[q] = r
                keys[q] = 2 * (ord0[k] + i) + 1
                fill[prod[r]] = q + 1
    return rows, keys, bounds


def scan(buf: np.ndarray, table: ProductTable, first_line: int = 1) -> ScanBlock:
    """Scan ``buf`` (uint8, whole lines each ending in a newline) into a :class:`ScanBlock`."""
    buf = _readonly(np.ascontiguousarray(buf))  # the 8-byte loads read memory, not strides
    end = len(buf)
    line_cap = end // 48 + 16  # more lines than this (short ones) or more rows: scanned in further parts below
    lines = np.empty(line_cap + 1, LINE_DTYPE)
    rows = np.empty(end // 96 + 16, ROW_DTYPE)
    memo = np.zeros(4, np.int64)
    parts, pos = [], 0
    while True:
        n, r, nxt = _scan(buf, pos, end, table.bytes, table.offs, table.table, table.short, table.price_exp,
                          table.size_exp, lines, rows, memo)
        if nxt >= end and not parts:  # one part: views (pages never written are never allocated)
            parts.append((lines[: n + 1], rows[:r]))
            break
        parts.append((lines[: n + 1].copy(), rows[:r].copy()))
        if nxt >= end:
            break
        pos = nxt
    if len(parts) == 1:
        lines, rows = parts[0]
    else:  # rebase row0 across the parts
        base, ls, rs = 0, [], []
        for k, (lp, rp) in enumerate(parts):
            lp = lp if k == len(parts) - 1 else lp[:-1]
            lp["row0"] += base
            base += len(rp)
            ls.append(lp)
            rs.append(rp)
        lines, rows = np.concatenate(ls), np.concatenate(rs)
    return ScanBlock(buf, lines, rows, len(lines) - 1, first_line, table.names)

"""The frame scanner's compiled number and time readers against slow, obviously-right references.

The readers take eight digits at a time (one unaligned load, a SWAR digit test and a multiply-add); the references
below are plain Python over the documented grammar (``collectors.frame_scan`` module docstring). Inputs are random
and adversarial: runs of digits of every length around the 8- and 16-digit word boundaries, bytes next to the digit
range (``/`` 0x2F, ``:`` 0x3A), bytes whose high nibble is 3 but are not digits, 0x00/0xFF, and numbers that end
exactly at the end of the buffer (the readers must not load past it). The whole-frame path (scanner + normalizer
against frame-by-frame parsing) is covered in ``test_ingest_bulk.py``.
"""

from __future__ import annotations

import calendar
import ctypes
import mmap
import random
import re

import numpy as np
import orjson
import pytest

from collectors.coinbase import ProductScale
from collectors.frame_scan import (
    SLOW, FAST, ProductTable, _decimal, _digit_run, _digits_value, _eight_digits_value, _match, _product, _time,
    _uint, scan,
)

NEAR = b"0123456789/:;?.Z-T \x00\xff\x3a\x2f\x3f\x40"
T_NS = 1_767_571_201_000_000_000
T_NS_EXCH = 1_767_571_201_250_000_000  # 2026-01-05T00:00:01.25Z
I63 = 2**63


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def guarded(data: bytes) -> np.ndarray:
    """A read-only uint8 array of ``data`` whose last byte is the last of a page followed by a page that cannot
    be read: a load past the end of the array crashes the test run instead of reading slack."""
    page = mmap.PAGESIZE
    pages = -(-len(data) // page) + 1
    m = mmap.mmap(-1, pages * page)
    start = (pages - 1) * page - len(data)
    m[start:start + len(data)] = data
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    assert _LIBC.mprotect(base + (pages - 1) * page, page, 0) == 0  # PROT_NONE
    arr = np.frombuffer(m, np.uint8, count=len(data), offset=start)  # keeps the mapping alive
    arr.flags.writeable = False
    return arr


def buffer(text: bytes, rng: random.Random) -> tuple[np.ndarray, int]:
    """``text`` placed at a random offset with random bytes around it; the buffer ends where the text ends, or a few
    bytes later (then ``end`` may include some of those bytes), right before an unreadable page."""
    lead = bytes(rng.choice(NEAR) for _ in range(rng.randrange(0, 9)))
    tail = bytes(rng.choice(NEAR) for _ in range(rng.choice([0, 0, 1, 3, 9])))
    return guarded(lead + text + tail), len(lead)


def digit_run(b: bytes) -> int:
    n = 0
    while n < len(b) and 48 <= b[n] <= 57:
        n += 1
    return n


def ref_uint(b: bytes):
    n = digit_run(b)
    if n == 0 or (n > 1 and b[0] == 48) or n > 19 or int(b[:n]) >= I63:
        return 0, -1
    return int(b[:n]), n


def ref_decimal(b: bytes, exp: int):
    n = digit_run(b)
    if n == 0:
        return 0, -1
    whole, used, frac = b[:n], n, b""
    if used < len(b) and b[used] == 46:
        m = digit_run(b[used + 1:])
        if m == 0:
            return 0, -1
        frac, used = b[used + 1:used + 1 + m], used + 1 + m
    if len(frac.rstrip(b"0")) > exp or len(whole.lstrip(b"0")) + exp > 18:
        return 0, -1
    return int(whole) * 10**exp + int((frac[:exp] or b"0").ljust(exp, b"0") or b"0"), used


TIME = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")


def ref_time(b: bytes):
    m = TIME.match(b)
    if not m:
        return 0, -1
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    if not (1900 <= y <= 2200 and 1 <= mo <= 12):
        return 0, -1
    sec = calendar.timegm((y, mo, 1, 0, 0, 0)) + (d - 1) * 86400 + h * 3600 + mi * 60 + s
    frac = m.group(7) or b""
    return sec * 10**9 + int(frac.ljust(9, b"0") or b"0"), m.end()


def digits(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice(b"0123456789") for _ in range(n))


def mutate(text: bytes, rng: random.Random) -> bytes:
    """Sometimes one byte swapped for a near-digit byte, so digit runs break at every offset."""
    if text and rng.random() < 0.4:
        k = rng.randrange(len(text))
        text = text[:k] + bytes([rng.choice(NEAR)]) + text[k + 1:]
    return text


def test_eight_digit_test_and_value_on_every_byte_at_every_position():
    base = bytearray(b"31415926")
    for pos in range(8):
        for v in range(256):
            word = bytearray(base)
            word[pos] = v
            w = np.uint64(int.from_bytes(word, "little"))
            assert (_digit_run(guarded(bytes(word)), 0, 8) == 8) == (48 <= v <= 57), (pos, v)
            if 48 <= v <= 57:
                assert _eight_digits_value(w) == int(word), word
    rng = random.Random(1)
    for _ in range(2000):
        word = digits(rng, 8)
        assert _eight_digits_value(np.uint64(int.from_bytes(word, "little"))) == int(word)


def test_digit_run_and_value_on_every_byte_at_every_position():
    """The first non-digit byte of a word is found wherever it is, whatever it is (bytes that carry or borrow into
    the next byte included), and the digits before it are read as a number."""
    for pos in range(8):
        for v in range(256):
            word = bytearray(b"27182818")
            word[pos] = v
            for later in (b"9", b"\x00", b"\xff", b"/"):  # what follows the flagged byte must not matter
                w = bytearray(word)
                w[pos + 1:] = later * (7 - pos)
                data = np.frombuffer(bytes(w), np.uint8).copy()
                n = _digit_run(data, 0, 8)
                assert n == digit_run(bytes(w)), (pos, v, later)
                if n > 0:
                    assert _digits_value(np.uint64(int.from_bytes(w, "little")), n) == int(bytes(w[:n]))
    assert _digit_run(np.zeros(7, np.uint8), 0, 7) == -1


@pytest.mark.parametrize("seed", range(4))
def test_uint_equals_reference(seed):
    rng = random.Random(seed)
    cases = [b"0", b"00", b"01", str(I63 - 1).encode(), str(I63).encode(), b"9" * 19, b"1" + b"0" * 18,
             b"1" * 20, b"12345678", b"123456789", b"1234567812345678", b"12345678123456781"]
    cases += [mutate(digits(rng, rng.randrange(0, 22)), rng) + bytes([rng.choice(NEAR)]) * rng.randrange(0, 2)
              for _ in range(3000)]
    for text in cases:
        data, pos = buffer(text, rng)
        for end in {pos + len(text), len(data)}:
            v, nxt = _uint(data, pos, end)
            rv, rn = ref_uint(bytes(data[pos:end]))
            assert (v, nxt) == ((rv, pos + rn) if rn >= 0 else (0, -1)), (text, end - pos)


@pytest.mark.parametrize("seed", range(4))
def test_decimal_equals_reference(seed):
    rng = random.Random(seed)
    for _ in range(4000):
        exp = rng.choice([0, 1, 2, 3, 6, 7, 8, 9, 10, 12, 18, 19, 25])
        text = digits(rng, rng.randrange(0, 20))
        if rng.random() < 0.8:
            text += b"." + digits(rng, rng.randrange(0, 20))
            if rng.random() < 0.3:
                text += b"0" * rng.randrange(1, 10)
        text = mutate(text, rng)
        data, pos = buffer(text, rng)
        for end in {pos + len(text), len(data)}:
            v, nxt = _decimal(data, pos, end, exp)
            rv, rn = ref_decimal(bytes(data[pos:end]), exp)
            assert (v, nxt) == ((rv, pos + rn) if rn >= 0 else (0, -1)), (text, exp, end - pos)


@pytest.mark.parametrize("seed", range(4))
def test_time_equals_reference(seed):
    rng = random.Random(seed)
    for _ in range(4000):
        y = rng.choice([1899, 1900, 1970, 2026, 2200, 2201])
        text = (f"{y}-{rng.randrange(0, 14):02d}-{rng.randrange(0, 33):02d}T{rng.randrange(0, 26):02d}:"
                f"{rng.randrange(0, 62):02d}:{rng.randrange(0, 62):02d}").encode()
        if rng.random() < 0.8:
            text += b"." + digits(rng, rng.randrange(0, 12))
        text = mutate(text + b"Z", rng)
        data, pos = buffer(text, rng)
        for end in {pos + len(text), len(data)}:
            v, nxt = _time(data, pos, end, np.zeros(4, np.int64))
            rv, rn = ref_time(bytes(data[pos:end]))
            assert (v, nxt) == ((rv, pos + rn) if rn >= 0 else (0, -1)), (text, end - pos)


def test_match_equals_startswith():
    """Literals of every length, compared eight bytes at a time: a difference in any byte, in the last (overlapping)
    word, or a literal running past ``end`` fails; ``pos < 0`` (a failed step before) stays failed."""
    rng = random.Random(7)
    for _ in range(3000):
        lit = bytes(rng.choice(b'ab\\"{}:,0') for _ in range(rng.randrange(1, 20)))
        text = lit if rng.random() < 0.5 else bytearray(lit)
        if isinstance(text, bytearray):
            text[rng.randrange(len(text))] = rng.choice(b'ab\\"{}:,0')
            text = bytes(text)
        data, pos = buffer(text, rng)
        lit_arr = np.frombuffer(lit, np.uint8).copy()
        for end in {pos + len(text), pos + len(text) - 1, len(data)}:
            want = pos + len(lit) if bytes(data[pos:end]).startswith(lit) else -1
            assert _match(data, pos, end, lit_arr) == want, (lit, text, end - pos)
    assert _match(np.zeros(16, np.uint8), -1, 16, np.zeros(9, np.uint8)) == -1


def test_time_memo_gives_what_a_fresh_parse_gives():
    """A run of times through one memo (the scanner keeps one per piece) equals each time parsed on its own: same
    date-hour-minute with other seconds, a minute change, an invalid prefix between valid ones, a valid prefix
    followed by bad seconds or a bad tail."""
    rng = random.Random(11)
    memo = np.zeros(4, np.int64)
    prev = b"2026-01-05T00:00:05.1Z"
    for _ in range(6000):
        x = rng.random()
        if x < 0.5:  # same first 16 bytes, other seconds/fraction/tail
            text = prev[:16] + rng.choice([b":", b";", b":"]) + digits(rng, 2) + rng.choice(
                [b"Z", b".1Z", b"." + digits(rng, 9) + b"Z", b".Z", b"." + digits(rng, 10) + b"Z", b"z", b""])
        else:
            y = rng.choice([1899, 2026, 2200, 2201])
            text = (f"{y}-{rng.randrange(0, 14):02d}-{rng.randrange(0, 33):02d}T{rng.randrange(0, 26):02d}:"
                    f"{rng.randrange(0, 62):02d}:{rng.randrange(0, 62):02d}Z").encode()
            text = mutate(text, rng)
        data, pos = buffer(text, rng)
        end = pos + len(text)
        assert _time(data, pos, end, memo) == _time(data, pos, end, np.zeros(4, np.int64)), text
        rv, rn = ref_time(bytes(data[pos:end]))
        assert _time(data, pos, end, memo) == ((rv, pos + rn) if rn >= 0 else (0, -1)), text
        prev = text if len(text) >= 16 else prev


def test_product_lookup_equals_reference():
    """Product ids of every length (the one-load path takes 1-7 bytes), unicode, unknown ids that share a prefix or
    the length of a known one, quotes and control bytes inside, a missing escaped quote after the backslash, ids
    cut by the end of the buffer."""
    names = ["BTC-USD", "ETH-USD", "SOL-USD", "A", "ÉTH-€", "ÉT", "LONGER-THAN-8", "12345678", "1234567",
             "X\x01Y", "LONG\x01ER-ID"]  # known ids with a control byte are still refused, as the slow path does
    table = ProductTable({n: ProductScale(2, 8) for n in names})
    encoded = [n.encode() for n in names]
    rng = random.Random(5)
    pool = encoded + [b"XRP-USD", b"BTC-USDT", b"BTC-US", b"btc-usd", b"", b"BTC\x01USD", b'BT"C', b"\xc3\x89T",
                      b"1234567\x00", b"123456", b"\x00"]
    for _ in range(4000):
        name = rng.choice(pool)
        if rng.random() < 0.2:
            name = bytes(rng.choice(b'AB-\x00\x1f"\\\xc3\x89') for _ in range(rng.randrange(0, 10)))
        text = name + rng.choice([b'\\"', b'\\"', b"\\x", b"\\", b""]) + bytes(rng.choice(NEAR) for _ in range(3))
        data, pos = buffer(text, rng)
        for end in {pos + len(name) + 1, pos + len(name) + 2, pos + len(text), len(data)}:
            b = bytes(data[pos:end])
            k = b.find(b"\\")
            ok = k >= 0 and k + 1 < len(b) and b[k + 1] == 34 and not any(c == 34 or c < 32 for c in b[:k])
            want = (encoded.index(b[:k]), pos + k + 2) if ok and b[:k] in encoded else (-1, -1)
            got = _product(data, pos, end, table.bytes, table.offs, table.table, table.short)
            assert got == want, (name, text, end - pos)


def test_many_short_lines_fill_the_line_table_without_losing_a_line():
    """A piece with more lines than ``scan`` first makes room for (blank or short junk lines) is scanned in parts;
    every line is kept, in order, and a FAST line among them keeps its row (an off-by-one once wrote past the line
    table and dropped the line at each part's end)."""
    frame = ('{"channel":"l2_data","client_id":"","timestamp":"2026-01-05T00:00:01.5Z","sequence_num":7,"events":'
             '[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":'
             '"2026-01-05T00:00:01.25Z","price_level":"100.5","new_quantity":"2"}]}]}')
    good = orjson.dumps({"ts_recv_ns": T_NS, "raw": frame}) + b"\n"
    table = ProductTable({"BTC-USD": ProductScale(2, 8)})
    for junk, k in [(b"\n", 40), (b"x\n", 23), (b"x\n", 24), (b"\n", 200), (b"yy\n", 150)]:
        text = junk * k + good + junk * k + good
        block = scan(guarded(text), table)
        assert block.n == text.count(b"\n")
        status = block.lines["status"][:block.n]
        assert np.flatnonzero(status == FAST).tolist() == [k, 2 * k + 1]
        assert (status != FAST).sum() == 2 * k and set(status[status != FAST].tolist()) == {SLOW}
        rows = block.rows
        assert len(rows) == 2 and rows["price"].tolist() == [10050, 10050] and rows["size"].tolist() == [2 * 10**8] * 2
        assert rows["ts_exch_ns"].tolist() == [T_NS_EXCH] * 2 and rows["seq"].tolist() == [7, 7]

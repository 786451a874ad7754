"""Raw capture files: every received WebSocket frame, exactly as received.

Format (DESIGN.md contract): JSON Lines, one object per frame, ``{"ts_recv_ns": <int>, "raw": "<frame text>"}``;
finished segments are zstd-compressed (``.jsonl.zst``). l2lab's collector adds an optional ``"conn": <int>``
(which WebSocket connection the frame came on: sequence numbers restart with each connection); readers that
do not know it ignore it, and captures without it are read as one connection.

Crash safety
    The active segment is a plain ``.jsonl`` file appended line by line and flushed to the OS every
    ``flush_interval_s`` (and fsynced on rotation/close). A ``kill -9`` can therefore lose only what was not yet
    flushed and can leave at most one partial last line. On rotation or close the segment is compressed to
    ``.jsonl.zst`` (by a worker thread, so the collector's loop does not wait) through a temporary file and an
    atomic rename, then the plain file is removed, so a compressed segment is always complete; a crash
    mid-compression leaves the plain file. ``recover()`` (run at start-up) finishes segments a crash left
    behind: it cuts a partial last line (kept in a ``.partial`` file with its byte offset, never silently
    dropped) and compresses the rest.

Segments rotate every hour of receive time (and on size), named
``<root>/exchange=<ex>/date=YYYY-MM-DD/hour=HH/capture-<first ts_recv_ns>.jsonl[.zst]``.

Compressed layout
    A compressed segment is a sequence of zstd frames, each holding whole lines (up to ``FRAME_BYTES`` of text; a
    longer line gets a frame of its own) with its decompressed size in its header. Any zstd reader reads the
    frames as one stream; :func:`read_chunks` decompresses each frame of known size (any layout, up to
    ``MAX_FRAME_TEXT`` each) straight into its own piece, which the streaming decoder cannot do (it decodes into
    its window buffer and copies out: ~20% of its time). Files with a frame of unknown size (``zstd`` streams,
    older captures) or a larger one are read by streaming, in pieces of ``CHUNK_BYTES``.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson
import zstandard

from l2lab import atomic

HOUR_NS = 3_600_000_000_000
CHUNK_BYTES = 8 << 20  # bulk reading (read_chunks): decompressed bytes per piece
FRAME_BYTES = 8 << 20  # compressed segments: text per zstd frame (whole lines)
MAX_FRAME_TEXT = 32 << 20  # read_chunks decompresses frames of known size up to this whole; larger ones stream


def hour_partition(ts_ns: int) -> str:
    t = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.timezone.utc)
    return f"date={t:%Y-%m-%d}/hour={t:%H}"


class CaptureError(ValueError):
    """A capture line that does not follow the contract; names the file and the line."""


@dataclass
class CaptureRecord:
    ts_recv_ns: int
    raw: str
    conn: int = 0
    line: int = 0  # line number in its file (for error messages)
    file: str = ""


class CaptureWriter:
    """Append frames to hourly capture segments. Not thread-safe: one writer per collector process.

    A finished segment is compressed by a worker thread (zstd releases the GIL), so rotating does not stall the
    caller's event loop (a 256 MB segment takes ~0.4 s at level 3); ``close`` waits for every compression and
    raises the first error. ``finished``: the compressed segments, in order, complete after ``close``."""

    def __init__(self, root: str | os.PathLike, exchange: str, *, flush_interval_s: float = 0.2,
                 max_segment_bytes: int = 256 << 20, compress_level: int = 3):
        self.root = Path(root) / f"exchange={exchange}"
        self.flush_interval_ns = int(flush_interval_s * 1e9)
        self.max_segment_bytes = max_segment_bytes
        self.compress_level = compress_level
        self._fh: io.BufferedWriter | None = None
        self._path: Path | None = None
        self._hour = -1
        self._last_flush_ns = 0
        self.frames_written = 0
        self.finished: list[Path] = []
        self._compressing: list[Future] = []
        self._worker: ThreadPoolExecutor | None = None
        self._lock = _lock(self.root)  # one writer per folder: recovery must not take a live writer's segment
        recover(self.root, compress_level)

    def write(self, ts_recv_ns: int, raw: str, conn: int | None = None) -> None:
        hour = ts_recv_ns // HOUR_NS
        if self._fh is None or hour != self._hour or self._fh.tell() >= self.max_segment_bytes:
            self._rotate(ts_recv_ns)
        rec = {"ts_recv_ns": ts_recv_ns, "raw": raw} if conn is None else {"ts_recv_ns": ts_recv_ns, "raw": raw, "conn": conn}
        self._fh.write(orjson.dumps(rec) + b"\n")
        self.frames_written += 1
        if ts_recv_ns - self._last_flush_ns >= self.flush_interval_ns:
            self._fh.flush()
            self._last_flush_ns = ts_recv_ns

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        try:
            self._finish()
            self._collect(wait=True)
        finally:
            if self._worker is not None:
                self._worker.shutdown()
                self._worker = None
            if self._lock is not None:
                self._lock.close()  # releases the lock once no segment is being compressed
                self._lock = None

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _rotate(self, ts_recv_ns: int) -> None:
        self._finish()
        self._hour = ts_recv_ns // HOUR_NS
        folder = self.root / hour_partition(ts_recv_ns)
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / f"capture-{ts_recv_ns}.jsonl"
        self._fh = open(self._path, "ab", buffering=1 << 20)
        self._last_flush_ns = ts_recv_ns

    def _finish(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-zstd")
        self._compressing.append(self._worker.submit(compress_segment, self._path, self.compress_level))
        self._path = None
        self._collect(wait=False)

    def _collect(self, wait: bool) -> None:
        """Move finished compressions (all of them with ``wait``) to ``finished``, in segment order."""
        while self._compressing and (wait or self._compressing[0].done()):
            self.finished.append(self._compressing.pop(0).result())


def _lock(root: Path):
    """An exclusive, non-blocking lock on ``root/.lock``, held while the writer is open (released by the OS
    if the process dies)."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    fh = open(root / ".lock", "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise CaptureError(f"another collector is writing captures under {root}; use another data root") from None
    return fh


def compress_segment(path: Path, level: int = 3) -> Path:
    """Compress a finished plain segment to ``.jsonl.zst`` atomically (frames of whole lines, see the module
    docstring) and remove the plain file."""
    target = path.with_name(path.name + ".zst")
    cctx = zstandard.ZstdCompressor(level=level)  # writes each frame's content size
    with atomic.atomic_path(target) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        for text in _whole_line_frames(iter(lambda: src.read(FRAME_BYTES), b"")):
            dst.write(cctx.compress(text))
    path.unlink()
    return target


def _whole_line_frames(blocks: Iterator[bytes]) -> Iterator[bytearray]:
    """The text of ``blocks`` regrouped into frames that end at a line end, cut once ``FRAME_BYTES`` have gathered
    (so about that size; a longer line makes a longer frame), then the rest; one empty frame if there is no text
    (so an empty segment is still a valid zstd file)."""
    pending, sent = bytearray(), False
    for block in blocks:
        pending += block
        if len(pending) >= FRAME_BYTES:
            cut = pending.rfind(b"\n") + 1
            if cut:
                yield pending[:cut]
                del pending[:cut]
                sent = True
    if pending or not sent:
        yield pending


def recover(root: Path, level: int = 3) -> list[Path]:
    """Finish plain segments left by a crash: keep whole lines, move a partial last line aside, compress."""
    done = []
    if not root.exists():
        return done
    for path in sorted(root.rglob("capture-*.jsonl")):
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            partial = path.with_name(path.name + ".partial")
            atomic.write_bytes(partial, orjson.dumps({"file": path.name, "offset": cut, "bytes": data[cut:].decode("utf-8", "replace")}) + b"\n")
            with open(path, "r+b") as fh:
                fh.truncate(cut)
        if cut == 0:
            path.unlink()
            continue
        done.append(compress_segment(path, level))
    return done


def capture_files(path: str | os.PathLike) -> list[Path]:
    """A capture file, or every capture segment under a folder, in receive-time order."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.exists():
        raise FileNotFoundError(f"no capture at {p}")
    files = [f for f in p.rglob("capture-*") if f.name.endswith((".jsonl", ".jsonl.zst"))]
    return sorted(files, key=lambda f: int(f.name.split("-", 1)[1].split(".", 1)[0]))


def read_capture(path: str | os.PathLike, *, strict: bool = True) -> Iterator[CaptureRecord]:
    """Frames from a capture file or folder, in file order. A malformed line raises :class:`CaptureError`
    naming the file and line (``strict=False`` skips it instead; a plain segment's partial last line from a
    crash is always skipped)."""
    for f in capture_files(path):
        yield from _read_file(f, strict)


def _read_file(f: Path, strict: bool) -> Iterator[CaptureRecord]:
    if f.name.endswith(".zst"):
        data = f.read_bytes()
        _checked_frames(f, data)  # zstd's streaming decoder would end a truncated file silently
        stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(data), 1 << 20)
        yield from _parse_lines(f, stream, strict, tolerate_partial_tail=False)
    else:
        with open(f, "rb") as fh:
            yield from _parse_lines(f, fh, strict, tolerate_partial_tail=True)


def _parse_lines(f: Path, stream, strict: bool, tolerate_partial_tail: bool) -> Iterator[CaptureRecord]:
    for lineno, line in enumerate(stream, 1):
        if not line.endswith(b"\n") and tolerate_partial_tail:
            return  # a crash cut this line; recover() keeps it aside
        rec = parse_line(f, lineno, line, strict)
        if rec is not None:
            yield rec


def parse_line(f: Path, lineno: int, line: bytes, strict: bool = True) -> CaptureRecord | None:
    """One capture line -> its record; ``None`` for a blank line (or, with ``strict=False``, a bad one)."""
    if not line.strip():
        return None
    try:
        obj = orjson.loads(line)
        ts, raw, conn = obj["ts_recv_ns"], obj["raw"], obj.get("conn", 0)
        if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(raw, str):
            raise TypeError("ts_recv_ns must be an integer and raw a string")
        if not isinstance(conn, int) or isinstance(conn, bool):
            raise TypeError("conn must be an integer")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        if strict:
            raise CaptureError(f"{f}: line {lineno}: not a capture record ({exc})") from None
        return None
    return CaptureRecord(ts, raw, conn, lineno, str(f))


def read_chunks(f: Path, size: int | None = None) -> Iterator[memoryview]:
    """A capture file's bytes in pieces of whole lines (line numbers: count the newlines). Each piece ends with a
    newline, except the last piece of a compressed segment whose final line has none; a plain segment's partial
    last line (a crash) is left out, as :func:`read_capture` skips it.

    Each piece is a read-only view of its own buffer (the scan blocks of ``collectors.ingest`` keep pieces
    alive). A compressed segment made of frames of known size (``compress_segment``) is decompressed frame by
    frame, each straight into its piece; other files are read (or stream-decompressed) straight into pieces of
    ``size`` bytes, so no byte is copied but a partial line carried over."""
    f = Path(f)
    size = size or CHUNK_BYTES
    if f.name.endswith(".zst"):
        data = f.read_bytes()
        frames = _checked_frames(f, data)
        if all(n is not None and n <= MAX_FRAME_TEXT for _, _, n in frames):
            yield from _frame_pieces(f, data, frames)
        else:
            yield from _stream_pieces(zstandard.ZstdDecompressor().stream_reader(data), size, compressed=True)
        return
    with open(f, "rb") as fh:
        yield from _stream_pieces(fh, size, compressed=False)


def _stream_pieces(stream, size: int, compressed: bool) -> Iterator[memoryview]:
    """``stream``'s bytes read straight into pieces of ``size`` bytes cut after their last newline (the rest is
    carried into the next piece); the final partial line is a piece of its own only for a compressed segment (a
    plain segment's is a crash's cut line)."""
    carry = b""
    while True:
        buf = memoryview(np.empty(len(carry) + size, np.uint8))  # not zeroed: the read overwrites it
        buf[:len(carry)] = carry
        got = _read_into(stream, buf[len(carry):])
        if not got:
            break
        data = buf[:len(carry) + got]
        cut = _last_newline(data) + 1
        if cut == 0:
            carry = bytes(data)
            continue
        carry = bytes(data[cut:])
        yield data[:cut].toreadonly()
    if carry and compressed:
        yield memoryview(carry)


def _checked_frames(f: Path, data: bytes) -> list:
    """:func:`zstd_frames` of file ``f``; a file that is not whole frames raises :class:`CaptureError`."""
    try:
        return zstd_frames(data)
    except ValueError as exc:
        raise CaptureError(f"{f}: {exc}") from None


def _frame_pieces(f: Path, data: bytes, frames: list) -> Iterator[memoryview]:
    """The text of zstd frames ``(start, end, size)`` of ``data`` in pieces of whole lines: one piece per frame
    when frames end at line ends (``compress_segment``), else the partial line is carried into the next."""
    dctx = zstandard.ZstdDecompressor()
    view = memoryview(data)
    carry = b""
    for a, b, _ in frames:
        try:
            text = dctx.decompress(view[a:b])
        except zstandard.ZstdError as exc:
            raise CaptureError(f"{f}: zstd frame at byte {a}: {exc}") from None
        if carry:
            text = carry + text
        cut = text.rfind(b"\n") + 1
        carry = text[cut:] if cut < len(text) else b""
        if cut:
            yield memoryview(text)[:cut]
    if carry:
        yield memoryview(carry)


_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE = 0x184D2A50  # skippable frames: magic 0x184D2A50-0x184D2A5F, 4-byte length, payload


def zstd_frames(data: bytes) -> list[tuple[int, int, int | None]]:
    """``(start, end, decompressed size or None if the frame does not record it)`` of each zstd frame of
    ``data`` (skippable frames and empty frames left out), found by walking frame and block headers (RFC 8878:
    3-byte block headers, bit 0 last block, bits 1-2 type, the rest the size; an RLE block carries one byte; a
    4-byte checksum may follow the last block). Raises ``ValueError`` naming the byte where ``data`` stops being
    whole frames (a truncated or damaged file), which a streaming decoder would pass over silently. A file cut
    exactly between two frames is whole frames and cannot be told from a shorter file."""
    out, pos, n = [], 0, len(data)
    while pos < n:
        if pos + 8 > n:
            raise ValueError(f"truncated zstd frame at byte {pos}")
        magic = int.from_bytes(data[pos:pos + 4], "little")
        if magic & 0xFFFFFFF0 == _SKIPPABLE:
            pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "little")
            if pos > n:
                raise ValueError(f"truncated skippable frame before byte {n}")
            continue
        if magic != _ZSTD_MAGIC:
            raise ValueError(f"no zstd frame at byte {pos}")
        try:
            head = zstandard.frame_header_size(data[pos:pos + 18])
            params = zstandard.get_frame_parameters(data[pos:pos + 18])
        except zstandard.ZstdError as exc:
            raise ValueError(f"bad zstd frame header at byte {pos}: {exc}") from None
        start, pos = pos, pos + head
        while True:
            if pos + 3 > n:
                raise ValueError(f"truncated zstd frame at byte {start}")
            h = int.from_bytes(data[pos:pos + 3], "little")
            kind = (h >> 1) & 3
            if kind == 3:
                raise ValueError(f"bad zstd block at byte {pos}")
            pos += 3 + (1 if kind == 1 else h >> 3)
            if h & 1:
                break
        pos += 4 if params.has_checksum else 0
        if pos > n:
            raise ValueError(f"truncated zstd frame at byte {start}")
        size = None if params.content_size == zstandard.CONTENTSIZE_UNKNOWN else params.content_size
        if size != 0:
            out.append((start, pos, size))
    return out


def _read_into(stream, view: memoryview) -> int:
    """Fill ``view`` from ``stream`` as far as the stream goes; bytes read."""
    n = 0
    while n < len(view):
        got = stream.readinto(view[n:])
        if not got:
            break
        n += got
    return n


def _last_newline(data: memoryview) -> int:
    """Index of the last newline in ``data``, -1 if none (searched from the end, a window at a time)."""
    end = len(data)
    window = 1 << 16
    while end > 0:
        start = max(0, end - window)
        k = bytes(data[start:end]).rfind(b"\n")
        if k >= 0:
            return start + k
        end = start
        window *= 4
    return -1


def write_capture(path: str | os.PathLike, records: Iterator[tuple[int, str]]) -> int:
    """Write a single capture file (``.jsonl`` or ``.jsonl.zst``, the layout of ``compress_segment``) atomically;
    returns the number of frames."""
    path = Path(path)
    zst = path.name.endswith(".zst")
    cctx = zstandard.ZstdCompressor(level=3)
    n = 0

    def lines():
        nonlocal n
        for ts, raw in records:
            n += 1
            yield orjson.dumps({"ts_recv_ns": int(ts), "raw": raw}) + b"\n"

    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for text in _whole_line_frames(lines()):
            if zst:
                fh.write(cctx.compress(text))
            elif text:
                fh.write(text)
    return n

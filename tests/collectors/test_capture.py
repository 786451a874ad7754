import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading

import orjson
import pytest
import zstandard

import collectors.capture as capture_mod
from collectors.capture import (
    CaptureError, CaptureWriter, compress_segment, read_capture, read_chunks, write_capture, zstd_frames,
)

T0 = 1_767_571_200_000_000_000  # 2026-01-05T00:00:00Z


def test_rotates_hourly_and_round_trips(tmp_path):
    frames = [(T0 + i * 4_000_000_000, f'{{"i":{i},"s":"é\\n"}}') for i in range(2000)]  # ~2.2 hours
    with CaptureWriter(tmp_path, "coinbase") as w:
        for ts, raw in frames:
            w.write(ts, raw)
    assert len(w.finished) == 3 and all(p.name.endswith(".jsonl.zst") for p in w.finished)
    assert [(r.ts_recv_ns, r.raw) for r in read_capture(tmp_path)] == frames


def test_single_file_round_trip_and_bad_lines(tmp_path):
    f = tmp_path / "cap.jsonl.zst"
    assert write_capture(f, [(1, "a"), (2, "b")]) == 2
    assert [r.raw for r in read_capture(f)] == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts_recv_ns": 1, "raw": "x"}\n{"ts_recv_ns": "2", "raw": "y"}\n')
    with pytest.raises(CaptureError, match=r"bad\.jsonl: line 2"):
        list(read_capture(bad))
    assert [r.raw for r in read_capture(bad, strict=False)] == ["x"]


def test_kill_9_loses_only_the_unflushed_tail_and_restart_recovers(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from collectors.capture import CaptureWriter
        w = CaptureWriter(sys.argv[1], "coinbase", flush_interval_s=0.0)
        i = 0
        while True:
            w.write({T0} + i, '{{"i":%d}}' % i)
            i += 1
            if i == 5000:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # what a reader sees before recovery: whole lines only, in order, no gaps
    got = [r.raw for r in read_capture(tmp_path)]
    assert len(got) >= 5000
    assert got == [f'{{"i":{i}}}' for i in range(len(got))]
    # a restarted writer finishes the segment; nothing that was flushed is lost
    CaptureWriter(tmp_path, "coinbase").close()
    after = [r.raw for r in read_capture(tmp_path)]
    assert after[: len(got)] == got
    assert not list(tmp_path.rglob("*.jsonl"))  # all segments compressed


def test_one_writer_per_folder(tmp_path):
    with CaptureWriter(tmp_path, "coinbase"):
        with pytest.raises(CaptureError, match="another collector"):
            CaptureWriter(tmp_path, "coinbase")
    CaptureWriter(tmp_path, "coinbase").close()  # free again once the first one closed


# -- compressed layout: frames of whole lines, read frame by frame ------------------------------------------------
def _lines(n, rng, long_every=0):
    out = []
    for i in range(n):
        pad = "x" * (rng.randrange(0, 300) if not long_every or i % long_every else 5000)
        out.append(orjson.dumps({"ts_recv_ns": T0 + i, "raw": f'{{"i":{i},"p":"{pad}"}}'}) + b"\n")
    return out


def _pieces(f, size=None):
    return [bytes(p) for p in read_chunks(f, size)]


def test_compressed_segment_is_frames_of_whole_lines_read_one_piece_per_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(capture_mod, "FRAME_BYTES", 4096)
    rng = random.Random(3)
    text = b"".join(_lines(600, rng, long_every=97))  # some lines longer than a frame
    plain = tmp_path / "capture-1.jsonl"
    plain.write_bytes(text)
    f = compress_segment(plain)
    assert not plain.exists() and f.name == "capture-1.jsonl.zst"
    data = f.read_bytes()
    frames = zstd_frames(data)
    assert len(frames) > 30
    texts = [zstandard.ZstdDecompressor().decompress(data[a:b]) for a, b, _ in frames]
    assert b"".join(texts) == text
    for t, (_, _, n) in zip(texts, frames):
        assert len(t) == n and t.endswith(b"\n")
        assert len(t) <= 4096 + 5400 or t.count(b"\n") == 1  # a frame's text, or one long line of its own
    assert _pieces(f) == texts  # one piece per frame, decompressed straight into it
    assert zstandard.ZstdDecompressor().stream_reader(data).read() == text  # any zstd reader: one stream
    assert [r.ts_recv_ns for r in read_capture(f)] == [T0 + i for i in range(600)]


@pytest.mark.parametrize("layout", ["one streamed frame", "frames cut mid-line", "skippable and empty frames"])
def test_other_zstd_layouts_read_the_same(tmp_path, layout):
    rng = random.Random(4)
    text = b"".join(_lines(400, rng))
    f = tmp_path / "capture-1.jsonl.zst"
    cctx = zstandard.ZstdCompressor(level=3)
    if layout == "one streamed frame":  # no content size: read by streaming
        with open(f, "wb") as fh, cctx.stream_writer(fh) as w:
            w.write(text)
        assert zstd_frames(f.read_bytes())[0][2] is None
    else:
        cuts = sorted(rng.sample(range(1, len(text)), 12))
        parts = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
        frames = [cctx.compress(p) for p in parts]
        if layout == "skippable and empty frames":
            skip = (0x184D2A5A).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
            frames = [frames[0], skip, cctx.compress(b"")] + frames[1:] + [skip]
        f.write_bytes(b"".join(frames))
    pieces = _pieces(f, 2048)
    assert b"".join(pieces) == text and all(p.endswith(b"\n") for p in pieces)
    assert [r.ts_recv_ns for r in read_capture(f)] == [T0 + i for i in range(400)]


def test_a_truncated_or_damaged_compressed_segment_is_an_error_not_a_short_read(tmp_path):
    rng = random.Random(5)
    plain = tmp_path / "capture-1.jsonl"
    plain.write_bytes(b"".join(_lines(3000, rng)))
    data = compress_segment(plain).read_bytes()
    streamed = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(streamed, closefd=False) as w:  # one frame of unknown size
        w.write(b"".join(_lines(3000, rng)))
    skip = (0x184D2A50).to_bytes(4, "little") + (100).to_bytes(4, "little") + b"x" * 10
    for name, damaged in [("cut", data[: len(data) * 2 // 3]), ("tail", data + b"\x00garbage"),
                          ("streamed-cut", streamed.getvalue()[:-7]), ("skippable-cut", data + skip)]:
        f = tmp_path / f"capture-{name}.jsonl.zst"
        f.write_bytes(damaged)
        with pytest.raises(CaptureError, match=rf"capture-{name}\.jsonl\.zst: .*byte \d+"):
            _pieces(f)
        with pytest.raises(CaptureError, match=rf"capture-{name}\.jsonl\.zst"):
            list(read_capture(f))


def test_rotation_hands_the_segment_to_a_worker_and_close_waits(tmp_path, monkeypatch):
    """Compressing a finished segment does not hold up the write that rotated (the collector's event loop): that
    write returns while the worker is still compressing; close waits for it."""
    started, release = threading.Event(), threading.Event()
    real = capture_mod.compress_segment

    def held(path, level=3):
        started.set()
        release.wait(30)
        return real(path, level)

    monkeypatch.setattr(capture_mod, "compress_segment", held)
    w = CaptureWriter(tmp_path, "coinbase")
    w.write(T0, "a")
    w.write(T0 + 3_600_000_000_000, "b")  # the next hour: rotates
    assert started.wait(10)
    assert not release.is_set() and w.finished == []  # the rotating write came back mid-compression
    release.set()
    w.close()
    assert len(w.finished) == 2 and all(p.name.endswith(".jsonl.zst") for p in w.finished)
    assert not list(tmp_path.rglob("capture-*.jsonl"))
    assert [r.raw for r in read_capture(tmp_path)] == ["a", "b"]


def test_a_failed_compression_is_raised_at_close_and_recovered_on_restart(tmp_path, monkeypatch):
    def broken(path, level=3):
        raise OSError("disk full")

    monkeypatch.setattr(capture_mod, "compress_segment", broken)
    w = CaptureWriter(tmp_path, "coinbase")
    w.write(T0, "a")
    with pytest.raises(OSError, match="disk full"):
        w.close()
    monkeypatch.undo()
    with CaptureWriter(tmp_path, "coinbase"):  # the lock was released; recover() compresses the plain segment
        pass
    assert [r.raw for r in read_capture(tmp_path)] == ["a"]
    assert not list(tmp_path.rglob("capture-*.jsonl"))

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from collectors.capture import CaptureError, CaptureWriter, read_capture, write_capture

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

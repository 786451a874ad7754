"""kill -9 of ``l2lab collect`` (a child process) against a loopback exchange paced at 10x, then a restart.

What a SIGKILL may cost, precisely:
* raw capture: only frames not yet flushed to the OS (the writer flushes every ``capture_flush_s`` of receive
  time and at every bronze flush) and frames in flight; what is in the file is a gap-free prefix of what the
  venue sent on that connection. A partial last line is skipped by readers and set aside (``.partial``) by the
  restarted writer, which compresses the crashed segment;
* live bronze: the rows since the last bronze flush (re-ingesting the capture recovers those whose frames were
  flushed); bronze is never ahead of the capture;
* across the restart: what the venue sent while no collector ran, except the recent trades its trade snapshot
  repeats on subscribe. Those repeated trades are the only duplicates the live bronze of two processes can hold
  (at most the venue's snapshot window per product); ingesting all captures in one pass has none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from collectors.bronze import read_dataset
from collectors.capture import capture_files, read_capture
from collectors.ingest import ingest_capture
from collectors.timeparse import rfc3339_to_ns
from l2lab.schema import GAP_DISCONNECT, GAP_STOP
from loopback.server import BackgroundExchange
from simulator.events import KIND_TRADE
from simulator.l2 import MarketSimulator
from simulator.recording import RecordingSimulator

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]
ROOT = Path(__file__).resolve().parents[2]
TRADE_WINDOW = 2000
pytestmark = pytest.mark.timeout(90)


def collect(data_root: Path, ex, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "l2lab.cli", "--data-root", str(data_root), "collect", "--ws-url", ex.ws_url,
           "--rest-url", ex.rest_url, "--venue-clock", f"{ex.rest_url}/l2lab/clock", "--symbols", ",".join(SYMBOLS),
           "--bronze-flush", "0.5", "--quiet", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(data_root: Path) -> int:
    files = list((data_root / "raw").rglob("capture-*.jsonl"))
    return sum(f.read_bytes().count(b"\n") for f in files)


def wait(cond, timeout, proc, what):
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"collector exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.05)


async def connections(ex):
    return list(ex.ws.connections.values())


def trade_ids(root: Path) -> dict[str, list[int]]:
    return {s: read_dataset(root / "bronze", "trades", symbol=s).column("trade_id").to_pylist() for s in SYMBOLS}


def test_kill_9_and_restart(tmp_path):
    data = tmp_path / "data"
    sim = RecordingSimulator(MarketSimulator(seed=4, record_latent=False))
    t0 = time.monotonic()
    # a long recent-trades window, so that the restart's trade snapshot overlaps what the first run recorded
    with BackgroundExchange(sim=sim, speed=10.0, perps=False, trade_window=TRADE_WINDOW) as ex:
        first = collect(data, ex)
        try:
            # running: bronze flushed at least twice with trades, thousands of frames in the capture
            wait(lambda: len(list((data / "bronze" / "trades").rglob("*.parquet"))) >= 6 and lines(data) > 3000,
                 30, first, "first collector did not collect")
            server_conns = ex.call(connections(ex))
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            time.sleep(0.3)
            sent_after = sum(c.frames_sent for c in server_conns)
        finally:
            if first.poll() is None:
                first.kill()
            first.communicate()
        assert first.returncode == -signal.SIGKILL

        # --- after the crash, before any restart ----------------------------------------------------------
        for f in (data / "bronze").rglob("*.parquet"):
            pq.read_table(f)  # every part file is whole (temp file + rename)
        (crashed,) = list((data / "raw").rglob("capture-*.jsonl"))
        tail_cut = not crashed.read_bytes().endswith(b"\n")
        recs = list(read_capture(data / "raw"))  # strict: only a partial last line may be skipped
        seqs = [orjson.loads(r.raw)["sequence_num"] for r in recs]
        assert seqs == list(range(len(seqs)))  # a gap-free prefix of what the venue sent on the connection
        assert {r.conn for r in recs} == {recs[0].conn}
        assert len(server_conns) == 1 and len(recs) <= sent_after
        bronze_1 = trade_ids(data)
        captured_1 = tmp_path / "captured_1"
        ingest_capture(data / "raw" / "exchange=coinbase", captured_1)
        for s in SYMBOLS:  # bronze is never ahead of the capture
            assert bronze_1[s] and set(bronze_1[s]) <= set(trade_ids(captured_1)[s]), s

        # --- restart --------------------------------------------------------------------------------------
        t_restart = time.monotonic()
        second = collect(data, ex, "--duration", "2")
        out, err = second.communicate(timeout=40)
        second_wall = time.monotonic() - t_restart
        assert second.returncode == 0, err[-3000:]
        report = json.loads(out[out.index("{"):])
        events = np.concatenate(sim.chunks)

    # the crashed segment was recovered: compressed, its partial line (if any) set aside, its frames intact
    assert not list((data / "raw").rglob("*.jsonl"))
    recovered = crashed.with_name(crashed.name + ".zst")
    assert recovered.exists()
    assert [(r.ts_recv_ns, r.raw) for r in read_capture(recovered)] == [(r.ts_recv_ns, r.raw) for r in recs]
    assert crashed.with_name(crashed.name + ".partial").exists() == tail_cut
    segments = capture_files(data / "raw")
    assert len(segments) == 2 and segments[0] == recovered and report["capture_files"] == [str(segments[1])]
    assert report["frames"] > 1000 and report["connections"] == 1

    # bronze grew; its only duplicates are trades of the restart's trade snapshot that the first run had written
    bronze_2 = trade_ids(data)
    snapshot = {(t["product_id"], int(t["trade_id"])) for r in read_capture(segments[1]) for m in [orjson.loads(r.raw)]
                if m.get("channel") == "market_trades" for ev in m["events"] if ev["type"] == "snapshot"
                for t in ev["trades"]}
    dup_live = 0
    for s in SYMBOLS:
        assert len(bronze_2[s]) > len(bronze_1[s]), s
        counts = Counter(bronze_2[s])
        dups = {i for i, n in counts.items() if n > 1}
        assert all(counts[i] == 2 for i in dups) and dups <= set(bronze_1[s]), s
        assert {(s, i) for i in dups} <= snapshot, s
        dup_live += len(dups)
    assert 0 < dup_live <= TRADE_WINDOW * len(SYMBOLS)

    # one pass over all captures: no duplicate trade, the restart marked as a disconnect gap
    every = tmp_path / "every"
    res = ingest_capture(data / "raw" / "exchange=coinbase", every)
    assert res["frames"] == len(recs) + report["frames"]
    all_ids = trade_ids(every)
    gaps = read_dataset(every / "bronze", "gaps").to_pylist()
    restart = [g for g in gaps if g["kind"] == GAP_DISCONNECT]
    assert len(restart) == 1 and restart[0]["conn"] == recs[0].conn
    assert restart[0]["products"] == ",".join(SYMBOLS)
    assert [g["kind"] for g in gaps].count(GAP_STOP) == 1

    # what was lost: only trades the venue made while no collector ran (between the first process's last
    # captured frame and the second's first), beyond the snapshot's window
    captured = list(read_capture(data / "raw"))
    stamps = [(r.conn, rfc3339_to_ns(orjson.loads(r.raw)["timestamp"])) for r in captured]
    down_from = max(t for c, t in stamps if c == recs[0].conn)
    down_to = min(t for c, t in stamps if c != recs[0].conn)
    start, end = min(t for _, t in stamps), max(t for _, t in stamps)
    lost = 0
    for k, s in enumerate(SYMBOLS):
        ids = all_ids[s]
        assert len(ids) == len(set(ids)) and set(bronze_2[s]) <= set(ids), s
        tv = events[(events["symbol"] == k) & (events["kind"] == KIND_TRADE)]
        venue = dict(zip(tv["trade_id"].tolist(), tv["ts_ns"].tolist()))
        missing = [i for i, t in venue.items() if i not in set(ids) and start <= t <= end]
        assert all(down_from <= venue[i] <= down_to for i in missing), s
        lost += len(missing)
    print(f"\nkill -9 with {len(recs)} frames in the capture of {sent_after} the venue had written to the socket "
          f"(in flight or unflushed: {sent_after - len(recs)}; partial last line: {tail_cut}); second run "
          f"{report['frames']} frames in {second_wall:.1f} s wall; outage {(down_to - down_from) / 1e9:.1f} venue s; "
          f"live bronze duplicate trades {dup_live}; trades lost in the outage {lost}; wall {time.monotonic() - t0:.1f} s")

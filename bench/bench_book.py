"""Book rebuild throughput: level changes/s with the best bid/ask read after every venue message.

Contenders, all fed the same messages in the same run:
* ``numba``: kernels.book's ladder (apply + best bid/ask after each message);
* ``numba_top20``: the full :class:`kernels.book.BookRebuilder` (top-20 at every frame end + 100 ms / 1 s grids);
* ``dict``: a dict per side, best = max(bids) / min(asks) after each message (pure Python);
* ``sorteddict``: sortedcontainers.SortedDict per side, best = peekitem;
* ``order_book``: the ``order-book`` C package, if pip can install it into a temporary directory (skipped if not);
* ``hftbacktest``: the Rust backtester (PyPI ``hftbacktest``, pip-installed into a temporary directory, skipped if
  that fails), our rows converted to its ``event_dtype`` and replayed through its market-depth backtest one
  message at a time (``wait_next_feed``: every event with the next timestamp), best bid/ask read after each.
  Three set-ups: ``hftbacktest`` = ``HashMapMarketDepthBacktest`` with LOCAL_EVENT rows only (one book, the
  closest to what the numba kernel does); ``hftbacktest_exch`` = the same with EXCH_EVENT | LOCAL_EVENT rows, as
  its own converters write them (the exchange model keeps a second book for fills: a real backtest's replay
  cost); ``hftbacktest_roivec`` = ``ROIVectorMarketDepthBacktest``, LOCAL_EVENT rows, its price window set to the
  stream's whole price range (known in advance). It runs in a child process (its peak RSS and virtual memory
  are its own; a crash cannot take this process down), on the full streams, after checking on a small stream
  (with a mid-stream reset snapshot) that its best bid/ask prices and sizes equal our book's after every
  message; on the full streams its message count, checksum of best bid/ask after every message and final best
  bid/ask must equal the numba kernel's (asserted).

Streams: a 10M-change synthetic stream (touch random walk, changes concentrated near the touch with a fat
tail, deletes of existing levels, messages of 1..~30 changes, a book of ~2-3k levels per side), generated
and fed in 1M-row partitions so memory stays bounded; and 20 minutes of the simulator's BTC-USD. The Python
baselines run on a 1M-change prefix of the same stream (the rate is stationary; 10M would take minutes).
Compilation, stream generation and the conversion to hftbacktest's events are outside the timed regions.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from kernels import ladder as L
from kernels.book import BookRebuilder, apply_event
from l2lab.schema import (
    FLAG_BOOK_RESET, FLAG_DUPLICATE, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_SNAPSHOT, L2_UPDATE,
)

N_CHANGES = 10_000_000
PARTITION = 1_000_000
SIM_PARTITION = 250_000  # ~1 change per message here: 250k top-20 samples of 640 B each per partition
BASELINE_CHANGES = 1_000_000
SIM_SECONDS = 1200
MID0 = 10_000_000  # ticks (BTC at 100,000.00 with a 0.01 tick)
GEN_WIDTH = 1 << 16  # generator's own book window around MID0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- synthetic stream --------------------------------------------------------------------------------------
@njit(cache=True)
def _gen(n, state, book, out_side, out_price, out_size, out_end, seed):
    """n level changes; ``state`` = (mid, rng) carried between partitions, ``book`` the generator's truth."""
    np.random.seed(seed)
    mid = state[0]
    i = 0
    while i < n:
        if np.random.random() < 0.1:  # the touch moves one tick; levels it crosses are removed
            step = 1 if np.random.random() < 0.5 else -1
            mid += step
            side = 1 if step > 0 else 0  # that side's level at the new mid would cross
            idx = mid - MID0 + GEN_WIDTH // 2
            if book[side, idx] > 0:
                book[side, idx] = 0
                out_side[i], out_price[i], out_size[i], out_end[i] = side, mid, 0, False
                i += 1
        m = 1 + int(np.random.exponential(6.0))
        for _ in range(m):
            if i >= n:
                break
            side = 0 if np.random.random() < 0.5 else 1
            if np.random.random() < 0.93:
                d = int(np.random.exponential(8.0))
            else:
                d = int(np.random.random() * 5000)
            p = mid - 1 - d if side == 0 else mid + 1 + d
            idx = p - MID0 + GEN_WIDTH // 2
            if idx < 0 or idx >= GEN_WIDTH:
                continue
            if book[side, idx] > 0 and np.random.random() < 0.35:
                size = 0
            else:
                size = 1 + int(np.random.exponential(50_000_000.0))
            book[side, idx] = size
            out_side[i], out_price[i], out_size[i], out_end[i] = side, p, size, False
            i += 1
        if i > 0:
            out_end[i - 1] = True
    out_end[n - 1] = True
    state[0] = mid


class SyntheticStream:
    """Partitions of L2_EVENT_DTYPE rows (tick = 1 mantissa), starting with a snapshot of an empty book."""

    def __init__(self, seed: int = 7):
        self.state = np.array([MID0], dtype=np.int64)
        self.book = np.zeros((2, GEN_WIDTH), dtype=np.int64)
        self.seed = seed
        self.k = 0
        self.t = 1_700_000_000_000_000_000

    def partition(self, n: int) -> np.ndarray:
        side = np.empty(n, np.int64)
        price = np.empty(n, np.int64)
        size = np.empty(n, np.int64)
        end = np.empty(n, np.bool_)
        _gen(n, self.state, self.book, side, price, size, end, self.seed * 1000 + self.k)
        self.k += 1
        ev = np.zeros(n, dtype=L2_EVENT_DTYPE)
        frame = np.r_[0, np.cumsum(end[:-1])]
        ev["ts_recv_ns"] = self.t + frame * 137_000  # ~7k messages/s, busier than BTC-USD's real peak
        self.t = int(ev["ts_recv_ns"][-1]) + 137_000
        ev["ts_exch_ns"] = ev["ts_recv_ns"]
        ev["kind"] = np.where(size == 0, L2_DELETE, L2_UPDATE)
        ev["side"] = side
        ev["price"] = price
        ev["size"] = size
        ev["flags"] = np.where(end, FLAG_FRAME_END, 0)
        return ev


def empty_snapshot(ts: int) -> np.ndarray:
    ev = np.zeros(1, dtype=L2_EVENT_DTYPE)
    ev[0] = (ts, ts, 0, L2_SNAPSHOT, 0, 0, 0, FLAG_BOOK_RESET | FLAG_FRAME_END)
    return ev


# -- contenders --------------------------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def numba_best_after_each_message(ev, lad, bits, summ, ovk, ovs, sc, bs):
    """Apply rows; after every frame end read best bid and ask. Returns (rows done, checksum)."""
    acc = 0
    cap = ovk.shape[1]
    for i in range(ev.shape[0]):
        if L.n_levels(sc, 0) + 2 > cap or L.n_levels(sc, 1) + 2 > cap:
            return i, acc
        r = ev[i]
        if apply_event(lad, bits, summ, ovk, ovs, sc, bs, r.kind, r.side, r.price, r.size, r.flags):
            bp, bq = L.best_level(lad, ovk, ovs, sc, 0)
            ap, aq = L.best_level(lad, ovk, ovs, sc, 1)
            acc += bp - ap + bq + aq
    return ev.shape[0], acc


def run_numba(b: BookRebuilder, ev: np.ndarray) -> int:
    ld = b.ladder
    done, acc = 0, 0
    while done < len(ev):
        d, a = numba_best_after_each_message(ev[done:], ld.lad, ld.bits, ld.summ, ld.ovk, ld.ovs, ld.sc, b.bs)
        done, acc = done + d, acc + a
        if done < len(ev):
            ld.reserve(2 * int(max(L.n_levels(ld.sc, 0), L.n_levels(ld.sc, 1))) + 16)
    return acc


def to_messages(ev: np.ndarray) -> list[list[tuple[int, int, int]]]:
    ends = np.flatnonzero(ev["flags"] & FLAG_FRAME_END) + 1
    rows = list(zip(ev["side"].tolist(), ev["price"].tolist(), ev["size"].tolist()))
    out, lo = [], 0
    for hi in ends.tolist():
        out.append(rows[lo:hi])
        lo = hi
    return out


def run_dict(messages) -> int:
    bids, asks = {}, {}
    books = (bids, asks)
    acc = 0
    for msg in messages:
        for side, price, size in msg:
            if size:
                books[side][price] = size
            else:
                books[side].pop(price, None)
        bp = max(bids) if bids else 0
        ap = min(asks) if asks else 0
        acc += bp - ap + bids.get(bp, 0) + asks.get(ap, 0)
    return acc


def run_sorteddict(messages) -> int:
    from sortedcontainers import SortedDict

    bids, asks = SortedDict(), SortedDict()
    books = (bids, asks)
    acc = 0
    for msg in messages:
        for side, price, size in msg:
            if size:
                books[side][price] = size
            else:
                books[side].pop(price, None)
        bp, bq = bids.peekitem(-1) if bids else (0, 0)
        ap, aq = asks.peekitem(0) if asks else (0, 0)
        acc += bp - ap + bq + aq
    return acc


def _version(dist: str):
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load_order_book():
    """The ``order-book`` C package, pip-installed into a temporary directory (never into the venv)."""
    try:
        return importlib.import_module("order_book")
    except ImportError:
        pass
    target = tempfile.mkdtemp(prefix="l2lab-order-book-")
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", target, "order-book"], check=True, timeout=180,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sys.path.insert(0, target)
        return importlib.import_module("order_book")
    except Exception as exc:  # noqa: BLE001 - optional contender
        print(f"   order-book: unavailable ({type(exc).__name__}), skipped")
        return None


def run_order_book(mod, messages) -> int:
    ob = mod.OrderBook()
    bids, asks = ob.bids, ob.asks
    books = (bids, asks)
    acc = 0
    for msg in messages:
        for side, price, size in msg:
            if size:
                books[side][price] = size
            elif price in books[side]:
                del books[side][price]
        bp, bq = bids.index(0) if len(bids) else (0, 0)
        ap, aq = asks.index(0) if len(asks) else (0, 0)
        acc += bp - ap + bq + aq
    return acc


# -- hftbacktest (runs in a child process: see bench_hftbacktest) ------------------------------------------
HFTBACKTEST_SPEC = "hftbacktest==2.4.4"  # pinned: its Python API has changed between releases
HBT_STEP_TIMEOUT = 10**15  # ns handed to wait_next_feed: longer than any gap between two messages
_I64_MIN = np.iinfo(np.int64).min  # hftbacktest's best tick of an empty bid side
_I64_MAX = np.iinfo(np.int64).max  # ... and of an empty ask side


def install_hftbacktest() -> str | None:
    """Directory to put on the child's path ("" if the venv already has hftbacktest), None if pip failed.

    ``--no-deps``: its declared requirements (numpy < 2.3, numba, polars, matplotlib, holoviews) would put a
    second numpy and numba into the directory; the backtester itself imports only numpy and numba (the venv's).
    """
    if importlib.util.find_spec("hftbacktest") is not None:
        return ""
    target = tempfile.mkdtemp(prefix="l2lab-hftbacktest-")
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--target", target, HFTBACKTEST_SPEC], check=True, timeout=180,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except Exception as exc:  # noqa: BLE001 - optional contender
        why = (getattr(exc, "stderr", None) or "").strip().splitlines()
        why = why[-1] if why else f"{type(exc).__name__}: {exc}"
        print(f"   hftbacktest: pip install {HFTBACKTEST_SPEC} failed ({why}), skipped")
        shutil.rmtree(target, ignore_errors=True)
        return None
    return target


def to_hbt_events(H, ev: np.ndarray, exch: bool, out: np.ndarray | None = None) -> np.ndarray:
    """Our rows as hftbacktest events (``H.event_dtype``), with exch_ts = local_ts = ts_recv_ns; written to the
    start of ``out`` (zeroed, with room) if given. Returns the events written.

    A ``FLAG_BOOK_RESET`` snapshot row becomes a DEPTH_CLEAR_EVENT with no side (clears both sides) followed by
    the row itself; snapshot, update and delete rows become DEPTH_EVENT | BUY_EVENT / SELL_EVENT with qty = the
    new size (0 for deletes). Rows that change nothing in kernels.book are dropped: duplicates, L2_GAP (the
    book's contents are kept there too), size-0 snapshot rows (the empty-book marker), bad sides and sizes.
    hftbacktest has no frame end: a message is the run of events sharing a timestamp, so every frame must
    have its own ts_recv_ns (true of both streams here; checked by the message count).
    """
    kind, flags, side, size = ev["kind"], ev["flags"], ev["side"], ev["size"]
    known = (kind == L2_SNAPSHOT) | (kind == L2_UPDATE) | (kind == L2_DELETE)
    known &= (flags & FLAG_DUPLICATE) == 0
    reset = known & (kind == L2_SNAPSHOT) & ((flags & FLAG_BOOK_RESET) != 0)
    depth = known & ((side == 0) | (side == 1)) & (size >= 0) & ~((kind == L2_SNAPSHOT) & (size == 0))
    per_row = reset.astype(np.int64) + depth
    end = np.cumsum(per_row)
    count = int(end[-1]) if len(ev) else 0
    if out is None:
        out = np.zeros(count, dtype=H.event_dtype)
    elif len(out) < count:
        raise ValueError(f"no room for {count} hftbacktest events ({len(out)})")
    out = out[:count]
    base = np.uint64(H.LOCAL_EVENT | (H.EXCH_EVENT if exch else 0))
    ts = ev["ts_recv_ns"]
    i = end[reset] - per_row[reset]  # the clear goes before the row's own event
    out["ev"][i] = base | np.uint64(H.DEPTH_CLEAR_EVENT)
    out["exch_ts"][i] = ts[reset]
    out["local_ts"][i] = ts[reset]
    i = end[depth] - 1
    sd = side[depth]
    out["ev"][i] = base | np.uint64(H.DEPTH_EVENT) | np.where(sd == 0, np.uint64(H.BUY_EVENT),
                                                              np.uint64(H.SELL_EVENT))
    out["exch_ts"][i] = ts[depth]
    out["local_ts"][i] = ts[depth]
    out["px"][i] = ev["price"][depth]
    out["qty"][i] = np.where(kind[depth] == L2_DELETE, 0, size[depth])
    return out


@njit
def hbt_replay(hbt, qty_at_tick, out):
    """Step the backtest one message at a time and read best bid/ask (price ticks, qty) after each.

    ``wait_next_feed`` processes every event with the next timestamp and returns 2, or 1 once the data are
    exhausted (after processing the last message). Empty sides read as price 0, size 0 (as kernels.ladder).
    ``qty_at_tick``: read qty as ``bid_qty_at_tick(best_bid_tick)``: hftbacktest 2.4.4's Python binding of
    ``ROIVectorMarketDepth.best_bid_qty`` / ``best_ask_qty`` returns the best *price*. Records (bid px, bid qty,
    ask px, ask qty) per message into ``out`` if it has rows. Returns (messages, checksum, last return code,
    final bid px, bid qty, ask px, ask qty); the checksum is numba_best_after_each_message's.
    """
    acc = 0
    n = 0
    rec = out.shape[0] > 0
    bp = bq = ap = aq = 0
    while True:
        r = hbt.wait_next_feed(False, HBT_STEP_TIMEOUT)
        if r != 1 and r != 2:
            return n, acc, r, bp, bq, ap, aq
        d = hbt.depth(0)
        bp = d.best_bid_tick
        ap = d.best_ask_tick
        bq = 0
        aq = 0
        if bp == _I64_MIN:
            bp = 0
        elif qty_at_tick:
            bq = np.int64(d.bid_qty_at_tick(bp))
        else:
            bq = np.int64(d.best_bid_qty)
        if ap == _I64_MAX:
            ap = 0
        elif qty_at_tick:
            aq = np.int64(d.ask_qty_at_tick(ap))
        else:
            aq = np.int64(d.best_ask_qty)
        acc += bp - ap + bq + aq
        if rec and n < out.shape[0]:
            out[n, 0], out[n, 1], out[n, 2], out[n, 3] = bp, bq, ap, aq
        n += 1
        if r == 1:
            return n, acc, r, bp, bq, ap, aq


HBT_SETUPS = (  # result name, depth, EXCH_EVENT rows too
    ("hftbacktest_exch", "hashmap", True),
    ("hftbacktest", "hashmap", False),
    ("hftbacktest_roivec", "roivec", False),
)


def _hbt_backtest(H, data: list, depth: str, roi):
    asset = (H.BacktestAsset().data(data).linear_asset(1.0).constant_order_latency(0, 0)
             .risk_adverse_queue_model().no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
             .tick_size(1.0).lot_size(1.0))
    if depth == "hashmap":
        return H.HashMapMarketDepthBacktest([asset])
    return H.ROIVectorMarketDepthBacktest([asset.roi_lb(float(roi[0])).roi_ub(float(roi[1]))])


def _set_exch(H, data: list, exch: bool) -> None:
    for d in data:
        if exch:
            d["ev"] |= np.uint64(H.EXCH_EVENT)
        else:
            d["ev"] &= ~np.uint64(H.EXCH_EVENT)


def _hbt_run(H, data: list, depth: str, exch: bool, roi, out=None):
    _set_exch(H, data, exch)
    hbt = _hbt_backtest(H, data, depth, roi)
    t = time.perf_counter()
    n, acc, r, *final = hbt_replay(hbt, depth == "roivec", np.zeros((0, 4), np.int64) if out is None else out)
    dt = time.perf_counter() - t
    hbt.close()
    if r != 1:
        raise RuntimeError(f"hftbacktest ({depth}, exch={exch}): wait_next_feed returned {r} after {n} messages")
    return dt, n, int(acc), [int(x) for x in final]


def _status_mb(field: str):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def _hbt_verify(H) -> list[str]:
    """Per-message best bid/ask (prices and sizes) of every set-up vs kernels.book on a small stream with a
    mid-stream reset snapshot (a subset of the generator's book, so it never crosses). Returns the failures."""
    gen = SyntheticStream(seed=11)
    parts = [empty_snapshot(gen.t - 1), gen.partition(20_000)]
    mid = int(gen.state[0])
    p = np.arange(GEN_WIDTH) + MID0 - GEN_WIDTH // 2
    near = np.abs(p - mid) <= 40
    bid = near & (gen.book[0] > 0)
    ask = near & (gen.book[1] > 0)
    snap = np.zeros(int(bid.sum() + ask.sum()), dtype=L2_EVENT_DTYPE)
    snap["ts_recv_ns"] = gen.t
    snap["kind"] = L2_SNAPSHOT
    snap["side"] = np.r_[np.zeros(bid.sum()), np.ones(ask.sum())]
    snap["price"] = np.r_[p[bid], p[ask]]
    snap["size"] = np.r_[gen.book[0][bid], gen.book[1][ask]]
    snap["flags"][0] |= FLAG_BOOK_RESET
    snap["flags"][-1] |= FLAG_FRAME_END
    gen.t += 137_000
    ev = np.concatenate(parts + [snap, gen.partition(20_000)])
    s = BookRebuilder(1, width=1 << 12).process(ev).events
    ref = np.stack([s.bid_px[:, 0], s.bid_sz[:, 0], s.ask_px[:, 0], s.ask_sz[:, 0]], axis=1)
    roi = (int(ev["price"][ev["size"] > 0].min()), int(ev["price"].max()))
    data = [to_hbt_events(H, ev, exch=True)]
    bad = []
    for name, depth, exch in HBT_SETUPS:
        got = np.zeros((len(ref) + 1, 4), np.int64)
        _, n, _, _ = _hbt_run(H, data, depth, exch, roi, got)
        if n != len(ref):
            bad.append(f"{name}: {n} messages, kernels.book has {len(ref)} frames")
            continue
        diff = np.flatnonzero((got[:n] != ref).any(axis=1))
        if len(diff):
            k = int(diff[0])
            bad.append(f"{name}: {len(diff)} of {n} messages differ; first #{k}: hftbacktest (bid, qty, ask, qty) "
                       f"= {tuple(got[k].tolist())}, kernels.book = {tuple(ref[k].tolist())}")
    return bad


def _hbt_measure(H, data: list, roi) -> dict:
    res = {"events_mb": round(sum(d.nbytes for d in data) / 2**20, 1)}
    for name, depth, exch in HBT_SETUPS:
        dt, n, acc, final = _hbt_run(H, data, depth, exch, roi)
        res[name] = {"seconds": dt, "messages": n, "checksum": acc, "final_best": final}
    res["peak_rss_mb"] = _status_mb("VmHWM")  # not ru_maxrss: Linux carries the parent's peak across exec
    res["vm_peak_mb"] = _status_mb("VmPeak")
    return res


def hbt_child(target: str, n_changes: str, partition: str, sim_seconds: str) -> None:
    """Entry point of the child process (see bench_hftbacktest): prints one ``HBT_RESULT {json}`` line.
    Exit status 3: hftbacktest cannot be imported or run; 4: its best bid/ask differ from kernels.book's."""
    t0 = time.perf_counter()
    if target:
        sys.path.append(target)  # appended: nothing in the venv is shadowed
    try:
        import hftbacktest as H

        out = {"version": H.__version__}
        bad = _hbt_verify(H)  # also compiles hbt_replay for both depth types
    except Exception as exc:  # noqa: BLE001 - optional contender
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)
    if bad:
        print("; ".join(bad), file=sys.stderr)
        sys.exit(4)
    out["rss_mb_setup"] = _status_mb("VmRSS")
    out["setup_seconds"] = round(time.perf_counter() - t0, 1)
    # the simulator first, so its peak RSS is not the synthetic stream's
    ev = sim_stream(int(sim_seconds))
    res = {"changes": len(ev), "roi": (int(ev["price"][ev["size"] > 0].min()), int(ev["price"].max()))}
    data = [to_hbt_events(H, ev, exch=True)]
    del ev
    res.update(_hbt_measure(H, data, res["roi"]))
    out["simulator_btc_20min"] = res
    del data
    # One array: hftbacktest 2.4.4 fed several in-memory arrays with LOCAL_EVENT-only rows fails at the first
    # array boundary ("unsupported data type"). It reads the array in place, so all of it stays resident.
    gen = SyntheticStream()  # the same stream bench_synthetic fed the numba kernel
    n, n_part = int(n_changes), int(partition)
    events = np.zeros(n + 1, dtype=H.event_dtype)  # + the reset (the empty snapshot's own row is dropped)
    k, lo, hi, m = 0, _I64_MAX, _I64_MIN, 0
    snap = empty_snapshot(gen.t - 1)  # as bench_synthetic
    for part in range(n // n_part):
        ev = gen.partition(n_part)
        if part == 0:
            ev = np.concatenate([snap, ev])
        live = ev["price"][ev["size"] > 0]
        lo, hi, m = min(lo, int(live.min())), max(hi, int(live.max())), m + len(ev)
        k += len(to_hbt_events(H, ev, True, events[k:]))
    del ev
    res = {"changes": m, "roi": (lo, hi)}
    res.update(_hbt_measure(H, [events[:k]], res["roi"]))
    out["synthetic"] = res
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print("HBT_RESULT " + json.dumps(out), flush=True)


def bench_hftbacktest(results: dict, reference: dict) -> None:
    """hftbacktest on both streams, in a child process; figures merged into the streams' results.

    ``reference``: per stream, the numba kernel's checksum and final (bid px, bid size, ask px, ask size); every
    set-up must reproduce both (the checksum sums best bid/ask after every message).
    """
    target = install_hftbacktest()
    if target is None:
        return
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-c", "import sys; from bench.bench_book import hbt_child; hbt_child(*sys.argv[1:])",
           target, str(N_CHANGES), str(PARTITION), str(SIM_SECONDS)]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        print("   hftbacktest: the child process ran over 600 s, skipped")
        return
    finally:
        if target:
            shutil.rmtree(target, ignore_errors=True)
    why = proc.stderr.strip().splitlines()
    why = why[-1] if why else f"exit status {proc.returncode}"
    if proc.returncode == 4:
        msg = f"hftbacktest's best bid/ask differ from kernels.book's on the check stream: {why}"
        print("   " + msg)
        raise AssertionError(msg)
    line = [x for x in proc.stdout.splitlines() if x.startswith("HBT_RESULT ")]
    if proc.returncode != 0 or not line:
        print(f"   hftbacktest: unavailable ({why}), skipped")
        return
    out = json.loads(line[-1][len("HBT_RESULT "):])
    results["hftbacktest_version"] = out["version"]
    results["hftbacktest_rss_mb_setup"] = out["rss_mb_setup"]
    results["hftbacktest_seconds"] = out["seconds"]
    for key, h in out.items():
        if key not in reference:
            continue
        res, (acc, final) = results[key], reference[key]
        assert h["changes"] == res["changes"], f"{key}: hftbacktest got {h['changes']} changes, numba {res['changes']}"
        for name, _, _ in HBT_SETUPS:
            r = h[name]
            if r["messages"] != res["messages"] or r["checksum"] != acc or r["final_best"] != list(final):
                msg = (f"{key}: {name} disagrees with kernels.book: {r['messages']:,} messages (kernels.book "
                       f"{res['messages']:,}), best bid/ask checksum {r['checksum']} (numba {acc}), final (bid, "
                       f"qty, ask, qty) {tuple(r['final_best'])} (kernels.book {tuple(final)})")
                print("   " + msg)
                raise AssertionError(msg)
            rate = h["changes"] / r["seconds"]
            res[f"{name}_changes_per_s"] = round(rate)
            res[f"numba_x_{name}"] = round(res["numba_changes_per_s"] / rate, 1)
            if key == "synthetic":
                res[f"numba_top20_x_{name}"] = round(res["numba_top20_changes_per_s"] / rate, 1)
        res["hftbacktest_roi_ticks"] = h["roi"][1] - h["roi"][0] + 1
        res["hftbacktest_events_mb"] = h["events_mb"]
        res["hftbacktest_peak_rss_mb"] = h["peak_rss_mb"]
        res["hftbacktest_vm_peak_mb"] = h["vm_peak_mb"]


# -- runs --------------------------------------------------------------------------------------------------
def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def warm_up() -> None:
    s = SyntheticStream(seed=1)
    ev = np.concatenate([empty_snapshot(s.t - 1), s.partition(20_000)])
    b = BookRebuilder(1, width=1 << 12)
    run_numba(b, ev)
    b.reset()
    b.process(ev)
    b.flush(int(ev["ts_recv_ns"][-1]))


def bench_synthetic(results: dict, order_book) -> tuple[int, tuple]:
    """Returns the numba kernel's checksum and the final (bid px, bid size, ask px, ask size)."""
    gen = SyntheticStream()
    snap = empty_snapshot(gen.t - 1)
    best = BookRebuilder(1)
    full = BookRebuilder(1)
    best_t = full_t = 0.0
    n = checksum = 0
    prefix = None
    for part in range(N_CHANGES // PARTITION):
        ev = gen.partition(PARTITION)
        if part == 0:
            ev = np.concatenate([snap, ev])
            cut = int(np.flatnonzero(ev["flags"][: BASELINE_CHANGES + 1] & FLAG_FRAME_END)[-1]) + 1
            prefix = ev[:cut]
        dt, acc = timed(run_numba, best, ev)
        best_t += dt
        checksum += acc
        dt, out = timed(full.process, ev)
        full_t += dt
        n += len(ev)
        del out, ev  # a pipeline writes each partition's samples out and drops them
    full.flush(gen.t)
    rss_numba = peak_rss_mb()
    frames = full.stats["frames"]
    res = {
        "changes": n, "messages": frames, "bid_levels_end": full.stats["bid_levels"],
        "ask_levels_end": full.stats["ask_levels"],
        "numba_changes_per_s": round(n / best_t), "numba_top20_changes_per_s": round(n / full_t),
        "numba_top20_frames_per_s": round(frames / full_t), "peak_rss_mb_before": results["peak_rss_mb_start"],
        "peak_rss_mb_after_numba": round(rss_numba, 1),
        "ladder_mb": round(best.ladder.nbytes / 2**20, 1),
    }
    messages = to_messages(prefix)
    m = len(prefix)
    base = {}
    for name, fn, args in (("dict", run_dict, (messages,)), ("sorteddict", run_sorteddict, (messages,)),
                           ("order_book", run_order_book, (order_book, messages))):
        if name == "order_book" and order_book is None:
            continue
        dt, acc = timed(fn, *args)
        base[name] = m / dt
        res[f"{name}_changes_per_s"] = round(m / dt)
    # same answers on the prefix
    ref = BookRebuilder(1)
    _, acc_numba = timed(run_numba, ref, prefix)
    assert acc_numba == run_dict(messages), "numba and dict baselines disagree"
    for name, rate in base.items():
        res[f"numba_x_{name}"] = round(res["numba_changes_per_s"] / rate, 1)
        res[f"numba_top20_x_{name}"] = round(res["numba_top20_changes_per_s"] / rate, 1)
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    results["synthetic"] = res
    return checksum, final_best(full)


def final_best(b: BookRebuilder) -> tuple:
    t = b.top()
    return tuple(int(a[0, 0]) for a in (t.bid_px, t.bid_sz, t.ask_px, t.ask_sz))


def sim_stream(seconds: int | None = None):
    from simulator.events import KIND_L2
    from simulator.l2 import MarketSimulator

    sim = MarketSimulator(seed=3, record_latent=False)
    bids, asks = sim.book(sim.symbols[0])
    parts = []
    t0 = sim.now_ns
    snap = np.zeros(len(bids) + len(asks), dtype=L2_EVENT_DTYPE)
    snap["ts_recv_ns"] = t0
    snap["kind"] = L2_SNAPSHOT
    snap["side"] = np.r_[np.zeros(len(bids)), np.ones(len(asks))]
    snap["price"] = np.r_[bids[:, 0], asks[:, 0]]
    snap["size"] = np.r_[bids[:, 1], asks[:, 1]]
    snap["flags"][0] |= FLAG_BOOK_RESET
    snap["flags"][-1] |= FLAG_FRAME_END
    parts.append(snap)
    end = t0 + (SIM_SECONDS if seconds is None else seconds) * 10**9
    while sim.now_ns < end:
        e = sim.advance(sim.now_ns + 300 * 10**9)
        e = e[(e["symbol"] == 0) & (e["kind"] == KIND_L2)]
        ev = np.zeros(len(e), dtype=L2_EVENT_DTYPE)
        ev["ts_recv_ns"] = e["ts_ns"]
        ev["kind"] = np.where(e["size"] == 0, L2_DELETE, L2_UPDATE)
        ev["side"], ev["price"], ev["size"] = e["side"], e["price"], e["size"]
        ev["flags"] = np.where(np.r_[e["ts_ns"][1:] != e["ts_ns"][:-1], True], FLAG_FRAME_END, 0)
        parts.append(ev)
    return np.concatenate(parts)


def bench_simulator(results: dict, order_book) -> tuple[int, tuple]:
    """Returns the numba kernel's checksum and the final (bid px, bid size, ask px, ask size)."""
    ev = sim_stream()
    n = len(ev)
    best, full = BookRebuilder(1), BookRebuilder(1)
    dt_best = dt_full = 0.0
    checksum = 0
    for k in range(0, n, SIM_PARTITION):
        part = ev[k:k + SIM_PARTITION]
        dt, acc = timed(run_numba, best, part)
        dt_best += dt
        checksum += acc
        dt_full += timed(full.process, part)[0]
    res = {"changes": n, "messages": full.stats["frames"], "numba_changes_per_s": round(n / dt_best),
           "numba_top20_changes_per_s": round(n / dt_full), "bid_levels_end": full.stats["bid_levels"]}
    messages = to_messages(ev)
    for name, fn, args in (("dict", run_dict, (messages,)), ("sorteddict", run_sorteddict, (messages,)),
                           ("order_book", run_order_book, (order_book, messages))):
        if name == "order_book" and order_book is None:
            continue
        dt, _ = timed(fn, *args)
        res[f"{name}_changes_per_s"] = round(n / dt)
        res[f"numba_x_{name}"] = round(res["numba_changes_per_s"] / (n / dt), 1)
    results["simulator_btc_20min"] = res
    return checksum, final_best(full)


def run() -> dict:
    t = time.perf_counter()
    warm_up()
    print(f"   warm-up / compile {time.perf_counter() - t:.1f} s")
    order_book = load_order_book()
    results: dict = {"order_book_version": _version("order-book") if order_book else None,
                     "peak_rss_mb_start": round(peak_rss_mb(), 1)}
    reference = {"synthetic": bench_synthetic(results, order_book),
                 "simulator_btc_20min": bench_simulator(results, order_book)}
    t = time.perf_counter()
    bench_hftbacktest(results, reference)
    print(f"   hftbacktest install + child process {time.perf_counter() - t:.1f} s")
    for name, res in results.items():
        if not isinstance(res, dict):
            continue
        print(f"   {name}: {res['changes']:,} level changes, {res['messages']:,} messages")
        line = [f"numba {res['numba_changes_per_s'] / 1e6:.1f}M/s",
                f"numba top-20 + grids {res['numba_top20_changes_per_s'] / 1e6:.1f}M/s"]
        for base in ("dict", "sorteddict", "order_book", "hftbacktest", "hftbacktest_exch", "hftbacktest_roivec"):
            if f"{base}_changes_per_s" in res:
                line.append(f"{base} {res[f'{base}_changes_per_s'] / 1e6:.2f}M/s "
                            f"(numba {res[f'numba_x_{base}']}x)")
        print("     " + "; ".join(line))
    syn = results["synthetic"]
    print(f"   peak RSS {syn['peak_rss_mb_before']} MB before, {syn['peak_rss_mb_after_numba']} MB after the numba "
          f"synthetic runs (1M-row partitions), {syn['peak_rss_mb']} MB after the Python baselines; ladder "
          f"{syn['ladder_mb']} MB; order-book {results['order_book_version']}")
    if "hftbacktest_version" in results:
        sim = results["simulator_btc_20min"]
        print(f"   hftbacktest {results['hftbacktest_version']} (child process, {results['hftbacktest_seconds']} s): "
              f"RSS {results['hftbacktest_rss_mb_setup']} MB after import + compile + check; peak RSS "
              f"{sim['hftbacktest_peak_rss_mb']} MB with the simulator stream ({sim['hftbacktest_events_mb']} MB of "
              f"events), {syn['hftbacktest_peak_rss_mb']} MB with the synthetic ({syn['hftbacktest_events_mb']} MB of "
              f"events: 64 B per change, read in place, so all resident); peak virtual "
              f"{syn['hftbacktest_vm_peak_mb']} MB")
    return results

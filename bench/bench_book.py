"""Book rebuild throughput: level changes/s with the best bid/ask read after every venue message.

Contenders, all fed the same messages in the same run:
* ``numba``: kernels.book's ladder (apply + best bid/ask after each message);
* ``numba_top20``: the full :class:`kernels.book.BookRebuilder` (top-20 at every frame end + 100 ms / 1 s grids);
* ``dict``: a dict per side, best = max(bids) / min(asks) after each message (pure Python);
* ``sorteddict``: sortedcontainers.SortedDict per side, best = peekitem;
* ``order_book``: the ``order-book`` C package, if pip can install it into a temporary directory (skipped if not).

Streams: a 10M-change synthetic stream (touch random walk, changes concentrated near the touch with a fat
tail, deletes of existing levels, messages of 1..~30 changes, a book of ~2-3k levels per side), generated
and fed in 1M-row partitions so memory stays bounded; and 20 minutes of the simulator's BTC-USD. The Python
baselines run on a 1M-change prefix of the same stream (the rate is stationary; 10M would take minutes).
Compilation and stream generation are outside the timed regions.
"""

from __future__ import annotations

import importlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit

from kernels import ladder as L
from kernels.book import BookRebuilder, apply_event
from l2lab.schema import FLAG_BOOK_RESET, FLAG_FRAME_END, L2_DELETE, L2_EVENT_DTYPE, L2_SNAPSHOT, L2_UPDATE

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


def bench_synthetic(results: dict, order_book) -> None:
    gen = SyntheticStream()
    snap = empty_snapshot(gen.t - 1)
    best = BookRebuilder(1)
    full = BookRebuilder(1)
    best_t = full_t = 0.0
    n = 0
    prefix = None
    for part in range(N_CHANGES // PARTITION):
        ev = gen.partition(PARTITION)
        if part == 0:
            ev = np.concatenate([snap, ev])
            cut = int(np.flatnonzero(ev["flags"][: BASELINE_CHANGES + 1] & FLAG_FRAME_END)[-1]) + 1
            prefix = ev[:cut]
        dt, acc = timed(run_numba, best, ev)
        best_t += dt
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


def sim_stream():
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
    while sim.now_ns < t0 + SIM_SECONDS * 10**9:
        e = sim.advance(sim.now_ns + 300 * 10**9)
        e = e[(e["symbol"] == 0) & (e["kind"] == KIND_L2)]
        ev = np.zeros(len(e), dtype=L2_EVENT_DTYPE)
        ev["ts_recv_ns"] = e["ts_ns"]
        ev["kind"] = np.where(e["size"] == 0, L2_DELETE, L2_UPDATE)
        ev["side"], ev["price"], ev["size"] = e["side"], e["price"], e["size"]
        ev["flags"] = np.where(np.r_[e["ts_ns"][1:] != e["ts_ns"][:-1], True], FLAG_FRAME_END, 0)
        parts.append(ev)
    return np.concatenate(parts)


def bench_simulator(results: dict, order_book) -> None:
    ev = sim_stream()
    n = len(ev)
    best, full = BookRebuilder(1), BookRebuilder(1)
    dt_best = dt_full = 0.0
    for k in range(0, n, SIM_PARTITION):
        part = ev[k:k + SIM_PARTITION]
        dt_best += timed(run_numba, best, part)[0]
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


def run() -> dict:
    t = time.perf_counter()
    warm_up()
    print(f"   warm-up / compile {time.perf_counter() - t:.1f} s")
    order_book = load_order_book()
    results: dict = {"order_book_version": _version("order-book") if order_book else None,
                     "peak_rss_mb_start": round(peak_rss_mb(), 1)}
    bench_synthetic(results, order_book)
    bench_simulator(results, order_book)
    for name, res in results.items():
        if not isinstance(res, dict):
            continue
        print(f"   {name}: {res['changes']:,} level changes, {res['messages']:,} messages")
        line = [f"numba {res['numba_changes_per_s'] / 1e6:.1f}M/s",
                f"numba top-20 + grids {res['numba_top20_changes_per_s'] / 1e6:.1f}M/s"]
        for base in ("dict", "sorteddict", "order_book"):
            if f"{base}_changes_per_s" in res:
                line.append(f"{base} {res[f'{base}_changes_per_s'] / 1e6:.2f}M/s "
                            f"(numba {res[f'numba_x_{base}']}x)")
        print("     " + "; ".join(line))
    syn = results["synthetic"]
    print(f"   peak RSS {syn['peak_rss_mb_before']} MB before, {syn['peak_rss_mb_after_numba']} MB after the numba "
          f"synthetic runs (1M-row partitions), {syn['peak_rss_mb']} MB after the Python baselines; ladder "
          f"{syn['ladder_mb']} MB; order-book {results['order_book_version']}")
    return results

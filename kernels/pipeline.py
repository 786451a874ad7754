"""``l2lab features build``: bronze -> silver (book features and labels on clock grids).

Per symbol, hour partitions are processed in time order with **every piece of state carried exactly** from one
partition to the next: the book (``kernels.book.BookRebuilder``), each feature family's state (the catalog's
kernel protocol), the trades not yet assigned to a grid row, and the last trade price. After each partition the
whole state is saved (``<data>/silver/_state/...``), so a build is resumable per partition and an interrupted
build continues with the same numbers it would have produced in one go. Memory is bounded by one partition.

Grid row g (100 ms and 1 s by default) holds the book after the last frame received at or before g and the
trades received in (previous g, g]; it is stamped ``ts_ns = g`` (every input was available at g; the receive
time of the last input is kept as ``ts_avail_ns``). The stamp is also written as ``event_timestamp``
(timestamp[ns, UTC]) for Feast. ``ts_avail_ns`` is not the stamp: row g also says that nothing arrived in
(``ts_avail_ns``, g] (its windows end at g), which is known only at g. Labels are computed in a second pass that
reads ahead across partitions by the longest label horizon.
"""

from __future__ import annotations

import importlib
import pickle
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from collectors.bronze import (
    HOUR_NS, hour_key_start_ns, hour_partitions, partition_dir, partition_exps, read_partition,
)
from kernels import catalog
from kernels.frame import TOUCH_COLUMNS, MarketFrame, touch_frame
from kernels.stream import STATE_VERSION, SymbolState, SymbolStream, book_families
from l2lab import atomic
from l2lab.schema import L2_EVENT_DTYPE, TRADE_DTYPE

DEFAULT_GRIDS_MS = (100, 1000)


def event_timestamp(ts_ns) -> pa.Array:
    """The row stamp ``ts_ns`` (int64 UTC ns, the time the row became available) as ``timestamp[ns, UTC]``:
    the ``event_timestamp`` column every silver feature and gold table carries for Feast, which needs a
    timestamp-typed column for its point-in-time joins."""
    return pa.array(np.asarray(ts_ns, np.int64), pa.timestamp("ns", tz="UTC"))


def grid_name(step_ms: int) -> str:
    return f"{step_ms}ms" if step_ms < 1000 else f"{step_ms // 1000}s"


def grid_ms(grid: str) -> int:
    """The inverse of ``grid_name``: ``100ms`` -> 100, ``1s`` -> 1000."""
    g = grid.strip()
    if g.endswith("ms"):
        return int(g[:-2])
    if g.endswith("s"):
        return int(float(g[:-1]) * 1000)
    raise ValueError(f"grid {grid!r}: expected e.g. 100ms or 1s")


def catalog_hash() -> str:
    """Changes with the catalog and with the source of any kernel module, so a resumed build never mixes state
    and outputs of old code with new (a changed hash starts the build over)."""
    import hashlib

    h = hashlib.sha256()
    h.update("\n".join(f"{s.name}|{s.kernel}|{s.params}|{s.window}" for s in catalog.features()).encode())
    for name in sorted({s.kernel.rsplit(".", 1)[0] for s in catalog.features()} | {"kernels.book", "kernels.ladder",
                                                                                    "kernels.frame", "kernels.pipeline",
                                                                                    "kernels.stream"}):
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return h.hexdigest()[:16]


def _fingerprint(*folders: Path) -> tuple:
    """The part files (name, size) of the given partition folders: changes when bronze is rewritten."""
    return tuple((str(p.relative_to(p.parents[4])), p.stat().st_size)
                 for folder in folders if folder.exists() for p in sorted(folder.glob("part-*.parquet")))


class FeatureBuilder:
    def __init__(self, data_root: Path, exchange: str = "coinbase", grids_ms=DEFAULT_GRIDS_MS, depth: int = 20,
                 progress=None, complete_before_ns: int | None = None):
        """``complete_before_ns``: only hours that ended before this time are built (default: one minute ago),
        so the hour a collector is still writing waits until it is complete."""
        self.complete_before_ns = (time.time_ns() - 60_000_000_000 if complete_before_ns is None
                                   else int(complete_before_ns))
        self.root = Path(data_root)
        self.exchange = exchange
        self.grids_ms = tuple(int(g) for g in grids_ms)
        self.depth = depth
        self.progress = progress
        self.families = book_families()
        self.catalog = catalog_hash()

    # -- state ----------------------------------------------------------------------------------------------
    def _state_path(self, symbol: str) -> Path:
        return self.root / "silver" / "_state" / "features" / f"exchange={self.exchange}" / f"{symbol}.pkl"

    def _load_state(self, symbol: str) -> SymbolState:
        p = self._state_path(symbol)
        if p.exists():
            st = pickle.loads(p.read_bytes())
            if st.version == STATE_VERSION and st.catalog == self.catalog:
                return st
        return SymbolState(catalog=self.catalog)

    def _save_state(self, symbol: str, st: SymbolState) -> None:
        atomic.write_bytes(self._state_path(symbol), pickle.dumps(st, protocol=5))

    # -- build ----------------------------------------------------------------------------------------------
    def symbols(self) -> list[str]:
        base = self.root / "bronze" / "l2_events" / f"exchange={self.exchange}"
        return sorted(d.name.split("=", 1)[1] for d in base.glob("symbol=*")) if base.exists() else []

    def build(self, symbols: list[str] | None = None) -> dict:
        started = time.perf_counter()
        report = {"partitions": 0, "skipped": 0, "open": 0, "rows": {grid_name(g): 0 for g in self.grids_ms}}
        for symbol in symbols or self.symbols():
            l2_base = self.root / "bronze" / "l2_events" / f"exchange={self.exchange}" / f"symbol={symbol}"
            tr_base = self.root / "bronze" / "trades" / f"exchange={self.exchange}" / f"symbol={symbol}"
            hours = hour_partitions(l2_base)
            if not hours:
                continue
            price_exp, size_exp = partition_exps(hours[0][2])
            st = self._load_state(symbol)
            stream = SymbolStream(symbol, price_exp, size_exp, grids_ms=self.grids_ms, depth=self.depth, state=st,
                                  families=self.families)
            for date, hour, folder in hours:
                key = f"{date}/{hour}"
                hour_start = int(np.datetime64(f"{date}T{hour}:00", "ns").astype(np.int64))
                trades_dir = tr_base / f"date={date}" / f"hour={hour}"
                fingerprint = _fingerprint(folder, trades_dir)
                if key in st.done:
                    if st.fingerprints.get(key) != fingerprint:
                        raise RuntimeError(f"{symbol}: bronze partition {key} changed after its features were built; "
                                           f"rebuild with --rebuild")
                    report["skipped"] += 1
                    continue
                if hour_start + HOUR_NS > self.complete_before_ns:
                    report["open"] += 1  # still being written: built once the hour is over
                    break
                if st.done and key < st.done[-1]:
                    raise RuntimeError(f"{symbol}: partition {key} arrived after {st.done[-1]} was built; "
                                       f"rebuild with --rebuild")
                events = read_partition(folder, L2_EVENT_DTYPE)
                trades = stream.dedupe(read_partition(trades_dir, TRADE_DTYPE))
                if st.done and hour_start > hour_key_start_ns(st.done[-1]) + HOUR_NS:
                    # hours with no bronze at all: the next recording starts with its own gap marker and
                    # snapshot, so the grid restarts at its first frame instead of filling the hole
                    stream.restart_grid()
                for g_ms, rows in stream.process(events, trades, flush_through_ns=hour_start + HOUR_NS - 1).items():
                    self._write(symbol, g_ms, hour_start, rows.frame, rows.columns)
                    report["rows"][grid_name(g_ms)] += rows.frame.n
                stream.export_state()
                st.done.append(key)
                st.fingerprints[key] = fingerprint
                self._save_state(symbol, st)
                report["partitions"] += 1
                if self.progress:
                    self.progress(symbol, key)
        report["wall_s"] = round(time.perf_counter() - started, 3)
        return report

    def _write(self, symbol: str, g_ms: int, hour_start: int, frame: MarketFrame, cols: dict) -> None:
        table = pa.table({"ts_ns": frame.t_ns, "event_timestamp": event_timestamp(frame.t_ns),
                          "ts_avail_ns": frame.avail_ns, "valid": frame.valid,
                          **{k: cols[k] for k in sorted(cols)}})
        folder = partition_dir(self.root / "silver", f"book_features_{grid_name(g_ms)}", self.exchange, symbol,
                               hour_start)
        atomic.write_parquet(folder / "part-0.parquet", table)


def build_labels(data_root: Path, exchange: str = "coinbase", grids_ms=DEFAULT_GRIDS_MS) -> dict:
    """Second pass: labels per symbol and grid from the silver book features (mid, microprice), reading ahead
    across partitions by the longest label horizon."""
    from kernels import labels as L

    root = Path(data_root)
    report = {"partitions": 0}
    horizon_ns = max(s.forward_reach_ns for s in L.LABELS)
    for g_ms in grids_ms:
        base = root / "silver" / f"book_features_{grid_name(g_ms)}" / f"exchange={exchange}"
        for sym_dir in sorted(base.glob("symbol=*")) if base.exists() else []:
            symbol = sym_dir.name.split("=", 1)[1]
            hours = hour_partitions(sym_dir)
            loaded: dict[int, pa.Table] = {}  # only the partition and its read-ahead are in memory

            def table(k: int) -> pa.Table:
                if k not in loaded:
                    loaded[k] = pq.read_table(hours[k][2] / "part-0.parquet")
                return loaded[k]

            for i, (date, hour, _) in enumerate(hours):
                for k in [k for k in loaded if k < i]:
                    del loaded[k]
                own = table(i)
                ahead, j = [], i + 1
                end = own.column("ts_ns")[-1].as_py() + horizon_ns if own.num_rows else 0
                while j < len(hours) and table(j).num_rows and table(j).column("ts_ns")[0].as_py() <= end:
                    ahead.append(table(j))
                    j += 1
                joined = pa.concat_tables([own, *ahead])
                frame = _frame_from_silver(symbol, joined, g_ms)
                # the triple barrier's trailing volatility over the whole history (carried across partitions)
                sigma = (joined.column("rv_mid_60s").to_numpy(zero_copy_only=False)
                         if "rv_mid_60s" in joined.column_names else None)
                lab = L.compute_labels(frame, trailing_sigma=sigma)
                n = own.num_rows
                out = pa.table({"ts_ns": joined.column("ts_ns").to_numpy()[:n],
                                **{k: v[:n] for k, v in sorted(lab.items())}})
                hour_start = int(np.datetime64(f"{date}T{hour}:00", "ns").astype(np.int64))
                folder = partition_dir(root / "silver", f"labels_{grid_name(g_ms)}", exchange, symbol, hour_start)
                atomic.write_parquet(folder / "part-0.parquet", out)
                report["partitions"] += 1
    return report


def _frame_from_silver(symbol: str, table: pa.Table, g_ms: int) -> MarketFrame:
    """The subset of a MarketFrame that labels and cross-asset features need, from silver columns."""
    return touch_frame(symbol, g_ms * 1_000_000, {name: table.column(name).to_numpy(zero_copy_only=False)
                                                  for name in TOUCH_COLUMNS})


def build_cross_asset(data_root: Path, exchange: str = "coinbase", leader: str = "BTC-USD",
                      grids_ms=DEFAULT_GRIDS_MS) -> dict:
    """Cross-asset features of every other symbol against ``leader``, from the silver book features of both,
    aligned on their common grid times, partition by partition with the family state carried across."""
    from kernels import cross_asset as XA

    root = Path(data_root)
    report = {"partitions": 0, "rows": 0}
    for g_ms in grids_ms:
        base = root / "silver" / f"book_features_{grid_name(g_ms)}" / f"exchange={exchange}"
        lead_dir = base / f"symbol={leader}"
        if not lead_dir.exists():
            continue
        lead_hours = {(d, h): p for d, h, p in hour_partitions(lead_dir)}
        for sym_dir in sorted(base.glob("symbol=*")):
            symbol = sym_dir.name.split("=", 1)[1]
            if symbol == leader:
                continue
            state = XA.new_state()
            last_t = None
            for date, hour, folder in hour_partitions(sym_dir):
                if (date, hour) not in lead_hours:
                    continue
                f_t = pq.read_table(folder / "part-0.parquet", columns=list(TOUCH_COLUMNS))
                l_t = pq.read_table(lead_hours[(date, hour)] / "part-0.parquet", columns=list(TOUCH_COLUMNS))
                common, fi, li = np.intersect1d(f_t.column("ts_ns").to_numpy(), l_t.column("ts_ns").to_numpy(),
                                                return_indices=True)
                if not len(common):
                    continue
                ff = _frame_from_silver(symbol, f_t.take(pa.array(fi)), g_ms)
                lf = _frame_from_silver(leader, l_t.take(pa.array(li)), g_ms)
                g_ns = g_ms * 1_000_000
                # the kernel's lags and windows count rows: restart them wherever the common grid jumps
                breaks = np.flatnonzero(np.diff(common) != g_ns) + 1
                pieces = []
                for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(common)]):
                    if last_t is None or common[a] != last_t + g_ns:
                        state = XA.new_state()
                    pieces.append(XA.compute(ff.take(slice(a, b)), lf.take(slice(a, b)), state))
                    last_t = int(common[b - 1])
                out = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
                hour_start = int(np.datetime64(f"{date}T{hour}:00", "ns").astype(np.int64))
                folder_out = partition_dir(root / "silver", f"cross_asset_{grid_name(g_ms)}", exchange, symbol,
                                           hour_start)
                atomic.write_parquet(folder_out / "part-0.parquet", pa.table(
                    {"ts_ns": common, "event_timestamp": event_timestamp(common),
                     "ts_avail_ns": np.maximum(ff.avail_ns, lf.avail_ns),
                     **{k: out[k] for k in sorted(out)}}))
                report["partitions"] += 1
                report["rows"] += len(common)
    return report


def build_all(data_root: Path, exchange: str = "coinbase", grids_ms=DEFAULT_GRIDS_MS, leader: str = "BTC-USD",
              perp_exchange: str = "binanceusdm", symbols: list[str] | None = None, progress=None) -> dict:
    """Every layer after bronze: silver book features, labels, cross-asset features, gold hourly and
    cross-sectional tables."""
    from kernels.gold import build_gold

    report = FeatureBuilder(data_root, exchange, grids_ms, progress=progress).build(symbols)
    report["labels"] = build_labels(data_root, exchange, grids_ms)
    report["cross_asset"] = build_cross_asset(data_root, exchange, leader, grids_ms)
    report["gold"] = build_gold(data_root, perp_exchange)
    return report


__all__ = ["FeatureBuilder", "build_all", "build_cross_asset", "build_labels", "event_timestamp"]

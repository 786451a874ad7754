"""``l2lab live``: the collector's normalized stream -> incremental features -> Feast online store -> model -> signals.

One asyncio loop runs the collector (:class:`collectors.live.CoinbaseCollector`, which still records the raw
capture and bronze) and the consumer. The collector hands every frame's normalized rows to a
:class:`l2lab.live.tap.StreamTap`; the consumer takes them, runs :class:`l2lab.live.engine.LiveEngine` (the
features build code, row for row), and for each final row of the model's grid: gate -> push -> online fetch ->
score -> risk -> emit. A timer (``timer_s``) finalizes grid rows when no frame arrives after them.

Gates (no signal, counted by reason in the report): ``invalid`` (the batch validity rule: a gap since the last
snapshot, or a book older than 60 s), ``stale`` (the row's last input is older than ``stale_after_s`` at its
grid time, or the row is finalized more than ``stale_after_s`` after its grid time), ``warming`` (fewer
consecutive valid rows than the model's longest feature window needs, see :func:`warmup_rows`; after a gap
every window must refill before the model sees it again), ``superseded`` (the scorer fell behind and a newer row
of the symbol was already queued: only the newest is scored, ``conflate``).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collectors.bronze import HOUR_NS
from kernels import catalog
from l2lab import atomic
from l2lab.live.alarms import Cusum, SymbolRisk, VarKillSwitch, position
from l2lab.live.engine import LiveEngine, LiveRow
from l2lab.live.latency import LatencyRecorder
from l2lab.live.scorer import ModelScorer
from l2lab.live.signals import SignalSink
from l2lab.live.tap import StreamTap

log = logging.getLogger("l2lab.live")


@dataclass
class LiveConfig:
    run_dir: Path
    data_root: Path
    symbols: list[str]
    out_dir: Path | None = None  # default <run_dir>/live/<UTC start>
    record_root: Path | None = None  # where the collector records raw captures and bronze (default data_root)
    ws_url: str | None = None
    markets: list[dict] | None = None
    duration_s: float | None = None
    time_ns: object = time.time_ns  # the receive clock (a venue clock mapping for accelerated simulators)
    feast: bool = True  # False: the kernel-only path (no Feast)
    feast_http: bool = False  # online lookups through the HTTP feature server instead of the SDK
    feast_write: str = "direct"  # direct: rows to Feast's provider (online.write_rows); push: online.push, a frame
    leader: str = "BTC-USD"  # cross-asset leader (used when the model reads cross-asset features)
    extra_grids_ms: tuple = ()  # grids computed besides the model's (recorded with record_features)
    record_features: bool = False  # write every live feature row to <out>/features_<grid>.parquet at the end
    all_features: bool = False  # compute (and push) every book family, not only those the model reads
    timer_s: float = 0.05
    stale_after_s: float = 5.0
    conflate: bool = True  # behind: score only each symbol's newest queued row (the others: "superseded")
    warmup_rows: int | None = None  # None: from the model's features (warmup_rows)
    cusum: dict = field(default_factory=dict)  # Cusum(...) keyword arguments
    kill: dict = field(default_factory=dict)  # VarKillSwitch(...) keyword arguments
    stdout: bool = True
    reload_check_s: float = 1.0
    collector: dict = field(default_factory=dict)  # extra CollectorConfig fields (bronze_flush_s, ...)


@dataclass
class LiveReport:
    rows: int = 0
    scored_rows: int = 0
    signals: int = 0
    timer_rows: int = 0
    suppressed: dict = field(default_factory=dict)
    alarms: list = field(default_factory=list)
    kills: list = field(default_factory=list)
    model_versions: list = field(default_factory=list)
    reload_errors: list = field(default_factory=list)
    latency: dict = field(default_factory=dict)
    grid_wait_ms: dict = field(default_factory=dict)
    source: str = ""
    out_dir: str = ""
    collector: dict = field(default_factory=dict)
    wall_s: float = 0.0

    def lines(self) -> list[str]:
        lat = self.latency.get("event_to_signal", {})
        out = [f"live: {self.signals:,} signals from {self.scored_rows:,} rows ({self.source} path); "
               f"no signal: {dict(self.suppressed) or 'none'}; CUSUM alarms {len(self.alarms)}; "
               f"kill-switch trips {len(self.kills)}; model versions {self.model_versions}"]
        if lat:
            out.append(f"live: event -> signal latency p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms "
                       f"(n {lat['n']:,}); grid wait p50 {self.grid_wait_ms.get('p50_ms', float('nan')):.2f} ms")
        return out


def warmup_rows(features: list[str], step_ns: int) -> int:
    """Rows a feature row needs after a gap before every window of ``features`` holds valid rows only: the
    catalog windows' time terms summed ('300 s + 4 s', 'half-life 10 s'), row counts ('20 rows', '100 returns')
    times the step, and EWMAs counted as one span each ('EWMA span 10 rows': 10; 'EWMA alpha 1/14': 14; 'EWMA
    lambda 0.94': 1 / (1 - 0.94) = 17; chained or combined 'EWMA spans 12, 26, 9': their sum, 47), the largest
    of these over all features (conservative)."""
    specs = catalog.by_name()
    need_ns = 0
    for f in features:
        w = specs[f].window if f in specs else "0"
        secs = sum(float(v) * (1e-3 if u == "ms" else 1.0)
                   for v, u in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s)\b", w))
        rows = [float(v) for v, _ in re.findall(r"(\d+(?:\.\d+)?)\s*(rows?|returns)\b", w)]
        if "EWMA" in w:
            spans = re.search(r"EWMA spans? ([\d, ]+)", w)
            if spans:
                rows.append(sum(float(v) for v in re.findall(r"\d+", spans.group(1))))
            alpha = re.search(r"alpha (\d+(?:\.\d+)?)(?:/(\d+(?:\.\d+)?))?", w)
            if alpha:
                a = float(alpha.group(1)) / (float(alpha.group(2)) if alpha.group(2) else 1.0)
                rows.append(math.ceil(1.0 / a))
            lam = re.search(r"lambda (0?\.\d+)", w)
            if lam:
                rows.append(math.ceil(1.0 / (1.0 - float(lam.group(1)))))
        need_ns = max(need_ns, int(secs * 1e9), int(max(rows, default=0) * step_ns))
    return int(math.ceil(need_ns / step_ns))


class LiveSession:
    def __init__(self, cfg: LiveConfig):
        self.cfg = cfg
        self.report = LiveReport()
        self.scorer = ModelScorer(cfg.run_dir, check_every_s=cfg.reload_check_s)
        self.grid_ms = self.scorer.grid_ms
        self.step_ns = self.grid_ms * 1_000_000
        fam = {s.name: s.table for s in catalog.features()}
        unknown = [f for f in self.scorer.features if f not in fam]
        if unknown:
            raise ValueError(f"{self.scorer.meta_path}: features not in the catalog: {unknown[:5]}")
        bad = [f for f in self.scorer.features if fam[f] not in ("book", "cross_asset")]
        if bad:
            raise ValueError(f"{self.scorer.meta_path}: live scoring computes book and cross-asset features; "
                             f"{bad[:5]} are hourly/cross-sectional")
        self.needs_xa = any(fam[f] == "cross_asset" for f in self.scorer.features)
        self.warmup = (warmup_rows(self.scorer.features, self.step_ns) if cfg.warmup_rows is None
                       else int(cfg.warmup_rows))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.out = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.run_dir) / "live" / stamp
        self.tap = StreamTap()
        self.lat = LatencyRecorder()
        self.grid_wait: list[int] = []
        self.engine: LiveEngine | None = None
        self.risk: dict[str, SymbolRisk] = {}
        self.run_valid: Counter = Counter()  # symbol -> consecutive valid rows
        self.suppressed: Counter = Counter()
        self.recorded: dict[int, list[LiveRow]] = {}
        self.source = None
        self.collector = None
        self._work: queue.Queue | None = None
        self._rest_pending: dict[str, LiveRow] = {}
        self._needed_written: dict[str, int] = {}  # symbol -> grid time of its row whose model families are online
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None

    # -- setup ----------------------------------------------------------------------------------------------
    def _open_source(self):
        from l2lab.live.features import FeastOnline, KernelDirect

        if not self.cfg.feast:
            return KernelDirect()
        from kernels.pipeline import grid_name

        return FeastOnline(self.cfg.data_root, grid_name(self.grid_ms), http=self.cfg.feast_http,
                           write=self.cfg.feast_write)

    def _families(self) -> list[str] | None:
        """The book families to compute: all with ``all_features`` or ``record_features``; else those the model
        reads, plus ``structural`` (the mid for the risk controls, the touch for cross-asset features)."""
        if self.cfg.all_features or self.cfg.record_features:
            return None
        fam = {s.name: s.family for s in catalog.features()}
        return sorted({"structural", *(fam[f] for f in self.scorer.features if fam[f] != "cross_asset")})

    def _accept(self, meta) -> str | None:
        """A reloaded model may only read features this session computes from its start (a family started
        mid-session would have cold windows that nothing marks as such)."""
        fam = {s.name: (s.table, s.family) for s in catalog.features()}
        unknown = [f for f in meta.features if f not in fam or fam[f][0] not in ("book", "cross_asset")]
        if unknown:
            return f"features not computable live: {unknown[:5]}"
        computed = self._families()
        cold = sorted({fam[f][1] for f in meta.features if fam[f][0] == "book"} - set(computed or fam_all()))
        if cold:
            return f"families not computed since the start: {cold}"
        if not self.needs_xa and any(fam[f][0] == "cross_asset" for f in meta.features):
            return "cross-asset features not computed since the start"
        return None

    def _risk(self, symbol: str) -> SymbolRisk:
        if symbol not in self.risk:
            self.risk[symbol] = SymbolRisk(Cusum(**self.cfg.cusum), VarKillSwitch(**self.cfg.kill))
        return self.risk[symbol]

    # -- run ------------------------------------------------------------------------------------------------
    async def run(self) -> LiveReport:
        from collectors.live import CoinbaseCollector, CollectorConfig, JsonLog

        cfg = self.cfg
        started = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self.jlog = JsonLog(self.out / "live.jsonl")
        self.sink = SignalSink(self.out, self.jlog, stdout=cfg.stdout)
        self.source = self._open_source()
        self.report.source = self.source.name
        self.report.out_dir = str(self.out)
        self.report.model_versions.append(self.scorer.version)
        self.jlog.write("start", model=str(cfg.run_dir), features=len(self.scorer.features), grid=self.grid_ms,
                        symbols=cfg.symbols, source=self.source.name, warmup_rows=self.warmup)
        ccfg = CollectorConfig(symbols=cfg.symbols, data_root=cfg.record_root or cfg.data_root, ws_url=cfg.ws_url,
                               markets=cfg.markets,
                               duration_s=cfg.duration_s, time_ns=cfg.time_ns, progress=False, stream=self.tap,
                               **cfg.collector)
        self.collector = CoinbaseCollector(ccfg)
        self._loop = asyncio.get_running_loop()
        if self.source.name != "kernel":
            self._work = queue.Queue()
            self._worker = threading.Thread(target=self._work_loop, name="l2lab-live-scoring", daemon=True)
            self._worker.start()
        task = asyncio.ensure_future(self.collector.run())
        try:
            while not task.done():
                await self.tap.wait(cfg.timer_s)
                self._consume()
                if self.engine is not None and not len(self.tap) and self.tap.last_ts_ns is not None:
                    self._rows(self.engine.flush(self.tap.last_ts_ns), timer=True)
                if self.scorer.maybe_reload(self._accept):
                    self.report.model_versions.append(self.scorer.version)
                    self.jlog.write("reload", version=self.scorer.version, features=len(self.scorer.features))
                    log.warning("model reloaded: version %d", self.scorer.version)
            col_report = await task
            self._consume()  # what the collector's shutdown produced (the recording's stop marker)
        finally:
            if not task.done():
                task.cancel()
            if self._worker is not None:
                self._work.put(None)
                self._worker.join()
            self.sink.flush()
            self.source.close()
        if self._worker_error is not None:
            raise self._worker_error
        self._finish(col_report, time.monotonic() - started)
        return self.report

    def stop(self) -> None:
        if self.collector is not None:
            self.collector.stop()

    # -- the per-frame path ---------------------------------------------------------------------------------
    def _consume(self) -> None:
        items = self.tap.take()
        if not items:
            return
        if self.engine is None:
            leader = self.cfg.leader if self.needs_xa else None
            grids = tuple(sorted({self.grid_ms, *self.cfg.extra_grids_ms}))
            self.engine = LiveEngine({s: self.collector.scales[s] for s in self.cfg.symbols}, grids, leader=leader,
                                     families=self._families())
        # every product's frames taken so far in one feed (split where the receive hour changes): the kernels'
        # per-call overhead is paid once per batch, which is what lets the consumer catch up after a burst
        t_take = time.perf_counter_ns()
        runs: dict[str, list] = {}
        for item in items:
            self.lat.add("normalize", item.t_norm_perf_ns - item.t_recv_perf_ns)
            self.lat.add("queue", t_take - item.t_norm_perf_ns)
            for product in item.products:
                runs.setdefault(product, []).append(item)
        for product, its in runs.items():
            for chunk in hour_runs(its):
                l2 = [it.l2[product] for it in chunk if product in it.l2]
                tr = [it.trades[product] for it in chunk if product in it.trades]
                rows = self.engine.feed(product, np.concatenate(l2) if l2 else None,
                                        np.concatenate(tr) if tr else None, trigger=chunk[-1], timings=self.lat)
                if rows:
                    stamps = [it.ts_recv_ns for it in chunk]
                    for r in rows:  # the frame that made the row final: the first received after its grid time
                        if r.trigger is chunk[-1] and r.symbol == product:
                            r.trigger = chunk[min(bisect.bisect_right(stamps, r.t_ns), len(chunk) - 1)]
                    self._rows(rows)

    def _rows(self, rows: list[LiveRow], timer: bool = False) -> None:
        if not rows:
            return
        if self.cfg.record_features:
            for r in rows:
                self.recorded.setdefault(r.grid_ms, []).append(r)
        rows = [r for r in rows if r.grid_ms == self.grid_ms]
        if not rows:
            return
        if self._work is not None:
            self._work.put((rows, timer))  # Feast I/O must not hold up the collector's event loop
        else:
            self._process(rows, timer)
            self._flush_rest()

    def _work_loop(self) -> None:
        """The scoring thread (Feast paths): rows in order. Whatever queued up while a batch was processed is taken
        together: only each symbol's newest row is scored (``conflate``; the older ones count as ``superseded``:
        a signal for a row a newer one has replaced is of no use) and the online store's copy of the rows is
        written once per symbol (the newest row) instead of once per row, so a scorer that fell behind catches up
        instead of emitting ever older signals."""
        done = False
        while not done:
            jobs = [self._work.get()]
            while True:
                try:
                    jobs.append(self._work.get_nowait())
                except queue.Empty:
                    break
            if None in jobs:
                done = True
                jobs = jobs[:jobs.index(None)]
            if self._worker_error is not None:
                continue
            try:
                rows = []
                for job_rows, timer in jobs:
                    rows += job_rows
                    if timer:
                        self.report.timer_rows += len(job_rows)
                if rows:
                    self._process(rows, False, newest_only=self.cfg.conflate and len(jobs) > 1)
                self._flush_rest()
            except BaseException as exc:  # reported when the session ends
                self._worker_error = exc
                log.error("scoring failed: %r", exc)
                self._loop.call_soon_threadsafe(self.stop)

    def _defer_rest(self, rows: list[LiveRow]) -> None:
        """Rows whose online copy is still to be written in full; per symbol the newest one is kept."""
        for r in rows:
            cur = self._rest_pending.get(r.symbol)
            if cur is None or r.t_ns >= cur.t_ns:
                self._rest_pending[r.symbol] = r

    def _flush_rest(self) -> None:
        """Write the pending rows to the online store, which follows every row, valid or not, as silver does: per
        symbol its newest row, every family (a scored row's model families were written before its lookup and
        are not written again). Only the newest is written, so an older row never overwrites a newer one."""
        if not self._rest_pending:
            return
        rows = sorted(self._rest_pending.values(), key=lambda r: r.t_ns)
        self._rest_pending.clear()
        unwritten = [r for r in rows if self._needed_written.get(r.symbol) != r.t_ns]
        if unwritten:
            self.source.push_needed(unwritten, self.scorer.meta.features)
        self.source.push_rest(rows)

    def _process(self, rows: list[LiveRow], timer: bool, newest_only: bool = False) -> None:
        """Gates, risk, push -> online fetch -> score -> emit for final rows of the model's grid; the rows' full
        online copy is left to the caller's ``_flush_rest``. ``newest_only``: score only each symbol's newest ready
        row (see ``_work_loop``)."""
        self.report.rows += len(rows)
        if timer:
            self.report.timer_rows += len(rows)
        now = self.cfg.time_ns()
        stale_ns = int(self.cfg.stale_after_s * 1e9)
        ready, alarms = [], {}
        for r in rows:
            self.run_valid[r.symbol] = self.run_valid[r.symbol] + 1 if r.valid else 0
            risk = self._risk(r.symbol)
            _, alarm, kill = risk.step(r.t_ns, self.step_ns, r.values.get("mid", math.nan), r.valid)
            if alarm:
                alarms[(r.symbol, r.t_ns)] = alarm
                self.report.alarms.append({"symbol": r.symbol, "ts_ns": r.t_ns, "alarm": alarm})
                self.jlog.write("alarm", symbol=r.symbol, ts_ns=r.t_ns, alarm=alarm,
                                s_pos=risk.cusum.s_pos, s_neg=risk.cusum.s_neg)
            if kill:
                self.report.kills.append({"symbol": r.symbol, "ts_ns": r.t_ns, "reason": kill})
                self.jlog.write("kill", symbol=r.symbol, ts_ns=r.t_ns, reason=kill)
            if r.trigger is not None:
                self.grid_wait.append(r.trigger.ts_recv_ns - r.t_ns)
            reason = None
            if not r.valid:
                reason = "invalid"
            elif r.t_ns - r.avail_ns > stale_ns or now - r.t_ns > stale_ns:
                reason = "stale"
            elif self.run_valid[r.symbol] <= self.warmup:
                reason = "warming"
            if reason:
                self.suppressed[reason] += 1
                risk.last_pos = 0
            else:
                ready.append(r)
        if newest_only:
            newest = {r.symbol: r for r in ready}
            if len(newest) < len(ready):
                self.suppressed["superseded"] += len(ready) - len(newest)
                ready = [r for r in ready if newest[r.symbol] is r]
        for batch in rounds(ready):
            self._score(batch, alarms, now)
        self._defer_rest(rows)

    def _score(self, rows: list[LiveRow], alarms: dict, now: int) -> None:
        current = self.scorer.current  # one model for the whole batch, even if a reload swaps it meanwhile
        meta, _, version = current
        features = meta.features
        t0 = time.perf_counter_ns()
        self.source.push_needed(rows, features)
        for r in rows:
            self._needed_written[r.symbol] = r.t_ns
        t1 = time.perf_counter_ns()
        X = self.source.fetch(rows, features)
        t2 = time.perf_counter_ns()
        scores = self.scorer.score(X, current)
        t3 = time.perf_counter_ns()
        self.report.scored_rows += len(rows)
        ptype = meta.problem_type
        for r, s in zip(rows, scores.tolist()):
            risk = self.risk[r.symbol]
            pos = 0 if risk.kill.killed else position(s, ptype)
            risk.last_pos = pos
            t_emit = time.perf_counter_ns()
            latency = None if r.trigger is None else (t_emit - r.trigger.t_recv_perf_ns) / 1e6
            self.sink.emit({"symbol": r.symbol, "ts_ns": r.t_ns, "ts_avail_ns": r.avail_ns,
                            "ts_signal_ns": self.cfg.time_ns(), "score": s, "position": pos,
                            "killed": risk.kill.killed, "model_version": version,
                            "alarm": alarms.get((r.symbol, r.t_ns)), "latency_ms": latency})
            if r.trigger is not None:
                t4 = time.perf_counter_ns()
                self.lat.add("push", t1 - t0)
                self.lat.add("fetch", t2 - t1)
                self.lat.add("score", t3 - t2)
                self.lat.add("emit", t4 - t3)
                self.lat.add("event_to_signal", t4 - r.trigger.t_recv_perf_ns)
        self.report.signals = self.sink.count
        self.sink.tick()

    # -- the end --------------------------------------------------------------------------------------------
    def _finish(self, col_report, wall_s: float) -> None:
        rep = self.report
        rep.suppressed = dict(self.suppressed)
        rep.reload_errors = list(self.scorer.reload_errors)
        rep.latency = self.lat.summary()
        if self.grid_wait:
            w = np.asarray(self.grid_wait, float) / 1e6
            rep.grid_wait_ms = {"n": len(w), "p50_ms": round(float(np.percentile(w, 50)), 4),
                                "p99_ms": round(float(np.percentile(w, 99)), 4)}
        rep.collector = {k: v for k, v in col_report.__dict__.items() if k in (
            "frames", "reconnects", "resyncs", "stale", "connections")} if col_report else {}
        rep.wall_s = round(wall_s, 3)
        self.lat.write(self.out / "metrics.json", grid_wait_ms=rep.grid_wait_ms, signals=rep.signals,
                       rows=rep.rows, suppressed=rep.suppressed, source=rep.source)
        if self.cfg.record_features:
            self._write_features()
        self.jlog.write("stop", **{k: v for k, v in rep.__dict__.items() if k not in ("alarms", "kills")})
        self.jlog.close()
        atomic.write_json(self.out / "report.json", rep.__dict__)

    def _write_features(self) -> None:
        """Every live feature row, laid out like silver (ts_ns, ts_avail_ns, valid, features sorted)."""
        import pyarrow as pa

        from kernels.pipeline import grid_name

        for g, rows in self.recorded.items():
            rows = sorted(rows, key=lambda r: (r.symbol, r.t_ns))
            names = sorted({k for r in rows for k in r.values})
            table = pa.table({"symbol": [r.symbol for r in rows], "ts_ns": np.array([r.t_ns for r in rows], np.int64),
                              "ts_avail_ns": np.array([r.avail_ns for r in rows], np.int64),
                              "valid": np.array([r.valid for r in rows], bool),
                              **{n: np.array([r.values.get(n, np.nan) for r in rows], np.float64) for n in names}})
            atomic.write_parquet(self.out / f"features_{grid_name(g)}.parquet", table)


def fam_all() -> set[str]:
    return {s.family for s in catalog.features() if s.table == "book"}


def hour_runs(items: list) -> list[list]:
    """Consecutive items split where the clock hour of their receive time changes (the engine's hole rule looks
    at the hour of a feed's first row)."""
    out: list[list] = []
    for it in items:
        if out and out[-1][-1].ts_recv_ns // HOUR_NS == it.ts_recv_ns // HOUR_NS:
            out[-1].append(it)
        else:
            out.append([it])
    return out


def rounds(rows: list[LiveRow]) -> list[list[LiveRow]]:
    """Split rows into rounds holding each symbol at most once, in time order: an online lookup returns a
    symbol's latest pushed row, so two rows of one symbol must be pushed and fetched one after the other."""
    out: list[list[LiveRow]] = []
    seen: dict[str, int] = {}
    for r in rows:
        k = seen.get(r.symbol, -1) + 1
        seen[r.symbol] = k
        if k == len(out):
            out.append([])
        out[k].append(r)
    return out



__all__ = ["LiveConfig", "LiveReport", "LiveSession", "rounds", "warmup_rows"]

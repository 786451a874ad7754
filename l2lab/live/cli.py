"""``l2lab live --model RUN_DIR``: score the live stream with a papermill run's model (see l2lab/live/session.py).

stdout: one JSON line per signal (``--quiet`` turns it off). stderr: the summary and the per-stage latency
percentiles on exit. Files under ``--out`` (default ``RUN_DIR/live/<UTC start>/``): ``signals/part-*.parquet``,
``live.jsonl`` (structured log: start, signals, alarms, kills, reloads, stop), ``metrics.json`` (p50/p99 per
stage), ``report.json``; with ``--record-features``, ``features_<grid>.parquet``. The collector underneath keeps
recording the raw capture and bronze under the data root.
"""

from __future__ import annotations

import logging
import sys

from l2lab.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("live", help="score the live stream with a trained model (features -> Feast -> model)",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="papermill run folder with model/model.json")
    p.add_argument("--symbols", help="comma-separated venue product ids (default: the model's training symbols)")
    p.add_argument("--ws-url", help="WebSocket URL (default: the venue's); e.g. the loopback exchange's")
    p.add_argument("--rest-url", help="REST base URL for loading markets (default: the venue's)")
    p.add_argument("--venue-clock", metavar="URL", help="receive times on the venue clock served at URL (the "
                                                        "loopback's /l2lab/clock), for accelerated simulators")
    p.add_argument("--duration", type=float, help="seconds to run (default: until SIGINT/SIGTERM)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/live/<UTC start>)")
    p.add_argument("--no-feast", action="store_true", help="score from the kernels directly (no Feast online store)")
    p.add_argument("--feast-http", action="store_true", help="online lookups through Feast's HTTP feature server")
    p.add_argument("--feast-write", choices=["push", "direct"], default="direct",
                   help="direct: rows handed to Feast's provider, no DataFrame (default); push: through each view's "
                        "push source with a DataFrame (Feast's public push path)")
    p.add_argument("--leader", default="BTC-USD", help="cross-asset leader symbol (default BTC-USD)")
    p.add_argument("--record-features", action="store_true", help="also write every live feature row (Parquet)")
    p.add_argument("--all-features", action="store_true", help="compute and push every book family (default: the "
                                                               "families the model reads, plus structural)")
    p.add_argument("--extra-grids-ms", default="", help="grids computed besides the model's, e.g. 100")
    p.add_argument("--stale-after", type=float, default=5.0, help="seconds after which a row is stale (default 5)")
    p.add_argument("--score-every-row", action="store_true", help="when behind, score every queued row (default: "
                                                                  "only each symbol's newest; the rest 'superseded')")
    p.add_argument("--warmup-rows", type=int, help="valid rows after a gap before scoring (default: the longest "
                                                   "window of the model's features)")
    p.add_argument("--quiet", action="store_true", help="no JSON lines on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    import asyncio

    from collectors.cli import _markets_over_rest, venue_time_source
    from l2lab.cli import CLIError
    from l2lab.live.session import LiveConfig, LiveSession
    from research.model_artifact import load_meta

    settings = Settings.load(args.data_root)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        meta = load_meta(args.model)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    symbols = ([s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols
               else list(meta.trainset.get("symbols") or []))
    if not symbols:
        raise CLIError("no symbols: give --symbols (the model's model.json lists none)")
    cfg = LiveConfig(run_dir=args.model, data_root=settings.data_root, symbols=symbols, out_dir=args.out,
                     ws_url=args.ws_url, duration_s=args.duration, feast=not args.no_feast, feast_http=args.feast_http,
                     feast_write=args.feast_write,
                     leader=args.leader, record_features=args.record_features, all_features=args.all_features,
                     extra_grids_ms=tuple(int(g) for g in args.extra_grids_ms.split(",") if g.strip()),
                     stale_after_s=args.stale_after, warmup_rows=args.warmup_rows, stdout=not args.quiet,
                     conflate=not args.score_every_row)
    if args.venue_clock:
        cfg.time_ns = venue_time_source(args.venue_clock)
    if args.rest_url:
        cfg.markets = _markets_over_rest(args.rest_url)
    try:
        session = LiveSession(cfg)
        report = asyncio.run(session.run())
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    for line in report.lines():
        print(line, file=sys.stderr)
    for line in session.lat.lines():
        print("  " + line, file=sys.stderr)
    print(f"live: metrics {session.out / 'metrics.json'}, signals {session.out / 'signals'}", file=sys.stderr)
    return 0

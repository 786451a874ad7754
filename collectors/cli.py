"""``l2lab collect``: record live L2 + trades (+ heartbeats) from Coinbase Advanced Trade through ccxt."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request

from l2lab.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("collect", help="record L2 + trades from a venue's WebSocket into raw captures and bronze",
                       description="Every frame goes raw to <data>/raw and normalized to <data>/bronze.")
    p.add_argument("--exchange", default="coinbase", choices=["coinbase"], help="venue (default coinbase)")
    p.add_argument("--symbols", required=True, help="comma-separated venue product ids, e.g. BTC-USD,ETH-USD")
    p.add_argument("--ws-url", help="WebSocket URL (default: the venue's); e.g. the loopback exchange's")
    p.add_argument("--rest-url", help="REST base URL for loading markets (default: the venue's)")
    p.add_argument("--duration", type=float, help="seconds to collect (default: until SIGINT/SIGTERM)")
    p.add_argument("--venue-clock", metavar="URL",
                   help="map receive times to the venue clock served at URL (the loopback exchange's "
                        "/l2lab/clock), for simulators running faster than real time")
    p.add_argument("--bronze-flush", type=float, default=30.0, help="seconds between bronze flushes")
    p.add_argument("--stale-after", type=float, default=5.0, help="seconds without a frame before resync")
    p.add_argument("--quiet", action="store_true", help="no live statistics line")
    p.set_defaults(func=run)

    q = sub.add_parser("ingest", help="bulk-load recorded data into bronze: raw captures, 1-min OHLCV, funding",
                       description="Raw captures go through the live normalizer (identical frames give identical "
                                   "rows). With --kind ohlcv|funding, a CSV/Parquet file of bars or funding is "
                                   "validated row by row (see collectors/bars_file.py for the columns).")
    q.add_argument("capture", metavar="PATH", help="a .jsonl / .jsonl.zst capture or a folder of segments; "
                                                   "or a CSV/Parquet file with --kind")
    q.add_argument("--kind", choices=["capture", "ohlcv", "funding"], default="capture")
    q.add_argument("--symbol", help="symbol for --kind ohlcv/funding files without a symbol column")
    q.add_argument("--exchange", default=None, help="exchange name (default coinbase for captures, "
                                                    "binanceusdm for bars)")
    q.add_argument("--products", help="products.json with price_exp/size_exp per product "
                                      "(default: the one the collector wrote beside the capture)")
    q.set_defaults(func=run_ingest)
    register_backfill(sub)


def register_backfill(sub) -> None:
    p = sub.add_parser("backfill", help="REST backfill of 1-min OHLCV and funding for a perp universe (ccxt)",
                       description="Resumable (checkpoints under <data>/bronze/_state), incremental, rate-limited; "
                                   "venue gaps are recorded in bronze_venue_gaps, never filled.")
    p.add_argument("--exchange", default="binanceusdm", choices=["binanceusdm"])
    p.add_argument("--rest-url", help="REST base URL (default: the venue's), e.g. the loopback exchange's")
    p.add_argument("--symbols", help="comma-separated venue ids (default: every linear perp the venue lists)")
    p.add_argument("--since", help="start (ISO date/time or ms); default: each contract's onboard date")
    p.add_argument("--until", help="end (ISO date/time or ms); default: the venue's now")
    p.add_argument("--datasets", default="ohlcv_1m,funding", help="ohlcv_1m and/or funding")
    p.set_defaults(func=run_backfill)


def _time_ms(text: str | None, flag: str) -> int | None:
    from l2lab.cli import CLIError
    from simulator.config import ConfigError, parse_utc

    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        return parse_utc(text, flag) // 1_000_000
    except ConfigError as exc:
        raise CLIError(str(exc)) from None


def run_backfill(args) -> int:
    import ccxt

    from l2lab.cli import CLIError
    from collectors.backfill import Backfill

    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    bad = [d for d in datasets if d not in ("ohlcv_1m", "funding")]
    if bad or not datasets:
        raise CLIError(f"--datasets: unknown {', '.join(bad) or '(none)'}; use ohlcv_1m and/or funding")
    client = ccxt.binanceusdm({"enableRateLimit": True})
    if args.rest_url:
        from loopback.clients import binanceusdm

        client = binanceusdm(args.rest_url, {"enableRateLimit": True})
    settings = Settings.load(args.data_root)
    symbols = [s.strip() for s in args.symbols.split(",")] if args.symbols else None

    def progress(sid, dataset, cursor):
        print(f"\r  {sid:<12} {dataset:<9} up to {cursor}", end="", flush=True)

    try:
        rep = Backfill(client, settings.data_root, args.exchange, progress=progress).run(
            symbols, since_ms=_time_ms(args.since, "--since"), until_ms=_time_ms(args.until, "--until"),
            datasets=datasets)
    except (ValueError, ccxt.BaseError) as exc:
        raise CLIError(f"backfill failed: {exc}") from None
    print()
    print(json.dumps(rep.__dict__, indent=2))
    return 0


def run_ingest(args) -> int:
    from l2lab.cli import CLIError
    from collectors.capture import CaptureError
    from collectors.ingest import ingest_capture, read_products

    settings = Settings.load(args.data_root)
    if args.kind != "capture":
        from collectors.bars_file import BarsFileError, ingest_bars_file

        try:
            res = ingest_bars_file(args.capture, settings.data_root, args.kind,
                                   exchange=args.exchange or "binanceusdm", symbol=args.symbol)
        except BarsFileError as exc:
            raise CLIError(str(exc)) from None
        print(json.dumps(res, indent=2))
        return 0
    if args.exchange not in (None, "coinbase"):
        raise CLIError(f"captures of {args.exchange!r} are not supported (coinbase only)")
    args.exchange = "coinbase"
    try:
        products = read_products(args.products) if args.products else None
        res = ingest_capture(args.capture, settings.data_root, exchange=args.exchange, products=products,
                             progress=lambda n: print(f"\r  {n:,} frames", end="", flush=True))
    except (ValueError, FileNotFoundError, CaptureError) as exc:
        raise CLIError(str(exc)) from None
    print()
    print(json.dumps(res, indent=2))
    return 0


def venue_time_source(url: str):
    """A ``time_ns`` replacement following a paced venue clock: venue = venue_start + (wall - wall_start) * speed."""
    from l2lab.cli import CLIError

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            info = json.load(resp)
    except OSError as exc:
        raise CLIError(f"cannot read the venue clock at {url}: {exc}") from None
    if info.get("pacing") != "paced":
        raise CLIError(f"the venue clock at {url} is not paced ({info.get('pacing')}); receive times cannot map")
    v0, w0, speed = int(info["venue_start_ns"]), int(info["wall_start_ns"]), float(info["speed"])
    return lambda: v0 + int((time.time_ns() - w0) * speed)


def run(args) -> int:
    from l2lab.cli import CLIError
    from collectors.live import CoinbaseCollector, CollectorConfig

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise CLIError("--symbols is empty")
    settings = Settings.load(args.data_root)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = CollectorConfig(symbols=symbols, data_root=settings.data_root, ws_url=args.ws_url,
                          duration_s=args.duration, bronze_flush_s=args.bronze_flush,
                          stale_after_s=args.stale_after, progress=not args.quiet)
    if args.venue_clock:
        cfg.time_ns = venue_time_source(args.venue_clock)
    if args.rest_url:
        cfg.markets = _markets_over_rest(args.rest_url)
    try:
        report = asyncio.run(CoinbaseCollector(cfg).run())
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(json.dumps({k: v for k, v in report.__dict__.items()}, indent=2, default=str))
    return 0


def _markets_over_rest(rest_url: str) -> list[dict]:
    import ccxt

    client = ccxt.coinbase()
    client.urls["api"]["rest"] = rest_url
    return list(client.load_markets().values())

"""``l2lab exchange serve``: run the loopback exchange on 127.0.0.1 until interrupted (or for ``--duration``).

The first line on stdout is one JSON object with the bound addresses, e.g.
``{"ws_url": "ws://127.0.0.1:8765", "rest_url": "http://127.0.0.1:8766", "clock_url": ..., "faults_url": ...,
"fault_log": ...}``, so a caller using ``--port 0`` can read where to connect.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("exchange", help="the loopback exchange (simulator or capture replay over real protocols)",
                       description="Serve the simulated market (or replay a capture) over Coinbase Advanced Trade "
                                   "WebSocket and Binance USD-M REST, on 127.0.0.1 only.")
    exsub = p.add_subparsers(dest="exchange_command", metavar="SUBCOMMAND")
    s = exsub.add_parser("serve", help="run the loopback exchange",
                         description="Run the loopback exchange. Prints the bound URLs as one JSON line first.")
    s.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=0, help="WebSocket port (default 0: a free port)")
    s.add_argument("--rest-port", type=int, default=None,
                   help="HTTP port (default: --port + 1, or a free port when --port is 0)")
    src = s.add_argument_group("source")
    src.add_argument("--capture", help="replay this raw capture (.jsonl / .jsonl.zst, or a folder of segments) "
                                       "instead of the simulator")
    src.add_argument("--wait-clients", type=int, default=1,
                     help="replay: start playing once this many connections have subscribed (default 1)")
    src.add_argument("--config", help="simulator YAML layered over simulator/default.yaml")
    src.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="override one simulator config field (repeatable)")
    src.add_argument("--seed", type=int, help="simulator seed (default: the config's)")
    src.add_argument("--symbols", help="comma-separated subset of the simulated products")
    src.add_argument("--no-perps", action="store_true", help="do not serve the Binance USD-M REST endpoints")
    pace = s.add_argument_group("pacing")
    pace.add_argument("--speed", default="1",
                      help="venue seconds per wall second (default 1 = real time); 'max' = as fast as clients read")
    pace.add_argument("--coalesce-ms", type=float, default=0.0,
                      help="merge a product's events within this many venue ms into one frame (default 0: one "
                           "frame per venue timestamp)")
    pace.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    flt = s.add_argument_group("faults")
    flt.add_argument("--faults", default="",
                     help="fault probabilities per data frame, e.g. 'drop=0.001,gap=0.001,duplicate=0.001,"
                          "reorder=0.001,disconnect=0.0001,malformed=0.0005,error=0.0001,seed=3,warmup_frames=100'")
    flt.add_argument("--fault-log", help="JSONL fault log (default with faults: <data root>/loopback/faults-<t>.jsonl)")
    flt.add_argument("--queue-limit", type=int, default=20_000,
                     help="frames queued per client before it is disconnected as a slow consumer (default 20000)")
    flt.add_argument("--slow-consumer-timeout", type=float, default=2.0,
                     help="seconds a client queue may stay half full before disconnection (default 2)")
    flt.add_argument("--weight-limit", type=int, default=2400, help="REST request weight per minute (default 2400)")
    s.set_defaults(func=serve)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    r = sub.add_parser("replay", help="serve a raw capture through the loopback exchange",
                       description="Replay a raw capture (a file, or a folder of the collector's hourly segments) "
                                   "over the Coinbase WebSocket protocol; the same as 'exchange serve --capture'. "
                                   "Prints the bound URLs as one JSON line first.")
    r.add_argument("capture", help="a .jsonl / .jsonl.zst capture, or a folder of capture segments")
    r.add_argument("--speed", default="1", help="capture seconds per wall second (default 1); 'max' = as fast as read")
    r.add_argument("--port", type=int, default=0, help="WebSocket port (default 0: a free port)")
    r.add_argument("--wait-clients", type=int, default=1, help="start once this many connections subscribed")
    r.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")

    def run_replay(args) -> int:
        from collectors.capture import capture_files
        from l2lab.cli import CLIError

        try:
            if not capture_files(args.capture):
                raise CLIError(f"no capture segments under {args.capture}")
        except FileNotFoundError as exc:
            raise CLIError(str(exc)) from None
        argv = ["--capture", args.capture, "--speed", args.speed, "--port", str(args.port),
                "--wait-clients", str(args.wait_clients), "--no-perps"]
        if args.duration is not None:
            argv += ["--duration", str(args.duration)]
        ns = s.parse_args(argv)
        ns.data_root = args.data_root
        return serve(ns)

    r.set_defaults(func=run_replay)


def parse_speed(text: str) -> float:
    from l2lab.cli import CLIError

    if str(text).lower() in ("max", "inf", "fast"):
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        raise CLIError(f"--speed {text!r}: expected a number > 0 or 'max'") from None
    if not speed > 0 or not math.isfinite(speed):
        raise CLIError(f"--speed {text!r}: expected a number > 0 or 'max'")
    return speed


def build_kwargs(args) -> dict:
    """LoopbackExchange keyword arguments from parsed ``serve`` arguments (validated, user errors as CLIError)."""
    from l2lab.cli import CLIError
    from l2lab.settings import resolve_data_root
    from loopback.faults import FaultConfig

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise CLIError(f"--host {args.host}: the loopback exchange binds loopback addresses only")
    try:
        faults = FaultConfig.from_spec(args.faults)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--faults: {exc}") from None
    fault_log = args.fault_log
    if fault_log is None and faults.active:
        fault_log = str(resolve_data_root(getattr(args, "data_root", None)) / "loopback"
                        / f"faults-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
    rest_port = args.rest_port if args.rest_port is not None else (args.port + 1 if args.port else 0)
    kwargs = dict(host=args.host, ws_port=args.port, rest_port=rest_port, speed=parse_speed(args.speed),
                  faults=faults, fault_log_path=fault_log, queue_limit=args.queue_limit,
                  slow_consumer_timeout_s=args.slow_consumer_timeout, weight_limit=args.weight_limit,
                  coalesce_ns=int(args.coalesce_ms * 1_000_000), perps=not args.no_perps)
    if args.capture:
        if not Path(args.capture).exists():
            raise CLIError(f"--capture {args.capture}: file not found")
        kwargs.update(capture=args.capture, wait_clients=args.wait_clients)
    else:
        from simulator.cli import load_cli_config

        kwargs["sim_config"] = load_cli_config(args)
    return kwargs


async def _serve(kwargs: dict, duration: float | None) -> None:
    from loopback.server import LoopbackExchange

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    async with LoopbackExchange(**kwargs) as ex:
        info = ex.urls()
        info["fault_log"] = str(ex.fault_log.path) if ex.fault_log.path else None
        info["source"] = str(ex.capture) if ex.capture else "simulator"
        print(json.dumps(info), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=duration)
        except asyncio.TimeoutError:
            pass


def serve(args) -> int:
    kwargs = build_kwargs(args)
    try:
        asyncio.run(_serve(kwargs, args.duration))
    except OSError as exc:
        from l2lab.cli import CLIError

        raise CLIError(f"cannot serve: {exc}") from None
    sys.stdout.flush()
    return 0

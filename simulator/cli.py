"""``l2lab sim``: generate a simulated data set with its planted truth."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from l2lab.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("sim", help="generate a simulated L2 session and perp universe with planted truth",
                       description="Generate venue events, the latent path, statistics and truth files.")
    p.add_argument("--config", help="YAML file layered over simulator/default.yaml")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one config field, e.g. --set signal.drift_loading=0.4 (repeatable)")
    p.add_argument("--seed", type=int, help="random seed (default: the config's)")
    p.add_argument("--symbols", help="comma-separated subset of the configured symbols")
    p.add_argument("--duration", type=float, default=600.0, help="simulated seconds (default 600)")
    p.add_argument("--out", help="output folder (default: <data root>/sim/<name>)")
    p.add_argument("--name", default="session", help="data set name under <data root>/sim (default: session)")
    p.add_argument("--no-perps", action="store_true", help="skip the perpetuals universe")
    p.add_argument("--klines", action="store_true", help="also write every 1-min perp bar (klines.parquet)")
    p.add_argument("--show-config", action="store_true", help="print the merged configuration and exit")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    from l2lab.cli import CLIError

    out = {}
    for item in items:
        if "=" not in item:
            raise CLIError(f"--set {item!r}: expected FIELD=VALUE")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_cli_config(args):
    from l2lab.cli import CLIError
    from simulator.config import ConfigError, load_config

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if getattr(args, "symbols", None) else None
    overrides = parse_overrides(getattr(args, "set", []) or [])
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    try:
        return load_config(getattr(args, "config", None), overrides, symbols)
    except ConfigError as exc:
        raise CLIError(str(exc)) from None


def run(args) -> int:
    from l2lab.cli import CLIError
    from simulator.session import generate_l2, generate_perps
    from simulator.stats import format_stats

    cfg = load_cli_config(args)
    if args.show_config:
        yaml.safe_dump(cfg.raw, sys.stdout, sort_keys=False)
        return 0
    if not args.duration > 0:
        raise CLIError(f"--duration must be > 0, got {args.duration}")
    out = Path(args.out) if args.out else Settings.load(args.data_root).sim_dir / args.name
    started = time.perf_counter()

    def progress(done_s, n):
        print(f"\r  simulated {done_s:8.0f} / {args.duration:.0f} s", end="", file=sys.stderr, flush=True)

    print(f"l2lab sim: {', '.join(cfg.symbols)}, {args.duration:g} s, seed {cfg.seed} -> {out}", file=sys.stderr)
    res = generate_l2(out, cfg, args.duration, progress=progress)
    print(file=sys.stderr)
    print(f"{res['events']:,} venue events in {time.perf_counter() - started:.1f} s")
    print(format_stats(res["stats"]))
    if not args.no_perps:
        pres = generate_perps(out, cfg, klines=args.klines)
        print(f"perps: {pres['contracts']} contracts" + (f", {pres['bars']:,} 1-min bars" if args.klines else ""))
    print(f"truth: {out / 'l2' / 'truth.json'}" + ("" if args.no_perps else f", {out / 'perps' / 'truth.json'}"))
    return 0

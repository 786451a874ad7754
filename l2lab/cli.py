"""The ``l2lab`` command line. Each subsystem registers its own subcommands; ``l2lab --help`` lists them."""

from __future__ import annotations

import argparse
import importlib
import sys

from l2lab import __version__
from l2lab.settings import DATA_ENV_VAR

# modules exposing ``register(subparsers)``; each adds its commands with ``set_defaults(func=...)``
COMMAND_MODULES = [
    "simulator.cli",
    "loopback.cli",
    "collectors.cli",
    "collectors.quality",
    "l2lab.warehouse",
    "kernels.catalog",
    "l2lab.featurestore.cli",
    "l2lab.demo",
    "research.backtest.cli",
    "l2lab.live.cli",
    "research.cli",
]


class CLIError(Exception):
    """A user-facing error: printed as ``l2lab: error: ...`` with exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l2lab",
        description="Research kit for crypto market microstructure (simulator, loopback exchange, collectors, "
                    "kernels, feature store, research notebooks).",
    )
    parser.add_argument("--version", action="version", version=f"l2lab {__version__}")
    parser.add_argument("--data-root", default=None,
                        help=f"data root for every layer (default: ${DATA_ENV_VAR}, else data/ in the repository)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # subsystem not installed in this checkout
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"l2lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

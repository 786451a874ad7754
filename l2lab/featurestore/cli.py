"""``l2lab feast ARGS...`` and ``l2lab trainset ...``.

``l2lab feast`` runs Feast's own command line, ``feast --chdir feature_repo ARGS...``, with ``L2LAB_DATA`` set
to the resolved data root, so the registry, the online store and the sources are the ones under that root.
``serve`` and ``ui`` bind 127.0.0.1 unless a host is given (Feast's ``ui`` defaults to every interface).
``l2lab trainset`` calls ``l2lab.featurestore.trainset.build_trainset``. Feast is imported only when a command
runs: every ``l2lab`` command loads this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from l2lab.featurestore.paths import REPO_PATH
from l2lab.settings import DATA_ENV_VAR

LOCAL_ONLY = ("serve", "ui")


def feast_argv(args: list[str]) -> list[str]:
    """The Python command line that runs Feast's CLI with ``args`` on the repository."""
    args = list(args)
    if args and args[0] in LOCAL_ONLY and not {"-h", "--host"} & set(args):
        args[1:1] = ["--host", "127.0.0.1"]
    return [sys.executable, "-c", "import sys; from feast.cli.cli import cli; sys.exit(cli(prog_name='feast'))",
            "--chdir", str(REPO_PATH), *args]


def feast_env(data_root) -> dict:
    env = dict(os.environ)
    env[DATA_ENV_VAR] = str(data_root)
    return env


def register(sub) -> None:
    register_feast(sub)
    register_trainset(sub)


def register_feast(sub) -> None:
    p = sub.add_parser("feast", help="Feast's command line on l2lab's feature repository (apply, materialize, serve, ui)",
                       description="Everything after `feast` goes to Feast's CLI, run in feature_repo/ with the "
                                   "data root exported as $L2LAB_DATA. Examples: `l2lab feast apply`, "
                                   "`l2lab feast materialize-incremental 2026-01-05T02:00:00`, `l2lab feast serve "
                                   "--port 6566`, `l2lab feast ui`, `l2lab feast feature-views list`.")
    p.add_argument("feast_args", nargs=argparse.REMAINDER, help="arguments for feast")
    p.set_defaults(func=run_feast)


def run_feast(args) -> int:
    from l2lab.settings import Settings

    root = Settings.load(args.data_root).data_root
    argv = feast_argv(args.feast_args or ["--help"])
    sys.stdout.flush()
    os.execve(argv[0], argv, feast_env(root))  # Feast replaces this process: signals (stop a server) reach it


def register_trainset(sub) -> None:
    p = sub.add_parser("trainset", help="a point-in-time training set through Feast (label rows + features)",
                       description="Entity rows are the label table's rows on the grid; features come through a "
                                   "Feast feature service (or --features). Writes trainset.parquet and manifest.json.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--grid", default="1s", choices=("100ms", "1s"))
    p.add_argument("--labels", required=True, help="comma-separated label names (l2lab features list --labels)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--feature-service", help="e.g. book_1s, compact_1s, flow_1s (default: book_<grid>)")
    g.add_argument("--features", help="comma-separated catalog feature names instead of a service")
    p.add_argument("--symbols", help="comma-separated (default: all)")
    p.add_argument("--exchange", help="only this exchange's partitions (default: all)")
    p.add_argument("--start", help="first entity time (ISO UTC or int ns), inclusive")
    p.add_argument("--end", help="last entity time (ISO UTC or int ns), exclusive")
    p.set_defaults(func=run_trainset)


def run_trainset(args) -> int:
    from l2lab.cli import CLIError
    from l2lab.featurestore.trainset import MANIFEST_FILE, TRAINSET_FILE, LeakageError, build_trainset
    from l2lab.settings import Settings

    def time_arg(v):
        return int(v) if v and v.lstrip("-").isdigit() else v

    features = [f.strip() for f in args.features.split(",")] if args.features else None
    try:
        out = build_trainset(Settings.load(args.data_root).data_root, args.out, grid=args.grid,
                             labels=[lb.strip() for lb in args.labels.split(",")],
                             feature_service=args.feature_service,
                             features=features, symbols=args.symbols.split(",") if args.symbols else None,
                             start=time_arg(args.start), end=time_arg(args.end), exchange=args.exchange)
    except (LeakageError, ValueError, KeyError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    m = json.loads((out / MANIFEST_FILE).read_text())
    worst = sorted(m["null_rates"].items(), key=lambda kv: -kv[1])[:3]
    print(f"{out / TRAINSET_FILE}: {m['rows']} rows x {len(m['features'])} features, labels {','.join(m['labels'])}, "
          f"symbols {','.join(m['symbols'])}; highest null rates {worst}")
    return 0


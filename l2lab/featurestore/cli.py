"""``l2lab feast ARGS...``: Feast's own command line on l2lab's repository and data root.

Runs ``feast --chdir feature_repo ARGS...`` with ``L2LAB_DATA`` set to the resolved data root, so the registry,
the online store and the sources are the ones under that root. ``serve`` and ``ui`` bind 127.0.0.1 unless a host
is given (Feast's ``ui`` defaults to every interface).
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
    p = sub.add_parser("feast", help="Feast's command line on l2lab's feature repository (apply, materialize, serve, ui)",
                       description="Everything after `feast` goes to Feast's CLI, run in feature_repo/ with the "
                                   "data root exported as $L2LAB_DATA. Examples: `l2lab feast apply`, "
                                   "`l2lab feast materialize-incremental 2026-01-05T02:00:00`, `l2lab feast serve "
                                   "--port 6566`, `l2lab feast ui`, `l2lab feast feature-views list`.")
    p.add_argument("feast_args", nargs=argparse.REMAINDER, help="arguments for feast")
    p.set_defaults(func=run)


def run(args) -> int:
    from l2lab.settings import Settings

    root = Settings.load(args.data_root).data_root
    return subprocess.call(feast_argv(args.feast_args or ["--help"]), env=feast_env(root))

"""``l2lab run`` (research notebooks through papermill) and ``l2lab research-session`` (the simulated research
session with its planted truth)."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("run", help="run research notebooks headless with papermill (one, the 01-06 chain, or a grid)",
                       description="Each parameter set lands in <runs root>/<run-id>/ with the executed notebooks, "
                                   "HTML, metrics.json, plots and an index page, and is indexed in the warehouse "
                                   "table `runs`. Completed notebooks with the same parameters are skipped.")
    p.add_argument("notebooks", nargs="*", default=[],
                   help="notebooks (01 .. 06, names, or .py files); default: the 01-06 chain")
    p.add_argument("--grid", help="YAML grid: {base: {...}, grid: {param: [values], ...}, notebooks: [...], name: ...}")
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                   help="a notebook parameter (VALUE parsed as YAML: 5, [1, 5], null, text); repeatable")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    p.add_argument("--runs-root", help="where run folders go (default papermill_runs/ in the repository)")
    p.add_argument("--name", default=None, help="run id prefix (default: the grid's name or 'run')")
    p.add_argument("--force", action="store_true", help="re-execute notebooks that already completed")
    p.add_argument("--timeout", type=float, default=None, help="seconds per notebook cell (default: none)")
    p.set_defaults(func=run)

    s = sub.add_parser("research-session", help="simulate the research session to bronze (exchange=sim) with its "
                                                "planted truth, then build every layer")
    s.add_argument("--hours", type=float, default=2.0, help="simulated hours (default 2)")
    s.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    s.add_argument("--start", default=None, help="session start, ISO UTC (default 2026-01-04T00:00:00Z)")
    s.add_argument("--name", default="research", help="name under <data>/sim (default research)")
    s.set_defaults(func=run_session)


def parse_sets(items: list[str]) -> dict:
    import yaml

    from l2lab.cli import CLIError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--set {item!r}: expected PARAM=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise CLIError(f"--set {item!r}: value is not valid YAML ({exc})") from None
    return out


def run(args) -> int:
    from l2lab.cli import CLIError
    from research.runner import CHAIN, RunError, expand_grid, load_grid, run_grid

    try:
        spec = load_grid(args.grid) if args.grid else {}
        sets = parse_sets(args.set)
        spec = {**spec, "base": {**(spec.get("base") or {}), **sets}}
        notebooks = args.notebooks or spec.get("notebooks") or list(CHAIN)
        param_sets = expand_grid(spec)

        def progress(summary):
            print(json.dumps(summary), flush=True)

        results = run_grid(param_sets, notebooks, runs_root=args.runs_root, data_root=args.data_root, jobs=args.jobs,
                           prefix=args.name or spec.get("name") or "run", timeout=args.timeout, force=args.force,
                           progress=progress)
    except RunError as exc:
        raise CLIError(str(exc)) from None
    root = Path(results[0]["run_dir"]).parent if results else None
    for r in results:
        if r.get("index_error"):
            print(f"warning: {r['run_id']} is complete but not in the warehouse's runs table: {r['index_error']}")
    failed = [r["run_id"] for r in results if r["status"] != "ok"]
    print(f"{len(results)} run(s), {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; index {root / 'index.html'}")
    return 1 if failed else 0


def run_session(args) -> int:
    from l2lab.settings import Settings
    from research.sessions import RESEARCH_START, make_research_session

    settings = Settings.load(args.data_root)
    rec = make_research_session(settings.data_root, hours=args.hours, seed=args.seed,
                                start=args.start or RESEARCH_START, name=args.name)
    print(json.dumps(rec))
    return 0

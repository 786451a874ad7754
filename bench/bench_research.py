"""Research notebooks under papermill: the 01-06 chain, a 4-cell grid, and the per-notebook overheads.

Measured in the same run, on a fresh data root:
* the research session (simulate ``hours`` to bronze + build silver/gold), the part of ``make demo`` that
  precedes the notebooks;
* the 01-06 chain through ``l2lab run`` with the demo's parameters (``research.demo.DEMO_PARAMS``);
* a 4-cell grid (horizon 5/30 s x target direction/return) through the whole chain with 2 parallel processes
  (AutoGluon on one core each), against 4x the single chain (the sequential baseline);
* per notebook: a kernel start with one trivial cell (papermill) and the same kernel importing that notebook's
  imports (the fixed cost every notebook pays before its own work).

Sizes: ``L2LAB_BENCH_RESEARCH_HOURS`` (default 2, the demo's session), ``L2LAB_BENCH_RESEARCH_GRID`` (0 skips
the grid). Goal (issue): the whole ``make demo`` <= 10 minutes on 2 cores.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def _import_only(nb_file: Path) -> str:
    """The notebook's import statements as one cell of a percent-format notebook."""
    import jupytext

    nb = jupytext.read(str(nb_file))
    lines = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            lines += [ln for ln in cell.source.splitlines() if ln.startswith(("import ", "from "))]
    return "# %%\n" + "\n".join(dict.fromkeys(lines)) + "\n"


def overheads(tmp: Path) -> dict:
    from research.runner import CHAIN, NOTEBOOK_DIR, execute_notebook

    trivial = tmp / "00_trivial.py"
    trivial.write_text("# %%\n1 + 1\n")
    out = {}
    for name in CHAIN:
        d = tmp / "overhead" / name
        d.mkdir(parents=True)
        start = execute_notebook(trivial, d, {})["wall_s"]
        imp_file = tmp / f"imports_{name}.py"
        imp_file.write_text(_import_only(NOTEBOOK_DIR / f"{name}.py"))
        imports = execute_notebook(imp_file, d, {})["wall_s"]
        out[name] = {"kernel_start_s": start, "imports_s": round(imports - start, 2)}
    return out


def run(hours: float | None = None, grid: bool | None = None) -> dict:
    from l2lab.settings import Settings
    from research.demo import DEMO_PARAMS
    from research.runner import CHAIN, run_grid
    from research.runlog import read_metrics
    from research.sessions import make_research_session

    hours = float(os.environ.get("L2LAB_BENCH_RESEARCH_HOURS", 2.0)) if hours is None else hours
    grid = bool(int(os.environ.get("L2LAB_BENCH_RESEARCH_GRID", 1))) if grid is None else grid
    res: dict = {"hours": hours, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings.load(tmp / "data")
        t = time.perf_counter()
        sess = make_research_session(settings.data_root, hours=hours, seed=7)
        res["session_s"] = round(time.perf_counter() - t, 1)
        res["session_rows"] = sess["rows"]
        res["overheads"] = overheads(tmp)
        t = time.perf_counter()
        [one] = run_grid([DEMO_PARAMS], CHAIN, runs_root=tmp / "runs", data_root=settings.data_root, prefix="chain")
        res["chain_s"] = round(time.perf_counter() - t, 1)
        res["chain_status"] = one["notebooks"]
        import json

        status = json.loads((Path(one["run_dir"]) / "status.json").read_text())
        res["chain_per_notebook_s"] = {k: v.get("wall_s") for k, v in status["notebooks"].items()}
        m = read_metrics(one["run_dir"]).get("04_modelling", {})
        res["chain_oos_auc"] = m.get("oos_autogluon")
        if grid:
            # two processes on two cores: one core per AutoGluon fit (num_cpus 2 in both would oversubscribe)
            cells = [{**DEMO_PARAMS, "horizon": h, "target": tg, "num_cpus": 1}
                     for h in (5, 30) for tg in ("direction", "return")]
            t = time.perf_counter()
            out = run_grid(cells, CHAIN, runs_root=tmp / "grid", data_root=settings.data_root, jobs=2, prefix="grid")
            res["grid4_s"] = round(time.perf_counter() - t, 1)
            res["grid4_failed_notebooks"] = sorted({k for r in out for k, v in r["notebooks"].items() if v != "ok"})
    fixed = sum(v["kernel_start_s"] + v["imports_s"] for v in res["overheads"].values())
    print(f"   research session ({hours:g} h): {res['session_s']:.1f} s; chain 01-06: {res['chain_s']:.1f} s "
          f"(per notebook {res['chain_per_notebook_s']})")
    print(f"   kernel start + imports over the 6 notebooks: {fixed:.1f} s = {fixed / res['chain_s']:.0%} of the chain; "
          + ", ".join(f"{k[:2]} {v['kernel_start_s']:.1f}+{v['imports_s']:.1f}" for k, v in res["overheads"].items()))
    print(f"   session + chain: {res['session_s'] + res['chain_s']:.0f} s (goal: all of make demo <= 600 s)")
    if grid:
        print(f"   4-cell grid, 2 processes: {res['grid4_s']:.1f} s = {4 * res['chain_s'] / res['grid4_s']:.2f}x "
              f"4 sequential chains ({4 * res['chain_s']:.0f} s); notebooks that failed in some cell: "
              f"{res['grid4_failed_notebooks'] or 'none'}")
    return res

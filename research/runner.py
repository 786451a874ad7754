"""``l2lab run``: research notebooks executed headless with papermill, one at a time, as the 01-06 chain, or as
a grid of parameter sets in parallel processes.

Each run (one parameter set) lands in ``<runs root>/<run-id>/``::

    params.json                 the parameters every notebook of the run received
    status.json                 per notebook: ok | failed | running, parameter hash, wall time, error
    NN_name.ipynb / .html       the executed notebook (partial up to the failing cell if it failed) and its HTML
    metrics.json                headline metrics, one section per notebook (research.runlog.record)
    plots/*.png, trainset/, selected_features.json, predictions.parquet, model/, backtest/ ...
    index.html                  links, status and metrics of the run

``<runs root>/index.html`` lists every run; the ``runs`` table of the DuckDB warehouse (``<data>/warehouse.duckdb``)
holds run id, parameters and metrics as JSON, one row per run (replaced when a run is resumed).

Notebooks are jupytext percent files (``research/notebooks/NN_*.py``); papermill reads only ``.ipynb``, so each is
converted in memory. Each run executes in its own process with BLAS/OpenMP/numba capped at one thread per kernel,
and ``seed`` in the parameters seeds every random choice, so the same parameters reproduce the same metrics.
Resume: a notebook already ``ok`` with the same parameter hash, the same source and the same inputs (code, the
session's data in the data root and files the parameters name: ``research.fingerprint``) is skipped (once one
runs, the later ones run too). A failing notebook keeps its partial output and the error; the later notebooks of
the chain still run (each needs only what earlier ones wrote, and fails clearly when it is missing).
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import logging
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from l2lab import atomic
from l2lab.settings import REPO_ROOT, Settings
from research.fingerprint import inputs_fingerprint

NOTEBOOK_DIR = Path(__file__).resolve().parent / "notebooks"
CHAIN = ("01_data_exploration", "02_targets", "03_selection", "04_modelling", "05_backtest", "06_interpretability")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
KERNEL_NAME = "l2lab"
DEFAULT_RUNS_ROOT = REPO_ROOT / "papermill_runs"


class RunError(Exception):
    """A user-facing runner error (bad notebook name, bad grid file)."""


def notebook_path(name: str) -> Path:
    """``01`` / ``01_data_exploration`` / ``01_data_exploration.py`` / a path -> the percent file."""
    p = Path(name)
    if p.suffix == ".py" and p.exists():
        return p.resolve()
    for nb in CHAIN:
        if name in (nb, nb[:2], nb + ".py"):
            return NOTEBOOK_DIR / f"{nb}.py"
    raise RunError(f"unknown notebook {name!r}: expected one of {', '.join(CHAIN)} (or NN) or a .py path")


def kernel_name() -> str:
    """The ``l2lab`` kernel when registered (``make install`` does it), else the environment's ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


def run_id_for(params: dict, prefix: str = "run") -> str:
    from research.workflow import params_hash

    return f"{prefix}-{params_hash(params)}"


def declared_params(nb_file: Path) -> set[str]:
    """The names a percent-format notebook's ``parameters`` cell assigns."""
    import jupytext
    from papermill.translators import PythonTranslator

    cells = [c for c in jupytext.read(str(nb_file)).cells if "parameters" in c.metadata.get("tags", [])]
    return {p.name for c in cells for p in PythonTranslator.inspect(c)}


class _ExpectedParams(logging.Filter):
    """papermill warns of every passed parameter a notebook's parameters cell does not assign. One parameter set
    goes to every notebook of a run, and the shared parameters (``research.workflow.DEFAULTS``) are set by
    ``workflow.setup``, so only a name no notebook of the run knows (e.g. a typo) is worth the warning."""

    def __init__(self, known: set[str]):
        super().__init__()
        self.known = known

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Passed unknown parameter: ") and msg.split(": ", 1)[1] in self.known)


def _json_params(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


# -- one notebook ------------------------------------------------------------------------------------------------
def execute_notebook(nb_file: Path, out_dir: Path, params: dict, kernel: str | None = None,
                     timeout: float | None = None) -> dict:
    """Execute one percent-format notebook into ``out_dir/<stem>.ipynb`` (+ ``.html``); returns its status."""
    import jupytext
    import papermill as pm

    stem = nb_file.stem
    nb = jupytext.read(str(nb_file))
    nb.metadata["kernelspec"] = {"name": kernel or kernel_name(), "display_name": "Python 3 (l2lab)",
                                 "language": "python"}
    out_nb = out_dir / f"{stem}.ipynb"
    t0 = time.perf_counter()
    status = {"notebook": stem, "status": "ok", "error": None}
    try:
        pm.execute_notebook(nb, str(out_nb), parameters=params, kernel_name=nb.metadata["kernelspec"]["name"],
                            progress_bar=False, cwd=str(out_dir), execution_timeout=timeout,
                            request_save_on_cell_execute=True)
    except Exception as exc:  # papermill writes the partial notebook with the failing cell's traceback
        status["status"] = "failed"
        status["error"] = f"{type(exc).__name__}: {str(exc).strip()[-2000:]}"
    status["wall_s"] = round(time.perf_counter() - t0, 2)
    if out_nb.exists():
        try:
            _write_html(out_nb)
        except Exception as exc:  # an HTML rendering problem must not hide the notebook's own status
            status["html_error"] = f"{type(exc).__name__}: {exc}"
    return status


def _write_html(nb_path: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="classic").from_notebook_node(nbformat.read(str(nb_path), as_version=4))
    out = nb_path.with_suffix(".html")
    atomic.write_bytes(out, body.encode())
    return out


# -- one run (a parameter set through a list of notebooks) ---------------------------------------------------------
def _status(run_dir: Path) -> dict:
    p = run_dir / "status.json"
    return json.loads(p.read_text()) if p.exists() else {}


def run_one(run_dir: str | Path, notebooks: list[str], params: dict, kernel: str | None = None,
            timeout: float | None = None, force: bool = False) -> dict:
    """Execute ``notebooks`` in order for one parameter set in ``run_dir`` (resumable); returns the status."""
    from research.workflow import DEFAULTS, params_hash

    for var in THREAD_VARS:
        os.environ[var] = "1"  # inherited by the kernels this process starts
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    params = {**_json_params(params), "run_dir": str(run_dir)}
    h = params_hash({k: v for k, v in params.items() if k != "run_dir"})
    atomic.write_json(run_dir / "params.json", params)
    status = _status(run_dir)
    if status.get("params_hash") not in (None, h):
        status = {}  # different parameters in the same folder: start over
    status.update(params_hash=h, run_id=run_dir.name)
    status.setdefault("notebooks", {})
    kernel = kernel or kernel_name()  # looked up once, not per notebook
    expected = _ExpectedParams({"run_dir", *DEFAULTS}.union(*(declared_params(notebook_path(n)) for n in notebooks)))
    logging.getLogger("papermill").addFilter(expected)
    try:
        inputs = _inputs(params)
        _run_notebooks(run_dir, notebooks, params, h, inputs, status, kernel, timeout, force)
    finally:
        logging.getLogger("papermill").removeFilter(expected)
    status["status"] = "ok" if all(status["notebooks"].get(notebook_path(n).stem, {}).get("status") == "ok"
                                   for n in notebooks) else "failed"
    atomic.write_json(run_dir / "status.json", status)
    write_run_index(run_dir)
    return status


def _inputs(params: dict) -> str:
    """The run's inputs (``research.fingerprint``): code, the research session's exchange in the data root, and
    files the parameters name (e.g. ``backtest_config``)."""
    from research.sessions import DEFAULT_NAME, load_session

    root = Settings.load(params.get("data_root")).data_root
    try:
        exchange = load_session(root, params.get("session") or DEFAULT_NAME).get("exchange")
    except FileNotFoundError:
        exchange = None
    files = [v for k, v in sorted(params.items()) if k not in ("data_root", "run_dir") and isinstance(v, str)
             and v and Path(v).is_file()]
    return inputs_fingerprint(root, exchange, files)


def source_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _run_notebooks(run_dir: Path, notebooks: list[str], params: dict, h: str, inputs: str, status: dict, kernel,
                   timeout, force: bool) -> None:
    """Skip a notebook done with the same parameters, source and inputs, until one runs: every later notebook
    of the chain then runs too (it reads what the earlier ones wrote)."""
    rerun = force
    for name in notebooks:
        nb = notebook_path(name)
        src = source_hash(nb)
        done = status["notebooks"].get(nb.stem, {})
        if not rerun and done.get("status") == "ok" and done.get("params_hash") == h and \
                done.get("source_hash") == src and done.get("inputs_hash") == inputs:
            continue
        rerun = True
        status["notebooks"][nb.stem] = {"status": "running", "params_hash": h, "source_hash": src,
                                        "inputs_hash": inputs}
        atomic.write_json(run_dir / "status.json", status)
        try:
            st = execute_notebook(nb, run_dir, params, kernel, timeout)
        except Exception as exc:  # e.g. the kernel did not start
            st = {"notebook": nb.stem, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=5)}
        st["params_hash"], st["source_hash"], st["inputs_hash"] = h, src, inputs
        status["notebooks"][nb.stem] = st
        atomic.write_json(run_dir / "status.json", status)


# -- grids -------------------------------------------------------------------------------------------------------
def expand_grid(spec: dict) -> list[dict]:
    """``{"base": {...}, "grid": {"horizon": [5, 30], "target": [...]}}`` -> one parameter dict per combination
    (base first, then the grid values; keys in grid order). A spec without ``grid`` is one run."""
    if not isinstance(spec, dict):
        raise RunError("grid file: top level must be a mapping with 'base' and/or 'grid'")
    unknown = set(spec) - {"base", "grid", "notebooks", "name"}
    if unknown:
        raise RunError(f"grid file: unknown key(s) {', '.join(sorted(unknown))} (expected base, grid, notebooks, name)")
    base = dict(spec.get("base") or {})
    grid = spec.get("grid") or {}
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise RunError(f"grid file: grid.{k} must be a non-empty list")
    keys = list(grid)
    return [{**base, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))]


def load_grid(path) -> dict:
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RunError(f"cannot read grid file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise RunError(f"{path}: {where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    try:
        expand_grid(spec)
    except RunError as exc:
        raise RunError(f"{path}: {exc}") from None
    return spec


def _child(args):
    run_dir, notebooks, params, kernel, timeout, force = args
    return str(run_dir), run_one(run_dir, notebooks, params, kernel, timeout, force)


def run_grid(param_sets: list[dict], notebooks: list[str] | None = None, *, runs_root=None, data_root=None,
             jobs: int = 1, prefix: str = "run", kernel: str | None = None, timeout: float | None = None,
             force: bool = False, index: bool = True, progress=None) -> list[dict]:
    """Every parameter set through ``notebooks`` (default: the 01-06 chain), ``jobs`` runs at a time in separate
    processes; each run is indexed in the warehouse as it finishes. Returns one summary per run."""
    notebooks = list(notebooks or CHAIN)
    for n in notebooks:
        notebook_path(n)
    settings = Settings.load(data_root)
    root = Path(runs_root) if runs_root else DEFAULT_RUNS_ROOT
    tasks = []
    for p in param_sets:
        p = {"data_root": str(settings.data_root), **_json_params(p)}
        tasks.append((root / run_id_for(p, prefix), notebooks, p, kernel, timeout, force))
    results = []
    if jobs <= 1 or len(tasks) == 1:
        done = (_child(t) for t in tasks)
    else:
        pool = ProcessPoolExecutor(max_workers=jobs)
        done = (f.result() for f in as_completed([pool.submit(_child, t) for t in tasks]))
    try:
        for run_dir, status in done:
            summary = {"run_id": Path(run_dir).name, "run_dir": run_dir, "status": status["status"],
                       "notebooks": {k: v["status"] for k, v in status["notebooks"].items()}}
            if index:
                try:
                    index_run(settings, Path(run_dir))
                except Exception as exc:  # e.g. another process holds the warehouse open for writing
                    summary["index_error"] = f"{type(exc).__name__}: {exc}"
            results.append(summary)
            if progress:
                progress(summary)
    finally:
        if jobs > 1 and len(tasks) > 1:
            pool.shutdown()
    write_root_index(root)
    return results


# -- index: DuckDB and HTML --------------------------------------------------------------------------------------
RUNS_DDL = """CREATE TABLE IF NOT EXISTS runs (run_id VARCHAR PRIMARY KEY, run_dir VARCHAR, status VARCHAR,
              params JSON, metrics JSON, notebooks JSON, indexed_utc TIMESTAMPTZ)"""


def index_run(settings: Settings, run_dir: Path) -> None:
    """Insert or replace the run's row in the warehouse's ``runs`` table."""
    import duckdb

    from research.runlog import read_metrics

    status = _status(run_dir)
    params = json.loads((run_dir / "params.json").read_text())
    settings.data_root.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute(RUNS_DDL)
        con.execute("DELETE FROM runs WHERE run_id = ?", [run_dir.name])
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, now())",
                    [run_dir.name, str(run_dir), status.get("status"), json.dumps(params),
                     json.dumps(read_metrics(run_dir)),
                     json.dumps({k: v.get("status") for k, v in status.get("notebooks", {}).items()})])
    finally:
        con.close()


def _metric_rows(metrics: dict) -> list[tuple[str, str]]:
    rows = []
    for section, vals in metrics.items():
        for k, v in vals.items():
            text = json.dumps(v)
            rows.append((f"{section}.{k}", text if len(text) < 300 else text[:297] + "..."))
    return rows


def write_run_index(run_dir: Path) -> Path:
    from research.runlog import read_metrics

    status = _status(run_dir)
    params = json.loads((run_dir / "params.json").read_text()) if (run_dir / "params.json").exists() else {}
    e = html.escape
    parts = [f"<html><head><meta charset='utf-8'><title>{e(run_dir.name)}</title></head><body>",
             f"<h1>{e(run_dir.name)}: {e(str(status.get('status')))}</h1><h2>Notebooks</h2><table border=1>",
             "<tr><th>notebook</th><th>status</th><th>wall s</th><th>error</th></tr>"]
    for name, st in status.get("notebooks", {}).items():
        link = f"<a href='{e(name)}.html'>{e(name)}</a>" if (run_dir / f"{name}.html").exists() else e(name)
        parts.append(f"<tr><td>{link}</td><td>{e(str(st.get('status')))}</td><td>{st.get('wall_s', '')}</td>"
                     f"<td><pre>{e(str(st.get('error') or ''))[:1500]}</pre></td></tr>")
    parts.append("</table><h2>Metrics</h2><table border=1>")
    parts += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in _metric_rows(read_metrics(run_dir))]
    parts.append("</table><h2>Parameters</h2><pre>" + e(json.dumps(params, indent=1)) + "</pre><h2>Plots</h2>")
    pngs = sorted((run_dir / "plots").glob("*.png")) + sorted((run_dir / "backtest").glob("*.png"))
    parts += [f"<p>{e(p.stem)}<br><img src='{e(p.parent.name)}/{e(p.name)}'></p>" for p in pngs]
    parts.append("</body></html>")
    out = run_dir / "index.html"
    atomic.write_bytes(out, "\n".join(parts).encode())
    return out


def write_root_index(root: Path) -> Path:
    e = html.escape
    rows = []
    for d in sorted(p for p in Path(root).glob("*/status.json")):
        st = json.loads(d.read_text())
        rd = d.parent
        params = json.loads((rd / "params.json").read_text()) if (rd / "params.json").exists() else {}
        shown = {k: params.get(k) for k in ("symbols", "target", "horizon", "presets", "time_limit", "seed")}
        rows.append(f"<tr><td><a href='{e(rd.name)}/index.html'>{e(rd.name)}</a></td><td>{e(str(st.get('status')))}"
                    f"</td><td>{e(json.dumps(shown))}</td></tr>")
    body = ("<html><head><meta charset='utf-8'><title>l2lab runs</title></head><body><h1>l2lab runs</h1>"
            "<table border=1><tr><th>run</th><th>status</th><th>parameters</th></tr>" + "\n".join(rows) +
            "</table></body></html>")
    out = Path(root) / "index.html"
    atomic.write_bytes(out, body.encode())
    return out

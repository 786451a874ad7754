"""Run the benchmarks and print their figures; results also go to bench/results/latest.json."""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path

import bench


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    results = {"python": platform.python_version(), "machine": platform.machine(), "started": time.time()}
    for name in wanted:
        print(f"== {name}", flush=True)
        t = time.perf_counter()
        results[name] = importlib.import_module(f"bench.{name}").run()
        print(f"   ({time.perf_counter() - t:.1f} s)\n", flush=True)
    out = Path(__file__).parent / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(results)  # running one benchmark keeps the others' latest figures
    out.write_text(json.dumps(previous, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

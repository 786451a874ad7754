"""The feature catalog: one declarative entry per feature, the single source of truth for kernels, Feast views
and documentation.

Every family module (``kernels/<family>.py``) declares ``FEATURES: list[FeatureSpec]`` and a ``compute``
function that returns exactly those columns.

Book-table kernel protocol: ``new_state()`` returns the family's carried state (``None`` if stateless) and
``compute(frame, state=None) -> dict[str, ndarray]`` computes every row of ``frame``; given a state it starts
from it and leaves it updated to after the last row. So a day is processed partition by partition with the state
carried across (exactly, not approximately), and feeding one row at a time is the incremental (live) form:
both give the batch values bit for bit. Labels (``kernels/labels.py``) declare ``LABELS`` with a forward
reach > 0; features must have forward reach 0, and a check refuses anything else, so leakage checks are
mechanical.

Tables (what a row is):
    ``book``            one symbol on a clock grid (100 ms or 1 s), from the rebuilt book and the trades
    ``cross_asset``     like ``book``, but computed from several symbols aligned on the same grid
    ``hourly``          one symbol per hour, from 1-min bars (stamped at bar close + 1 ms) and funding
    ``cross_sectional`` one symbol per hour, relative to the whole universe at that hour
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

TABLES = ("book", "cross_asset", "hourly", "cross_sectional")
FAMILY_MODULES = [
    "kernels.structural",
    "kernels.dynamic",
    "kernels.rolling",
    "kernels.advanced",
    "kernels.trade_flow",
    "kernels.technical",
    "kernels.cross_asset",
    "kernels.hourly",
    "kernels.cross_sectional",
]
LABEL_MODULES = ["kernels.labels"]


@dataclass(frozen=True)
class FeatureSpec:
    name: str  # column name, snake_case, unique across the catalog
    family: str  # structural | dynamic | rolling | advanced | trade_flow | technical | cross_asset | hourly | ...
    kernel: str  # dotted path of the function that computes it
    table: str  # one of TABLES
    unit: str  # e.g. "price", "bps", "base units", "1", "1/s"
    window: str  # how far back it reads, e.g. "0", "1 row", "30 s", "100 trades", "60 bars"
    description: str
    reference: str = ""  # paper or textbook
    params: dict = field(default_factory=dict)
    forward_reach: int = 0  # rows ahead it reads: always 0 for a feature

    def defined_on(self, step_ns: int) -> bool:
        """Whether the feature has values on a grid of ``step_ns``: a lag (``params["lag_ms"]``) that is not a whole
        number of grid steps has none (every row null, e.g. a 500 ms cross-correlation lag on the 1 s grid)."""
        lag_ms = self.params.get("lag_ms")
        return lag_ms is None or (lag_ms * 1_000_000) % step_ns == 0

    def __post_init__(self):
        if self.table not in TABLES:
            raise ValueError(f"feature {self.name}: table {self.table!r} not in {TABLES}")
        if self.forward_reach != 0:
            raise ValueError(f"feature {self.name}: forward reach must be 0, got {self.forward_reach}")


@dataclass(frozen=True)
class LabelSpec:
    name: str
    kernel: str
    table: str
    unit: str
    horizon: str  # e.g. "5 s"
    forward_reach_ns: int  # how far ahead (ns) the label reads; > 0
    description: str
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.forward_reach_ns <= 0:
            raise ValueError(f"label {self.name}: a label must declare its forward reach (> 0)")


def _collect(modules: list[str], attr: str) -> list:
    out = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # family not written yet
            raise
        out.extend(getattr(module, attr))
    return out


def features() -> list[FeatureSpec]:
    specs = _collect(FAMILY_MODULES, "FEATURES")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate feature names in the catalog: {', '.join(dupes)}")
    return specs


def labels() -> list[LabelSpec]:
    return _collect(LABEL_MODULES, "LABELS")


def by_name() -> dict[str, FeatureSpec]:
    return {s.name: s for s in features()}


LABEL_LIKE = ("fwd_", "label_", "target_", "future_")


def check_not_label(name: str) -> None:
    """Refuse a column whose name looks like a label (a leakage guard for training sets)."""
    if name.startswith(LABEL_LIKE) or name in {s.name for s in labels()}:
        raise ValueError(f"{name!r} looks like a label, not a feature")


def register(sub) -> None:
    p = sub.add_parser("features", help="the feature catalog (list) and the feature build")
    fsub = p.add_subparsers(dest="features_command", metavar="SUBCOMMAND")
    lst = fsub.add_parser("list", help="one feature a line: name, family, unit, window")
    lst.add_argument("--family", help="only this family")
    lst.add_argument("--labels", action="store_true", help="list the labels instead")
    lst.set_defaults(func=run_list)
    b = fsub.add_parser("build", help="bronze -> silver book features (and labels) on clock grids, resumable")
    b.add_argument("--exchange", default="coinbase")
    b.add_argument("--symbols", help="comma-separated (default: every symbol in bronze)")
    b.add_argument("--grids-ms", default="100,1000", help="clock grid steps in ms (default 100,1000)")
    b.add_argument("--rebuild", action="store_true", help="forget saved state and outputs, build from scratch")
    b.add_argument("--leader", default="BTC-USD", help="leader symbol for cross-asset features (default BTC-USD)")
    b.add_argument("--perp-exchange", default="binanceusdm", help="bronze exchange of the 1-min bars for gold")
    b.set_defaults(func=run_build)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_build(args) -> int:
    import json
    import shutil

    from kernels.pipeline import build_all
    from l2lab.settings import Settings

    settings = Settings.load(args.data_root)
    grids = tuple(int(g) for g in args.grids_ms.split(","))
    if args.rebuild:
        shutil.rmtree(settings.data_root / "silver", ignore_errors=True)
    symbols = [s.strip() for s in args.symbols.split(",")] if args.symbols else None
    report = build_all(settings.data_root, args.exchange, grids, args.leader, args.perp_exchange, symbols,
                       progress=lambda sym, key: print(f"\r  {sym} {key}", end="", flush=True))
    print()
    print(json.dumps(report, indent=2))
    return 0


def run_list(args) -> int:
    if args.labels:
        for s in labels():
            print(f"{s.name:<40} {s.table:<14} {s.unit:<10} horizon {s.horizon}")
        return 0
    specs = [s for s in features() if not args.family or s.family == args.family]
    for s in specs:
        print(f"{s.name:<40} {s.family:<16} {s.unit:<12} {s.window}")
    print(f"# {len(specs)} features")
    return 0

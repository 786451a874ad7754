"""Feast definitions generated from the kernels' catalog: one entity, one source and one feature view per
family and grid, a push source per grid view, and feature services.

Naming (INTERFACES.md): entity ``symbol``; views ``<family>_<grid>`` for the book-table families and
``cross_asset_<grid>``, ``hourly`` and ``cross_sectional`` for gold; push sources ``<view>_push``; services
``book_<grid>`` (every book and cross-asset feature of the grid) and smaller model-ready sets. Feature names are
the catalog's names; descriptions and tags (family, unit, window, reference, kernel, forward_reach) come from it.

Sources are Feast ``FileSource`` s over the hive-partitioned Parquet trees, given as a glob over every
``exchange=*`` partition (the entity is the symbol; sessions of different exchanges do not overlap in time);
``symbol`` comes from the partition path except in ``cross_sectional``, where it is a column. Rows carry Feast's
timestamp column ``event_timestamp`` (= ``ts_ns``, the time the row became available, ``kernels.pipeline``).
Labels (``silver/labels_<grid>``) are deliberately absent: they are entity rows, never features.

Every view also carries its row stamp ``ts_ns`` (int64 UTC ns, the same instant as ``event_timestamp``) as a
field tagged ``role=stamp``. Training sets request it (``<view>:ts_ns`` with full feature names) to prove that
every joined row is stamped at or before its entity row; the live scorer can read it to see how old an online
value is. Feature services list the catalog features only. (No field mapping renames it per view: Feast 0.67's
materialization drops a batch source's field mapping when the view also has a push source.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String

from kernels import catalog
from kernels.pipeline import DEFAULT_GRIDS_MS, grid_ms, grid_name

GRIDS = tuple(grid_name(g) for g in DEFAULT_GRIDS_MS)  # ("100ms", "1s")
BOOK_FAMILIES = ("structural", "dynamic", "rolling", "advanced", "trade_flow", "technical")
GOLD_TABLES = ("hourly", "cross_sectional")
TIMESTAMP_FIELD = "event_timestamp"
STAMP_COLUMN = "ts_ns"
# How old a row may be and still join (Feast's TTL). Grid views: 30 grid steps. Entity rows on the view's own
# grid join the row of the same instant; the TTL only bounds how stale a book row may be for other entity times,
# and keeps the point-in-time join small (the join's range predicate holds ~30 candidate rows per entity row).
# Gold views: two hours (one hourly row may be missing). Feast's first materialize-incremental of a view starts
# at now - TTL: use `feast materialize START END` once for older data.
GRID_TTL = {"100ms": timedelta(seconds=3), "1s": timedelta(seconds=30)}
GOLD_TTL = timedelta(hours=2)
# per-level ladder columns left out of the compact services (the touch L0 stays)
LADDER_PREFIXES = ("bid_px_L", "ask_px_L", "bid_sz_L", "ask_sz_L")


def view_name(family: str, grid: str | None) -> str:
    return family if family in GOLD_TABLES else f"{family}_{grid}"


def source_glob(data_root: Path, table: str, grid: str | None) -> str:
    """The Parquet files of a table: silver per symbol and hour, gold hourly per symbol and day, cross-sectional
    per day (every symbol in one file)."""
    if table in ("book", "cross_asset"):
        dataset = f"book_features_{grid}" if table == "book" else f"cross_asset_{grid}"
        return str(data_root / "silver" / dataset / "exchange=*" / "symbol=*" / "date=*" / "hour=*" / "part-*.parquet")
    if table == "hourly":
        return str(data_root / "gold" / "hourly" / "exchange=*" / "symbol=*" / "date=*" / "part-*.parquet")
    if table == "cross_sectional":
        return str(data_root / "gold" / "cross_sectional" / "exchange=*" / "date=*" / "part-*.parquet")
    raise ValueError(f"unknown table {table!r}")


def feature_field(spec: catalog.FeatureSpec) -> Field:
    return Field(name=spec.name, dtype=Float64, description=spec.description,
                 tags={"family": spec.family, "unit": spec.unit, "window": spec.window, "reference": spec.reference,
                       "kernel": spec.kernel, "forward_reach": str(spec.forward_reach), "table": spec.table})


@dataclass
class Definitions:
    """Every Feast object of the repository, plus the maps the training-set and online code need."""

    entity: Entity
    sources: dict[str, FileSource] = field(default_factory=dict)  # view name -> its batch source
    push_sources: dict[str, PushSource] = field(default_factory=dict)  # view name -> its push source
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)
    view_features: dict[str, list[str]] = field(default_factory=dict)  # view name -> catalog feature names

    def objects(self) -> list:
        return [self.entity, *self.sources.values(), *self.push_sources.values(), *self.views.values(),
                *self.services.values()]

    def module_globals(self) -> dict:
        """Objects under Python names, for the repo module's namespace (``feast apply`` collects globals)."""
        out = {"symbol": self.entity}
        out.update({f"source_{k}": v for k, v in self.sources.items()})
        out.update({f"push_{k}": v for k, v in self.push_sources.items()})
        out.update({f"view_{k}": v for k, v in self.views.items()})
        out.update({f"service_{k}": v for k, v in self.services.items()})
        return out

    def view_of(self, feature: str, grid: str) -> str:
        """The view holding catalog feature ``feature`` on ``grid`` (gold views have no grid)."""
        spec = catalog.by_name().get(feature)
        if spec is None:
            raise KeyError(f"{feature!r} is not in the feature catalog")
        name = view_name(spec.family, grid)
        if name not in self.views:
            raise KeyError(f"no feature view {name!r} for {feature!r}")
        if feature not in self.view_features[name]:
            raise KeyError(f"{feature!r} has no values on the {grid} grid (its lag is not a whole number of steps)")
        return name


def build(data_root: str | Path) -> Definitions:
    """Generate every definition for the data under ``data_root``; builds objects only, touches no file."""
    data_root = Path(data_root).resolve()
    entity = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING,
                    description="instrument symbol as the venue spells it (e.g. BTC-USD, BTCUSDT)")
    d = Definitions(entity=entity)
    specs = catalog.features()
    groups: dict[tuple[str, str, str | None], list] = {}
    for s in specs:
        grids = GRIDS if s.table in ("book", "cross_asset") else (None,)
        for g in grids:
            if g is None or s.defined_on(grid_ms(g) * 1_000_000):  # no values on a grid: not in its view
                groups.setdefault((s.family, s.table, g), []).append(s)
    for (family, table, grid), fam_specs in groups.items():
        name = view_name(family, grid)
        where = f"{table} table" + (f", {grid} grid" if grid else "")
        src = FileSource(name=f"{name}_source", path=source_glob(data_root, table, grid), file_format=ParquetFormat(),
                         timestamp_field=TIMESTAMP_FIELD, description=f"l2lab {where} (Parquet, hive-partitioned)")
        d.sources[name] = src
        source = src
        if table in ("book", "cross_asset"):
            source = PushSource(name=f"{name}_push", batch_source=src,
                                description=f"live rows of {name} straight to the online store")
            d.push_sources[name] = source
        fields = [Field(name="symbol", dtype=String),
                  Field(name=STAMP_COLUMN, dtype=Int64,
                        description="the row's stamp ts_ns (UTC ns, when it became available)",
                        tags={"role": "stamp"}),
                  *(feature_field(s) for s in fam_specs)]
        d.views[name] = FeatureView(
            name=name, entities=[entity], ttl=GRID_TTL[grid] if grid else GOLD_TTL, schema=fields, source=source,
            online=True, description=f"{family} features ({where}), generated from kernels.catalog",
            tags={"family": family, "table": table, "grid": grid or "1h"})
        d.view_features[name] = [s.name for s in fam_specs]
    for grid in GRIDS:
        grid_views = [view_name(f, grid) for f in (*BOOK_FAMILIES, "cross_asset")]
        grid_views = [v for v in grid_views if v in d.views]
        _service(d, f"book_{grid}", grid_views, lambda f: True,
                 f"every book and cross-asset feature on the {grid} grid")
        _service(d, f"compact_{grid}", grid_views, lambda f: not _is_deep_ladder(f),
                 f"book and cross-asset features on the {grid} grid without the per-level ladder (L1-L19)")
        _service(d, f"flow_{grid}", [v for v in grid_views if v.rsplit("_", 1)[0] in
                                     ("dynamic", "trade_flow", "advanced", "cross_asset")], lambda f: True,
                 f"order flow, trade flow, toxicity and lead-lag features on the {grid} grid")
    gold = [v for v in GOLD_TABLES if v in d.views]
    if gold:
        _service(d, "perps_hourly", gold, lambda f: True, "hourly and cross-sectional perp features")
    return d


def _is_deep_ladder(feature: str) -> bool:
    return feature.startswith(LADDER_PREFIXES) and not feature.endswith("_L0")


def _service(d: Definitions, name: str, views: list[str], keep, description: str) -> None:
    projections = []
    for v in views:
        feats = [f for f in d.view_features[v] if keep(f)]
        if feats:
            projections.append(d.views[v][feats])
    d.services[name] = FeatureService(name=name, features=projections, description=description,
                                      tags={"features": str(sum(len(p.projection.features) for p in projections))})

"""A small real AutoGluon model from silver, saved as a model artifact (``research.model_artifact``).

For tests, the live benchmark and smoke runs of ``l2lab live`` on the simulator; the research notebooks train the
real models. LightGBM only (no bagging, no ensemble), a few dozen boosting rounds: seconds on a laptop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from research.model_artifact import ModelMeta, predictor_dir, save_meta
from research.models import horizon_of, problem_type_of


def read_silver(data_root, dataset: str, exchange: str = "coinbase") -> pa.Table:
    """Every row of a silver table with a ``symbol`` column (from the partition path)."""
    base = Path(data_root) / "silver" / dataset / f"exchange={exchange}"
    tables = []
    for f in sorted(base.glob("symbol=*/date=*/hour=*/part-0.parquet")):
        t = pq.ParquetFile(f).read()  # the file only (no hive columns from its path)
        sym = f.parents[2].name.split("=", 1)[1]
        tables.append(t.add_column(0, "symbol", pa.array([sym] * t.num_rows, pa.string())))
    if not tables:
        raise FileNotFoundError(f"no silver rows under {base}")
    return pa.concat_tables(tables, promote_options="default")


def training_frame(data_root, features: list[str], label: str, grid: str = "1s", exchange: str = "coinbase"):
    """Valid rows with a label: ``symbol``, ``ts_ns``, the features, the label (pandas)."""
    book = read_silver(data_root, f"book_features_{grid}", exchange).to_pandas()
    labels = read_silver(data_root, f"labels_{grid}", exchange).to_pandas()
    df = book.merge(labels[["symbol", "ts_ns", label]], on=["symbol", "ts_ns"])
    xa = [f for f in features if f.startswith("xa_")]
    if xa:
        cross = read_silver(data_root, f"cross_asset_{grid}", exchange).to_pandas()
        df = df.merge(cross[["symbol", "ts_ns", *xa]], on=["symbol", "ts_ns"], how="left")
    df = df[df["valid"] & df[label].notna()]
    return df[["symbol", "ts_ns", *features, label]].reset_index(drop=True)


def train_small_model(data_root, run_dir, features: list[str], label: str = "label_dir_mid_5s", *,
                      grid: str = "1s", rounds: int = 40, exchange: str = "coinbase") -> ModelMeta:
    """Fit LightGBM through AutoGluon on the silver rows of ``data_root`` and save ``run_dir/model/``."""
    from autogluon.tabular import TabularPredictor

    df = training_frame(data_root, features, label, grid, exchange)
    if len(df) < 50:
        raise ValueError(f"only {len(df)} labelled valid rows in {data_root}: too few to fit a model")
    ptype = problem_type_of(label)
    train = df[[*features, label]].astype({f: np.float64 for f in features})
    predictor = TabularPredictor(label=label, problem_type=ptype, path=str(predictor_dir(run_dir)), verbosity=0)
    predictor.fit(train, hyperparameters={"GBM": {"num_boost_round": rounds}}, fit_weighted_ensemble=False,
                  num_bag_folds=0, num_stack_levels=0, time_limit=120)
    positive = predictor.positive_class if ptype == "binary" else None
    positive = positive.item() if hasattr(positive, "item") else positive  # numpy scalar -> JSON
    meta = ModelMeta(target=label, problem_type=ptype, grid=grid, horizon_s=horizon_of(label),
                     features=list(features), positive_class=positive,
                     trainset={"rows": len(df), "symbols": sorted(df["symbol"].unique().tolist()),
                               "start_ns": int(df["ts_ns"].min()), "end_ns": int(df["ts_ns"].max()),
                               "source": str(data_root)})
    save_meta(run_dir, meta)
    return meta

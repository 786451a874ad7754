"""The simulated session every feature-store test shares (see conftest.py), and how tests read its silver."""

import pandas as pd
import pyarrow.parquet as pq

START = 1_767_574_800_000_000_000 - 90 * 10**9  # 2026-01-05T00:58:30Z: the session crosses into hour 01
SECONDS = 150.0


def read_tree(root, dataset):
    """Every partition of a silver dataset, with the symbol from its path (the obviously-right way)."""
    frames = []
    for f in sorted((root / "silver" / dataset).glob("exchange=*/symbol=*/date=*/hour=*/part-0.parquet")):
        df = pq.read_table(f).to_pandas()
        df["symbol"] = f.parts[-4].split("=", 1)[1]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)

"""The feature-store demo step on a copy of the shared session's silver."""

import shutil

import pandas as pd
import pytest

pytestmark = pytest.mark.timeout(300)


def test_demo_step(feast_root, tmp_path):
    from l2lab.featurestore.demo import demo_step
    from l2lab.settings import Settings

    root = tmp_path / "data"
    shutil.copytree(feast_root / "silver", root / "silver")
    lines = demo_step(Settings.load(root))
    text = "\n".join(lines)
    assert len(lines) == 6, text
    assert "feast apply: 16 feature views, 7 feature services" in lines[0]
    assert "219 features, symbols BTC-USD, ETH-USD, SOL-USD" in lines[1]
    assert "materialized 7 feature views" in lines[3]
    assert "online lookup (SDK) SOL-USD x 219 features" in lines[4]
    assert "SOL-USD x 219 features" in lines[5] and "same values as the SDK" in lines[5]
    ts = pd.read_parquet(root / "trainsets" / "demo" / "trainset.parquet")
    assert len(ts) > 300 and {"label_dir_mid_5s", "fwd_ret_mid_5s", "mid"} <= set(ts.columns)
    assert (root / "feast" / "registry.db").exists() and (root / "feast" / "online.db").exists()

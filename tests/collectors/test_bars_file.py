import pandas as pd
import pytest

from collectors.bars_file import BarsFileError, ingest_bars_file, parse_time_ms
from collectors.bronze import read_dataset
from l2lab.cli import main

T = 1_759_276_800_000  # 2025-10-01T00:00:00Z


def test_csv_ohlcv_row_by_row_validation_and_gaps(tmp_path, capsys):
    f = tmp_path / "bars.csv"
    f.write_text(
        "timestamp,open,high,low,close,volume\n"
        f"{T},10,11,9,10.5,100\n"
        f"{T + 60_000},10.5,10.4,10,10.2,50\n"          # line 3: high below open
        f"2025-10-01T00:02:00Z,10.2,10.6,10.1,10.3,abc\n"  # line 4: volume not a number
        f"{T + 240_000},10.3,10.9,10.2,10.8,70\n"        # minutes 1..3 missing -> a venue gap
    )
    assert main(["--data-root", str(tmp_path / "d"), "ingest", str(f), "--kind", "ohlcv", "--symbol", "XUSDT"]) == 0
    out = capsys.readouterr().out
    assert '"accepted": 2' in out and '"rejected": 2' in out
    bars = read_dataset(tmp_path / "d" / "bronze", "ohlcv_1m", symbol="XUSDT")
    assert bars.column("open_time_ms").to_pylist() == [T, T + 240_000]
    q = read_dataset(tmp_path / "d" / "bronze", "quarantine")
    reasons = sorted(q.column("where").to_pylist())
    assert reasons == [f"{f}: line 3", f"{f}: line 4"]
    assert any("field high" in r for r in q.column("reason").to_pylist())
    assert any("field volume" in r for r in q.column("reason").to_pylist())
    gaps = read_dataset(tmp_path / "d" / "bronze", "venue_gaps", symbol="XUSDT")
    assert gaps.column("start_ms").to_pylist() == [T + 60_000] and gaps.column("end_ms").to_pylist() == [T + 240_000]


def test_parquet_funding_with_symbol_column(tmp_path):
    f = tmp_path / "funding.parquet"
    pd.DataFrame({"Symbol": ["AUSDT", "AUSDT", "BUSDT"], "funding_time": [T, T + 28_800_000, T],
                  "funding_rate": [0.0001, 0.0002, 5.0], "mark_price": [1.0, 1.1, 2.0]}).to_parquet(f)
    res = ingest_bars_file(f, tmp_path / "d", "funding", exchange="binanceusdm")
    assert res["accepted"] == 2 and res["rejected"] == 1 and "funding_rate" in res["first_errors"][0]
    fund = read_dataset(tmp_path / "d" / "bronze", "funding", symbol="AUSDT")
    assert fund.column("funding_rate").to_pylist() == [0.0001, 0.0002]


def test_missing_columns_and_time_formats(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("open_time,open\n1,2\n")
    with pytest.raises(BarsFileError, match="missing column"):
        ingest_bars_file(f, tmp_path, "ohlcv", exchange="x", symbol="S")
    assert parse_time_ms("2025-10-01T00:00:00Z") == T
    assert parse_time_ms(T // 1000) == T and parse_time_ms(T * 1_000_000) == T and parse_time_ms(str(T)) == T
    assert parse_time_ms(T * 1000) == T  # microseconds (newer exchange dumps)
    with pytest.raises(ValueError, match="plausible"):
        parse_time_ms(12345678901234567890 // 10**3)

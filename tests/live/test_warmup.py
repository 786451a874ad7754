"""How many valid rows the live scorer waits for after a gap, from the catalog's window descriptions."""

from l2lab.live.session import warmup_rows

S = 1_000_000_000


def test_time_and_row_windows():
    assert warmup_rows(["mid"], S) == 0
    assert warmup_rows(["rv_mid_10s"], S) == 10 and warmup_rows(["rv_mid_10s"], S // 10) == 100
    assert warmup_rows(["ta_zscore_mid_20"], S) == 20


def test_ewma_windows_count_one_span():
    assert warmup_rows(["ta_ema_mid_10"], S) == 10
    assert warmup_rows(["ta_rsi_14"], S) == 14  # alpha 1/14
    assert warmup_rows(["ta_riskmetrics_vol"], S) == 17  # lambda 0.94: 1 / 0.06
    assert warmup_rows(["ta_macd"], S) == 38 and warmup_rows(["ta_macd_signal"], S) == 47
    assert warmup_rows(["ofi_ewm_10s"], S) == 10  # half-life 10 s
    assert warmup_rows(["mid", "ta_macd_hist", "ta_ema_mid_10"], S) == 47  # the largest

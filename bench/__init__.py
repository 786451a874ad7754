"""l2lab benchmarks: ``make bench`` (``python -m bench [NAME ...]``).

Every benchmark module ``bench/bench_*.py`` exposes ``run() -> dict`` and reports ratios against named
baselines measured in the same run (or, where the issue names one, a documented real-world rate).
"""

# Binance USD-M BTCUSDT, average level changes per second (../shared/DESIGN.md, measured 2026-11)
BTC_REAL_LEVEL_CHANGES_PER_S = 1286.0

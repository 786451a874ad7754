"""Collectors: record every received frame raw, normalize it into bronze Parquet, backfill REST history.

* :mod:`collectors.capture` — the raw capture files (the contract in DESIGN.md), crash-safe.
"""

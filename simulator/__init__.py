"""Market simulator with planted ground truth.

* :mod:`simulator.l2` — L2 order book + trades event process for several spot symbols (Coinbase-like).
* :mod:`simulator.perps` — 1-min OHLCV and 8-hourly funding for a perpetuals universe (Binance USD-M-like).
* :mod:`simulator.truth` — the planted truth written beside every generated data set.
"""

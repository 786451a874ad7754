"""The loopback exchange: the simulator (or a raw capture) served over Coinbase Advanced Trade WebSocket and
Binance USD-M REST on 127.0.0.1, for unmodified ccxt clients. See ``loopback/README.md``.

Entry points: :class:`loopback.server.LoopbackExchange`, :class:`loopback.server.BackgroundExchange`,
:mod:`loopback.clients`, :class:`loopback.faults.FaultConfig`, and ``l2lab exchange serve`` (:mod:`loopback.cli`).
"""

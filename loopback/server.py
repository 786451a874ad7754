"""The loopback exchange: the Coinbase WebSocket server and the HTTP server in one asyncio loop.

    async with LoopbackExchange(seed=7, speed=10.0) as ex:
        ex.ws_url, ex.rest_url          # ws://127.0.0.1:PORT  http://127.0.0.1:PORT

    with BackgroundExchange(speed=None) as ex:   # for synchronous callers: runs in its own thread and loop
        ex.call(ex.advance(2.0))

Sources: the simulator (default; ``sim=`` an existing :class:`simulator.l2.MarketSimulator` or ``seed=`` /
``sim_config=`` to build one) or a raw capture (``capture=path``). Pacing: ``speed`` (see
:mod:`loopback.pacing`): a number (1.0 = real time), ``math.inf`` (as fast as possible) or ``None`` (manual:
venue time moves only through :meth:`LoopbackExchange.advance_to` / :meth:`LoopbackExchange.advance`).

HTTP: the Binance USD-M market-data endpoints (:mod:`loopback.binance_rest`) over a
:class:`simulator.perps.PerpUniverse`, the Coinbase public product endpoints that ccxt's ``load_markets`` calls
(:mod:`loopback.coinbase_rest`), ``GET /l2lab/clock`` (the venue/wall clock mapping) and ``GET /l2lab/faults``
(the fault log records so far).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson
from aiohttp import web

from loopback.binance_rest import DEFAULT_WEIGHT_LIMIT, BinanceRest
from loopback.coinbase_rest import CoinbaseRest
from loopback.coinbase_ws import DEFAULT_QUEUE_LIMIT, CoinbaseWsServer
from loopback.faults import FaultConfig, FaultLog
from loopback.pacing import DEFAULT_TICK_S, Clock, run_paced
from loopback.replay import ReplayFeed
from loopback.sim_feed import SimFeed
from loopback.venue_book import TRADE_SNAPSHOT_SIZE, VenueState

LOCALHOST = "127.0.0.1"


class LoopbackExchange:
    """Both servers, the feed and the clock. Use as an async context manager, or ``start()``/``stop()``."""

    def __init__(self, *, host: str = LOCALHOST, ws_port: int = 0, rest_port: int = 0,
                 sim=None, seed: int | None = None, sim_config=None, start_ns: int | None = None,
                 universe=None, perps: bool = True, capture: str | Path | None = None,
                 speed: float | None = 1.0, faults: FaultConfig | None = None,
                 fault_log_path: str | Path | None = None, queue_limit: int = DEFAULT_QUEUE_LIMIT,
                 slow_consumer_timeout_s: float = 2.0, subscribe_timeout_s: float | None = 5.0,
                 coalesce_ns: int = 0, weight_limit: int = DEFAULT_WEIGHT_LIMIT, wait_clients: int = 1,
                 wait_channels: tuple = (),
                 tick_s: float = DEFAULT_TICK_S, trade_window: int = TRADE_SNAPSHOT_SIZE):
        if host not in (LOCALHOST, "localhost", "::1"):
            raise ValueError(f"the loopback exchange binds loopback addresses only, not {host!r}")
        if capture is not None and sim is not None:
            raise ValueError("give either a simulator or a capture to replay, not both")
        self.host = host
        self._ports = (int(ws_port), int(rest_port))
        self._sim, self._seed, self._sim_config, self._start_ns = sim, seed, sim_config, start_ns
        self._universe, self._perps = universe, perps
        self.capture = Path(capture) if capture is not None else None
        self.speed = speed
        self.faults = faults or FaultConfig()
        self.fault_log = FaultLog(Path(fault_log_path) if fault_log_path else None)
        self._server_opts = dict(queue_limit=queue_limit, slow_consumer_timeout_s=slow_consumer_timeout_s,
                                 subscribe_timeout_s=subscribe_timeout_s)
        self.coalesce_ns = coalesce_ns
        self.weight_limit = weight_limit
        self.wait_clients = wait_clients
        self.wait_channels = tuple(wait_channels)
        self.tick_s = tick_s
        self.trade_window = trade_window
        self.sim = None
        self.state: VenueState | None = None
        self.universe = None
        self.clock: Clock | None = None
        self.ws: CoinbaseWsServer | None = None
        self.feed: SimFeed | None = None
        self.replay: ReplayFeed | None = None
        self.rest: BinanceRest | None = None
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task | None = None
        self.ws_port = self.rest_port = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> "LoopbackExchange":
        if self.capture is not None:
            self.clock = Clock(0, self.speed, mode="replay")
            self.ws = CoinbaseWsServer(state=None, faults=self.faults, fault_log=self.fault_log,
                                       venue_now=self.clock.venue_now, **self._server_opts)
            self.replay = ReplayFeed(self.capture, self.ws, self.clock, wait_clients=self.wait_clients,
                                     wait_channels=self.wait_channels)
        else:
            self.sim = self._sim if self._sim is not None else self._make_sim()
            self.state = VenueState.from_simulator(self.sim, self.trade_window)
            self.clock = Clock(int(self.sim.now_ns), self.speed, mode="sim")
            state = self.state
            self.ws = CoinbaseWsServer(state=state, faults=self.faults, fault_log=self.fault_log,
                                       venue_now=lambda: state.now_ns, **self._server_opts)
            self.feed = SimFeed(self.sim, self.state, self.ws, coalesce_ns=self.coalesce_ns)
        if self._perps:
            self.universe = self._universe if self._universe is not None else self._make_universe()
            self.rest = BinanceRest(self.universe, weight_limit=self.weight_limit)
        self.ws_port = await self.ws.start(self.host, self._ports[0])
        await self._start_http()
        if self.replay is not None:
            self._task = asyncio.ensure_future(self.replay.run())
        elif not self.clock.manual:
            self.clock.restart()
            self._task = asyncio.ensure_future(run_paced(self.feed, self.clock, self.tick_s))
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self.ws is not None:
            await self.ws.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.fault_log.close()

    async def __aenter__(self) -> "LoopbackExchange":
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _make_sim(self):
        from simulator.l2 import MarketSimulator
        return MarketSimulator(self._sim_config, seed=self._seed, start_ns=self._start_ns)

    def _make_universe(self):
        from simulator.perps import PerpUniverse
        return PerpUniverse(self._sim_config, seed=self._seed)

    async def _start_http(self) -> None:
        app = web.Application()
        if self.rest is not None:
            self.rest.add_routes(app)
        if self.state is not None:
            CoinbaseRest(self.state.products).add_routes(app)
        app.router.add_get("/l2lab/clock", self._clock_route)
        app.router.add_get("/l2lab/faults", self._faults_route)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._ports[1])
        await site.start()
        self.rest_port = site._server.sockets[0].getsockname()[1]

    async def _clock_route(self, request: web.Request) -> web.Response:
        info = self.clock.to_dict()
        if self.replay is not None:
            info.update(replay_started=self.replay.started.is_set(), replay_finished=self.replay.done.is_set(),
                        frames_sent=self.replay.frames_sent, first_ts_recv_ns=self.replay.first_ts_ns)
        else:
            info.update(feed_now_ns=self.feed.now_ns, events=self.feed.events)
        return web.Response(body=orjson.dumps(info), content_type="application/json")

    async def _faults_route(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.fault_log.records), content_type="application/json")

    # -- addresses ------------------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def urls(self) -> dict:
        return {"ws_url": self.ws_url, "rest_url": self.rest_url, "clock_url": f"{self.rest_url}/l2lab/clock",
                "faults_url": f"{self.rest_url}/l2lab/faults"}

    # -- manual pacing --------------------------------------------------------------------------------------
    async def advance_to(self, venue_ns: int) -> int:
        """Manual mode: publish every simulated event before ``venue_ns``; returns the number of events."""
        if self.feed is None:
            raise RuntimeError("advance_to needs the simulator source (not a replay)")
        if not self.clock.manual:
            raise RuntimeError("advance_to is for manual pacing (speed=None); the clock drives this exchange")
        n = await self.feed.advance_to(venue_ns)
        self.clock.set_venue_now(self.feed.now_ns)
        return n

    async def advance(self, seconds: float) -> int:
        return await self.advance_to(self.feed.now_ns + int(round(seconds * 1e9)))

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every client connection has written out everything queued for it."""
        await self.ws.flush(timeout)


class BackgroundExchange:
    """Run a :class:`LoopbackExchange` in a background thread with its own event loop (for sync callers).

    ``with BackgroundExchange(**kwargs) as ex:`` gives the running exchange; ``handle.call(coro)`` runs a
    coroutine in its loop and returns the result.
    """

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.loop: asyncio.AbstractEventLoop | None = None
        self.exchange: LoopbackExchange | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopbackExchange:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self.loop)
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="l2lab-loopback", daemon=True)
        self._thread.start()
        ready.wait()
        self.exchange = LoopbackExchange(**self.kwargs)
        try:
            self.call(self.exchange.start())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.exchange.call = self.call  # convenience: ex.call(ex.advance(1.0))
        return self.exchange

    def call(self, coro, timeout: float | None = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc) -> None:
        if self.loop is None:
            return
        if self.exchange is not None:
            try:
                self.call(self.exchange.stop(), timeout=15)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=15)
        self.loop.close()
        self.loop = None


"""Helpers for the loopback exchange tests (a uniquely named module: ``conftest`` names clash across folders)."""

from __future__ import annotations

import asyncio
import time

import orjson


def run(coro, timeout: float = 30.0):
    """Run a coroutine in a fresh event loop with an overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def book_as_floats(product, bids, asks):
    """A book as ccxt holds it: [[price, size], ...] floats parsed from the venue's exact strings."""
    conv = lambda rows: [[float(product.price_str(p)), float(product.size_str(s))] for p, s in rows.tolist()]
    return conv(bids), conv(asks)


async def wait_until(pred, timeout: float = 5.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


async def recv_json(ws, timeout: float = 5.0):
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_all(ws, idle: float = 0.3, limit: int = 1_000_000) -> list[str]:
    """Every text frame until the connection is idle for ``idle`` seconds (or closes)."""
    from websockets.exceptions import ConnectionClosed

    out = []
    while len(out) < limit:
        try:
            out.append(await asyncio.wait_for(ws.recv(), idle))
        except (asyncio.TimeoutError, ConnectionClosed):
            break
    return out

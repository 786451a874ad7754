"""Helpers shared by the test folders (``tests/`` is on the path: it holds the root conftest.py)."""

from __future__ import annotations

import asyncio
import time


async def wait_for(cond, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``cond()`` every 20 ms until it is true; TimeoutError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} not met in {timeout} s")
        await asyncio.sleep(0.02)


async def settle(count, idle: float = 0.3) -> None:
    """Wait until ``count()`` (e.g. frames handled so far) stops growing for ``idle`` seconds."""
    n = -1
    while n != count():
        n = count()
        await asyncio.sleep(idle)

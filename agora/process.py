"""How every long-running process (node, miner, validator, gateway, devnet) stops.

Each one runs until SIGINT (Ctrl-C) or SIGTERM, then closes what it opened and returns. The
signal only sets an ``asyncio.Event``; the process's own loop notices it, so every ``finally``
block runs and nothing is cut half-way. The same event, handed in by a test or by a parent
process, stops a process without a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signal(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """``main(stop)``, where ``stop`` is set by SIGINT or SIGTERM; handlers removed after."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        return await main(stop)
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def run_until_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None if ``stop`` was set first (``work`` is then cancelled).

    An error raised by ``work`` propagates: a process whose work fails exits with it.
    """
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, waking early when ``stop`` is set; True if it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()

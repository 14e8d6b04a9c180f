"""How long-running processes stop: a real SIGTERM sets the stop event, work is cancelled
cleanly on stop, and a failure of the work is not swallowed."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from agora.process import run_until_signal, run_until_stopped, wait_for_stop


def test_a_signal_sets_the_stop_event_and_the_handlers_are_removed() -> None:
    async def main(stop: asyncio.Event) -> str:
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)
        return "stopped"

    async def scenario() -> str:
        result = await run_until_signal(main)
        loop = asyncio.get_running_loop()
        # Handlers are gone: removing one again reports that none was installed.
        assert loop.remove_signal_handler(signal.SIGTERM) is False
        return result

    assert asyncio.run(scenario()) == "stopped"


def test_stop_cancels_the_work_and_runs_its_cleanup() -> None:
    cleaned: list[str] = []

    async def work() -> str:
        try:
            await asyncio.sleep(60)
            return "finished"
        finally:
            cleaned.append("closed")

    async def scenario() -> str | None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, stop.set)
        return await run_until_stopped(stop, work())

    assert asyncio.run(scenario()) is None
    assert cleaned == ["closed"]


def test_finished_work_returns_its_result_and_its_error_propagates() -> None:
    async def answer() -> int:
        return 42

    async def broken() -> int:
        raise RuntimeError("the chain halted")

    async def scenario() -> int | None:
        stop = asyncio.Event()
        assert await run_until_stopped(stop, answer()) == 42
        return await run_until_stopped(stop, broken())

    with pytest.raises(RuntimeError, match="the chain halted"):
        asyncio.run(scenario())


def test_wait_for_stop_wakes_early_and_reports_why() -> None:
    async def scenario() -> tuple[bool, bool]:
        stop = asyncio.Event()
        timed_out = await wait_for_stop(stop, 0.01)
        asyncio.get_running_loop().call_soon(stop.set)
        stopped = await wait_for_stop(stop, 60)
        return timed_out, stopped

    assert asyncio.run(scenario()) == (False, True)

"""A real anvil for tests, started on a free loopback port and always killed by its pid."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from agora.sequencer.ethereum.anvil import (
    Anvil,
    find_anvil,
    launch_anvil,
    rpc_call,
    stop_process,
)

__all__ = ["Anvil", "find_anvil", "rpc_call", "start_anvil"]


@contextlib.contextmanager
def start_anvil(*, block_time: float | None = 0.25) -> Iterator[Anvil]:
    """A running anvil: interval mining every ``block_time`` s, or no mining with None."""
    binary = find_anvil()
    if binary is None:
        raise RuntimeError("anvil is not installed: run npm install @foundry-rs/anvil-linux-amd64")
    mining = ["--block-time", str(block_time)] if block_time is not None else ["--no-mining"]
    with tempfile.TemporaryDirectory(prefix="agora-anvil-") as directory:
        process, anvil = launch_anvil([binary, *mining], Path(directory))
        try:
            yield anvil
        finally:
            stop_process(process)

"""The node's worker threads: heavy or blocking work that must not stall the event loop.

- The writer thread makes every commit to the store: blocks, and pending transactions with
  group commit (``GroupCommitPool``). A commit that waits for the disk waits there, not on
  the loop, and one thread means one writer, in order.
- The builder thread builds or applies large blocks: pure Python that takes up to about a
  second for 10,000 transactions. A small block is built on the loop, where it costs less
  than handing it over (two threads that both want the interpreter lock slow each other
  down; the loop gets it back at the next switch interval while the builder runs).

The loop and the builder share the in-memory state: while a block is being built, the loop
reads only what a single dictionary lookup gives (an account, for admission) and waits for
``Node.wait_state_settled`` before anything that walks the state.

Group commit: submissions that arrive while the previous commit is on its way to disk are
written together in the next one, so a hundred concurrent single-transaction requests cost
one disk flush, not a hundred, and each is acknowledged only once its own commit returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from agora.node.store import Store
from agora.sequencer.base import PendingPool

T = TypeVar("T")


class Worker:
    """A single thread; ``run`` awaits a call made there, calls run in order."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *arguments: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *arguments)

    def close(self) -> None:
        """Wait for the call in progress (a commit is never cut in half), then stop."""
        self._executor.shutdown(wait=True, cancel_futures=True)


class GroupCommitPool(PendingPool):
    """Pending transactions in the node's store, written in groups by the writer thread."""

    def __init__(self, store: Store, writer: Worker) -> None:
        self.store = store
        self.writer = writer
        self._waiting: list[tuple[list[bytes], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def add_pending(self, transactions: list[bytes]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((transactions, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        # A caller that gives up (cancelled) leaves its transactions to be written anyway.
        await asyncio.shield(done)

    def list_pending(self) -> list[bytes]:
        return self.store.list_pending()

    def remove_pending(self, transactions: list[bytes]) -> None:
        self.store.remove_pending(transactions)

    async def _flush(self) -> None:
        """Commit everything waiting, again and again, until nothing waits."""
        while self._waiting:
            group, self._waiting = self._waiting, []
            rows = [raw for transactions, _ in group for raw in transactions]
            try:
                await asyncio.shield(self.writer.run(self.store.add_pending, rows))
            except Exception as error:
                for _, done in group:
                    if not done.done():
                        done.set_exception(error)
                continue
            for _, done in group:
                if not done.done():
                    done.set_result(None)

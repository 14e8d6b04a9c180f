"""The local sequencer: the node itself orders transactions, first come first served.

It seals a batch every ``block_time_ms`` (empty batches too, so that epochs advance with the
clock), or, with ``block_time_ms == 0``, as soon as a transaction is waiting (tests and
instant devnets). Accepted transactions are written to the node's pending pool before
``submit`` returns, and re-proposed after a restart until a block includes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agora.sequencer.base import OrderedBatch, PendingPool, Sequencer


class LocalSequencer(Sequencer):
    def __init__(
        self,
        pool: PendingPool,
        block_time_ms: int,
        max_batch: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.block_time_ms = block_time_ms
        self.max_batch = max_batch
        self.clock = clock
        self._queue: list[bytes] = []
        self._taken: list[bytes] = []
        self._arrived = asyncio.Event()
        self._height = 0
        self._next_seal = 0.0

    async def start(self, next_height: int) -> None:
        self._height = next_height
        self._queue = self.pool.list_pending()
        self._next_seal = self.clock() + self.block_time_ms / 1000
        if self._queue:
            self._arrived.set()

    async def submit(self, transactions: list[bytes]) -> None:
        await self.pool.add_pending(transactions)
        self._queue.extend(transactions)
        self._arrived.set()

    async def next_batch(self) -> OrderedBatch:
        if self.block_time_ms == 0:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
        else:
            delay = self._next_seal - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            # Catch up without bursting if the node fell behind (a long block, a pause).
            self._next_seal = max(self._next_seal, self.clock()) + self.block_time_ms / 1000
        taken, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        self._taken = taken
        batch = OrderedBatch(
            height=self._height, timestamp=int(self.clock()), transactions=tuple(taken)
        )
        self._height += 1
        return batch

    def confirm(
        self, height: int, transactions: tuple[bytes, ...], refused: tuple[bytes, ...] = ()
    ) -> None:
        """A block processes at most ``max_block_transactions`` (a chain parameter, which may
        be below ``max_batch``): what it did not reach goes back to the front of the queue, in
        order. Those it refused are dropped: they could not pay their fee."""
        left_out = self._taken[len(transactions) + len(refused) :]
        self._taken = []
        if left_out:
            self._queue[:0] = left_out
            self._arrived.set()

    async def close(self) -> None:
        self._arrived.set()

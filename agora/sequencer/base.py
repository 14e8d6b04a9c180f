"""The interface between a node and whatever orders its transactions.

A sequencer takes transaction bytes that passed ``validate_basic`` and decides their order:
it yields, for each Agora height in turn, an ``OrderedBatch`` (the transactions of that
block, in order, with the block's timestamp). The node executes each batch with
``protocol.build_block``; since execution is deterministic, every node that reads the same
batches computes the same blocks and state roots. The local sequencer is the node itself;
the Ethereum sequencer reads an Inbox contract's events.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from agora.errors import AgoraError


class SequencerError(AgoraError):
    """The ordering layer could not be reached or answered something unusable."""

    code = 3200


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderedBatch:
    height: int
    timestamp: int
    transactions: tuple[bytes, ...]


class Sequencer(ABC):
    @abstractmethod
    async def start(self, next_height: int) -> None:
        """Begin work; the node has applied every height below ``next_height``."""

    @abstractmethod
    async def submit(self, transactions: list[bytes]) -> None:
        """Accept transactions for ordering. Once this returns they must not be lost."""

    @abstractmethod
    async def next_batch(self) -> OrderedBatch:
        """Wait for the batch of the next height (each height exactly once, in order)."""

    def confirm(  # noqa: B027
        self, height: int, transactions: tuple[bytes, ...], refused: tuple[bytes, ...] = ()
    ) -> None:
        """The node has durably applied ``height``; pending copies may be forgotten.

        ``transactions`` are the block's; ``refused`` are those of the batch that the block
        left out because they could not pay their fee. Together they are the first items of
        the batch (a block processes at most ``max_block_transactions``); either may repeat
        an item, since anyone can post the same bytes twice.
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop background work and release connections."""


class PendingPool(ABC):
    """Durable storage for accepted transactions not yet in a block (the node's store)."""

    @abstractmethod
    async def add_pending(self, transactions: list[bytes]) -> None:
        """Record transactions durably; the submission is acknowledged once this returns."""

    @abstractmethod
    def list_pending(self) -> list[bytes]:
        """Every pending transaction, oldest first (used after a restart)."""

    @abstractmethod
    def remove_pending(self, transactions: list[bytes]) -> None:
        """Forget transactions that a durably applied block included."""


class MemoryPendingPool(PendingPool):
    """The PendingPool contract kept in a dict: it survives a sequencer, not a process.

    For tests and benches of a sequencer alone; a node uses its SQLite store.
    """

    def __init__(self) -> None:
        self.items: dict[bytes, None] = {}

    async def add_pending(self, transactions: list[bytes]) -> None:
        for raw in transactions:
            self.items.setdefault(raw, None)

    def list_pending(self) -> list[bytes]:
        return list(self.items)

    def remove_pending(self, transactions: list[bytes]) -> None:
        for raw in transactions:
            self.items.pop(raw, None)

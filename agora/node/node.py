"""The node: a store, a source of blocks, the state, and the admission of transactions.

A node gets its blocks in one of two ways:
- sequenced: a sequencer (local or Ethereum) gives ordered batches, the node executes each
  with ``build_block`` and records it;
- following: the node pulls finished blocks from another node's API and re-executes each
  with ``apply_block``, which checks every state root; on a mismatch it halts with a clear
  error and applies nothing more.

Blocks are built or applied one at a time; a large one on the builder thread and every
commit on the writer thread (``worker.py``), so the event loop keeps serving the API
meanwhile. Everything else that touches the node (admission, the mempool, the block stream)
happens on the loop. Admission of a large request checks its signatures on threads as well:
libsodium releases the interpreter lock, so those checks run beside the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agora.node.errors import ChainHalted, FaucetDisabled
from agora.node.mempool import DEFAULT_MAX_PER_SENDER, Mempool
from agora.node.store import Store
from agora.node.worker import Worker
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.errors import InvalidBlock, ProtocolError
from agora.protocol.params import Params
from agora.protocol.state import State
from agora.protocol.transactions import (
    Transaction,
    decode_transaction,
    encode_transaction,
    sign_transaction,
    validate_basic,
)
from agora.protocol.transition import AppliedBlock, apply_block, build_block, is_refused
from agora.sequencer.base import Sequencer

log = logging.getLogger("agora.node")
DEFAULT_MAX_PENDING = 200_000
DEFAULT_STREAM_BACKLOG_BLOCKS = 1_000
# Requests with this many transactions or more have their signatures checked on threads.
OFF_LOOP_CHECK_MIN = 32
CHECK_THREADS = 2
# Blocks with this many transactions or more are built on the builder thread (~10 ms).
OFF_LOOP_BLOCK_MIN = 256


def check_transactions(
    raws: list[bytes], chain_id: str, params: Params
) -> list[Transaction | ProtocolError]:
    """``validate_basic`` of each, its error in its place (runs on a checker thread)."""
    results: list[Transaction | ProtocolError] = []
    for raw in raws:
        try:
            results.append(validate_basic(raw, chain_id, params))
        except ProtocolError as error:
            results.append(error)
    return results


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 7545
    max_pending: int = DEFAULT_MAX_PENDING
    max_pending_per_sender: int = DEFAULT_MAX_PER_SENDER
    max_body_bytes: int = 1 << 20
    # Dev chains: a funded key the faucet endpoint pays from, and its grant per request.
    faucet_seed: bytes | None = None
    faucet_amount: int = 0
    # Follower mode: how often to ask the leader for new blocks when it had none, and how
    # many forwarded transactions it remembers as pending (the oldest are forgotten first).
    poll_interval_seconds: float = 0.2
    max_forwarded: int = DEFAULT_MAX_PENDING
    # The block stream replays at most this many stored blocks to a reader that resumes;
    # one further behind is told where to page from (StreamTooFarBehind).
    stream_backlog_blocks: int = DEFAULT_STREAM_BACKLOG_BLOCKS


@dataclass(slots=True)
class Metrics:
    blocks_applied: int = 0
    transactions_applied: int = 0
    transactions_failed: int = 0
    block_seconds_total: float = 0.0
    http_requests: dict[tuple[str, int], int] = field(default_factory=dict)
    started_monotonic: float = field(default_factory=time.monotonic)


class Node:
    def __init__(
        self, config: NodeConfig, store: Store, state: State, writer: Worker | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.state = state
        self.writer = writer if writer is not None else Worker("agora-write")
        self._builder = Worker("agora-build")
        self._checkers = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="agora-check")
        # Set while no block is being built, applied or recorded.
        self._state_settled = asyncio.Event()
        self._state_settled.set()
        self.mempool = Mempool(config.max_pending, config.max_pending_per_sender)
        self.metrics = Metrics()
        self.halted: ProtocolError | None = None
        self.sequencer: Sequencer | None = None
        self._subscribers: set[asyncio.Queue[AppliedBlock]] = set()
        self._forward: Callable[[list[bytes]], Any] | None = None
        # A follower's forwarded transactions: reported pending until a pulled block has them,
        # at most ``max_forwarded`` (a leader may drop what it was sent: none stays forever).
        self.forwarded: dict[bytes, None] = {}

    def close(self) -> None:
        """Let a block on its way finish and be recorded, then stop the threads."""
        self._builder.close()
        self.writer.close()
        self._checkers.shutdown(wait=True, cancel_futures=True)

    # --- admission -----------------------------------------------------------------------

    async def submit(self, raws: list[bytes]) -> list[bytes]:
        """Admit transactions and hand them to the sequencer; returns their hashes.

        All are checked first, so one bad transaction rejects the request and admits none.
        """
        if self.halted is not None:
            raise ChainHalted(f"this node has halted: {self.halted.message}")
        if self._forward is not None:
            forwarded: list[bytes] = await self._forward(raws)
            self._remember_forwarded(forwarded)
            return forwarded
        assert self.sequencer is not None
        checked = await self._check_off_loop(raws)
        hashes: list[bytes] = []
        fresh: list[bytes] = []
        fresh_hashes: list[bytes] = []
        fresh_transactions: list[Transaction] = []
        try:
            for index, raw in enumerate(raws):
                try:
                    result = checked[index] if checked else None
                    if isinstance(result, ProtocolError):
                        raise result
                    tx_hash, tx = self.mempool.admit(self.state, raw, result)
                except ProtocolError as error:
                    raise type(error)(f"transactions[{index}]: {error.message}") from None
                hashes.append(tx_hash)
                if tx is not None:
                    fresh.append(raw)
                    fresh_hashes.append(tx_hash)
                    fresh_transactions.append(tx)
            if fresh:
                # A sequencer that refuses (read-only, too large) must leave no trace:
                # otherwise a retry of the same bytes would be acknowledged as known.
                # Shielded: a request cancelled while its group commit is on its way to disk
                # leaves the transactions admitted, as they will be recorded.
                await asyncio.shield(self.sequencer.submit(fresh))
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.mempool.withdraw(fresh_transactions, fresh_hashes)
            raise
        return hashes

    async def _check_off_loop(self, raws: list[bytes]) -> list[Transaction | ProtocolError]:
        """``validate_basic`` of a large request on threads, split over the cores; a small
        one (empty answer) is checked on the loop, where a thread hop would cost more."""
        if len(raws) < OFF_LOOP_CHECK_MIN:
            return []
        chain_id, params = self.state.chain_id, self.state.params
        loop = asyncio.get_running_loop()
        size = -(-len(raws) // CHECK_THREADS)
        chunks = [raws[i : i + size] for i in range(0, len(raws), size)]
        results = await asyncio.gather(
            *(
                loop.run_in_executor(self._checkers, check_transactions, chunk, chain_id, params)
                for chunk in chunks
            )
        )
        return [result for chunk in results for result in chunk]

    async def grant_from_faucet(self, recipient: Address, amount: int | None) -> bytes:
        if self.config.faucet_seed is None or self.config.faucet_amount == 0:
            raise FaucetDisabled("this node has no faucet; it is only on dev chains")
        from nacl.signing import SigningKey

        key = SigningKey(self.config.faucet_seed)
        sender = Address(bytes(key.verify_key))
        grant = min(amount or self.config.faucet_amount, self.config.faucet_amount)
        tx = Transaction(
            chain_id=self.state.chain_id,
            sender=sender,
            nonce=self.mempool.get_next_nonce(self.state, sender),
            fee=self.state.params.min_fee,
            body=Transfer(recipient=recipient, amount=grant),
        )
        signed = sign_transaction(tx, lambda message: key.sign(message).signature)
        (tx_hash,) = await self.submit([encode_transaction(signed)])
        return tx_hash

    # --- block production ----------------------------------------------------------------

    async def run_sequenced(self, sequencer: Sequencer) -> None:
        """Execute the sequencer's batches forever (until cancelled)."""
        self.sequencer = sequencer
        for raw in self.store.list_pending():
            self.mempool.restore(raw, decode_transaction(raw))
        await sequencer.start(self.state.head.height + 1)
        while True:
            batch = await sequencer.next_batch()
            if batch.height != self.state.head.height + 1:
                raise InvalidBlock(
                    f"sequencer gave height {batch.height}, expected {self.state.head.height + 1}"
                )
            started = time.perf_counter()
            applied = await self._settle(
                len(batch.transactions),
                build_block,
                self.state,
                batch.timestamp,
                list(batch.transactions),
                self.mempool.verified,
            )
            self._record(applied, started)
            processed = batch.transactions[: len(applied.outcomes)]
            refused = tuple(
                raw for raw, r in zip(processed, applied.outcomes, strict=True) if is_refused(r)
            )
            sequencer.confirm(batch.height, applied.block.transactions, refused)
            # Readers waiting for the state to settle go before the next block starts.
            await asyncio.sleep(0)

    async def run_following(self, fetch_blocks: Callable[[int], Any]) -> None:
        """Pull and re-execute blocks; ``fetch_blocks(height)`` returns the blocks from there."""
        while self.halted is None:
            blocks = await fetch_blocks(self.state.head.height + 1)
            if not blocks:
                await asyncio.sleep(self.config.poll_interval_seconds)
                continue
            for block in blocks:
                started = time.perf_counter()
                try:
                    applied = await self._settle(
                        len(block.transactions), apply_block, self.state, block
                    )
                except ProtocolError as error:
                    self.halted = error
                    log.error("halted at block %d: %s", block.header.height, error.message)
                    raise
                self._record(applied, started)
                await asyncio.sleep(0)

    def set_forwarder(self, forward: Callable[[list[bytes]], Any]) -> None:
        """Followers pass submitted transactions on to the node they follow."""
        self._forward = forward

    def _remember_forwarded(self, hashes: list[bytes]) -> None:
        for tx_hash in hashes:
            self.forwarded.pop(tx_hash, None)
            self.forwarded[tx_hash] = None
        excess = len(self.forwarded) - self.config.max_forwarded
        for tx_hash in list(itertools.islice(self.forwarded, max(excess, 0))):
            del self.forwarded[tx_hash]

    async def wait_state_settled(self) -> None:
        """Return when no block is being built or applied, so that the caller, until its
        next ``await``, reads the state as a whole."""
        while not self._state_settled.is_set():
            await self._state_settled.wait()

    async def _settle(
        self, size: int, execute: Callable[..., AppliedBlock], *arguments: Any
    ) -> AppliedBlock:
        """Build or apply a block of ``size`` transactions and record it."""
        self._state_settled.clear()
        try:
            # Shielded: a block on its way is finished and recorded even when the node is
            # stopping (``close`` waits for it), never left half-built.
            if size >= OFF_LOOP_BLOCK_MIN:
                applied = await asyncio.shield(self._builder.run(execute, *arguments))
            else:
                applied = execute(*arguments)
            await asyncio.shield(self.writer.run(self.store.commit_block, applied))
            return applied
        finally:
            self._state_settled.set()

    def _record(self, applied: AppliedBlock, started: float) -> None:
        self.mempool.remove_included([r.tx_hash for r in applied.outcomes])
        if self.forwarded:
            for receipt in applied.receipts:
                self.forwarded.pop(receipt.tx_hash, None)
        metrics = self.metrics
        metrics.blocks_applied += 1
        metrics.transactions_applied += len(applied.receipts)
        metrics.transactions_failed += sum(1 for r in applied.receipts if not r.success)
        metrics.block_seconds_total += time.perf_counter() - started
        for queue in self._subscribers:
            if queue.qsize() < 1000:
                queue.put_nowait(applied)

    # --- subscriptions (the block stream) ----------------------------------------------------

    def subscribe(self) -> asyncio.Queue[AppliedBlock]:
        queue: asyncio.Queue[AppliedBlock] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[AppliedBlock]) -> None:
        self._subscribers.discard(queue)

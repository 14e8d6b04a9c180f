"""The Ethereum sequencer: an EVM chain orders Agora's transactions, every node derives.

Reading. Agora height ``h`` is EVM block ``genesis_block + h`` (height 0 is Agora's genesis,
so the first batch read is EVM block ``genesis_block + 1``). A block is read only once
``confirmations`` EVM blocks have been built on top of it, so a reorganisation of that
depth or less changes nothing a node has read. Behind the head, blocks are read in ranges:
one ``eth_getLogs`` for up to ``logs_range_blocks`` blocks (halved while the node refuses
the range) and their headers (for timestamps) in JSON-RPC batch requests; at the head the
reader polls every ``poll_interval_seconds``. Each log's block hash is checked against the
header read for its block; a mismatch (a reorg deeper than ``confirmations``, or a node
that answers from two views of the chain) makes the reader ask again. Read errors never
reach the node: the reader retries with backoff, logging a warning each time.

Posting (only with a ``poster_key``). ``submit`` records transactions in the PendingPool
before it returns, then a background task posts them to the Inbox: as soon as a full
payload (``max_batch_bytes``) is waiting, or when the oldest waiting transaction has waited
``max_batch_delay_seconds``. A failed post puts its transactions back at the front of the
queue. A transaction leaves the pool only through ``confirm``, when the node has applied a
block that includes it. On ``start`` every transaction of ``list_pending()`` is posted
again (a copy that turns out to be a duplicate fails in its block with a nonce receipt and
costs only gas).

Re-post rules. First, posts the EVM node forgot: every ``poll_interval_seconds`` while
some posts are unmined, the poster compares the account's transaction count including the
mempool ("pending") with its own next nonce. When the count stays below it at two checks in
a row, the node has dropped the posts from that nonce on, and their transactions are posted
again at once (two checks, because a node behind a load balancer may briefly lag). Second,
a slow catch-all: a transaction posted while the EVM head was block ``B`` is posted again
if the node has applied the Agora height of EVM block ``B + repost_after_blocks`` and the
transaction is still pending: its post was dropped, replaced, stuck behind a fee rise, or
cut by ``max_block_transactions``. This rule counts applied heights, not seconds, so a node
that is still catching up never re-posts what it simply has not read yet. Before such a
re-post the poster reads its nonce from the mined count, so that the new post replaces a
stuck one instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from dataclasses import dataclass

from agora.sequencer.base import OrderedBatch, PendingPool, Sequencer, SequencerError
from agora.sequencer.ethereum.derive import (
    BATCH_EVENT_TOPIC,
    LENGTH_PREFIX_BYTES,
    MAX_PAYLOAD_BYTES,
    PAYLOAD_HEADER_BYTES,
    InboxLog,
    InvalidRpcLog,
    compute_item_bytes,
    decode_log,
    derive_batch,
    encode_payload,
)
from agora.sequencer.ethereum.inbox import InboxPoster
from agora.sequencer.ethereum.rpc import RpcClient, RpcError

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 30.0
ADDRESS_PATTERN = re.compile(r"0x[0-9a-fA-F]{40}")


class InvalidEthereumConfig(SequencerError):
    """A setting of the Ethereum sequencer is out of range (the message names it)."""

    code = 3206


class TransactionTooLargeForBatch(SequencerError):
    """A transaction cannot fit in one Inbox payload, so it could never be posted."""

    code = 3207


class ReadOnlySequencer(SequencerError):
    """Transactions were submitted to a node that has no poster key: it only reads."""

    code = 3208


class InboxNotFound(SequencerError):
    """The configured Inbox address holds no contract on the chain the RPC URL reaches."""

    code = 3209


@dataclass(frozen=True, slots=True, kw_only=True)
class EthereumConfig:
    """Where the Inbox is and how to read and post.

    ``confirmations`` counts the EVM blocks built on top of a block before it is read (0
    reads the head itself: for development chains only). ``poster_key`` is a hex secp256k1
    private key whose account pays gas for posts, or None for a node that only reads.
    """

    rpc_url: str
    inbox_address: str
    genesis_block: int
    confirmations: int
    poster_key: str | None = None
    max_batch_bytes: int = MAX_PAYLOAD_BYTES
    max_batch_delay_seconds: float = 1.0
    poll_interval_seconds: float = 1.0
    logs_range_blocks: int = 1_000
    repost_after_blocks: int = 32

    def __post_init__(self) -> None:
        if not ADDRESS_PATTERN.fullmatch(self.inbox_address):
            raise InvalidEthereumConfig(f"inbox_address {self.inbox_address!r} is not 0x + 40 hex")
        minimum_batch = PAYLOAD_HEADER_BYTES + LENGTH_PREFIX_BYTES + 1
        checks = (
            ("genesis_block", self.genesis_block >= 0, "at least 0"),
            ("confirmations", self.confirmations >= 0, "at least 0"),
            (
                "max_batch_bytes",
                minimum_batch <= self.max_batch_bytes <= MAX_PAYLOAD_BYTES,
                f"between {minimum_batch} and {MAX_PAYLOAD_BYTES} (the Inbox's limit)",
            ),
            ("max_batch_delay_seconds", self.max_batch_delay_seconds >= 0, "at least 0"),
            ("poll_interval_seconds", self.poll_interval_seconds > 0, "above 0"),
            ("logs_range_blocks", self.logs_range_blocks >= 1, "at least 1"),
            ("repost_after_blocks", self.repost_after_blocks >= 1, "at least 1"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise InvalidEthereumConfig(f"{name} is {getattr(self, name)!r}; it must be {rule}")


class EthereumSequencer(Sequencer):
    def __init__(self, config: EthereumConfig, pool: PendingPool) -> None:
        self.config = config
        self.pool = pool
        self.rpc = RpcClient(config.rpc_url)
        self.poster = (
            InboxPoster(self.rpc, config.inbox_address, config.poster_key)
            if config.poster_key is not None
            else None
        )
        # Reading: the next height to fetch, fetched batches not yet handed out, and the
        # highest EVM block known to have enough confirmations.
        self._read_height = 1
        self._ready: deque[OrderedBatch] = deque()
        self._safe_block = -1
        self._logs_range = config.logs_range_blocks
        # Posting: accepted and not yet applied (insertion-ordered), waiting to be posted
        # (monotonic arrival time, bytes), and posted (EVM head at posting, bytes).
        self._pending: dict[bytes, None] = {}
        self._queue: deque[tuple[float, bytes]] = deque()
        self._queued: set[bytes] = set()
        self._queued_bytes = 0
        self._posted: deque[tuple[int, bytes]] = deque()
        self._recent_posts: dict[int, list[bytes]] = {}  # nonce -> transactions, until mined
        self._forgotten_from: int | None = None
        self._last_check = 0.0
        self._applied_block = config.genesis_block
        self._resync_poster = False
        self._wake = asyncio.Event()
        self._post_task: asyncio.Task[None] | None = None

    # --- the Sequencer interface ---------------------------------------------------------

    async def start(self, next_height: int) -> None:
        if next_height < 1:
            raise SequencerError(f"next_height is {next_height}; height 0 is genesis")
        self._read_height = next_height
        self._ready.clear()
        self._applied_block = self.config.genesis_block + next_height - 1
        await self._check_inbox()
        if self.poster is not None:
            self._accept(self.pool.list_pending())
            self._post_task = asyncio.create_task(self._post_loop())

    async def submit(self, transactions: list[bytes]) -> None:
        if self.poster is None:
            raise ReadOnlySequencer(
                "this node has no poster key, so it cannot post transactions to the Inbox; "
                "send them to a node that posts, or configure poster_key"
            )
        for raw in transactions:
            if not raw or PAYLOAD_HEADER_BYTES + compute_item_bytes(raw) > (
                self.config.max_batch_bytes
            ):
                raise TransactionTooLargeForBatch(
                    f"a transaction of {len(raw)} bytes does not fit in an Inbox payload of "
                    f"at most {self.config.max_batch_bytes} bytes"
                )
        fresh = [raw for raw in dict.fromkeys(transactions) if raw not in self._pending]
        if fresh:
            await self.pool.add_pending(fresh)
            self._accept(fresh)

    async def next_batch(self) -> OrderedBatch:
        delay = self.config.poll_interval_seconds
        while not self._ready:
            try:
                await self._read_more()
                delay = self.config.poll_interval_seconds
            except SequencerError as error:
                log.warning("reading the Inbox failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
        return self._ready.popleft()

    def confirm(
        self, height: int, transactions: tuple[bytes, ...], refused: tuple[bytes, ...] = ()
    ) -> None:
        self._applied_block = max(self._applied_block, self.config.genesis_block + height)
        # The same bytes may come twice (anyone can post a copy): each is forgotten once. A
        # refused copy of one still waiting to be posted here was posted by someone else out
        # of order (a nonce ahead): this node's own post, in order, is still to come.
        done = (*transactions, *(raw for raw in refused if raw not in self._queued))
        mine = [raw for raw in dict.fromkeys(done) if raw in self._pending]
        if mine:
            self.pool.remove_pending(mine)
            for raw in mine:
                del self._pending[raw]
        self._schedule_reposts()

    async def close(self) -> None:
        if self._post_task is not None:
            self._post_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._post_task
            self._post_task = None
        await self.rpc.close()

    @property
    def pending_count(self) -> int:
        """Transactions accepted by this sequencer and not yet in an applied block."""
        return len(self._pending)

    # --- reading -------------------------------------------------------------------------

    async def _check_inbox(self) -> None:
        if not await self.rpc.get_code(self.config.inbox_address):
            chain_id = await self.rpc.get_chain_id()
            raise InboxNotFound(
                f"no contract at {self.config.inbox_address} on chain {chain_id} "
                f"({self.config.rpc_url}); check inbox_address and rpc_url"
            )

    async def _read_more(self) -> None:
        """Fetch the next range of confirmed blocks, or wait one poll interval."""
        first = self.config.genesis_block + self._read_height
        if first > self._safe_block:
            self._safe_block = await self.rpc.get_block_number() - self.config.confirmations
            if first > self._safe_block:
                await asyncio.sleep(self.config.poll_interval_seconds)
                return
        last = min(self._safe_block, first + self._logs_range - 1)
        batches = await self._read_range(first, last)
        self._ready.extend(batches)
        self._read_height += len(batches)

    async def _read_range(self, first: int, last: int) -> list[OrderedBatch]:
        headers_task = asyncio.ensure_future(self.rpc.get_blocks(range(first, last + 1)))
        logs_task = asyncio.ensure_future(self._get_logs(first, last))
        try:
            headers, raw_logs = await asyncio.gather(headers_task, logs_task)
        except BaseException:
            headers_task.cancel()
            logs_task.cancel()
            raise
        by_block: dict[int, list[InboxLog]] = {}
        for raw in raw_logs:
            item = decode_log(raw)
            if item is not None:
                by_block.setdefault(item.block_number, []).append(item)
        batches = []
        for number, header in zip(range(first, last + 1), headers, strict=True):
            block_hash, timestamp = _parse_header(number, header)
            logs = by_block.pop(number, [])
            if any(item.block_hash != block_hash for item in logs):
                raise InvalidRpcLog(
                    f"logs of block {number} belong to another block hash: the chain "
                    "reorganised deeper than the confirmations, or the node is inconsistent"
                )
            batches.append(derive_batch(number - self.config.genesis_block, timestamp, logs))
        if by_block:
            raise InvalidRpcLog(f"eth_getLogs answered logs of blocks {sorted(by_block)}")
        return batches

    async def _get_logs(self, first: int, last: int) -> list[dict[str, object]]:
        """The Inbox's Batch logs of a block range, split while the node refuses it."""
        try:
            return await self.rpc.get_logs(
                self.config.inbox_address, first, last, topics=[BATCH_EVENT_TOPIC]
            )
        except RpcError:
            if first == last:
                raise
        half = (last - first + 1) // 2
        self._logs_range = max(1, half)
        return await self._get_logs(first, first + half - 1) + await self._get_logs(
            first + half, last
        )

    # --- posting -------------------------------------------------------------------------

    def _accept(self, transactions: list[bytes]) -> None:
        for raw in transactions:
            if raw not in self._pending:
                self._pending[raw] = None
                self._enqueue(raw, time.monotonic())
        self._wake.set()

    def _enqueue(self, raw: bytes, arrived: float) -> None:
        if raw not in self._queued:
            self._queue.append((arrived, raw))
            self._queued.add(raw)
            self._queued_bytes += compute_item_bytes(raw)

    async def _post_loop(self) -> None:
        poster = self.poster
        if poster is None:
            return
        delay = self.config.poll_interval_seconds
        while True:
            await self._wait_until_due()
            if self._recent_posts and self._is_check_due():
                self._last_check = time.monotonic()
                try:
                    await self._recover_forgotten_posts(poster)
                except SequencerError as error:
                    log.warning("checking the poster's nonce failed: %s", error)
            if self._resync_poster:
                poster.resync(replace_stuck=True)
                self._resync_poster = False
            transactions = self._take_payload()
            if not transactions:
                continue
            try:
                posted = await poster.post(encode_payload(transactions))
            except Exception as error:  # the loop must outlive any failure: nothing is lost
                log.warning("posting %d transactions failed: %s", len(transactions), error)
                self._put_back(transactions)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            delay = self.config.poll_interval_seconds
            self._posted.extend((posted.head_block, raw) for raw in transactions)
            self._recent_posts[posted.nonce] = transactions

    async def _wait_until_due(self) -> None:
        """Return when a full payload waits, the oldest waiting one is old enough, or the
        unmined posts are due for a check."""
        while True:
            deadlines = []
            if self._queue:
                if PAYLOAD_HEADER_BYTES + self._queued_bytes >= self.config.max_batch_bytes:
                    return
                deadlines.append(self._queue[0][0] + self.config.max_batch_delay_seconds)
            if self._recent_posts:
                deadlines.append(self._last_check + self.config.poll_interval_seconds)
            timeout = None
            if deadlines:
                timeout = min(deadlines) - time.monotonic()
                if timeout <= 0:
                    return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _is_check_due(self) -> bool:
        return time.monotonic() >= self._last_check + self.config.poll_interval_seconds

    async def _recover_forgotten_posts(self, poster: InboxPoster) -> None:
        """Post again what the EVM node dropped from its mempool (see the module doc)."""
        mined, known = await self.rpc.request_batch(
            [
                ("eth_getTransactionCount", [poster.address, "latest"]),
                ("eth_getTransactionCount", [poster.address, "pending"]),
            ]
        )
        mined, known = int(mined, 16), int(known, 16)
        for nonce in [nonce for nonce in self._recent_posts if nonce < mined]:
            del self._recent_posts[nonce]
        next_nonce = poster.next_nonce
        if next_nonce is None or known >= next_nonce:
            self._forgotten_from = None
            return
        if self._forgotten_from != known:
            self._forgotten_from = known
            return
        self._forgotten_from = None
        forgotten = sorted(nonce for nonce in self._recent_posts if nonce >= known)
        transactions = [raw for nonce in forgotten for raw in self._recent_posts.pop(nonce)]
        log.warning(
            "the EVM node forgot %d posts (nonces %d to %d); posting their transactions again",
            next_nonce - known,
            known,
            next_nonce - 1,
        )
        self._put_back(transactions)
        poster.resync(replace_stuck=False)

    def _take_payload(self) -> list[bytes]:
        """Pop waiting transactions, oldest first, that fit in one payload."""
        taken: list[bytes] = []
        size = PAYLOAD_HEADER_BYTES
        while self._queue:
            raw = self._queue[0][1]
            item_bytes = compute_item_bytes(raw)
            if raw in self._pending and size + item_bytes > self.config.max_batch_bytes:
                break
            self._queue.popleft()
            self._queued.discard(raw)
            self._queued_bytes -= item_bytes
            if raw in self._pending:
                taken.append(raw)
                size += item_bytes
        return taken

    def _put_back(self, transactions: list[bytes]) -> None:
        """Return transactions of a failed post to the front of the queue, due at once."""
        for raw in reversed(transactions):
            if raw in self._pending and raw not in self._queued:
                self._queue.appendleft((0.0, raw))
                self._queued.add(raw)
                self._queued_bytes += compute_item_bytes(raw)

    def _schedule_reposts(self) -> None:
        horizon = self._applied_block - self.config.repost_after_blocks
        late = []
        while self._posted and self._posted[0][0] <= horizon:
            raw = self._posted.popleft()[1]
            if raw in self._pending and raw not in self._queued:
                late.append(raw)
        if late:
            log.info("re-posting %d transactions not included in time", len(late))
            self._put_back(late)
            self._resync_poster = True
            self._wake.set()


def _parse_header(number: int, header: dict[str, object]) -> tuple[str, int]:
    """(hash, timestamp) of a block header the node answered for block ``number``."""
    try:
        answered = int(str(header["number"]), 16)
        block_hash = str(header["hash"]).lower()
        timestamp = int(str(header["timestamp"]), 16)
    except (KeyError, ValueError) as error:
        raise InvalidRpcLog(f"the header of block {number} is malformed: {error!r}") from None
    if answered != number:
        raise InvalidRpcLog(f"asked for block {number}, the node answered block {answered}")
    return block_hash, timestamp

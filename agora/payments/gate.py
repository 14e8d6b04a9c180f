"""``PaymentGate``: the seller's side of payment channels, where it meets the chain.

A voucher must cover the price before the work, and becomes claimable only once the work
succeeded. The decisions are the books' (``books``: the checks, the credit rule); the gate
reads what they decide on from the node (the channel, cached; the head, through
``HeadCache``) and claims what they earned.

``reserve`` admits a request paid by a ``payment`` (``vouchers``) or raises the
``PaymentError`` saying why not; ``settle`` keeps its voucher once the work succeeded,
``release`` forgets it when the work failed, and a request whose handler raised is released
when the task serving it ends.

Durability. With a ``VoucherStore`` (``store``), ``settle`` returns only once the channel's
best voucher is on disk, so the seller answers a paid request only when what it earned
survives a kill; ``recover`` (at start) reads the kept vouchers back into the books, so they
are claimed at ``run``'s first poll and never served twice.

Holds (``vouchers``, ``books``): with ``credit`` above 0, a request may be paid only if its
answer is accepted. Its work done, ``settle`` leaves it waiting for the payer's verdict,
which ``resolve`` applies (an accepted hold's voucher is on disk before it returns, as a
settled one's is); ``run`` forgets the holds left without a verdict for ``HOLD_TIMEOUT_S``.
What a payer's holds wrote off is kept in the store too, and read back by ``recover``.

Claims. ``run`` claims the best voucher of each channel every ``claim_interval_s``, and at
every poll once the channel is within ``2 * EXPIRY_MARGIN_BLOCKS`` of its expiry (requests
stop being admitted at ``EXPIRY_MARGIN_BLOCKS``), so the seller is paid before the payer may
close; ``claim_all`` claims everything (at shutdown). A claim is one transaction for any
number of requests, signed and paid by the seller's hotkey.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

from agora.client.client import NodeApiError, NodeClient, NodeUnreachable
from agora.client.participant import TransactionFailed, submit_and_wait
from agora.errors import AgoraError
from agora.node.errors import NotFound
from agora.node.wire import to_hex
from agora.payments.books import (
    EXPIRY_MARGIN_BLOCKS,
    HOLD_TIMEOUT_S,
    ChannelBook,
    PaymentBooks,
    Reservation,
)
from agora.payments.errors import (
    ChainUnavailable,
    CreditRefused,
    NotChannelPayer,
    PaymentError,
    PaymentRequired,
    UnknownChannel,
    VoucherExceedsDeposit,
)
from agora.payments.head import HeadCache
from agora.payments.prices import Price
from agora.payments.store import VoucherStore
from agora.payments.vouchers import Hold, parse_payment, parse_verdict
from agora.protocol.address import decode_address
from agora.protocol.channels import ClaimChannel, Voucher
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.payments")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentGateConfig:
    """One seller: ``hotkey`` on subnet ``netuid``, selling ``task_kind`` at ``price``, and
    risking at most ``credit`` base units of work on holds per payer."""

    hotkey: Keypair
    netuid: int
    task_kind: str
    price: Price
    chain_id: str
    claim_interval_s: float = 60.0
    poll_interval_s: float = 1.0
    head_max_age_s: float = 1.0
    head_stale_s: float = 5.0
    channel_max_age_s: float = 10.0
    credit: int = 0


class PaymentGate:
    """Checks vouchers for one miner hotkey on one subnet, and claims what they earned."""

    def __init__(
        self, config: PaymentGateConfig, client: NodeClient, store: VoucherStore | None = None
    ) -> None:
        self.config = config
        self.client = client
        self.store = store
        self.books = PaymentBooks(
            payee=config.hotkey.public_key,
            netuid=config.netuid,
            price=config.price,
            chain_id=config.chain_id,
            credit=config.credit,
        )
        self.head = HeadCache(
            client,
            max_age_s=config.head_max_age_s,
            stale_s=max(config.head_stale_s, config.head_max_age_s),
        )
        self._channel_locks: dict[bytes, asyncio.Lock] = {}
        self._claim_lock = asyncio.Lock()

    @property
    def price(self) -> Price:
        return self.config.price

    @property
    def channels(self) -> dict[bytes, ChannelBook]:
        return self.books.channels

    # --- admitting a request ---------------------------------------------------------------

    async def reserve(
        self, payer_hotkey: bytes, payment: dict[str, Any] | None, request: dict[str, Any]
    ) -> Reservation:
        """Admit a request paid by ``payment``, or raise the ``PaymentError`` saying why not."""
        if payment is None:
            raise PaymentRequired(
                f"this miner sells {self.config.task_kind} at {self.price.to_text()}: attach a "
                "payment-channel voucher under 'payment' (or use `agora gateway`)"
            )
        paid = parse_payment(payment)
        if isinstance(paid, Hold) and self.config.credit == 0:
            raise CreditRefused("this seller gives no credit: pay with a voucher")
        book = await self._get_book(paid.channel_id)
        head = await self._get_head()
        if self._may_have_changed(book, head):
            book = await self._read_channel(paid.channel_id)
        self.books.validate_channel(book, paid.channel_id, payer_hotkey, head)
        if not isinstance(paid, Hold):
            self.books.validate_signature(book, paid)
        if paid.cumulative > book.deposit:
            book = await self._read_channel(paid.channel_id)  # topped up since?
            if paid.cumulative > book.deposit:
                raise VoucherExceedsDeposit(
                    f"the voucher is for {paid.cumulative} base units; the deposit is "
                    f"{book.deposit}"
                )
        cost = self.price.compute_cost(self.config.task_kind, request)
        return self.admit(book, paid, cost)

    def _may_have_changed(self, book: ChannelBook, head: int) -> bool:
        """The cache says the channel is expiring: the payer may have extended it since."""
        stale = asyncio.get_running_loop().time() - book.read_at > self.config.head_max_age_s
        return stale and not book.closed and head + EXPIRY_MARGIN_BLOCKS >= book.expiry

    def admit(self, book: ChannelBook, payment: Voucher | Hold, cost: int) -> Reservation:
        """``PaymentBooks.admit``, and the reservation released if the request's task ends
        before ``settle``."""
        reservation = self.books.admit(book, payment, cost)
        self._release_when_request_ends(reservation)
        return reservation

    def _release_when_request_ends(self, reservation: Reservation) -> None:
        """A request whose handler raised never calls ``settle``: when the task serving it
        ends (the server runs each request in its own task), an unsettled reservation is
        released, so its voucher's amount is free for the payer's next request."""
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop: the caller settles or releases by hand
            return
        if task is not None:
            task.add_done_callback(lambda _: self.release(reservation))

    async def settle(self, reservation: Reservation) -> None:
        """The work succeeded: its cost is earned and its voucher may be claimed; with a
        store, the channel's best voucher is on disk when this returns. A hold waits for its
        verdict instead (``resolve``)."""
        if reservation.held:
            deadline = asyncio.get_running_loop().time() + HOLD_TIMEOUT_S
            self.books.hold(reservation, deadline)
            return
        self.books.settle(reservation)
        await self._save_best(reservation.channel_id)

    async def resolve(self, payer_hotkey: bytes, verdict: Any) -> dict[str, int]:
        """Apply a payer's verdict on its holds (``vouchers.make_verdict``): every entry is
        checked before any is applied, so a bad verdict changes nothing. The accepted holds'
        vouchers are on disk when this returns. Returns how many holds each list matched."""
        accepted, rejected = parse_verdict(verdict)
        books = {}
        entries: list[Voucher | Hold] = [*accepted, *rejected]
        for paid in entries:
            book = await self._get_book(paid.channel_id)
            if book.payer != payer_hotkey or book.payee != self.books.payee:
                raise NotChannelPayer(
                    f"channel {to_hex(paid.channel_id)} is not the caller's channel to this seller"
                )
            books[paid.channel_id] = book
        for voucher in accepted:
            self.books.validate_signature(books[voucher.channel_id], voucher)
            if voucher.cumulative > books[voucher.channel_id].deposit:
                raise VoucherExceedsDeposit(
                    f"the voucher is for {voucher.cumulative} base units; the deposit is "
                    f"{books[voucher.channel_id].deposit}"
                )
        matched = {
            "accepted": sum(self.books.accept(books[v.channel_id], v) for v in accepted),
            "rejected": sum(self.books.reject(books[h.channel_id], h.cumulative) for h in rejected),
        }
        for channel_id in {voucher.channel_id for voucher in accepted}:
            await self._save_best(channel_id)
        if matched["rejected"]:
            await self._save_written_off({payer_hotkey})
        return matched

    async def _save_written_off(self, payers: set[bytes]) -> None:
        if self.store is None:
            return
        for payer in payers:
            await asyncio.to_thread(
                self.store.save_written_off, payer, self.books.written_off[payer]
            )

    async def _save_best(self, channel_id: bytes) -> None:
        book = self.channels.get(channel_id)
        if self.store is not None and book is not None and book.best is not None:
            await asyncio.to_thread(self.store.save, book.best)

    def release(self, reservation: Reservation) -> None:
        """The work failed: the reservation is forgotten (nothing is earned)."""
        self.books.release(reservation)

    def get_earned(self) -> dict[str, int]:
        """Totals over the channels: served (settled work), claimable, claimed and held (on
        credit, waiting for a verdict)."""
        return self.books.get_earned()

    async def recover(self) -> int:
        """The vouchers kept in the store, back in the books (counted as served so that none
        is served twice, and claimed at ``run``'s first poll); returns how many base units
        they hold above what is claimed on chain. A voucher whose channel is gone, closed or
        claimed past it is forgotten. What payers' holds wrote off is read back too."""
        if self.store is None:
            return 0
        self.books.written_off.update(await asyncio.to_thread(self.store.load_written_off))
        unclaimed = 0
        for voucher in await asyncio.to_thread(self.store.load):
            try:
                book = await self._read_channel(voucher.channel_id)
            except UnknownChannel:
                await asyncio.to_thread(self.store.forget, voucher.channel_id)
                continue
            if book.closed or voucher.cumulative <= book.claimed:
                if voucher.cumulative > book.claimed:
                    log.warning(
                        "payments: channel %s closed with %d base units unclaimed",
                        to_hex(voucher.channel_id),
                        voucher.cumulative - book.claimed,
                    )
                await asyncio.to_thread(self.store.forget, voucher.channel_id)
                continue
            if voucher.cumulative > book.best_amount:
                book.best = voucher
            book.consumed = max(book.consumed, voucher.cumulative)
            book.claimed_at = -math.inf  # due at ``run``'s first poll
            unclaimed += book.unclaimed
        return unclaimed

    # --- chain reads -----------------------------------------------------------------------

    async def _get_head(self, *, fresh: bool = False) -> int:
        return await self.head.get(fresh=fresh)

    async def _get_book(self, channel_id: bytes) -> ChannelBook:
        book = self.channels.get(channel_id)
        if book is not None:
            return book
        return await self._read_channel(channel_id)

    async def _read_channel(self, channel_id: bytes) -> ChannelBook:
        """Read the channel from the node and merge it into the books."""
        lock = self._channel_locks.setdefault(channel_id, asyncio.Lock())
        async with lock:
            try:
                info = await self.client.get_channel(channel_id)
            except NodeApiError as error:
                if error.code == NotFound.code:
                    raise UnknownChannel(f"no channel {to_hex(channel_id)} on chain") from None
                raise ChainUnavailable(f"cannot read the channel: {error.message}") from None
            except NodeUnreachable as error:
                raise ChainUnavailable(f"cannot read the channel: {error.message}") from None
            now = asyncio.get_running_loop().time()
            book = self.channels.get(channel_id)
            claimed = int(info["claimed"])
            if book is None:
                book = ChannelBook(
                    payer=bytes(decode_address(info["payer"])),
                    payee=bytes(decode_address(info["payee"])),
                    netuid=int(info["netuid"]),
                    deposit=int(info["deposit"]),
                    expiry=int(info["expiry"]),
                    closed=bool(info["closed"]),
                    claimed=claimed,
                    consumed=claimed,
                    claimed_at=now,
                )
                self.channels[channel_id] = book
            book.deposit = int(info["deposit"])
            book.expiry = int(info["expiry"])
            book.closed = bool(info["closed"])
            book.claimed = max(book.claimed, claimed)
            book.consumed = max(book.consumed, book.claimed)
            book.read_at = now
            return book

    # --- claims ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: keep the head and channels fresh, and claim what is due."""
        while not stop.is_set():
            await self.expire_holds()
            try:
                await self.claim_due()
            except AgoraError as error:
                log.warning("payments: error[%d] %s", error.code, error.message)
            try:
                await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)
            except TimeoutError:
                pass

    async def expire_holds(self, now: float | None = None) -> list[Reservation]:
        """Write off the holds without a verdict at their deadline (by ``now``, the loop's
        clock by default), on disk for their payers; returns them."""
        if now is None:
            now = asyncio.get_running_loop().time()
        expired = self.books.expire_holds(now)
        await self._save_written_off({self.channels[hold.channel_id].payer for hold in expired})
        for hold in expired:
            log.warning(
                "payments: no verdict on a hold of %d base units on channel %s in %.0f s; "
                "its work is unpaid",
                hold.cost,
                to_hex(hold.channel_id),
                HOLD_TIMEOUT_S,
            )
        return expired

    async def claim_due(self) -> list[bytes]:
        """Claim each channel whose last claim is ``claim_interval_s`` old, or that nears its
        expiry; returns the ids claimed."""
        head = await self._get_head(fresh=True)
        now = asyncio.get_running_loop().time()
        due = []
        for channel_id, book in list(self.channels.items()):
            if now - book.read_at > self.config.channel_max_age_s and not book.closed:
                try:
                    book = await self._read_channel(channel_id)
                except PaymentError as error:
                    log.warning("payments: channel %s: %s", to_hex(channel_id), error.message)
            if book.closed and not book.pending:
                del self.channels[channel_id]  # nothing more can come of it
                if self.store is not None:
                    await asyncio.to_thread(self.store.forget, channel_id)
                continue
            if book.unclaimed <= 0 or book.closed:
                continue
            near_expiry = head + 2 * EXPIRY_MARGIN_BLOCKS >= book.expiry
            if near_expiry or now - book.claimed_at >= self.config.claim_interval_s:
                due.append(channel_id)
        return [channel_id for channel_id in due if await self._claim(channel_id)]

    async def claim_all(self) -> list[bytes]:
        """Claim every channel's best voucher now; returns the ids claimed."""
        return [
            channel_id
            for channel_id, book in list(self.channels.items())
            if book.unclaimed > 0 and not book.closed and await self._claim(channel_id)
        ]

    async def _claim(self, channel_id: bytes) -> bool:
        async with self._claim_lock:
            book = self.channels[channel_id]
            voucher = book.best
            if voucher is None or voucher.cumulative <= book.claimed:
                return False
            try:
                await submit_and_wait(
                    self.client, self.config.hotkey, ClaimChannel(voucher=voucher), "claiming"
                )
            except TransactionFailed as error:
                log.warning("payments: claim on %s refused: %s", to_hex(channel_id), error.message)
                with contextlib.suppress(PaymentError):
                    await self._read_channel(channel_id)  # closed by its payer, most likely
                return False
            except (NodeUnreachable, NodeApiError) as error:
                log.warning("payments: claim on %s not sent: %s", to_hex(channel_id), error.message)
                return False
            book.claimed = max(book.claimed, voucher.cumulative)
            book.consumed = max(book.consumed, book.claimed)
            book.claimed_at = asyncio.get_running_loop().time()
            log.info(
                "payments: claimed %d base units in total on channel %s",
                voucher.cumulative,
                to_hex(channel_id),
            )
            return True

"""The gateway's side of payment channels: one open channel per miner, funded from the
developer's coldkey, and a voucher for every call.

A channel is opened the first time a miner is called (``deposit`` base units, expiring
``channel_blocks`` after the head), topped up when the next voucher would not fit in its
deposit (and in the background when less than a quarter of a deposit is left), and extended
when it comes within ``compute_renew_margin`` blocks of its expiry, always before the miner's
gate would refuse it. A channel no request uses any more simply expires; ``close_expired``
then closes it and takes back what the miner did not claim. A channel's record is written
before its opening is sent, so a gateway killed before the block still knows the channel at
its next start (``start`` checks each record on chain, after the payer's transactions still
pending at the node have reached a block; one whose opening never did is closed).

Vouchers. ``committed`` is the sum of the costs of the successful calls on the channel: what
the developer owes the miner. A call's voucher is for ``max(committed + costs under way,
highest voucher under way) + cost`` (``compute_next_amount``): above every voucher under way,
so the miner's credit rule (``payments.books``) admits it in whatever order the calls
arrive. ``settle`` adds the cost to ``committed`` only for a call that succeeded; a failed
call's amount is simply issued again to the next call, so a failure costs nothing.

If the miner says it served more than ``committed`` (a response lost after the miner settled
it), its figure is adopted when it is no more than a voucher this gateway actually signed;
otherwise the channel is retired (no more vouchers; it expires and is closed) and a new one
opened: the developer never pays on a miner's word.

Holds. A verified call (``service``) pays only if its answer is accepted: its ticket is a hold
(``payments.vouchers``), issued like a voucher but unsigned. Its answer in, it stays under way
until its verdict is delivered to the miner (``conclude``), so both sides count it the same
in the meantime. An accepted hold's voucher is signed for the verdict (``sign_accepted``) and
its cost committed; a rejected one is forgotten once the miner has the verdict, or, when the
verdict could not be delivered, once the miner has forgotten it too (``HOLD_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from agora.client.client import NodeApiError, NodeClient, NodeUnreachable
from agora.client.transactions import make_transaction
from agora.gateway.errors import ChainUnavailable, InsufficientFunds
from agora.gateway.store import ChannelRecord, GatewayStore
from agora.payments.books import EXPIRY_MARGIN_BLOCKS, HOLD_TIMEOUT_S
from agora.payments.errors import PaymentError
from agora.payments.head import HeadCache
from agora.payments.vouchers import Hold
from agora.protocol.address import Address, decode_address, encode_address
from agora.protocol.channels import (
    CloseChannel,
    OpenChannel,
    TopUpChannel,
    Voucher,
    compute_channel_id,
    sign_voucher,
)
from agora.protocol.errors import CannotPayFee, InsufficientBalance
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.gateway")

FUNDS_CODES = (InsufficientBalance.code, CannotPayFee.code)
PENDING_OPENING_WAIT_S = 60.0  # at start, how long an opening still pending is waited for


def compute_renew_margin(channel_blocks: int) -> int:
    """Blocks before expiry at which a channel in use is extended: well before the miner's
    gate refuses it (``EXPIRY_MARGIN_BLOCKS``) and starts claiming (twice that)."""
    return max(3 * EXPIRY_MARGIN_BLOCKS, channel_blocks // 4)


@dataclass(frozen=True, slots=True)
class Ticket:
    """One call's payment: its voucher (None for a hold) and cost, until ``settle``."""

    id: int
    channel_id: bytes
    cost: int
    amount: int  # the cumulative amount it pays
    voucher: Voucher | None

    @property
    def held(self) -> bool:
        return self.voucher is None

    @property
    def payment(self) -> Voucher | Hold:
        """What the call carries: the voucher, or the hold of its amount."""
        if self.voucher is None:
            return Hold(channel_id=self.channel_id, cumulative=self.amount)
        return self.voucher


@dataclass(slots=True)
class PaidChannel:
    record: ChannelRecord
    payee: bytes
    in_flight: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (amount, cost)
    max_issued: int = 0
    topping_up: bool = False

    @property
    def channel_id(self) -> bytes:
        return self.record.channel_id


def compute_next_amount(channel: PaidChannel) -> int:
    """The cumulative amount before the next call's cost is added (module docstring)."""
    under_way = sum(cost for _, cost in channel.in_flight.values())
    highest = max((amount for amount, _ in channel.in_flight.values()), default=0)
    return max(channel.record.committed + under_way, highest)


class ChannelManager:
    def __init__(
        self,
        *,
        client: NodeClient,
        payer: Keypair,
        store: GatewayStore,
        deposit: int,
        channel_blocks: int,
    ) -> None:
        self.client = client
        self.payer = payer
        self.store = store
        self.deposit = deposit
        self.channel_blocks = channel_blocks
        self.renew_margin = compute_renew_margin(channel_blocks)
        self.chain_id = ""
        self.min_fee = 0
        self._open: dict[tuple[bytes, int], PaidChannel] = {}
        self._by_id: dict[bytes, PaidChannel] = {}
        self._locks: dict[tuple[bytes, int], asyncio.Lock] = {}
        self._send_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.head = HeadCache(client)
        self._background: set[asyncio.Task[None]] = set()

    # --- start -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the chain's parameters and take back the channels left open last time."""
        try:
            chain = await self.client.get_chain()
        except (NodeUnreachable, NodeApiError) as error:
            raise ChainUnavailable(f"cannot read the chain: {error.message}") from None
        self.chain_id = chain["chain_id"]
        self.min_fee = int(chain["params"]["min_fee"])
        records = self.store.list_channels(self.payer.address, open_only=True)
        pending = await self._wait_for_pending_openings({r.channel_id for r in records})
        for record in records:
            try:
                info = await self.client.get_channel(record.channel_id)
            except NodeApiError:
                if record.channel_id not in pending:  # never opened: nothing to take back
                    self.store.save_channel(replace(record, closed=True))
                continue  # still pending: the next start looks again
            record = replace(
                record,
                deposit=int(info["deposit"]),
                expiry=int(info["expiry"]),
                closed=bool(info["closed"]),
                committed=max(record.committed, int(info["claimed"])),
            )
            self.store.save_channel(record)
            if not record.closed:
                self._add(record)

    async def _wait_for_pending_openings(self, recorded: set[bytes]) -> set[bytes]:
        """An opening sent just before the gateway stopped may still wait for its block: until
        the node has included every transaction of the payer it held then (at most
        ``PENDING_OPENING_WAIT_S``), a missing channel may yet open. Returns the recorded
        channels whose opening is still pending after the wait (none, as a rule)."""
        if not recorded:
            return set()
        payer = Address(self.payer.public_key)

        async def pending_openings() -> set[bytes]:
            try:
                account = await self.client.get_account(self.payer.address)
            except (NodeUnreachable, NodeApiError) as error:
                raise ChainUnavailable(
                    f"cannot read the payer's account: {error.message}"
                ) from None
            nonces = range(int(account["nonce"]), int(account["next_nonce"]))
            return {bytes(compute_channel_id(payer, n)) for n in nonces} & recorded

        pending = await pending_openings()
        deadline = asyncio.get_running_loop().time() + PENDING_OPENING_WAIT_S
        while pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            pending = await pending_openings()
        if pending:
            log.warning(
                "%d channel openings still pending; the next start checks them", len(pending)
            )
        return pending

    def _add(self, record: ChannelRecord) -> PaidChannel:
        channel = PaidChannel(
            record=record,
            payee=bytes(decode_address(record.payee)),
            max_issued=record.committed,
        )
        self._open[(channel.payee, record.netuid)] = channel
        self._by_id[record.channel_id] = channel
        return channel

    @property
    def channels(self) -> list[ChannelRecord]:
        return [channel.record for channel in self._by_id.values()]

    # --- vouchers ------------------------------------------------------------------------------

    async def issue(self, payee: bytes, netuid: int, cost: int, *, held: bool = False) -> Ticket:
        """A voucher paying ``cost`` more to ``payee``, on a channel made ready for it; a hold
        of that amount if ``held``."""
        for _ in range(4):
            channel = await self._ensure(payee, netuid, cost)
            amount = compute_next_amount(channel) + cost
            if amount <= channel.record.deposit and (payee, netuid) in self._open:
                break
        else:
            raise ChainUnavailable("the channel could not be funded for this call; retry")
        voucher = None
        if not held:
            voucher = sign_voucher(self.chain_id, channel.channel_id, amount, self.payer.sign)
            channel.max_issued = max(channel.max_issued, amount)
        ticket = Ticket(
            id=next(self._ids),
            channel_id=channel.channel_id,
            cost=cost,
            amount=amount,
            voucher=voucher,
        )
        channel.in_flight[ticket.id] = (amount, cost)
        if channel.record.deposit - amount < self.deposit // 4 and not channel.topping_up:
            self._spawn(self._top_up_soon(payee, netuid))
        return ticket

    def settle(self, ticket: Ticket, succeeded: bool) -> ChannelRecord | None:
        """The call is over; on success its cost is owed. Returns the channel's new record
        (for the caller to store with the request's receipt) when it changed. A hold that
        succeeded stays under way until ``conclude``."""
        channel = self._by_id.get(ticket.channel_id)
        if channel is None or (succeeded and ticket.held):
            return None
        if channel.in_flight.pop(ticket.id, None) is None or not succeeded:
            return None
        return self._commit(channel, ticket.cost)

    def sign_accepted(self, ticket: Ticket) -> Voucher:
        """The voucher paying an accepted hold, for its verdict."""
        channel = self._by_id.get(ticket.channel_id)
        if channel is not None:
            channel.max_issued = max(channel.max_issued, ticket.amount)
        return sign_voucher(self.chain_id, ticket.channel_id, ticket.amount, self.payer.sign)

    def conclude(self, ticket: Ticket, *, accepted: bool, delivered: bool) -> ChannelRecord | None:
        """A hold's verdict was sent (``delivered``: the miner has it). Accepted, its cost is
        owed (the new record is returned, as ``settle`` does); rejected, it is no longer under
        way, or after ``HOLD_TIMEOUT_S`` if the miner may still count it."""
        channel = self._by_id.get(ticket.channel_id)
        if channel is None or ticket.id not in channel.in_flight:
            return None
        if not accepted and not delivered:
            asyncio.get_running_loop().call_later(
                HOLD_TIMEOUT_S, channel.in_flight.pop, ticket.id, None
            )
            return None
        del channel.in_flight[ticket.id]
        return self._commit(channel, ticket.cost) if accepted else None

    def _commit(self, channel: PaidChannel, cost: int) -> ChannelRecord:
        channel.record = replace(channel.record, committed=channel.record.committed + cost)
        return channel.record

    def adopt_served(self, ticket: Ticket, served: int) -> bool:
        """The miner says it served ``served`` on the channel; believe it only up to what
        this gateway signed, else retire the channel. True if the channel is usable.

        Calls still under way may be in ``served`` already or not: they are left out, so the
        developer never pays twice (if they were not, the next refusal says so again)."""
        channel = self._by_id.get(ticket.channel_id)
        if channel is None:
            return False
        if channel.record.committed < served <= channel.max_issued:
            under_way = sum(cost for _, cost in channel.in_flight.values())
            committed = max(channel.record.committed, served - under_way)
            channel.record = replace(channel.record, committed=committed)
            self.store.save_channel(channel.record)
            return True
        self.retire(ticket.channel_id)
        return False

    def retire(self, channel_id: bytes) -> None:
        """No more vouchers on this channel; it is closed once expired."""
        channel = self._by_id.get(channel_id)
        if channel is not None:
            key = (channel.payee, channel.record.netuid)
            if self._open.get(key) is channel:
                del self._open[key]

    # --- chain: open, top up, extend, close -------------------------------------------------

    async def _ensure(self, payee: bytes, netuid: int, cost: int) -> PaidChannel:
        key = (payee, netuid)
        channel = self._open.get(key)
        head = await self._get_head()
        if channel is not None and not self._needs_work(channel, head, cost):
            return channel
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            channel = self._open.get(key)
            if channel is None:
                return await self._open_channel(payee, netuid, max(self.deposit, cost))
            head = await self._get_head()
            if self._needs_work(channel, head, cost):
                await self._top_up(channel, *self._plan_top_up(channel, cost, head))
            return channel

    def _needs_work(self, channel: PaidChannel, head: int, cost: int) -> bool:
        short = compute_next_amount(channel) + cost > channel.record.deposit
        return short or head + self.renew_margin >= channel.record.expiry

    async def _open_channel(self, payee: bytes, netuid: int, deposit: int) -> PaidChannel:
        """Open a channel to ``payee``. Its record is written before the opening is sent: a
        gateway killed before the block finds the channel at its next start (``start``)."""
        expiry = await self._get_head() + self.channel_blocks
        body = OpenChannel(payee=Address(payee), netuid=netuid, deposit=deposit, expiry=expiry)
        written: list[ChannelRecord] = []

        def write_ahead(nonce: int) -> None:
            record = ChannelRecord(
                channel_id=compute_channel_id(Address(self.payer.public_key), nonce),
                payer=self.payer.address,
                payee=encode_address(payee),
                netuid=netuid,
                deposit=deposit,
                expiry=expiry,
                committed=0,
                closed=False,
                refund=0,
            )
            self.store.save_channel(record)
            written.append(record)

        def forget() -> None:  # refused at admission or failed in its block: no channel
            written[0] = replace(written[0], closed=True)
            self.store.save_channel(written[0])

        await self._send(body, "opening a channel", before_submit=write_ahead, on_refused=forget)
        (record,) = written
        log.info("opened channel 0x%s to %s", record.channel_id.hex(), record.payee)
        return self._add(record)

    def _plan_top_up(self, channel: PaidChannel, cost: int, head: int) -> tuple[int, int]:
        """(amount, new expiry or 0): a deposit if the next call does not fit, a later expiry
        if the channel nears its own."""
        missing = compute_next_amount(channel) + cost - channel.record.deposit
        amount = max(self.deposit, missing) if missing > 0 else 0
        renew = head + self.renew_margin >= channel.record.expiry
        return amount, head + self.channel_blocks if renew else 0

    async def _top_up(self, channel: PaidChannel, amount: int, expiry: int) -> None:
        if amount == 0 and expiry == 0:
            return
        body = TopUpChannel(channel_id=channel.channel_id, amount=amount, expiry=expiry)
        await self._send(body, "topping up a channel")
        channel.record = replace(
            channel.record,
            deposit=channel.record.deposit + amount,
            expiry=max(expiry, channel.record.expiry),
        )
        self.store.save_channel(channel.record)

    async def _top_up_soon(self, payee: bytes, netuid: int) -> None:
        """Less than a quarter of a deposit left: add one before a call has to wait for it."""
        channel = self._open.get((payee, netuid))
        if channel is None:
            return
        channel.topping_up = True
        try:
            async with self._locks.setdefault((payee, netuid), asyncio.Lock()):
                left = channel.record.deposit - compute_next_amount(channel)
                if left < self.deposit // 4 and self._open.get((payee, netuid)) is channel:
                    _, expiry = self._plan_top_up(channel, 0, await self._get_head())
                    await self._top_up(channel, self.deposit, expiry)
        finally:
            channel.topping_up = False

    async def extend(self, channel_id: bytes) -> None:
        """The miner found the channel too close to expiry: extend it now."""
        channel = self._by_id.get(channel_id)
        if channel is None:
            return
        async with self._locks.setdefault((channel.payee, channel.record.netuid), asyncio.Lock()):
            head = await self._get_head(fresh=True)
            if channel.record.expiry < head + self.channel_blocks:
                await self._top_up(channel, 0, head + self.channel_blocks)

    async def close_expired(self) -> list[ChannelRecord]:
        """Close every channel past its expiry with no call under way; returns them."""
        head = await self._get_head()
        closed = []
        for channel in list(self._by_id.values()):
            if head < channel.record.expiry or channel.in_flight:
                continue
            key = (channel.payee, channel.record.netuid)
            async with self._locks.setdefault(key, asyncio.Lock()):
                if head < channel.record.expiry or channel.in_flight:
                    continue
                self.retire(channel.channel_id)
                closed.append(await self._close(channel))
        return closed

    async def _close(self, channel: PaidChannel) -> ChannelRecord:
        info = await self.client.get_channel(channel.channel_id)
        if not info["closed"]:
            await self._send(CloseChannel(channel_id=channel.channel_id), "closing a channel")
            info = await self.client.get_channel(channel.channel_id)
        refund = int(info["deposit"]) - int(info["claimed"])
        channel.record = replace(channel.record, closed=True, refund=refund)
        self.store.save_channel(channel.record)
        del self._by_id[channel.channel_id]
        log.info("closed channel 0x%s: %d base units back", channel.channel_id.hex(), refund)
        return channel.record

    async def run(self, interval_s: float) -> None:
        """Close expired channels every ``interval_s`` until cancelled."""
        while True:
            try:
                await self.close_expired()
            except (ChainUnavailable, InsufficientFunds, NodeApiError, NodeUnreachable) as error:
                log.warning("channel maintenance: error[%d] %s", error.code, error.message)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # --- plumbing ------------------------------------------------------------------------------

    async def _send(
        self,
        body: object,
        what: str,
        *,
        before_submit: Callable[[int], None] = lambda nonce: None,
        on_refused: Callable[[], None] = lambda: None,
    ) -> int:
        """Sign with the coldkey's next nonce, submit, wait for the block; returns the nonce.
        ``before_submit`` gets the nonce before anything is sent; ``on_refused`` runs when the
        transaction is known never to take effect (refused at admission, or failed in its
        block), not when its fate is unknown (no answer). Only the nonce and the submission
        are serialized: waits overlap."""
        try:
            async with self._send_lock:
                account = await self.client.get_account(self.payer.address)
                nonce = int(account["next_nonce"])
                raw = make_transaction(
                    chain_id=self.chain_id,
                    public_key=self.payer.public_key,
                    sign=self.payer.sign,
                    nonce=nonce,
                    fee=self.min_fee,
                    body=body,
                )
                before_submit(nonce)
                try:
                    (tx_hash,) = await self.client.submit([raw])
                except NodeApiError:
                    on_refused()
                    raise
            status = await self.client.wait_for_transaction(tx_hash, timeout_seconds=60)
        except NodeApiError as error:
            raise _chain_error(what, error.code, error.message) from None
        except NodeUnreachable as error:
            raise ChainUnavailable(f"{what}: {error.message}") from None
        receipt = status["receipt"]
        if not receipt["success"]:
            on_refused()
            raise _chain_error(what, receipt["code"], receipt["message"])
        return nonce

    async def _get_head(self, *, fresh: bool = False) -> int:
        try:
            return await self.head.get(fresh=fresh)
        except PaymentError as error:
            raise ChainUnavailable(error.message) from None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)


def _chain_error(what: str, code: int, message: str) -> ChainUnavailable | InsufficientFunds:
    if code in FUNDS_CODES:
        return InsufficientFunds(f"{what}: the wallet cannot pay: {message}")
    return ChainUnavailable(f"{what} failed: error[{code}] {message}")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.warning("background channel work failed: %s", error)

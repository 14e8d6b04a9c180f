"""The buyer's payment channels: one per (payee, subnet), opened on the first call, topped up
and extended as calls need, and a voucher per call.

Shared by ``Client`` (buying from services) and ``MinerBuyer`` (an agent buying a subnet's
task from its miners). Vouchers follow the gateway's rule: the next voucher is for
``max(committed + costs under way, highest voucher under way) + cost``, so concurrent calls
are admitted in any order by the seller's credit rule (``agora.payments.books``), and a call
that fails is simply paid again by the next voucher (``release``); ``settle`` commits a call
once its answer is checked.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.payments.books import EXPIRY_MARGIN_BLOCKS
from agora.payments.head import HeadCache
from agora.protocol.address import Address
from agora.protocol.channels import (
    OpenChannel,
    TopUpChannel,
    Voucher,
    compute_channel_id,
    sign_voucher,
)
from agora.wallet.keys import Keypair


@dataclass(slots=True)
class BuyerChannel:
    channel_id: bytes
    payee: bytes
    netuid: int
    deposit: int
    expiry: int
    committed: int = 0
    max_issued: int = 0
    in_flight: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (amount, cost)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def compute_next_amount(self, cost: int) -> int:
        under_way = sum(c for _, c in self.in_flight.values())
        highest = max((amount for amount, _ in self.in_flight.values()), default=0)
        return max(self.committed + under_way, highest) + cost


@dataclass(frozen=True, slots=True)
class Ticket:
    """One call's payment, until it is settled or released."""

    id: int
    channel: BuyerChannel
    voucher: Voucher
    cost: int


class BuyerChannels:
    def __init__(
        self, node: NodeClient, payer: Keypair, *, deposit_calls: int, channel_blocks: int
    ) -> None:
        self.node = node
        self.payer = payer
        self.deposit_calls = deposit_calls
        self.channel_blocks = channel_blocks
        self.chain_id = ""
        self.channels: dict[tuple[bytes, int], BuyerChannel] = {}
        self.head = HeadCache(node)
        self._ids = itertools.count(1)
        self._open_lock = asyncio.Lock()

    async def get_chain_id(self) -> str:
        if not self.chain_id:
            self.chain_id = (await self.node.get_chain())["chain_id"]
        return self.chain_id

    async def open(self, payee: bytes, netuid: int, price: int) -> BuyerChannel:
        """The channel to ``payee`` on ``netuid``, opened for ``deposit_calls`` calls at
        ``price`` if there is none."""
        async with self._open_lock:
            channel = self.channels.get((payee, netuid))
            if channel is not None:
                return channel
            await self.get_chain_id()
            head = await self.head.get(fresh=True)
            nonce = (await self.node.get_account(self.payer.address))["next_nonce"]
            deposit = price * self.deposit_calls
            body = OpenChannel(
                payee=Address(payee),
                netuid=netuid,
                deposit=deposit,
                expiry=head + self.channel_blocks,
            )
            await submit_and_wait(self.node, self.payer, body, "opening a channel")
            channel = BuyerChannel(
                channel_id=compute_channel_id(Address(self.payer.public_key), nonce),
                payee=payee,
                netuid=netuid,
                deposit=deposit,
                expiry=head + self.channel_blocks,
            )
            self.channels[(payee, netuid)] = channel
            return channel

    async def issue(self, channel: BuyerChannel, cost: int) -> Ticket:
        """A voucher paying one more call of ``cost`` (the channel topped up if short)."""
        await self._ensure_funds(channel, channel.compute_next_amount(cost))
        amount = channel.compute_next_amount(cost)
        voucher = sign_voucher(self.chain_id, channel.channel_id, amount, self.payer.sign)
        ticket = Ticket(id=next(self._ids), channel=channel, voucher=voucher, cost=cost)
        channel.in_flight[ticket.id] = (amount, cost)
        channel.max_issued = max(channel.max_issued, amount)
        return ticket

    def settle(self, ticket: Ticket) -> None:
        """The call succeeded and its answer checked: its cost is owed."""
        if ticket.channel.in_flight.pop(ticket.id, None) is not None:
            ticket.channel.committed += ticket.cost

    def release(self, ticket: Ticket) -> None:
        """The call failed: nothing is owed, the next voucher pays the same amount again."""
        ticket.channel.in_flight.pop(ticket.id, None)

    def adopt_served(self, channel: BuyerChannel, served: object) -> bool:
        """The seller served more than was committed (an answer lost after it settled): adopt
        its figure if it is no more than a voucher this buyer signed."""
        if not isinstance(served, int) or not channel.committed < served <= channel.max_issued:
            return False
        channel.committed = served
        return True

    async def _ensure_funds(self, channel: BuyerChannel, amount: int) -> None:
        """Top the channel up when ``amount`` exceeds its deposit, and extend it before the
        seller's margin refuses it."""
        if not await self._needs_funds(channel, amount, fresh=False):
            return
        async with channel.lock:
            if not await self._needs_funds(channel, amount, fresh=True):
                return
            head = await self.head.get()
            short = amount > channel.deposit
            top_up = max(amount - channel.deposit, channel.deposit) if short else 0
            expiring = head + 3 * EXPIRY_MARGIN_BLOCKS >= channel.expiry
            expiry = head + self.channel_blocks if expiring else 0
            await submit_and_wait(
                self.node,
                self.payer,
                TopUpChannel(channel_id=channel.channel_id, amount=top_up, expiry=expiry),
                "topping up the channel",
            )
            channel.deposit += top_up
            channel.expiry = expiry or channel.expiry

    async def _needs_funds(self, channel: BuyerChannel, amount: int, *, fresh: bool) -> bool:
        head = await self.head.get(fresh=fresh)
        return amount > channel.deposit or head + 3 * EXPIRY_MARGIN_BLOCKS >= channel.expiry

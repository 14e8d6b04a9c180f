"""The seller's books: what it knows of each channel, the checks on a voucher, the credit rule.

The pure half of the payment gate (``gate`` is the half that reads the chain and claims): no
I/O, no clock, no ``await``, so a check and its bookkeeping are atomic per channel.

Checks. A voucher is admitted only if its channel pays this seller's hotkey on this subnet,
was opened by the caller, is open and not within ``EXPIRY_MARGIN_BLOCKS`` of its expiry
(``validate_channel``); the voucher is the payer's signature (``validate_signature``), within
the deposit, and leaves enough credit for the request (below); refused on credit, a voucher
not above what the seller already served is a replay (``VoucherReplayed``), any other is short
(``InsufficientPayment``).

Credit, and why a failed request costs nothing. Per channel the books keep ``consumed`` (base
units of work done: the chain's ``claimed`` when first seen, plus the cost of every settled
request), ``best`` (the highest voucher of a settled request: what a claim sends) and the
requests under way (``pending``: voucher and cost each). A request's voucher is kept only by
``settle``, after the work succeeded; a request that fails is released and its voucher
forgotten, so the payer's next voucher may carry the same cumulative amount again.

Requests on one channel may run concurrently and arrive in any order, and any of them may
fail. A voucher is admitted only if, with the new request added, every request under way
``j`` still satisfies ``max(v_j, best) >= consumed + sum of the costs of the requests under
way whose vouchers are <= v_j``. This holds whatever subset of them later succeeds, so the
best settled voucher always covers all the work done (``best >= consumed``): the seller is
never underpaid, and a payer that issues ``v = max(its settled total + its amounts under
way, its highest voucher under way) + cost`` (``gateway.channels.compute_next_amount``) is
never refused, whatever order its requests arrive and end in. A voucher sent twice leaves no
credit the second time: a replay.

Holds: credit until the payer's verdict. A request paid by a hold (``vouchers.Hold``: the
amount, unsigned) is admitted by the same rule, so it counts as under way like any other
until its payer's verdict: its work done, ``hold`` keeps it under way (``awaiting``) instead
of settling it; ``accept`` settles it with the voucher the verdict brings, ``reject``
forgets it, and one left without a verdict for ``HOLD_TIMEOUT_S`` is forgotten too
(``expire_holds``): the seller lost that work. Nothing else changes, so the credit rule still
holds whichever holds are accepted. What the seller risks is bounded per payer, over all its
channels: its holds under way and those it rejected or left without a verdict (``written_off``)
never pass ``credit`` base units; past that, its holds are refused (``CreditRefused``; with
``credit`` 0, always). A rejection does not give the credit back: a payer cannot have work
done for free again and again by rejecting it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from agora.node.wire import to_hex
from agora.payments.errors import (
    ChannelClosed,
    ChannelExpiring,
    CreditRefused,
    InsufficientPayment,
    InvalidVoucher,
    NotChannelPayer,
    TooManyPending,
    VoucherReplayed,
    WrongPayee,
)
from agora.payments.prices import Price
from agora.payments.vouchers import Hold
from agora.protocol.address import Address, encode_address
from agora.protocol.channels import Voucher, verify_voucher
from agora.protocol.errors import InvalidVoucherSignature

EXPIRY_MARGIN_BLOCKS = 10  # no request is admitted on a channel this close to its expiry
MAX_PENDING_PER_CHANNEL = 256
HOLD_TIMEOUT_S = 120.0  # a hold with its work done waits this long for its payer's verdict


@dataclass(frozen=True, slots=True)
class Reservation:
    """One admitted request: its voucher is kept by ``settle``, forgotten by ``release``; a
    hold's (``voucher`` None) waits for its payer's verdict once its work is done."""

    id: int
    channel_id: bytes
    cumulative: int
    cost: int
    voucher: Voucher | None  # None: a hold

    @property
    def held(self) -> bool:
        return self.voucher is None


@dataclass(slots=True)
class ChannelBook:
    """What the seller knows of one channel: the chain's record and the work done on it."""

    payer: bytes
    payee: bytes
    netuid: int
    deposit: int
    expiry: int
    closed: bool
    claimed: int  # on chain
    consumed: int  # base units of work done (the chain's claimed when first seen)
    best: Voucher | None = None  # the highest voucher of a settled request
    pending: dict[int, Reservation] = field(default_factory=dict)
    awaiting: dict[int, float] = field(default_factory=dict)  # holds done: id -> deadline
    read_at: float = 0.0  # monotonic time of the last read from the node
    claimed_at: float = 0.0  # monotonic time of the last claim (or first sight)

    @property
    def best_amount(self) -> int:
        return self.claimed if self.best is None else max(self.best.cumulative, self.claimed)

    @property
    def unclaimed(self) -> int:
        return self.best_amount - self.claimed


def is_admissible(book: ChannelBook, cumulative: int, cost: int) -> bool:
    """The credit rule of the module docstring, with a request of ``cost`` paid by a voucher
    at ``cumulative`` added to those under way. Requests whose vouchers are below the new one
    are unaffected by it, so only the new one and those at or above it are checked."""
    pending = [(r.cumulative, r.cost) for r in book.pending.values()]
    entries = sorted([*pending, (cumulative, cost)])
    floor = book.best_amount
    running = book.consumed
    index = 0
    while index < len(entries):
        amount = entries[index][0]
        while index < len(entries) and entries[index][0] == amount:  # ties count together
            running += entries[index][1]
            index += 1
        if amount >= cumulative and max(amount, floor) < running:
            return False
    return True


def compute_sufficient_amount(book: ChannelBook, cost: int) -> int:
    """A cumulative amount that is always admitted for a request of ``cost``: at or above
    every voucher under way, and covering the work done, the work under way and the request."""
    under_way = sum(r.cost for r in book.pending.values())
    highest = max((r.cumulative for r in book.pending.values()), default=0)
    return max(book.consumed + under_way + cost, highest + cost)


class PaymentBooks:
    """The books of one seller (a hotkey on a subnet, selling at ``price`` on ``chain_id``,
    risking at most ``credit`` base units of holds per payer): one ``ChannelBook`` per channel
    in ``channels``, and the work each payer's holds wrote off in ``written_off``."""

    def __init__(
        self, *, payee: bytes, netuid: int, price: Price, chain_id: str, credit: int = 0
    ) -> None:
        self.payee = payee
        self.netuid = netuid
        self.price = price
        self.chain_id = chain_id
        self.credit = credit
        self.written_off: dict[bytes, int] = {}  # payer -> cost of holds rejected or expired
        self.channels: dict[bytes, ChannelBook] = {}
        self._ids = itertools.count(1)

    def validate_channel(
        self, book: ChannelBook, channel_id: bytes, payer_hotkey: bytes, head: int
    ) -> None:
        name = to_hex(channel_id)
        if book.payee != self.payee or book.netuid != self.netuid:
            raise WrongPayee(
                f"channel {name} pays another miner (or on subnet {book.netuid}); this is "
                f"{encode_address(self.payee)} on subnet {self.netuid}"
            )
        if book.payer != payer_hotkey:
            raise NotChannelPayer(f"channel {name} was opened by another account than the caller")
        if book.closed:
            raise ChannelClosed(f"channel {name} is closed")
        if head + EXPIRY_MARGIN_BLOCKS >= book.expiry:
            raise ChannelExpiring(
                f"channel {name} expires at block {book.expiry} (this is block {head}); "
                f"extend it by more than {EXPIRY_MARGIN_BLOCKS} blocks"
            )

    def validate_signature(self, book: ChannelBook, voucher: Voucher) -> None:
        try:
            verify_voucher(self.chain_id, Address(book.payer), voucher)
        except InvalidVoucherSignature as error:
            raise InvalidVoucher(error.message) from None

    def admit(self, book: ChannelBook, payment: Voucher | Hold, cost: int) -> Reservation:
        """The checks on amounts and the bookkeeping, for a channel (and a voucher's
        signature) already checked."""
        if len(book.pending) >= MAX_PENDING_PER_CHANNEL:
            raise TooManyPending(f"{MAX_PENDING_PER_CHANNEL} requests are under way already")
        if isinstance(payment, Hold):
            self._check_credit(book.payer, cost)
        cumulative = payment.cumulative
        if not is_admissible(book, cumulative, cost):
            served = max(book.consumed, book.claimed)
            required = compute_sufficient_amount(book, cost)
            detail = f"(served: {served}, required: {required})"
            if cumulative <= served:
                raise VoucherReplayed(
                    f"this voucher is for {cumulative} base units; {served} were "
                    f"already served on the channel: send a newer voucher {detail}",
                    served,
                    required,
                )
            raise InsufficientPayment(
                f"this request costs {cost} base units ({self.price.to_text()}); the voucher "
                f"leaves too little credit {detail}",
                served,
                required,
            )
        reservation = Reservation(
            id=next(self._ids),
            channel_id=payment.channel_id,
            cumulative=cumulative,
            cost=cost,
            voucher=payment if isinstance(payment, Voucher) else None,
        )
        book.pending[reservation.id] = reservation
        return reservation

    def _check_credit(self, payer: bytes, cost: int) -> None:
        held = sum(
            r.cost
            for other in self.channels.values()
            if other.payer == payer
            for r in other.pending.values()
            if r.held
        )
        lost = self.written_off.get(payer, 0)
        if held + lost + cost > self.credit:
            raise CreditRefused(
                f"this seller risks at most {self.credit} base units of unpaid work per payer; "
                f"yours: {held} on credit now, {lost} rejected or never resolved, and this "
                f"request costs {cost}: pay with a voucher"
            )

    def settle(self, reservation: Reservation) -> None:
        """The work succeeded: its cost is earned and its voucher may be claimed."""
        book = self.channels.get(reservation.channel_id)
        if book is None or book.pending.pop(reservation.id, None) is None:
            return
        book.consumed += reservation.cost
        self._keep_best(book, reservation.voucher)

    def release(self, reservation: Reservation) -> None:
        """The work failed: the reservation is forgotten (nothing is earned). A hold whose
        work is done waits for its verdict instead."""
        book = self.channels.get(reservation.channel_id)
        if book is not None and reservation.id not in book.awaiting:
            book.pending.pop(reservation.id, None)

    def hold(self, reservation: Reservation, deadline: float) -> None:
        """A hold's work succeeded: it stays under way until its verdict, or ``deadline``."""
        book = self.channels.get(reservation.channel_id)
        if book is not None and reservation.id in book.pending:
            book.awaiting[reservation.id] = deadline

    def accept(self, book: ChannelBook, voucher: Voucher) -> bool:
        """The payer accepted the hold of ``voucher``'s amount (a voucher whose channel and
        signature are checked): its cost is earned, and the voucher may be claimed. A voucher
        matching no hold (one forgotten by a restart, or expired) is still kept if it is the
        channel's best. Returns whether a hold matched."""
        hold = self._find_awaiting(book, voucher.cumulative)
        if hold is not None:
            del book.pending[hold.id], book.awaiting[hold.id]
            book.consumed += hold.cost
        self._keep_best(book, voucher)
        return hold is not None

    def reject(self, book: ChannelBook, cumulative: int) -> bool:
        """The payer rejected the hold of that amount: it is forgotten, unpaid."""
        hold = self._find_awaiting(book, cumulative)
        if hold is not None:
            del book.pending[hold.id], book.awaiting[hold.id]
            self._write_off(book.payer, hold.cost)
        return hold is not None

    def expire_holds(self, now: float) -> list[Reservation]:
        """Forget every hold still without a verdict at its deadline; returns them."""
        expired = []
        for book in self.channels.values():
            for hold_id, deadline in list(book.awaiting.items()):
                if deadline <= now:
                    del book.awaiting[hold_id]
                    expired.append(book.pending.pop(hold_id))
                    self._write_off(book.payer, expired[-1].cost)
        return expired

    def _write_off(self, payer: bytes, cost: int) -> None:
        self.written_off[payer] = self.written_off.get(payer, 0) + cost

    def _find_awaiting(self, book: ChannelBook, cumulative: int) -> Reservation | None:
        for hold_id in book.awaiting:
            if book.pending[hold_id].cumulative == cumulative:
                return book.pending[hold_id]
        return None

    def _keep_best(self, book: ChannelBook, voucher: Voucher | None) -> None:
        if voucher is not None and voucher.cumulative > book.best_amount:
            book.best = voucher

    def get_earned(self) -> dict[str, int]:
        """Totals over the channels: served (settled work), claimable, claimed, and held
        (work done on credit, waiting for its verdict)."""
        return {
            "served": sum(book.consumed for book in self.channels.values()),
            "claimable": sum(book.best_amount for book in self.channels.values()),
            "claimed": sum(book.claimed for book in self.channels.values()),
            "held": sum(
                book.pending[hold_id].cost
                for book in self.channels.values()
                for hold_id in book.awaiting
            ),
        }

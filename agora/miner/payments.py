"""The miner's payment gate: a voucher must cover the price before the work, and becomes
claimable only once the work succeeded.

Prices. A miner sells its task at ``Price``: base units per unit, the unit being one of
- ``request``: a flat amount per request;
- ``item``: per input item (an embedding request's texts; a chat request is one item);
- ``1k-tokens``: per thousand tokens, *estimated from the request alone* so that payer and
  miner compute the same number before any work: one token per ``CHARS_PER_TOKEN``
  characters of input (rounded up), plus ``max_tokens`` for a chat request.
``compute_cost(task_kind, request)`` is that number, in base units (rounded up). The price is
published on chain in the endpoint's fragment, ``http://h:p#price=1000000&per=request``
(``Price.attach``; ``parse_endpoint`` reads it back): a fragment is never sent to a server.

Payments. A paying caller puts ``{"voucher": {"channel_id": "0x..", "cumulative": N,
"signature": "0x.."}}`` under the request body's ``"payment"`` key (``make_payment``). The
voucher is the payer's signature of the channel's cumulative amount (``protocol.channels``).
``reserve`` checks, reading the channel through the node API (cached): the channel exists,
pays this miner's hotkey on this subnet, was opened by the caller, is open and not within
``EXPIRY_MARGIN_BLOCKS`` of its expiry; the voucher is the payer's signature, within the
deposit, and leaves enough credit for the request (below); refused on credit, a voucher not
above what the miner already served is a replay (``VoucherReplayed``), any other is short
(``InsufficientPayment``).

Credit, and why a failed request costs nothing. Per channel the gate keeps ``consumed`` (base
units of work done: the chain's ``claimed`` when first seen, plus the cost of every settled
request), ``best`` (the highest voucher of a settled request: what a claim sends) and the
requests under way (``pending``: voucher and cost each). A request's voucher is kept only by
``settle``, after the work succeeded; a request that fails is released and its voucher
forgotten, so the payer's next voucher may carry the same cumulative amount again.

Requests on one channel may run concurrently and arrive in any order, and any of them may
fail. The gate admits a voucher only if, with the new request added, every request under way
``j`` still satisfies ``max(v_j, best) >= consumed + sum of the costs of the requests under
way whose vouchers are <= v_j``. This holds whatever subset of them later succeeds, so the
best settled voucher always covers all the work done (``best >= consumed``): the miner is
never underpaid, and a payer that issues ``v = max(its settled total + its amounts under
way, its highest voucher under way) + cost`` (``gateway.channels.compute_next_amount``) is
never refused, whatever order its requests arrive and end in. A voucher sent twice leaves no
credit the second time: a replay.

Claims. ``run`` claims the best voucher of each channel every ``claim_interval_s``, and at
every poll once the channel is within ``2 * EXPIRY_MARGIN_BLOCKS`` of its expiry (requests
stop being admitted at ``EXPIRY_MARGIN_BLOCKS``), so the miner is paid before the payer may
close; ``claim_all`` claims everything (at shutdown). A claim is one transaction for any
number of requests, signed and paid by the miner's hotkey.

Refusals are ``PaymentError`` subclasses with codes 3520-3539; most answer HTTP 402.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlencode

from agora.client.client import NodeApiError, NodeClient, NodeUnreachable
from agora.client.participant import TransactionFailed, submit_and_wait
from agora.errors import AgoraError
from agora.node.wire import to_hex, voucher_from_json, voucher_to_json
from agora.protocol.address import Address, decode_address
from agora.protocol.channels import ClaimChannel, Voucher, verify_voucher
from agora.protocol.errors import InvalidVoucherSignature, ProtocolError
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.miner.payments")

UNITS = ("request", "item", "1k-tokens")
CHARS_PER_TOKEN = 4
EXPIRY_MARGIN_BLOCKS = 10  # no request is admitted on a channel this close to its expiry
MAX_PENDING_PER_CHANNEL = 256
NODE_NOT_FOUND = 3004  # the node API's code for an unknown id
_SERVED = re.compile(r"\(served: (\d+), required: (\d+)\)")


# --- errors (3520-3539) ----------------------------------------------------------------------


class PaymentError(AgoraError):
    """Base of the payment gate's refusals."""

    code = 3520
    http_status = 402


class PaymentRequired(PaymentError):
    """The caller has no stake on the subnet and attached no ``payment``: pay through a
    payment channel to this miner (see its published price)."""

    code = 3521


class MalformedPayment(PaymentError):
    """``payment`` is not ``{"voucher": {"channel_id", "cumulative", "signature"}}``."""

    code = 3522
    http_status = 400


class UnknownChannel(PaymentError):
    """The voucher names a channel the chain does not know (not opened, or not yet in a
    block the miner's node has applied)."""

    code = 3523


class WrongPayee(PaymentError):
    """The channel pays another hotkey, or a hotkey on another subnet, than this miner."""

    code = 3524


class NotChannelPayer(PaymentError):
    """The caller is not the account that opened the channel: only the payer spends it."""

    code = 3525
    http_status = 403


class ChannelClosed(PaymentError):
    """The channel is closed on chain."""

    code = 3526


class ChannelExpiring(PaymentError):
    """The channel expires within ``EXPIRY_MARGIN_BLOCKS``: extend it (a top-up with a later
    expiry) or open another."""

    code = 3527


class InvalidVoucher(PaymentError):
    """The voucher is not signed by the channel's payer for this chain, channel and amount:
    forged, altered, or taken from another channel."""

    code = 3528


class InsufficientPayment(PaymentError):
    """The voucher leaves less credit than the request costs. The message ends with
    ``(served: S, required: R)``: the base units this miner served on the channel, and the
    least cumulative amount that pays for this request."""

    code = 3529


class VoucherReplayed(PaymentError):
    """The voucher leaves no credit and its amount is not above what this miner already
    served on the channel: an old voucher sent again. The message ends with
    ``(served: S, required: R)``."""

    code = 3530


class VoucherExceedsDeposit(PaymentError):
    """The voucher is for more than the channel's deposit: top the channel up first."""

    code = 3531


class ChainUnavailable(PaymentError):
    """The miner cannot read the channel from its node right now; retry later."""

    code = 3532
    http_status = 503


class TooManyPending(PaymentError):
    """The channel already has ``MAX_PENDING_PER_CHANNEL`` requests under way."""

    code = 3533
    http_status = 429


class InvalidPrice(PaymentError):
    """A price that is not ``AMOUNT/UNIT`` with a positive AGR amount (at most 9 decimals)
    and a unit among ``request``, ``item``, ``1k-tokens``."""

    code = 3534
    http_status = 400


# --- prices ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """``amount`` base units per ``per`` (one of ``UNITS``)."""

    amount: int
    per: str = "request"

    def __post_init__(self) -> None:
        if self.per not in UNITS:
            raise InvalidPrice(f"a price is per {', '.join(UNITS)}; not {self.per!r}")
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise InvalidPrice("a price is a positive number of base units")

    @classmethod
    def parse(cls, text: str) -> Price:
        """``"0.001/request"`` (AGR per unit); a bare amount is per request."""
        amount_text, _, unit = text.strip().partition("/")
        try:
            value = Decimal(amount_text.strip())
        except InvalidOperation:
            raise InvalidPrice(f"{text!r}: write a price like 0.001/request") from None
        base_units = value * BASE_UNITS_PER_AGR
        if not value.is_finite() or base_units != base_units.to_integral_value():
            raise InvalidPrice(f"{text!r}: AGR amounts have at most 9 decimals")
        return cls(amount=int(base_units), per=unit.strip() or "request")

    def to_text(self) -> str:
        return f"{format_agr_amount(self.amount)}/{self.per}"

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "per": self.per, "text": self.to_text()}

    def attach(self, url: str) -> str:
        """The endpoint to publish: ``url`` with the price in its fragment."""
        return url.split("#", 1)[0] + "#" + urlencode({"price": self.amount, "per": self.per})

    def compute_cost(self, task_kind: str, request: Any) -> int:
        """Base units the request costs at this price (rounded up); never raises."""
        if self.per == "request":
            return self.amount
        if self.per == "item":
            return self.amount * count_items(task_kind, request)
        tokens = estimate_tokens(task_kind, request)
        return -(-self.amount * tokens // 1000)


def parse_endpoint(endpoint: str) -> tuple[str, Price | None]:
    """A published endpoint as (the URL to call, its price, or None if it sells nothing)."""
    url, _, fragment = endpoint.partition("#")
    if not fragment:
        return url, None
    fields = parse_qs(fragment)
    try:
        amount = int(fields["price"][0])
        per = fields.get("per", ["request"])[0]
        return url, Price(amount=amount, per=per)
    except (KeyError, ValueError, InvalidPrice):
        return url, None


def format_agr_amount(base_units: int) -> str:
    """``1_500_000`` -> ``"0.0015"`` (AGR, exact)."""
    whole, fraction = divmod(base_units, BASE_UNITS_PER_AGR)
    return f"{whole}.{fraction:09d}".rstrip("0").rstrip(".")


def count_items(task_kind: str, request: Any) -> int:
    if task_kind == "embedding" and isinstance(request, dict):
        texts = request.get("texts")
        if isinstance(texts, list) and texts:
            return len(texts)
    return 1


def estimate_tokens(task_kind: str, request: Any) -> int:
    """The billing estimate of ``1k-tokens`` prices (see the module docstring)."""
    if not isinstance(request, dict):
        return 1
    characters = 0
    extra = 0
    if task_kind == "embedding":
        texts = request.get("texts")
        if isinstance(texts, list):
            characters = sum(len(t) for t in texts if isinstance(t, str))
    else:
        messages = request.get("messages")
        if isinstance(messages, list):
            characters = sum(
                len(m["content"])
                for m in messages
                if isinstance(m, dict) and isinstance(m.get("content"), str)
            )
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
            extra = max_tokens
    return max(1, -(-characters // CHARS_PER_TOKEN) + extra)


# --- payments on the wire --------------------------------------------------------------------


def make_payment(voucher: Voucher) -> dict[str, Any]:
    """The ``payment`` object a caller attaches to a request."""
    return {"voucher": voucher_to_json(voucher)}


def parse_payment(payment: Any) -> Voucher:
    if not isinstance(payment, dict) or "voucher" not in payment:
        raise MalformedPayment('payment must be {"voucher": {...}}')
    try:
        return voucher_from_json(payment["voucher"], "payment.voucher")
    except ProtocolError as error:
        raise MalformedPayment(f"payment.voucher: {error.message}") from None


def parse_served(message: str) -> tuple[int, int] | None:
    """(served, required) from an ``InsufficientPayment``/``VoucherReplayed`` message."""
    match = _SERVED.search(message)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


# --- the chain's head ------------------------------------------------------------------------


class HeadCache:
    """The chain's head height through the node API, read at most every ``max_age_s``. A
    reading at most ``stale_s`` old is answered at once while a fresh one is fetched in the
    background: a request waits on the node only for the first reading or after a long idle.
    Margins around expiries are many blocks wide, so a head a few seconds old is enough."""

    def __init__(
        self, client: NodeClient, *, max_age_s: float = 1.0, stale_s: float = 10.0
    ) -> None:
        self.client = client
        self.max_age_s = max_age_s
        self.stale_s = stale_s
        self._height = -1
        self._read_at = float("-inf")
        self._reading: asyncio.Task[None] | None = None

    async def get(self, *, fresh: bool = False) -> int:
        """The head height; ``fresh`` waits for a reading younger than ``max_age_s``."""
        age = asyncio.get_running_loop().time() - self._read_at
        if age <= self.max_age_s:
            return self._height
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read())
        if age <= self.stale_s and not fresh:
            return self._height
        await asyncio.shield(self._reading)
        return self._height

    async def _read(self) -> None:
        try:
            head = await self.client.get_head()
        except (NodeUnreachable, NodeApiError) as error:
            if asyncio.get_running_loop().time() - self._read_at > self.stale_s:
                raise ChainUnavailable(f"cannot read the chain's head: {error.message}") from None
            log.warning("payments: the head was not refreshed: %s", error.message)
            return
        self._height, self._read_at = int(head["height"]), asyncio.get_running_loop().time()


# --- the gate --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reservation:
    """One admitted request: its voucher is kept by ``settle``, forgotten by ``release``."""

    id: int
    channel_id: bytes
    voucher: Voucher
    cost: int


@dataclass(slots=True)
class ChannelBook:
    """What the gate knows of one channel: the chain's record and the work done on it."""

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
    pending = [(r.voucher.cumulative, r.cost) for r in book.pending.values()]
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
    highest = max((r.voucher.cumulative for r in book.pending.values()), default=0)
    return max(book.consumed + under_way + cost, highest + cost)


class PaymentGate:
    """Checks vouchers for one miner hotkey on one subnet, and claims what they earned."""

    def __init__(
        self,
        *,
        client: NodeClient,
        hotkey: Keypair,
        netuid: int,
        task_kind: str,
        price: Price,
        chain_id: str,
        claim_interval_s: float = 60.0,
        poll_interval_s: float = 1.0,
        head_max_age_s: float = 1.0,
        head_stale_s: float = 5.0,
        channel_max_age_s: float = 10.0,
    ) -> None:
        self.client = client
        self.hotkey = hotkey
        self.netuid = netuid
        self.task_kind = task_kind
        self.price = price
        self.chain_id = chain_id
        self.claim_interval_s = claim_interval_s
        self.poll_interval_s = poll_interval_s
        self.head_max_age_s = head_max_age_s
        self.channel_max_age_s = channel_max_age_s
        self.channels: dict[bytes, ChannelBook] = {}
        self._ids = itertools.count(1)
        self.head = HeadCache(
            client, max_age_s=head_max_age_s, stale_s=max(head_stale_s, head_max_age_s)
        )
        self._channel_locks: dict[bytes, asyncio.Lock] = {}
        self._claim_lock = asyncio.Lock()

    # --- admitting a request ---------------------------------------------------------------

    async def reserve(
        self, payer_hotkey: bytes, payment: dict[str, Any] | None, request: dict[str, Any]
    ) -> Reservation:
        """Admit a request paid by ``payment``, or raise the ``PaymentError`` saying why not."""
        if payment is None:
            raise PaymentRequired(
                f"this miner sells {self.task_kind} at {self.price.to_text()}: attach a "
                "payment-channel voucher under 'payment' (or use `agora gateway`)"
            )
        voucher = parse_payment(payment)
        book = await self._get_book(voucher.channel_id)
        head = await self._get_head()
        if self._may_have_changed(book, head):
            book = await self._read_channel(voucher.channel_id)
        self.validate_channel(book, voucher.channel_id, payer_hotkey, head)
        self.validate_signature(book, voucher)
        if voucher.cumulative > book.deposit:
            book = await self._read_channel(voucher.channel_id)  # topped up since?
            if voucher.cumulative > book.deposit:
                raise VoucherExceedsDeposit(
                    f"the voucher is for {voucher.cumulative} base units; the deposit is "
                    f"{book.deposit}"
                )
        cost = self.price.compute_cost(self.task_kind, request)
        return self.admit(book, voucher, cost)

    def _may_have_changed(self, book: ChannelBook, head: int) -> bool:
        """The cache says the channel is expiring: the payer may have extended it since."""
        stale = asyncio.get_running_loop().time() - book.read_at > self.head_max_age_s
        return stale and not book.closed and head + EXPIRY_MARGIN_BLOCKS >= book.expiry

    def validate_channel(
        self, book: ChannelBook, channel_id: bytes, payer_hotkey: bytes, head: int
    ) -> None:
        name = to_hex(channel_id)
        if book.payee != self.hotkey.public_key or book.netuid != self.netuid:
            raise WrongPayee(
                f"channel {name} pays another miner (or on subnet {book.netuid}); this is "
                f"{self.hotkey.address} on subnet {self.netuid}"
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

    def admit(self, book: ChannelBook, voucher: Voucher, cost: int) -> Reservation:
        """The checks on amounts and the bookkeeping, for a channel and voucher already checked:
        no I/O and no ``await``, so atomic per channel."""
        if len(book.pending) >= MAX_PENDING_PER_CHANNEL:
            raise TooManyPending(f"{MAX_PENDING_PER_CHANNEL} requests are under way already")
        if not is_admissible(book, voucher.cumulative, cost):
            served = max(book.consumed, book.claimed)
            detail = f"(served: {served}, required: {compute_sufficient_amount(book, cost)})"
            if voucher.cumulative <= served:
                raise VoucherReplayed(
                    f"this voucher is for {voucher.cumulative} base units; {served} were "
                    f"already served on the channel: send a newer voucher {detail}"
                )
            raise InsufficientPayment(
                f"this request costs {cost} base units ({self.price.to_text()}); the voucher "
                f"leaves too little credit {detail}"
            )
        reservation = Reservation(
            id=next(self._ids), channel_id=voucher.channel_id, voucher=voucher, cost=cost
        )
        book.pending[reservation.id] = reservation
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

    def settle(self, reservation: Reservation) -> None:
        """The work succeeded: its cost is earned and its voucher may be claimed."""
        book = self.channels.get(reservation.channel_id)
        if book is None or book.pending.pop(reservation.id, None) is None:
            return
        book.consumed += reservation.cost
        if reservation.voucher.cumulative > book.best_amount:
            book.best = reservation.voucher

    def release(self, reservation: Reservation) -> None:
        """The work failed: the reservation is forgotten (nothing is earned)."""
        book = self.channels.get(reservation.channel_id)
        if book is not None:
            book.pending.pop(reservation.id, None)

    # --- chain reads -----------------------------------------------------------------------

    async def _get_head(self, *, fresh: bool = False) -> int:
        return await self.head.get(fresh=fresh)

    async def _get_book(self, channel_id: bytes) -> ChannelBook:
        book = self.channels.get(channel_id)
        if book is not None:
            return book
        return await self._read_channel(channel_id)

    async def _read_channel(self, channel_id: bytes) -> ChannelBook:
        """Read the channel from the node and merge it into what the gate knows."""
        lock = self._channel_locks.setdefault(channel_id, asyncio.Lock())
        async with lock:
            try:
                info = await self.client.get_channel(channel_id)
            except NodeApiError as error:
                if error.code == NODE_NOT_FOUND:
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
            try:
                await self.claim_due()
            except AgoraError as error:
                log.warning("payments: error[%d] %s", error.code, error.message)
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval_s)
            except TimeoutError:
                pass

    async def claim_due(self) -> list[bytes]:
        """Claim each channel whose last claim is ``claim_interval_s`` old, or that nears its
        expiry; returns the ids claimed."""
        head = await self._get_head(fresh=True)
        now = asyncio.get_running_loop().time()
        due = []
        for channel_id, book in list(self.channels.items()):
            if now - book.read_at > self.channel_max_age_s and not book.closed:
                try:
                    book = await self._read_channel(channel_id)
                except PaymentError as error:
                    log.warning("payments: channel %s: %s", to_hex(channel_id), error.message)
            if book.closed and not book.pending:
                del self.channels[channel_id]  # nothing more can come of it
                continue
            if book.unclaimed <= 0 or book.closed:
                continue
            near_expiry = head + 2 * EXPIRY_MARGIN_BLOCKS >= book.expiry
            if near_expiry or now - book.claimed_at >= self.claim_interval_s:
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
                    self.client, self.hotkey, ClaimChannel(voucher=voucher), "claiming"
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

    def get_earned(self) -> dict[str, int]:
        """Totals over the channels: served (settled work), claimable and claimed."""
        return {
            "served": sum(book.consumed for book in self.channels.values()),
            "claimable": sum(book.best_amount for book in self.channels.values()),
            "claimed": sum(book.claimed for book in self.channels.values()),
        }

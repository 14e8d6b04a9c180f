"""Payment channels: pay a miner per request, settle on chain in one transaction.

A payer (any account, a developer or its gateway) opens a channel to a payee hotkey that
serves a subnet (a neuron of it, or the owner of a service listed on it: ``services.py``),
locking a deposit until an expiry block. With each request the payer hands
the payee a voucher: the channel id and the *cumulative* amount paid so far, signed by the
payer. The payee checks it before serving and claims the latest one whenever it likes: one
transaction settles any number of requests, and an older voucher is worth nothing once a
newer one is claimed, so nothing is paid twice.

Each claim pays the payee what is new since the last claim, less the protocol fee share
``channel_fee_u16``. Of that fee, ``channel_fee_validators_u16`` accrues in the subnet's fee
pool, paid to its validators with their dividends at the subnet's next epoch
(``emission.process_channel_fees``); the rest goes to the treasury. The payee is paid on the
hotkey's own account, which signs the claims and pays their fees; when the payee serves a
model with lineage, ``data_royalty_u16`` of its part goes to the model's data contributors
(``data.process_model_royalties``).

Expiry and closing. ``expiry`` is a block height: from that block on, the payer may close the
channel and take back ``deposit - claimed``. Claims stay valid until the channel is closed,
even after expiry: the payee's guarantee is to claim before ``expiry`` (no close can come
first); after it, a claim still wins if it is ordered before the payer's close. A closed
channel stays as a tombstone, so its id can never be reused or claimed again.

Vouchers are signed over ``voucher_message``: the tag ``AGV1`` (transactions begin with
``AGT1``, so neither signature can pass for the other), the chain id (a voucher is only good
on its own chain), the channel id and the cumulative amount. A voucher relabelled onto
another channel fails the signature check, exactly like a forged one: the chain cannot tell
the two apart without searching the payer's other channels, so both get code 2306.

Its errors are in errors.py (codes 2300-2349, the payment-channel range).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NewType

from agora.protocol.accounts import MAX_AMOUNT, decrease_balance, increase_balance
from agora.protocol.address import Address
from agora.protocol.codec import (
    ADDRESS,
    BOOL,
    HASH,
    SIGNATURE,
    U16,
    U64,
    Record,
    decode_field,
    encode_field,
)
from agora.protocol.data import process_model_royalties
from agora.protocol.errors import (
    AmountOutOfRange,
    ChannelClosed,
    ChannelNotExpired,
    ChannelNotFound,
    InvalidChannelExpiry,
    InvalidVoucherSignature,
    InvariantViolated,
    NotChannelPayee,
    NotChannelPayer,
    PayeeNotRegistered,
    VoucherExceedsDeposit,
    VoucherNotNewer,
)
from agora.protocol.kinds import (
    CHAIN_ID_FIELD,
    BlockContext,
    Transaction,
    TransactionKind,
    is_valid_signature,
)
from agora.protocol.params import U16_ONE
from agora.protocol.services import is_service_payee
from agora.protocol.state import State
from agora.protocol.subnets import get_subnet, get_uid

ChannelId = NewType("ChannelId", bytes)

CHANNELS_TAG = 40
CHANNEL_FEE_POOLS_TAG = 41
VOUCHER_MAGIC = b"AGV1"
_CHANNEL_ID_TAG = b"agora/channel-id/v1"


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    payer: Address
    payee: Address  # hotkey
    netuid: int  # the subnet the payee serves; its validators get the fee share
    deposit: int  # base units locked, in total since the open
    claimed: int  # base units claimed so far (payee's part and fee together)
    expiry: int  # block height from which the payer may close
    closed: bool


CHANNEL_RECORD: Record[Channel] = Record(
    Channel,
    (
        ("payer", ADDRESS),
        ("payee", ADDRESS),
        ("netuid", U16),
        ("deposit", U64),
        ("claimed", U64),
        ("expiry", U64),
        ("closed", BOOL),
    ),
)


def register_tables(state: State) -> None:
    state.add_table(
        CHANNELS_TAG,
        "channels",
        (bytes, lambda raw: ChannelId(bytes(raw))),
        (CHANNEL_RECORD.encode, CHANNEL_RECORD.decode),
    )
    state.add_table(
        CHANNEL_FEE_POOLS_TAG,
        "channel_fee_pools",
        (lambda netuid: netuid.to_bytes(2, "big"), lambda raw: int.from_bytes(raw, "big")),
        (lambda amount: encode_field(U64, amount), lambda raw: decode_field(U64, raw)),
    )


def compute_channel_id(payer: Address, nonce: int) -> ChannelId:
    """The id of the channel opened by ``payer``'s transaction with ``nonce``: unique, since a
    nonce is used once, and known to the payer before the transaction is even sent."""
    material = _CHANNEL_ID_TAG + bytes(payer) + nonce.to_bytes(8, "big")
    return ChannelId(hashlib.blake2b(material, digest_size=32).digest())


def get_channel(state: State, channel_id: bytes) -> Channel:
    channel: Channel | None = state.tables["channels"].get(channel_id, None)
    if channel is None:
        raise ChannelNotFound(f"no channel 0x{channel_id.hex()}")
    return channel


def get_channels(
    state: State, *, payer: Address | None = None, payee: Address | None = None
) -> list[tuple[ChannelId, Channel]]:
    """Channels of a payer and/or a payee, closed ones included, in id order."""
    return sorted(
        (channel_id, channel)
        for channel_id, channel in state.tables["channels"].items()
        if (payer is None or channel.payer == payer) and (payee is None or channel.payee == payee)
    )


def set_channel(state: State, channel_id: bytes, channel: Channel) -> None:
    state.tables["channels"].set(ChannelId(channel_id), channel)


def get_fee_pool(state: State, netuid: int) -> int:
    """Validators' fee share accrued on the subnet since its last epoch."""
    amount: int = state.tables["channel_fee_pools"].get(netuid, 0)
    return amount


def set_fee_pool(state: State, netuid: int, amount: int) -> None:
    if amount == 0:
        state.tables["channel_fee_pools"].delete(netuid)
    else:
        state.tables["channel_fee_pools"].set(netuid, amount)


# --- vouchers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Voucher:
    """The payer's promise: ``cumulative`` base units in total on ``channel_id``."""

    channel_id: bytes
    cumulative: int
    signature: bytes


VOUCHER_RECORD: Record[Voucher] = Record(
    Voucher, (("channel_id", HASH), ("cumulative", U64), ("signature", SIGNATURE))
)


def voucher_message(chain_id: str, channel_id: bytes, cumulative: int) -> bytes:
    """The bytes a payer signs for a voucher."""
    out = bytearray(VOUCHER_MAGIC)
    CHAIN_ID_FIELD.write(out, chain_id)
    HASH.write(out, channel_id)
    U64.write(out, cumulative)
    return bytes(out)


def sign_voucher(
    chain_id: str, channel_id: bytes, cumulative: int, sign: Callable[[bytes], bytes]
) -> Voucher:
    """A voucher signed by ``sign``, the payer key's detached signer."""
    signature = sign(voucher_message(chain_id, channel_id, cumulative))
    return Voucher(channel_id=channel_id, cumulative=cumulative, signature=signature)


def verify_voucher(chain_id: str, payer: Address, voucher: Voucher) -> None:
    """Raise InvalidVoucherSignature unless ``payer`` signed ``voucher`` for ``chain_id``."""
    message = voucher_message(chain_id, voucher.channel_id, voucher.cumulative)
    if not is_valid_signature(payer, message, voucher.signature):
        raise InvalidVoucherSignature(
            f"the voucher for channel 0x{voucher.channel_id.hex()} is not signed by its payer "
            "for this chain and amount (forged, altered, or signed for another channel)"
        )


# --- open_channel ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenChannel:
    payee: Address  # hotkey
    netuid: int
    deposit: int
    expiry: int  # block height


def validate_open_channel(tx: Transaction) -> None:
    body: OpenChannel = tx.body
    if body.deposit <= 0:
        raise AmountOutOfRange("a channel's deposit must be positive")


def process_open_channel(state: State, tx: Transaction, context: BlockContext) -> None:
    body: OpenChannel = tx.body
    get_subnet(state, body.netuid)
    if get_uid(state, body.netuid, body.payee) is None and not is_service_payee(
        state, body.payee, body.netuid
    ):
        raise PayeeNotRegistered(
            f"the payee hotkey is not registered on subnet {body.netuid} and lists no service "
            "there; open channels to a neuron or a service of the subnet you buy from"
        )
    if body.expiry <= context.height:
        raise InvalidChannelExpiry(
            f"expiry {body.expiry} is not after the current block {context.height}"
        )
    decrease_balance(state, tx.sender, body.deposit)
    channel = Channel(
        payer=tx.sender,
        payee=body.payee,
        netuid=body.netuid,
        deposit=body.deposit,
        claimed=0,
        expiry=body.expiry,
        closed=False,
    )
    set_channel(state, compute_channel_id(tx.sender, tx.nonce), channel)


# --- top_up_channel ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TopUpChannel:
    channel_id: bytes
    amount: int  # added to the deposit; may be 0 when only the expiry moves
    expiry: int  # the new expiry block, at least the current one; 0 keeps it


def validate_top_up_channel(tx: Transaction) -> None:
    body: TopUpChannel = tx.body
    if body.amount == 0 and body.expiry == 0:
        raise AmountOutOfRange("a top-up must add to the deposit or extend the expiry")


def _get_payers_open_channel(state: State, tx: Transaction, channel_id: bytes) -> Channel:
    channel = get_channel(state, channel_id)
    if channel.payer != tx.sender:
        raise NotChannelPayer("only the account that opened this channel may do this")
    if channel.closed:
        raise ChannelClosed(f"channel 0x{channel_id.hex()} is closed")
    return channel


def process_top_up_channel(state: State, tx: Transaction, context: BlockContext) -> None:
    body: TopUpChannel = tx.body
    channel = _get_payers_open_channel(state, tx, body.channel_id)
    expiry = channel.expiry if body.expiry == 0 else body.expiry
    if expiry < channel.expiry:
        raise InvalidChannelExpiry(
            f"the expiry can only be extended: {body.expiry} is before {channel.expiry}"
        )
    if channel.deposit + body.amount > MAX_AMOUNT:
        raise AmountOutOfRange("the deposit would exceed the 64-bit limit")
    decrease_balance(state, tx.sender, body.amount)
    set_channel(
        state,
        body.channel_id,
        replace(channel, deposit=channel.deposit + body.amount, expiry=expiry),
    )


# --- claim_channel -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimChannel:
    """Sent by the payee hotkey: the payer's latest voucher, verbatim."""

    voucher: Voucher


def validate_claim_channel(tx: Transaction) -> None:
    body: ClaimChannel = tx.body
    if body.voucher.cumulative <= 0:
        raise AmountOutOfRange("a voucher of 0 base units pays nothing")


def compute_claim_split(amount: int, fee_u16: int, validators_u16: int) -> tuple[int, int, int]:
    """(payee, validators, treasury) shares of a claimed ``amount``, summing to it exactly.

    The fee is floored, so its remainder stays with the payee; the validators' part of the
    fee is floored, so its remainder goes to the treasury.
    """
    fee = amount * fee_u16 // U16_ONE
    validators = fee * validators_u16 // U16_ONE
    return amount - fee, validators, fee - validators


def process_claim_channel(state: State, tx: Transaction, context: BlockContext) -> None:
    voucher: Voucher = tx.body.voucher
    channel = get_channel(state, voucher.channel_id)
    if channel.payee != tx.sender:
        raise NotChannelPayee("only the channel's payee hotkey may claim its vouchers")
    if channel.closed:
        raise ChannelClosed(f"channel 0x{voucher.channel_id.hex()} is closed")
    if voucher.cumulative <= channel.claimed:
        raise VoucherNotNewer(
            f"{channel.claimed} base units are already claimed; this voucher is for "
            f"{voucher.cumulative}: claim a newer voucher"
        )
    if voucher.cumulative > channel.deposit:
        raise VoucherExceedsDeposit(
            f"the voucher is for {voucher.cumulative} base units; the deposit is {channel.deposit}"
        )
    verify_voucher(state.chain_id, channel.payer, voucher)
    params = state.params
    payee, validators, treasury = compute_claim_split(
        voucher.cumulative - channel.claimed,
        params.channel_fee_u16,
        params.channel_fee_validators_u16,
    )
    payee = process_model_royalties(state, channel.netuid, channel.payee, payee)
    increase_balance(state, channel.payee, payee)
    set_fee_pool(state, channel.netuid, get_fee_pool(state, channel.netuid) + validators)
    state.set_ledger("treasury", state.get_ledger("treasury") + treasury)
    set_channel(state, voucher.channel_id, replace(channel, claimed=voucher.cumulative))


# --- close_channel -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseChannel:
    channel_id: bytes


def validate_close_channel(tx: Transaction) -> None:
    """Closing needs the channel's state: every check is in the handler."""


def process_close_channel(state: State, tx: Transaction, context: BlockContext) -> None:
    body: CloseChannel = tx.body
    channel = _get_payers_open_channel(state, tx, body.channel_id)
    if context.height < channel.expiry:
        raise ChannelNotExpired(
            f"the channel expires at block {channel.expiry}; this is block {context.height}"
        )
    increase_balance(state, channel.payer, channel.deposit - channel.claimed)
    set_channel(state, body.channel_id, replace(channel, closed=True))


KINDS = (
    TransactionKind(
        kind=40,
        name="open_channel",
        body=Record(
            OpenChannel,
            (("payee", ADDRESS), ("netuid", U16), ("deposit", U64), ("expiry", U64)),
        ),
        validate=validate_open_channel,
        process=process_open_channel,
    ),
    TransactionKind(
        kind=41,
        name="top_up_channel",
        body=Record(TopUpChannel, (("channel_id", HASH), ("amount", U64), ("expiry", U64))),
        validate=validate_top_up_channel,
        process=process_top_up_channel,
    ),
    TransactionKind(
        kind=42,
        name="claim_channel",
        body=Record(ClaimChannel, (("voucher", VOUCHER_RECORD),)),
        validate=validate_claim_channel,
        process=process_claim_channel,
    ),
    TransactionKind(
        kind=43,
        name="close_channel",
        body=Record(CloseChannel, (("channel_id", HASH),)),
        validate=validate_close_channel,
        process=process_close_channel,
    ),
)


def compute_supply_held(state: State) -> int:
    """What open channels still hold (deposit less claims), and the validators' fee pools."""
    deposits: int = sum(
        channel.deposit - channel.claimed
        for _, channel in state.tables["channels"].items()
        if not channel.closed
    )
    pools: int = sum(amount for _, amount in state.tables["channel_fee_pools"].items())
    return deposits + pools


def check_invariants(state: State) -> None:
    """No channel has more claimed than deposited."""
    for channel_id, channel in state.tables["channels"].items():
        if channel.claimed > channel.deposit:
            raise InvariantViolated(
                f"channel 0x{channel_id.hex()} has {channel.claimed} claimed of a "
                f"{channel.deposit} deposit"
            )

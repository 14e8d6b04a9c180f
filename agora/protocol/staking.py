"""Staking and delegation: coldkeys put stake behind hotkeys; validators share dividends.

A hotkey is owned by the coldkey that first registered it. Any coldkey may stake to any known
hotkey (delegation); a hotkey's stake is the sum of every coldkey's stake on it, and that is
the stake Yuma weighs. A validator's dividends go first to its owner as its take (a u16
commission within the chain's bounds), and the rest to everyone staked on it, pro rata.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agora.protocol.accounts import decrease_balance, increase_balance
from agora.protocol.address import Address
from agora.protocol.codec import ADDRESS, U16, U64, Record
from agora.protocol.errors import (
    AmountOutOfRange,
    HotkeyNotFound,
    HotkeyOwnedByAnother,
    InsufficientStake,
    InvariantViolated,
    NotHotkeyOwner,
    TakeOutOfBounds,
)
from agora.protocol.kinds import BlockContext, Transaction, TransactionKind
from agora.protocol.state import State
from agora.protocol.voting_power import change_coldkey_stake, get_coldkey_stake, validate_unlocked

HOTKEYS_TAG = 20
STAKES_TAG = 21


@dataclass(frozen=True, slots=True, kw_only=True)
class Hotkey:
    owner: Address  # coldkey
    take_u16: int
    total_stake: int


HOTKEY_RECORD: Record[Hotkey] = Record(
    Hotkey, (("owner", ADDRESS), ("take_u16", U16), ("total_stake", U64))
)


def register_tables(state: State) -> None:
    state.add_table(
        HOTKEYS_TAG,
        "hotkeys",
        (bytes, lambda raw: Address(bytes(raw))),
        (HOTKEY_RECORD.encode, HOTKEY_RECORD.decode),
    )
    state.add_table(
        STAKES_TAG,
        "stakes",
        (lambda key: key[0] + key[1], lambda raw: (Address(raw[:32]), Address(raw[32:]))),
        (lambda amount: amount.to_bytes(8, "big"), lambda raw: int.from_bytes(raw, "big")),
    )


def get_hotkey(state: State, hotkey: Address) -> Hotkey:
    info: Hotkey | None = state.tables["hotkeys"].get(hotkey, None)
    if info is None:
        raise HotkeyNotFound("this hotkey is unknown: register it on a subnet first")
    return info


def get_total_stake(state: State, hotkey: Address) -> int:
    info: Hotkey | None = state.tables["hotkeys"].get(hotkey, None)
    return 0 if info is None else info.total_stake


def get_stake(state: State, hotkey: Address, coldkey: Address) -> int:
    amount: int = state.tables["stakes"].get((hotkey, coldkey), 0)
    return amount


def get_total_staked(state: State) -> int:
    return sum(info.total_stake for _, info in state.tables["hotkeys"].items())


def get_stakers(state: State, hotkey: Address) -> list[tuple[Address, int]]:
    """Every coldkey staked on ``hotkey``, in key order (deterministic)."""
    return sorted(
        (coldkey, amount)
        for (hot, coldkey), amount in state.tables["stakes"].items()
        if hot == hotkey
    )


def bind_hotkey(state: State, hotkey: Address, coldkey: Address) -> None:
    """A hotkey belongs to the coldkey that first registers it, and to no other."""
    info: Hotkey | None = state.tables["hotkeys"].get(hotkey, None)
    if info is None:
        take = state.params.default_take_u16
        state.tables["hotkeys"].set(hotkey, Hotkey(owner=coldkey, take_u16=take, total_stake=0))
    elif info.owner != coldkey:
        raise HotkeyOwnedByAnother("this hotkey belongs to another coldkey")


def increase_stake(state: State, hotkey: Address, coldkey: Address, amount: int) -> None:
    info = get_hotkey(state, hotkey)
    state.tables["stakes"].set((hotkey, coldkey), get_stake(state, hotkey, coldkey) + amount)
    state.tables["hotkeys"].set(hotkey, replace(info, total_stake=info.total_stake + amount))
    change_coldkey_stake(state, coldkey, amount)


def decrease_stake(state: State, hotkey: Address, coldkey: Address, amount: int) -> None:
    info = get_hotkey(state, hotkey)
    staked = get_stake(state, hotkey, coldkey)
    if staked < amount:
        raise InsufficientStake(f"{staked} base units are staked; cannot remove {amount}")
    if staked == amount:
        state.tables["stakes"].delete((hotkey, coldkey))
    else:
        state.tables["stakes"].set((hotkey, coldkey), staked - amount)
    state.tables["hotkeys"].set(hotkey, replace(info, total_stake=info.total_stake - amount))
    change_coldkey_stake(state, coldkey, -amount)


def distribute_dividends(state: State, hotkey: Address, amount: int) -> None:
    """Pay a validator's dividends: the owner's take, then every staker pro rata.

    Each staker's share is floored; the remainder of the division goes to the owner, so the
    payout adds up to ``amount`` exactly.
    """
    if amount == 0:
        return
    info = get_hotkey(state, hotkey)
    take = amount * info.take_u16 // 65_535
    rest = amount - take
    paid = 0
    if info.total_stake > 0:
        for coldkey, staked in get_stakers(state, hotkey):
            share = rest * staked // info.total_stake
            if share:
                increase_balance(state, coldkey, share)
                paid += share
    increase_balance(state, info.owner, amount - paid)


# --- add_stake / remove_stake ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AddStake:
    hotkey: Address
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveStake:
    hotkey: Address
    amount: int


def validate_stake_amount(tx: Transaction) -> None:
    if tx.body.amount <= 0:
        raise AmountOutOfRange("the amount to stake or unstake must be positive")


def process_add_stake(state: State, tx: Transaction, context: BlockContext) -> None:
    body: AddStake = tx.body
    get_hotkey(state, body.hotkey)
    decrease_balance(state, tx.sender, body.amount)
    increase_stake(state, body.hotkey, tx.sender, body.amount)


def process_remove_stake(state: State, tx: Transaction, context: BlockContext) -> None:
    body: RemoveStake = tx.body
    decrease_stake(state, body.hotkey, tx.sender, body.amount)
    validate_unlocked(state, tx.sender, get_coldkey_stake(state, tx.sender), context.height)
    increase_balance(state, tx.sender, body.amount)


# --- set_take ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTake:
    hotkey: Address
    take_u16: int


def validate_set_take(tx: Transaction) -> None:
    """The bound itself is a chain parameter, checked in the handler."""


def process_set_take(state: State, tx: Transaction, context: BlockContext) -> None:
    body: SetTake = tx.body
    info = get_hotkey(state, body.hotkey)
    if info.owner != tx.sender:
        raise NotHotkeyOwner("only the hotkey's coldkey may set its take")
    if body.take_u16 > state.params.max_take_u16:
        raise TakeOutOfBounds(
            f"take {body.take_u16}/65535 exceeds the maximum {state.params.max_take_u16}/65535"
        )
    state.tables["hotkeys"].set(body.hotkey, replace(info, take_u16=body.take_u16))


KINDS = (
    TransactionKind(
        kind=20,
        name="add_stake",
        body=Record(AddStake, (("hotkey", ADDRESS), ("amount", U64))),
        validate=validate_stake_amount,
        process=process_add_stake,
    ),
    TransactionKind(
        kind=21,
        name="remove_stake",
        body=Record(RemoveStake, (("hotkey", ADDRESS), ("amount", U64))),
        validate=validate_stake_amount,
        process=process_remove_stake,
    ),
    TransactionKind(
        kind=22,
        name="set_take",
        body=Record(SetTake, (("hotkey", ADDRESS), ("take_u16", U16))),
        validate=validate_set_take,
        process=process_set_take,
    ),
)


def compute_supply_held(state: State) -> int:
    return sum(amount for _, amount in state.tables["stakes"].items())


def check_invariants(state: State) -> None:
    """A hotkey's total stake is the sum of every coldkey's stake on it."""
    totals: dict[Address, int] = {}
    for (hotkey, _), amount in state.tables["stakes"].items():
        totals[hotkey] = totals.get(hotkey, 0) + amount
    for hotkey, info in state.tables["hotkeys"].items():
        if info.total_stake != totals.get(hotkey, 0):
            raise InvariantViolated("a hotkey's total stake differs from the sum of its stakes")

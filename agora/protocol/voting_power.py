"""What a vote weighs besides stake: verified contribution, and the locks votes put on stake.

Verified contribution is what the ledger itself paid an account for measured work: a
miner's incentive (to the neuron's coldkey) and a validator's dividends (to the coldkey that
owns the validator's hotkey), recorded by the epoch step as it pays them, and the royalties a
served model pays its data contributors by credit (``data.process_model_royalties``).
Each account keeps one row: the amounts earned in each of the last
``contribution_window_epochs`` governance epochs (``governance_epoch_blocks`` long), so the
table is bounded by the number of earning accounts times the window, and an older epoch drops
out as a newer one is written.

A vote locks the stake it counted until the proposal's voting is over (plus, with
conviction, longer): the same tokens cannot be unstaked, moved to another account and
counted again. The lock is a restriction on ``remove_stake``; no tokens move, so it holds
nothing for the supply invariant.

This module sits below staking, emission and governance, which all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.protocol.address import Address
from agora.protocol.codec import U64, ListOf, Record, TupleOf, decode_field, encode_field
from agora.protocol.errors import InvariantViolated, StakeLockedByVote
from agora.protocol.kinds import TransactionKind
from agora.protocol.state import State

CONTRIBUTIONS_TAG = 54
VOTE_LOCKS_TAG = 55
COLDKEY_STAKES_TAG = 58
# The hard upper bound of ``contribution_window_epochs``: the most entries a row holds.
MAX_CONTRIBUTION_WINDOW = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteLock:
    amount: int  # base units of stake that must stay staked
    until: int  # the first block at which the lock no longer holds


VOTE_LOCK_RECORD: Record[VoteLock] = Record(VoteLock, (("amount", U64), ("until", U64)))
EARNINGS_ROW = ListOf(TupleOf((U64, U64)), MAX_CONTRIBUTION_WINDOW)


def register_tables(state: State) -> None:
    state.add_table(
        CONTRIBUTIONS_TAG,
        "contributions",
        (bytes, lambda raw: Address(bytes(raw))),
        (lambda row: encode_field(EARNINGS_ROW, row), lambda raw: decode_field(EARNINGS_ROW, raw)),
    )
    state.add_table(
        COLDKEY_STAKES_TAG,
        "coldkey_stakes",
        (bytes, lambda raw: Address(bytes(raw))),
        (lambda amount: amount.to_bytes(8, "big"), lambda raw: int.from_bytes(raw, "big")),
    )
    state.add_table(
        VOTE_LOCKS_TAG,
        "vote_locks",
        (bytes, lambda raw: Address(bytes(raw))),
        (VOTE_LOCK_RECORD.encode, VOTE_LOCK_RECORD.decode),
    )


KINDS: tuple[TransactionKind, ...] = ()


def compute_supply_held(state: State) -> int:
    return 0


def check_invariants(state: State) -> None:
    """Each coldkey's stake total is the sum of its stakes on every hotkey."""
    totals: dict[Address, int] = {}
    for (_, coldkey), amount in state.tables["stakes"].items():
        totals[coldkey] = totals.get(coldkey, 0) + amount
    if totals != dict(state.tables["coldkey_stakes"].items()):
        raise InvariantViolated("a coldkey's stake total differs from the sum of its stakes")


# --- stake per coldkey ------------------------------------------------------------------


def get_coldkey_stake(state: State, coldkey: Address) -> int:
    """Everything ``coldkey`` has staked, on every hotkey: what its votes weigh. Kept as a
    total per coldkey so that a vote costs the same however many stakes the chain holds."""
    amount: int = state.tables["coldkey_stakes"].get(coldkey, 0)
    return amount


def change_coldkey_stake(state: State, coldkey: Address, delta: int) -> None:
    """Staking's writers call this with every change to one of the coldkey's stakes."""
    amount = get_coldkey_stake(state, coldkey) + delta
    if amount == 0:
        state.tables["coldkey_stakes"].delete(coldkey)
    else:
        state.tables["coldkey_stakes"].set(coldkey, amount)


# --- contribution ------------------------------------------------------------------------


def compute_governance_epoch(state: State, height: int) -> int:
    return height // state.params.governance_epoch_blocks


def record_contribution(state: State, account: Address, amount: int, height: int) -> None:
    """Add ``amount`` earned for measured work at ``height`` to ``account``'s window."""
    if amount == 0:
        return
    epoch = compute_governance_epoch(state, height)
    oldest = epoch - state.params.contribution_window_epochs + 1
    row: tuple[tuple[int, int], ...] = state.tables["contributions"].get(account, ())
    kept = [(e, a) for e, a in row if e >= oldest and e != epoch]
    current = sum(a for e, a in row if e == epoch)
    kept.append((epoch, current + amount))
    state.tables["contributions"].set(account, tuple(kept[-MAX_CONTRIBUTION_WINDOW:]))


def get_contribution(state: State, account: Address, height: int) -> int:
    """What ``account`` earned for measured work over the window that ends at ``height``."""
    epoch = compute_governance_epoch(state, height)
    oldest = epoch - state.params.contribution_window_epochs + 1
    row: tuple[tuple[int, int], ...] = state.tables["contributions"].get(account, ())
    return sum(amount for e, amount in row if oldest <= e <= epoch)


def get_total_contribution(state: State, height: int) -> int:
    """Every account's contribution over the window (read when a proposal is submitted)."""
    return sum(
        get_contribution(state, account, height)
        for account, _ in state.tables["contributions"].items()
    )


# --- locks ---------------------------------------------------------------------------------


def get_locked_stake(state: State, coldkey: Address, height: int) -> int:
    lock: VoteLock | None = state.tables["vote_locks"].get(coldkey, None)
    if lock is None or lock.until <= height:
        return 0
    return lock.amount


def get_vote_lock(state: State, coldkey: Address) -> VoteLock | None:
    lock: VoteLock | None = state.tables["vote_locks"].get(coldkey, None)
    return lock


def increase_vote_lock(
    state: State, coldkey: Address, amount: int, until: int, height: int
) -> None:
    """Lock at least ``amount`` of stake until at least ``until`` (locks only grow)."""
    current = get_locked_stake(state, coldkey, height)
    lock = get_vote_lock(state, coldkey)
    previous_until = lock.until if lock is not None and lock.until > height else 0
    state.tables["vote_locks"].set(
        coldkey, VoteLock(amount=max(current, amount), until=max(previous_until, until))
    )


def validate_unlocked(state: State, coldkey: Address, remaining_stake: int, height: int) -> None:
    """Raise if leaving ``remaining_stake`` staked breaks the coldkey's vote lock."""
    locked = get_locked_stake(state, coldkey, height)
    if remaining_stake < locked:
        lock = get_vote_lock(state, coldkey)
        until = 0 if lock is None else lock.until
        raise StakeLockedByVote(
            f"{locked} base units of stake are locked by votes until block {until}; "
            f"{remaining_stake} would remain"
        )

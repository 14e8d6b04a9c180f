"""Weights and commit-reveal: how validators state their judgement of every miner.

``set_weights`` stores a validator's row directly (only where the subnet's commit-reveal is
off). With commit-reveal on, the validator commits a hash of its weights and a salt, and
reveals them ``reveal_period_epochs`` epochs later (docs/yuma.md §9, v2), so that nobody can
copy another validator's weights before they are stale. The rules themselves are in
``consensus/weights.py``; this module reads the state they need and writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agora.protocol.address import Address
from agora.protocol.codec import HASH, U16, U64, ListOf, Record
from agora.protocol.consensus.weights import (
    WeightCommit,
    WeightsContext,
    WeightsSubmission,
    compute_commit_hash,
    compute_commits_after_commit,
    compute_commits_after_reveal,
    compute_stored_weights,
    validate_rate_limit,
)
from agora.protocol.errors import CommitRevealDisabled, CommitRevealRequired
from agora.protocol.kinds import BlockContext, Transaction, TransactionKind
from agora.protocol.staking import get_total_stake
from agora.protocol.state import State
from agora.protocol.subnets import (
    MAX_UIDS_LIMIT,
    Subnet,
    get_epoch_with_lookahead,
    get_owner_uid,
    get_registered_neuron,
    get_subnet,
    get_uid,
    set_neuron,
)
from agora.protocol.weight_commits import (
    get_commits,
    register_commits_table,
    set_commits,
)

MAX_SALT_LENGTH = 32


def register_tables(state: State) -> None:
    register_commits_table(state)


def _store_weights(
    state: State,
    subnet: Subnet,
    hotkey: Address,
    uids: tuple[int, ...],
    values: tuple[int, ...],
    version_key: int,
    block: int,
) -> None:
    """Validate a row (§8) and store it; ``last_update`` moves only without commit-reveal."""
    uid = get_uid(state, subnet.netuid, hotkey)
    neuron = None if uid is None else get_registered_neuron(state, subnet.netuid, hotkey)[1]
    h = subnet.hyperparameters
    context = WeightsContext(
        n=subnet.n,
        stake=get_total_stake(state, hotkey),
        stake_threshold=h.stake_threshold,
        is_owner=uid is not None and uid == get_owner_uid(state, subnet),
        has_permit=neuron is not None and neuron.validator_permit,
        weights_version_key=h.weights_version_key,
        last_update=0 if neuron is None else neuron.last_update,
        rate_limit=h.weights_rate_limit,
        commit_reveal_enabled=h.commit_reveal,
        min_allowed_weights=h.min_allowed_weights,
        max_weight_limit_u16=h.max_weight_limit_u16,
    )
    submission = WeightsSubmission(
        uid=uid, uids=uids, values=values, version_key=version_key, block=block
    )
    row = compute_stored_weights(submission, context)
    assert uid is not None and neuron is not None  # compute_stored_weights checked it
    last_update = neuron.last_update if h.commit_reveal else block
    set_neuron(state, subnet.netuid, uid, replace(neuron, weights=row, last_update=last_update))


# --- set_weights ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SetWeights:
    netuid: int
    uids: tuple[int, ...]
    values: tuple[int, ...]
    version_key: int


def validate_nothing(tx: Transaction) -> None:
    """Weights rules need the subnet's state: they are all checked in the handler."""


def process_set_weights(state: State, tx: Transaction, context: BlockContext) -> None:
    body: SetWeights = tx.body
    subnet = get_subnet(state, body.netuid)
    if subnet.hyperparameters.commit_reveal:
        raise CommitRevealRequired(
            f"subnet {body.netuid} uses commit-reveal: commit your weights, then reveal them"
        )
    _store_weights(
        state, subnet, tx.sender, body.uids, body.values, body.version_key, context.height
    )


# --- commit_weights ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitWeights:
    netuid: int
    commit_hash: bytes


def process_commit_weights(state: State, tx: Transaction, context: BlockContext) -> None:
    body: CommitWeights = tx.body
    subnet = get_subnet(state, body.netuid)
    h = subnet.hyperparameters
    if not h.commit_reveal:
        raise CommitRevealDisabled(f"subnet {body.netuid} takes weights directly: use set_weights")
    uid, neuron = get_registered_neuron(state, body.netuid, tx.sender)
    validate_rate_limit(context.height, neuron.last_update, h.weights_rate_limit)
    epoch = get_epoch_with_lookahead(subnet, context.height)
    new = WeightCommit(
        commit_hash=body.commit_hash, commit_epoch=epoch, commit_block=context.height
    )
    commits = compute_commits_after_commit(
        get_commits(state, body.netuid, tx.sender), new, epoch, h.reveal_period_epochs
    )
    set_commits(state, body.netuid, tx.sender, commits)
    set_neuron(state, body.netuid, uid, replace(neuron, last_update=context.height))


# --- reveal_weights ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RevealWeights:
    netuid: int
    uids: tuple[int, ...]
    values: tuple[int, ...]
    salt: tuple[int, ...]
    version_key: int


def process_reveal_weights(state: State, tx: Transaction, context: BlockContext) -> None:
    body: RevealWeights = tx.body
    subnet = get_subnet(state, body.netuid)
    if not subnet.hyperparameters.commit_reveal:
        raise CommitRevealDisabled(f"subnet {body.netuid} takes weights directly: use set_weights")
    get_registered_neuron(state, body.netuid, tx.sender)
    commit_hash = compute_commit_hash(
        hotkey=tx.sender,
        netuid=body.netuid,
        uids=body.uids,
        values=body.values,
        salt=body.salt,
        version_key=body.version_key,
    )
    epoch = get_epoch_with_lookahead(subnet, context.height)
    remaining = compute_commits_after_reveal(
        get_commits(state, body.netuid, tx.sender),
        commit_hash,
        epoch,
        subnet.hyperparameters.reveal_period_epochs,
    )
    set_commits(state, body.netuid, tx.sender, remaining)
    _store_weights(
        state, subnet, tx.sender, body.uids, body.values, body.version_key, context.height
    )


_UIDS = ListOf(U16, MAX_UIDS_LIMIT)

KINDS = (
    TransactionKind(
        kind=30,
        name="set_weights",
        body=Record(
            SetWeights,
            (("netuid", U16), ("uids", _UIDS), ("values", _UIDS), ("version_key", U64)),
        ),
        validate=validate_nothing,
        process=process_set_weights,
    ),
    TransactionKind(
        kind=31,
        name="commit_weights",
        body=Record(CommitWeights, (("netuid", U16), ("commit_hash", HASH))),
        validate=validate_nothing,
        process=process_commit_weights,
    ),
    TransactionKind(
        kind=32,
        name="reveal_weights",
        body=Record(
            RevealWeights,
            (
                ("netuid", U16),
                ("uids", _UIDS),
                ("values", _UIDS),
                ("salt", ListOf(U16, MAX_SALT_LENGTH)),
                ("version_key", U64),
            ),
        ),
        validate=validate_nothing,
        process=process_reveal_weights,
    ),
)


def compute_supply_held(state: State) -> int:
    """Weights hold no base units."""
    return 0


def check_invariants(state: State) -> None:
    """Weights check no invariant of their own."""

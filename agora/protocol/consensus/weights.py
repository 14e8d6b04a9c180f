"""Stateless rules for weights: what ``set_weights`` accepts and stores, and commit-reveal.

The ledger's weights handler reads the setter's and the subnet's state, then calls these
pure helpers with plain values (docs/yuma.md sections 8 and 9): they raise a coded error or return
what to store. The checks run in the chain's order, so a submission with several faults is
refused with the same error the chain would give.

Commit-reveal is the hash version (v2): a validator first commits
``blake2b-256(SCALE(hotkey, netuid, uids, values, salt, version_key))``, the chain's
``BlakeTwo256::hash_of`` of the same tuple, so a Bittensor SDK computes the same hash; it
reveals the data ``reveal_period`` epochs later, which keeps validators from copying each
other's fresh weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from agora.protocol.consensus.errors import (
    CommitHashMismatch,
    DuplicateWeightUids,
    ExpiredWeightCommit,
    IncorrectWeightsVersionKey,
    InvalidCommitData,
    InvalidWeightUid,
    MaxWeightExceeded,
    NotEnoughStakeToSetWeights,
    NoValidatorPermit,
    NoWeightsCommitFound,
    RevealTooEarly,
    SettingWeightsTooFast,
    TooFewWeights,
    TooManyUnrevealedCommits,
    TooManyWeights,
    WeightsLengthMismatch,
    WeightsSetterNotRegistered,
    WeightValueOutOfRange,
)
from agora.protocol.consensus.fixed import U16_MAX, U64_MAX, compute_u16_max_upscale, is_max_limited

MAX_UNREVEALED_COMMITS = 10
"""A hotkey may hold at most this many unexpired commits (the chain's limit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsSubmission:
    """One ``set_weights`` (or revealed commit): who sets them, to whom, how much."""

    uid: int | None  # the setter's uid on the subnet, None when its hotkey is not registered
    uids: tuple[int, ...]
    values: tuple[int, ...]  # u16, any scale: stored max-upscaled
    version_key: int
    block: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsContext:
    """The subnet's rules and the setter's standing, as read from the state."""

    n: int  # uids on the subnet
    stake: int  # the setter's total stake, base units
    stake_threshold: int
    is_owner: bool  # the setter is the subnet owner's uid
    has_permit: bool  # the setter's stored validator permit
    weights_version_key: int  # 0 accepts any version key
    last_update: int  # block of the setter's last weights (0: never)
    rate_limit: int  # blocks between two updates
    commit_reveal_enabled: bool  # then commits are rate-limited, not reveals
    min_allowed_weights: int
    max_weight_limit_u16: int  # 65535: no limit


def compute_stored_weights(
    submission: WeightsSubmission, context: WeightsContext
) -> tuple[tuple[int, int], ...]:
    """Validate a submission and return the row to store: ``(uid, max-upscaled u16)``."""
    validate_weights(submission, context)
    stored = compute_u16_max_upscale(submission.values)
    return tuple(zip(submission.uids, stored, strict=True))


def validate_weights(submission: WeightsSubmission, context: WeightsContext) -> None:
    """Raise the chain's error for the first rule the submission breaks (section 8)."""
    uids, values = submission.uids, submission.values
    if any(not 0 <= v <= U16_MAX for v in (*uids, *values)):
        raise WeightValueOutOfRange("every uid and weight value must be between 0 and 65535")
    if len(uids) != len(values):
        raise WeightsLengthMismatch(f"{len(uids)} uids but {len(values)} values: give one each")
    if len(uids) > context.n:
        raise TooManyWeights(f"{len(uids)} weights for a subnet of {context.n} uids")
    if submission.uid is None:
        raise WeightsSetterNotRegistered(
            "register the hotkey on this subnet before setting weights"
        )
    if not context.is_owner and context.stake < context.stake_threshold:
        raise NotEnoughStakeToSetWeights(
            f"stake {context.stake} is below the threshold {context.stake_threshold}"
        )
    if not is_version_key_current(submission.version_key, context.weights_version_key):
        raise IncorrectWeightsVersionKey(
            f"version key {submission.version_key} is older than {context.weights_version_key}"
        )
    if not context.commit_reveal_enabled:
        validate_rate_limit(submission.block, context.last_update, context.rate_limit)
    self_weight = is_self_weight(submission.uid, uids)
    if not (self_weight or context.is_owner or context.has_permit):
        raise NoValidatorPermit("without a validator permit only a single self-weight is allowed")
    _validate_uids(uids, context.n)
    if not self_weight and len(uids) < min(context.min_allowed_weights, context.n):
        raise TooFewWeights(
            f"{len(uids)} weights; this subnet needs at least "
            f"{min(context.min_allowed_weights, context.n)}"
        )
    limit = context.max_weight_limit_u16
    upscaled = compute_u16_max_upscale(values)
    if not self_weight and limit != U16_MAX and not is_max_limited(upscaled, limit):
        raise MaxWeightExceeded(f"one weight is above the limit of {limit}/65535 of the total")


def _validate_uids(uids: Sequence[int], n: int) -> None:
    seen: set[int] = set()
    for uid in uids:
        if uid in seen:
            raise DuplicateWeightUids(f"uid {uid} appears twice; give each uid once")
        seen.add(uid)
    for uid in uids:
        if uid >= n:
            raise InvalidWeightUid(f"uid {uid} does not exist on this subnet of {n} uids")


def validate_rate_limit(block: int, last_update: int, rate_limit: int) -> None:
    """Raise unless ``rate_limit`` blocks have passed since the last update (0: never set)."""
    if last_update != 0 and max(block - last_update, 0) < rate_limit:
        raise SettingWeightsTooFast(
            f"wait until block {last_update + rate_limit}: the subnet allows one update "
            f"every {rate_limit} blocks"
        )


def is_version_key_current(version_key: int, weights_version_key: int) -> bool:
    return weights_version_key == 0 or version_key >= weights_version_key


def is_self_weight(uid: int, uids: Sequence[int]) -> bool:
    """A single weight on oneself: allowed without a permit, exempt from the length rules."""
    return len(uids) == 1 and uids[0] == uid


# --- commit-reveal (v2, hash) ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightCommit:
    """One pending commit of a hotkey: its hash, the epoch it belongs to, its block."""

    commit_hash: bytes
    commit_epoch: int
    commit_block: int


def compute_commit_hash(
    *,
    hotkey: bytes,
    netuid: int,
    uids: Sequence[int],
    values: Sequence[int],
    salt: Sequence[int],
    version_key: int,
) -> bytes:
    """The commit of a future reveal: the chain's ``BlakeTwo256`` over the SCALE encoding of
    ``(hotkey: [u8; 32], netuid: u16, uids: Vec<u16>, values: Vec<u16>, salt: Vec<u16>,
    version_key: u64)``."""
    if len(hotkey) != 32:
        raise InvalidCommitData(f"a hotkey is 32 bytes, not {len(hotkey)}")
    if not 0 <= netuid <= U16_MAX:
        raise InvalidCommitData(f"netuid {netuid} does not fit in a u16")
    if not 0 <= version_key <= U64_MAX:
        raise InvalidCommitData(f"version key {version_key} does not fit in a u64")
    encoded = b"".join(
        (
            bytes(hotkey),
            netuid.to_bytes(2, "little"),
            compute_scale_u16_vector(uids),
            compute_scale_u16_vector(values),
            compute_scale_u16_vector(salt),
            version_key.to_bytes(8, "little"),
        )
    )
    return hashlib.blake2b(encoded, digest_size=32).digest()


def compute_scale_u16_vector(values: Sequence[int]) -> bytes:
    """SCALE ``Vec<u16>``: a compact length, then each value as 2 little-endian bytes."""
    if any(not 0 <= v <= U16_MAX for v in values):
        raise InvalidCommitData("every uid, value and salt entry must fit in a u16")
    return compute_scale_compact(len(values)) + b"".join(v.to_bytes(2, "little") for v in values)


def compute_scale_compact(value: int) -> bytes:
    """SCALE compact integer: 1, 2 or 4 bytes with a 2-bit mode, or a length-prefixed big int."""
    if value < 0:
        raise InvalidCommitData("a compact integer cannot be negative")
    if value < 1 << 6:
        return (value << 2).to_bytes(1, "little")
    if value < 1 << 14:
        return ((value << 2) | 0b01).to_bytes(2, "little")
    if value < 1 << 30:
        return ((value << 2) | 0b10).to_bytes(4, "little")
    size = (value.bit_length() + 7) // 8
    return bytes([((size - 4) << 2) | 0b11]) + value.to_bytes(size, "little")


def is_commit_expired(commit_epoch: int, current_epoch: int, reveal_period: int) -> bool:
    """A commit expires once its reveal epoch (``commit_epoch + reveal_period``) has passed."""
    return current_epoch > commit_epoch + reveal_period


def is_reveal_epoch(commit_epoch: int, current_epoch: int, reveal_period: int) -> bool:
    return current_epoch == commit_epoch + reveal_period


def compute_commit_block_for_mask(
    commits: Sequence[WeightCommit], current_epoch: int, reveal_period: int
) -> int | None:
    """The block of a hotkey's earliest unexpired commit, for the epoch's column mask
    (``EpochInputs.commit_blocks``): a weight cannot be about a uid registered after it."""
    for commit in commits:
        if not is_commit_expired(commit.commit_epoch, current_epoch, reveal_period):
            return commit.commit_block
    return None


def compute_commits_after_commit(
    commits: Sequence[WeightCommit], new: WeightCommit, current_epoch: int, reveal_period: int
) -> tuple[WeightCommit, ...]:
    """The hotkey's queue after a new commit: expired commits leave the front first."""
    pending = list(commits)
    while pending and is_commit_expired(pending[0].commit_epoch, current_epoch, reveal_period):
        pending.pop(0)
    if len(pending) >= MAX_UNREVEALED_COMMITS:
        raise TooManyUnrevealedCommits(
            f"{len(pending)} commits wait to be revealed; reveal one before committing again"
        )
    return (*pending, new)


def compute_commits_after_reveal(
    commits: Sequence[WeightCommit], revealed_hash: bytes, current_epoch: int, reveal_period: int
) -> tuple[WeightCommit, ...]:
    """The hotkey's queue after revealing ``revealed_hash``: the commit and every older one
    leave the queue. The caller then stores the weights with ``compute_stored_weights``."""
    pending = list(commits)
    expired_hashes: list[bytes] = []
    while pending and is_commit_expired(pending[0].commit_epoch, current_epoch, reveal_period):
        expired_hashes.append(pending.pop(0).commit_hash)
    position = next(
        (i for i, commit in enumerate(pending) if commit.commit_hash == revealed_hash), None
    )
    if position is None:
        if revealed_hash in expired_hashes:
            raise ExpiredWeightCommit("the reveal period of this commit is over: commit again")
        if not pending:
            raise NoWeightsCommitFound("this hotkey has no pending commit to reveal")
        raise CommitHashMismatch("the revealed data does not hash to any pending commit")
    commit = pending[position]
    if not is_reveal_epoch(commit.commit_epoch, current_epoch, reveal_period):
        raise RevealTooEarly(
            f"reveal in epoch {commit.commit_epoch + reveal_period}, not {current_epoch}"
        )
    return tuple(pending[position + 1 :])

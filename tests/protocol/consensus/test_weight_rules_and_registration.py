"""Weights validation, commit-reveal and registration prices follow docs/yuma.md sections 8 to 10.

Bad inputs raise coded errors, in the chain's order of checks; prices and pruning choices
reproduce the values asserted by the chain's own tests (``tests/registration.rs``).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.protocol.consensus import errors
from agora.protocol.consensus.fixed import compute_pow_q32
from agora.protocol.consensus.registration import (
    DEFAULT_BURN_INCREASE_MULT_U64F64,
    BurnPriceRules,
    PruningCandidate,
    compute_burn_after_block,
    compute_burn_after_registration,
    compute_burn_decay_factor_q32,
    compute_immortal_owner_uids,
    compute_uid_to_prune,
    is_immune,
)
from agora.protocol.consensus.weights import (
    WeightCommit,
    WeightsContext,
    WeightsSubmission,
    compute_commit_block_for_mask,
    compute_commit_hash,
    compute_commits_after_commit,
    compute_commits_after_reveal,
    compute_scale_compact,
    compute_stored_weights,
)
from agora.protocol.errors import all_error_classes

M = 65_535


def submission(**overrides: Any) -> WeightsSubmission:
    base: dict[str, Any] = {
        "uid": 0,
        "uids": (1, 2),
        "values": (1, 3),
        "version_key": 0,
        "block": 100,
    }
    base.update(overrides)
    return WeightsSubmission(**base)


def context(**overrides: Any) -> WeightsContext:
    base: dict[str, Any] = {
        "n": 4,
        "stake": 1_000,
        "stake_threshold": 0,
        "is_owner": False,
        "has_permit": True,
        "weights_version_key": 0,
        "last_update": 0,
        "rate_limit": 100,
        "commit_reveal_enabled": False,
        "min_allowed_weights": 1,
        "max_weight_limit_u16": M,
    }
    base.update(overrides)
    return WeightsContext(**base)


# --- section 8: set_weights --------------------------------------------------------------


def test_stored_weights_are_max_upscaled() -> None:
    assert compute_stored_weights(submission(), context()) == ((1, 21_845), (2, M))
    zeros = submission(values=(0, 0))
    assert compute_stored_weights(zeros, context()) == ((1, 0), (2, 0))


@pytest.mark.parametrize(
    ("sub", "ctx", "error"),
    [
        ({"values": (1,)}, {}, errors.WeightsLengthMismatch),
        ({"uids": (1, 2, 3, 0, 1)}, {}, errors.WeightsLengthMismatch),
        ({"uids": (0, 1, 2, 3, 4), "values": (1,) * 5}, {}, errors.TooManyWeights),
        ({"uid": None}, {}, errors.WeightsSetterNotRegistered),
        ({}, {"stake": 9, "stake_threshold": 10}, errors.NotEnoughStakeToSetWeights),
        ({"version_key": 3}, {"weights_version_key": 4}, errors.IncorrectWeightsVersionKey),
        ({"block": 150}, {"last_update": 100}, errors.SettingWeightsTooFast),
        ({}, {"has_permit": False}, errors.NoValidatorPermit),
        ({"uids": (1, 1)}, {}, errors.DuplicateWeightUids),
        ({"uids": (1, 4)}, {}, errors.InvalidWeightUid),
        ({"uids": (1,), "values": (5,)}, {"min_allowed_weights": 2}, errors.TooFewWeights),
        ({}, {"max_weight_limit_u16": M // 2}, errors.MaxWeightExceeded),
        ({"values": (1, 70_000)}, {}, errors.WeightValueOutOfRange),
    ],
)
def test_bad_weights_raise_coded_errors(
    sub: dict[str, Any], ctx: dict[str, Any], error: type[errors.ProtocolError]
) -> None:
    with pytest.raises(error) as raised:
        compute_stored_weights(submission(**sub), context(**ctx))
    assert 2200 <= raised.value.code < 2300
    assert raised.value.message


def test_checks_run_in_the_chains_order() -> None:
    # Duplicate uids and no permit: the permit check comes first on the chain.
    with pytest.raises(errors.NoValidatorPermit):
        compute_stored_weights(submission(uids=(1, 1)), context(has_permit=False))
    # Too many weights and not registered: the length check comes first.
    too_many = submission(uid=None, uids=(0, 1, 2, 3, 0), values=(1,) * 5)
    with pytest.raises(errors.TooManyWeights):
        compute_stored_weights(too_many, context())


def test_self_weight_needs_no_permit_and_escapes_length_and_limit_rules() -> None:
    own = submission(uids=(0,), values=(7,))
    strict = context(has_permit=False, min_allowed_weights=4, max_weight_limit_u16=1)
    assert compute_stored_weights(own, strict) == ((0, M),)


def test_owner_needs_neither_permit_nor_stake() -> None:
    owner = context(is_owner=True, has_permit=False, stake=0, stake_threshold=10)
    assert compute_stored_weights(submission(), owner) == ((1, 21_845), (2, M))


def test_rate_limit_applies_only_without_commit_reveal() -> None:
    fresh = context(last_update=100)
    with pytest.raises(errors.SettingWeightsTooFast):
        compute_stored_weights(submission(block=199), fresh)
    assert compute_stored_weights(submission(block=200), fresh)
    assert compute_stored_weights(submission(block=101), replace(fresh, commit_reveal_enabled=True))
    # last_update 0 means "never set": no wait.
    assert compute_stored_weights(submission(block=1), context(last_update=0))


def test_min_allowed_weights_is_capped_by_the_subnet_size() -> None:
    # A subnet of 3 uids with min_allowed_weights 1024 needs 3 weights, not 1024.
    three = submission(uids=(0, 1, 2), values=(1, 1, 1))
    assert compute_stored_weights(three, context(min_allowed_weights=1_024, n=3))
    with pytest.raises(errors.TooFewWeights):
        compute_stored_weights(submission(), context(min_allowed_weights=1_024, n=3))


def test_max_weight_limit_is_checked_on_normalized_values() -> None:
    even = submission(uids=(1, 2, 3), values=(M, M, M))
    assert compute_stored_weights(even, context(max_weight_limit_u16=M // 3))
    with pytest.raises(errors.MaxWeightExceeded):
        compute_stored_weights(even, context(max_weight_limit_u16=M // 3 - 1))


# --- section 9: commit-reveal v2 --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [  # examples of the SCALE codec documentation
        (0, "00"),
        (1, "04"),
        (42, "a8"),
        (63, "fc"),
        (64, "0101"),
        (69, "1501"),
        (16_383, "fdff"),
        (16_384, "02000100"),
        (65_535, "feff0300"),
        (1_073_741_823, "feffffff"),
        (1_073_741_824, "0300000040"),
        (100_000_000_000_000, "0b00407a10f35a"),
    ],
)
def test_scale_compact_encoding(value: int, encoded: str) -> None:
    assert compute_scale_compact(value).hex() == encoded


def test_commit_hash_is_blake2b_256_of_the_scale_tuple() -> None:
    hotkey = bytes(range(32))
    digest = compute_commit_hash(
        hotkey=hotkey, netuid=3, uids=[1, 2], values=[10, 20], salt=[7], version_key=5
    )
    encoded = (
        hotkey
        + bytes.fromhex("0300")  # netuid u16
        + bytes.fromhex("0801000200")  # Vec<u16> [1, 2]
        + bytes.fromhex("080a001400")  # Vec<u16> [10, 20]
        + bytes.fromhex("040700")  # Vec<u16> [7]
        + bytes.fromhex("0500000000000000")  # u64
    )
    assert digest == hashlib.blake2b(encoded, digest_size=32).digest()
    assert len(digest) == 32
    other = compute_commit_hash(
        hotkey=hotkey, netuid=3, uids=[1, 2], values=[10, 20], salt=[8], version_key=5
    )
    assert other != digest


@pytest.mark.parametrize(
    "overrides",
    [{"hotkey": b"short"}, {"netuid": 70_000}, {"salt": [-1]}, {"version_key": -1}],
)
def test_bad_commit_data_is_refused(overrides: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "hotkey": bytes(32),
        "netuid": 1,
        "uids": [1],
        "values": [1],
        "salt": [1],
        "version_key": 0,
    }
    args.update(overrides)
    with pytest.raises(errors.InvalidCommitData):
        compute_commit_hash(**args)


def commit(tag: int, epoch: int, block: int) -> WeightCommit:
    return WeightCommit(commit_hash=bytes([tag]) * 32, commit_epoch=epoch, commit_block=block)


def test_commit_queue_drops_expired_and_caps_at_ten() -> None:
    queue = tuple(commit(i, epoch=5, block=50 + i) for i in range(10))
    with pytest.raises(errors.TooManyUnrevealedCommits):
        compute_commits_after_commit(queue, commit(99, 6, 70), current_epoch=6, reveal_period=1)
    # At epoch 7 the epoch-5 commits are expired (7 > 5 + 1): they leave, the new one enters.
    after = compute_commits_after_commit(queue, commit(99, 7, 80), current_epoch=7, reveal_period=1)
    assert after == (commit(99, 7, 80),)


def test_reveal_pops_the_commit_and_every_older_one() -> None:
    queue = (commit(1, 4, 40), commit(2, 5, 50), commit(3, 5, 52), commit(4, 6, 60))
    remaining = compute_commits_after_reveal(queue, bytes([3]) * 32, 6, reveal_period=1)
    assert remaining == (commit(4, 6, 60),)  # commit 1 expired, 2 is older than 3


@pytest.mark.parametrize(
    ("queue", "revealed", "epoch", "error"),
    [
        ((), 1, 5, errors.NoWeightsCommitFound),
        ((commit(1, 3, 30),), 1, 5, errors.ExpiredWeightCommit),
        ((commit(1, 3, 30),), 2, 5, errors.NoWeightsCommitFound),
        ((commit(1, 5, 50),), 1, 5, errors.RevealTooEarly),
        ((commit(1, 5, 50),), 2, 6, errors.CommitHashMismatch),
        ((commit(1, 3, 30), commit(2, 5, 50)), 1, 5, errors.ExpiredWeightCommit),
    ],
)
def test_bad_reveals_raise_coded_errors(
    queue: tuple[WeightCommit, ...], revealed: int, epoch: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        compute_commits_after_reveal(queue, bytes([revealed]) * 32, epoch, reveal_period=1)


def test_mask_block_is_the_first_unexpired_commit() -> None:
    queue = (commit(1, 3, 30), commit(2, 5, 50), commit(3, 6, 61))
    assert compute_commit_block_for_mask(queue, current_epoch=5, reveal_period=1) == 50
    assert compute_commit_block_for_mask(queue, current_epoch=9, reveal_period=1) is None
    assert compute_commit_block_for_mask((), current_epoch=0, reveal_period=1) is None


# --- section 10: registration price ----------------------------------------------------


def rules(**overrides: Any) -> BurnPriceRules:
    base: dict[str, Any] = {"min_burn": 0, "max_burn": 2**64 - 1}
    base.update(overrides)
    return BurnPriceRules(**base)


def test_burn_decay_and_bump_of_the_chain_test() -> None:
    """registration.rs::test_burn_decay: x2 on registration, then one block of decay."""
    slow = rules(half_life=1_000, increase_mult_u64f64=2 << 64)
    burn = compute_burn_after_registration(1_000, slow)
    assert burn == 2_000
    assert compute_burn_after_block(burn, slow, block=2) == 1_998


def test_burn_halves_every_half_life_of_the_chain_test() -> None:
    fast = rules(half_life=2, increase_mult_u64f64=1 << 64)
    burn = 1_024
    for block in (2, 3):
        burn = compute_burn_after_block(burn, fast, block)
    assert burn == 511
    for block in (4, 5):
        burn = compute_burn_after_block(burn, fast, block)
    assert burn == 255


def test_burn_clamps_of_the_chain_test() -> None:
    clamped = rules(half_life=1, increase_mult_u64f64=2 << 64, min_burn=100_000, max_burn=150_000)
    burn = compute_burn_after_block(1, clamped, block=2)
    assert burn == 100_000
    burn = compute_burn_after_registration(burn, clamped)
    assert burn == 150_000
    assert compute_burn_after_block(burn, clamped, block=3) == 100_000


def test_no_decay_at_genesis_or_with_half_life_zero() -> None:
    assert compute_burn_after_block(1_000, rules(half_life=360), block=1) == 1_000
    assert compute_burn_after_block(1_000, rules(half_life=0), block=50) == 1_000


def test_default_multiplier_is_the_chains_1_26() -> None:
    assert DEFAULT_BURN_INCREASE_MULT_U64F64 / 2**64 == pytest.approx(1.26, abs=1e-15)
    assert compute_burn_after_registration(100_000_000, rules()) == 126_000_000
    # A multiplier below 1 is treated as 1: a registration never lowers the price.
    assert compute_burn_after_registration(1_000, rules(increase_mult_u64f64=1 << 63)) == 1_000


@given(st.integers(min_value=1, max_value=2_000))
@settings(max_examples=60, deadline=None)
def test_decay_factor_is_the_largest_with_half_life_power_at_most_half(half_life: int) -> None:
    factor = compute_burn_decay_factor_q32(half_life)
    assert compute_pow_q32(factor, half_life) <= 1 << 31
    assert compute_pow_q32(factor + 1, half_life) > 1 << 31


@pytest.mark.parametrize(
    "overrides",
    [{"min_burn": 10, "max_burn": 5}, {"half_life": 70_000}, {"increase_mult_u64f64": -1}],
)
def test_bad_price_rules_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidRegistrationPrice) as raised:
        compute_burn_after_block(1_000, rules(**overrides), block=5)
    assert raised.value.code == 2051


# --- section 10: pruning ---------------------------------------------------------------


def candidates(*rows: tuple[int, int]) -> list[PruningCandidate]:
    return [
        PruningCandidate(uid=uid, emission=emission, registered_at=registered_at)
        for uid, (emission, registered_at) in enumerate(rows)
    ]


def test_prune_lowest_emission_then_oldest_then_lowest_uid() -> None:
    pool = candidates((5, 10), (3, 20), (3, 15), (3, 15))
    choice = compute_uid_to_prune(pool, block=1_000, immunity_period=10, min_non_immune_uids=0)
    assert choice == 2


def test_prune_falls_back_to_immune_uids_when_too_few_are_free() -> None:
    # registration.rs::test_registration_get_uid_to_prune_all_in_immunity_period
    pool = candidates((100, 0), (110, 1))
    assert compute_uid_to_prune(pool, block=1, immunity_period=2, min_non_immune_uids=0) == 0
    # Free uids exist but not more than the floor: the choice is among the immune ones.
    mixed = candidates((1, 0), (50, 95), (40, 96))
    assert compute_uid_to_prune(mixed, block=100, immunity_period=10, min_non_immune_uids=1) == 2
    assert compute_uid_to_prune(mixed, block=100, immunity_period=10, min_non_immune_uids=0) == 0


def test_epoch_outdated_weights_pruning_choice() -> None:
    # epoch.rs::test_outdated_weights: all four immune (period 2), uid 3 has least emission.
    pool = candidates((250_000_000, 1), (250_000_000, 1), (333_331_637, 1), (166_668_361, 1))
    assert compute_uid_to_prune(pool, block=2, immunity_period=2, min_non_immune_uids=10) == 3


def test_immortal_owner_uids_are_never_pruned() -> None:
    pool = candidates((0, 0), (5, 0))
    immortal = compute_immortal_owner_uids(owner_uid=0, owner_coldkey_uids=[], limit=1)
    assert immortal == (0,)
    choice = compute_uid_to_prune(
        pool, block=100, immunity_period=1, min_non_immune_uids=0, immortal_uids=immortal
    )
    assert choice == 1
    with pytest.raises(errors.NoUidToPrune):
        compute_uid_to_prune(
            pool[:1], block=100, immunity_period=1, min_non_immune_uids=0, immortal_uids=(0,)
        )


def test_immortal_owner_uids_keep_the_earliest_and_put_the_owner_first() -> None:
    owned = [(4, 30), (2, 10), (7, 10)]
    assert compute_immortal_owner_uids(None, owned, limit=2) == (2, 7)
    assert compute_immortal_owner_uids(9, owned, limit=2) == (9, 2)
    assert compute_immortal_owner_uids(2, owned, limit=2) == (2, 7)
    assert compute_immortal_owner_uids(9, owned, limit=0) == ()


def test_immunity_window() -> None:
    assert is_immune(registered_at=10, block=13, immunity_period=4)
    assert not is_immune(registered_at=10, block=14, immunity_period=4)


# --- the error classes -------------------------------------------------------------------


def test_error_codes_are_unique_and_documented() -> None:
    classes = all_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        if cls.__module__ == errors.__name__:
            assert cls.__doc__
            assert 2000 <= cls.code < 2100 or 2200 <= cls.code < 2300

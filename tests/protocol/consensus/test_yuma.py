"""Yuma Consensus gives the chain's bits: its tests' asserted values, the spec's gotchas.

The sequences named ``test_bonds``, ``test_active_stake``, ``test_outdated_weights``,
``test_zero_weights`` and ``test_yuma_3_*`` replay the chain's own epoch tests
(``pallets/subtensor/src/tests/epoch.rs``) through a scenario: the same stakes, weights,
blocks and parameters (mock values: tempo 1, burn registration at the test's block, no
TAO weight). Where the chain asserts exact values we assert the same values; its Yuma3
tests only assert within 1e-3, and so do we.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.protocol.consensus.errors import InvalidEpochInputs
from agora.protocol.consensus.fixed import ONE_I32F32, U64_MAX
from agora.protocol.consensus.yuma import (
    EpochInputs,
    EpochResult,
    YumaParams,
    compute_activity_cutoff_blocks,
    compute_epoch,
    compute_new_permit,
    compute_walk_lookup,
    compute_weighted_median,
)
from agora.simulate import run_scenario

M = 65_535


def fx(numerator: int, denominator: int = 1) -> int:
    return (numerator << 32) // denominator


def epoch_op(block: int, emission: int | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"op": "epoch", "block": block}
    if emission is not None:
        op["emission"] = emission
    return op


def weights_op(uid: int, uids: list[int], values: list[int], block: int) -> dict[str, Any]:
    return {"op": "set_weights", "uid": uid, "uids": uids, "values": values, "block": block}


def neurons(stakes: list[int], registered_at: int) -> list[dict[str, int]]:
    return [
        {"stake": s, "registered_at": registered_at, "last_update": registered_at} for s in stakes
    ]


def make_inputs(**overrides: Any) -> EpochInputs:
    """Two validators (uids 0, 1) and two miners (2, 3), permits held, weights fresh."""
    base: dict[str, Any] = {
        "block": 10,
        "tempo": 1,
        "emission": 1_000_000_000,
        "stake": (3, 1, 0, 0),
        "registered_at": (1, 1, 1, 1),
        "last_update": (5, 5, 1, 1),
        "validator_permit": (True, True, False, False),
        "weights": (((2, M), (3, M)), ((2, M),), (), ()),
        "bonds": ((), (), (), ()),
        "params": YumaParams(yuma3=False, max_validators=4),
    }
    base.update(overrides)
    return EpochInputs(**base)


# --- the chain's epoch tests ----------------------------------------------------------
# The chain runs these with Yuma3 off (docs/yuma.md section 3); the scenarios say so, since a
# scenario that omits it gets a new subnet's default, Yuma3.


def test_bonds_sequence_of_the_chain_yuma2() -> None:
    """epoch.rs::test_bonds: every asserted bond and every logged emission vector."""
    weights = [16_383, 32_767, 49_149, 65_535]
    ops = [epoch_op(1)]
    ops += [weights_op(u, [4, 5, 6, 7], weights, 2) for u in range(4)]
    ops += [epoch_op(2)]
    ops += [weights_op(0, [0], [M], 2), epoch_op(3)]
    ops += [weights_op(1, [1], [M], 3), epoch_op(4)]
    ops += [weights_op(2, [2], [M], 4), epoch_op(5)]
    ops += [weights_op(2, [7], [M], 5), epoch_op(6), epoch_op(7), epoch_op(8)]
    scenario = {
        "params": {"tempo": 1, "bonds_penalty": M, "max_validators": 8, "yuma3": False},
        "neurons": neurons([1, 2, 3, 4, 0, 0, 0, 0], registered_at=1),
        "ops": ops,
    }
    out = run_scenario(scenario)
    column = {2: 4, 3: 4, 4: 4, 5: 7, 6: 7, 7: 7, 8: 7}
    expected_bonds = {
        2: [16_383, 32_767, 49_151, 65_535],
        3: [14_582, 32_767, 49_151, 65_535],
        4: [12_603, 28_321, 49_151, 65_535],
        5: [12_602, 28_320, 49_150, 65_535],
        6: [10_951, 24_609, 49_150, 65_535],
        7: [9_559, 21_482, 49_150, 65_535],
        8: [8_376, 18_824, 49_150, 65_535],
    }
    for result in out[1:]:
        block = result["block"]
        assert [row[column[block]] for row in result["bonds"][:4]] == expected_bonds[block]
    expected_emission = {
        2: [49_999_998, 99_999_999, 150_000_000, 200_000_001, 49_998_779, 100_000_610,
            149_996_337, 200_004_272],
        3: [44_998_351, 101_110_561, 151_667_215, 202_223_870, 49_998_779, 100_000_610,
            149_996_337, 200_004_272],
        6: [36_443_733, 81_898_628, 163_565_493, 218_092_144, 0, 0, 0, 500_000_000],
        7: [32_799_427, 73_706_612, 168_638_129, 224_855_830, 0, 0, 0, 500_000_000],
        8: [29_518_068, 66_336_137, 173_203_134, 230_942_659, 0, 0, 0, 500_000_000],
    }  # fmt: skip
    for result in out:
        if result["block"] in expected_emission:
            assert result["emission"] == expected_emission[result["block"]]


def test_active_stake_sequence_of_the_chain() -> None:
    """epoch.rs::test_active_stake (tempo 1 gives a 13-block activity cutoff)."""
    assert compute_activity_cutoff_blocks(13_889, 1) == 13
    half = [32_767, 32_767]
    scenario = {
        "params": {"tempo": 1, "activity_cutoff": 13, "max_validators": 4, "yuma3": False},
        "neurons": neurons([1, 1, 1, 1], registered_at=0),
        "ops": [
            epoch_op(0),
            weights_op(0, [2, 3], half, 1),
            weights_op(1, [2, 3], half, 1),
            epoch_op(1),
            weights_op(0, [2, 3], half, 5_002),
            epoch_op(5_002),
            weights_op(1, [2, 3], half, 5_002),
            epoch_op(5_003),
        ],
    }
    _, first, second, third = run_scenario(scenario)
    assert first["dividends"][:2] == [32_767, 32_767]
    assert first["emission"] == [250_000_000] * 4
    assert first["bonds"][0] == [0, 0, M, M] and first["bonds"][1] == [0, 0, M, M]
    # Only uid 0 is active: it earns the EMA's new share.
    assert second["active"] == [True, False, False, False]
    assert second["dividends"][:2] == [36_044, 29_490]
    assert second["emission"][:2] == [274_999_999, 224_999_999]
    assert second["bonds"][0][2:] == [M, M] and second["bonds"][1][2:] == [53_619, 53_619]
    assert third["dividends"][:2] == [35_716, 29_818]
    assert third["emission"][:2] == [272_501_132, 227_498_866]
    assert third["bonds"][0][2:] == [M, M] and third["bonds"][1][2:] == [54_712, 54_712]


def test_outdated_weights_sequence_of_the_chain() -> None:
    """epoch.rs::test_outdated_weights: uid 3 is replaced; stale weights to it stop counting."""
    two_thirds = [2 * (M // 3), M // 3]
    scenario = {
        "params": {"tempo": 0, "max_validators": 4, "bonds_penalty": M, "yuma3": False},
        "neurons": neurons([1, 1, 1, 1], registered_at=1),
        "ops": [
            epoch_op(1),
            weights_op(0, [2, 3], two_thirds, 2),
            weights_op(1, [2, 3], two_thirds, 2),
            weights_op(2, [2], [M], 2),
            weights_op(3, [3], [M], 2),
            epoch_op(2),
            {"op": "replace_neuron", "uid": 3, "block": 2, "stake": 0},
            weights_op(0, [2, 3], two_thirds, 3),
            epoch_op(3),
        ],
    }
    _, before, after = run_scenario(scenario)
    assert before["emission"] == [250_000_000, 250_000_000, 333_331_637, 166_668_361]
    assert after["dividends"][0] == 32_767
    assert after["emission"] == [250_000_000, 250_000_000, 500_000_000, 0]
    # Tempo 0: nothing is bond-masked; uid 0 alone weights the new uid 3.
    assert after["bonds"][0][2] == M and after["bonds"][0][3] == M


def test_zero_weights_sequence_of_the_chain_uses_the_stake_fallback() -> None:
    """epoch.rs::test_zero_weights: with E_sum == 0 emission follows (active) stake."""
    scenario = {
        "params": {"tempo": 65_534},
        "neurons": neurons([1, 0], registered_at=1),
        "ops": [
            epoch_op(1),  # no weights, no permits yet
            weights_op(1, [1], [M], 1),  # a server's self-weight counts for nothing
            epoch_op(1),
            weights_op(0, [1], [M], 2),
            {"op": "replace_neuron", "uid": 1, "block": 2},  # outdates uid 0's weight
            epoch_op(2),
            weights_op(0, [1], [M], 3),
            epoch_op(3),
        ],
    }
    first, second, third, fourth = run_scenario(scenario)
    for result in (first, second, third):
        assert result["emission"] == [1_000_000_000, 0]
        assert result["incentive"] == [0, 0]
        assert result["miner_emission"] == [0, 0]
    assert fourth["emission"] == [500_000_000, 500_000_000]


def yuma3_scenario(
    stakes: list[int], schedule: list[list[list[int]] | None], uids: list[int], *, liquid: bool
) -> dict[str, Any]:
    """epoch.rs::setup_yuma_3_scenario, then one epoch per schedule entry."""
    ops: list[dict[str, Any]] = [epoch_op(2)]
    block = 2
    for rows in schedule:
        for uid, row in enumerate(rows or []):
            ops.append(weights_op(uid, uids, row, block))
        block += 1
        ops.append(epoch_op(block))
    params = {
        "tempo": 1,
        "bonds_penalty": 0,
        "bonds_moving_average": 975_000,
        "kappa": M // 2,
        "liquid_alpha": liquid,
        # set_alpha_values_32(0.1, 0.3): floor(I32F32(0.1) * 65535), floor(I32F32(0.3) * 65535)
        "alpha_low": 6_553,
        "alpha_high": 19_660,
        "yuma3": True,
        "max_validators": 3,
    }
    return {"params": params, "neurons": neurons(stakes, registered_at=1), "ops": ops}


KAPPA_MOVES_FIRST = [[[M, 0]] * 3, [[0, M], [M, 0], [M, 0]], [[0, M], [0, M], [M, 0]], [[0, M]] * 3]


def test_yuma3_kappa_moves_first_matches_the_chain_targets() -> None:
    out = run_scenario(
        yuma3_scenario([8, 1, 1, 0, 0], [*KAPPA_MOVES_FIRST, None, None], [3, 4], liquid=True)
    )[1:]
    bonds = [
        [[0.1013, 0.0], [0.1013, 0.0], [0.1013, 0.0]],
        [[0.0908, 0.1013], [0.3697, 0.0], [0.3697, 0.0]],
        [[0.0815, 0.1924], [0.3170, 0.1013], [0.5580, 0.0]],
        [[0.0731, 0.2742], [0.2765, 0.1924], [0.4306, 0.1013]],
        [[0.0656, 0.3478], [0.2435, 0.2742], [0.3589, 0.1924]],
        [[0.0588, 0.4139], [0.2157, 0.3478], [0.3089, 0.2742]],
    ]
    dividends = [
        [0.8000, 0.1000, 0.1000, 0.0, 0.0],
        [1.0000, 0.0000, 0.0000, 0.0, 0.0],
        [0.9382, 0.0618, 0.0000, 0.0, 0.0],
        [0.8819, 0.0773, 0.0407, 0.0, 0.0],
        [0.8564, 0.0844, 0.0592, 0.0, 0.0],
        [0.8418, 0.0884, 0.0697, 0.0, 0.0],
    ]
    for result, target_bonds, target_dividends in zip(out, bonds, dividends, strict=True):
        for got, want in zip(result["dividends"], target_dividends, strict=True):
            assert abs(got / M - want) < 1e-3
        for validator in range(3):
            for k in range(2):
                assert (
                    abs(result["bonds"][validator][3 + k] / M - target_bonds[validator][k]) < 1e-3
                )


H = M // 2
YUMA3_CASES = {
    "kappa_moves_second": (
        [8, 1, 1, 0, 0],
        [[[M, 0]] * 3, [[M, 0], [0, M], [M, 0]], [[0, M], [0, M], [M, 0]], [[0, M]] * 3],
        [[0.8, 0.1, 0.1], [0.8446, 0.0498, 0.1056], [0.6868, 0.3132, 0.0],
         [0.7421, 0.2090, 0.0489], [0.7625, 0.1706, 0.0669], [0.7730, 0.1508, 0.0762]],
    ),
    "kappa_moves_last": (
        [8, 1, 1, 0, 0],
        [[[M, 0]] * 3, [[M, 0], [0, M], [M, 0]], [[M, 0], [0, M], [0, M]], [[0, M]] * 3],
        [[0.8, 0.1, 0.1], [0.8446, 0.0498, 0.1056], [0.8966, 0.0333, 0.0701],
         [0.4663, 0.3210, 0.2127], [0.5976, 0.2340, 0.1683], [0.6592, 0.1932, 0.1475]],
    ),
    "stable_miner": (
        [8, 1, 1, 0, 0, 0],
        [[[H, 0, H]] * 3, [[H, 0, H], [0, H, H], [H, 0, H]], [[0, H, H], [0, H, H], [H, 0, H]],
         [[0, H, H]] * 3],
        [[0.8, 0.1, 0.1], [0.8226, 0.0745, 0.1028], [0.7750, 0.1685, 0.0565],
         [0.7864, 0.1372, 0.0764], [0.7912, 0.1241, 0.0847], [0.7937, 0.1173, 0.0890]],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(YUMA3_CASES))
def test_yuma3_dividends_match_the_chain_targets(name: str) -> None:
    stakes, schedule, targets = YUMA3_CASES[name]
    uids = list(range(3, len(stakes)))
    full: list[list[list[int]] | None] = [*schedule, None, None]
    out = run_scenario(yuma3_scenario(stakes, full, uids, liquid=True))[1:]
    for result, target in zip(out, targets, strict=True):
        for got, want in zip(result["dividends"], target, strict=False):
            assert abs(got / M - want) < 1e-3
    if name == "stable_miner":  # its bond targets (to uids 3, 4, 5) after the last epoch
        last = [[0.0623, 0.1739, 0.2366], [0.0296, 0.2391, 0.2366], [0.1263, 0.1371, 0.2366]]
        for row, target_row in zip(out[-1]["bonds"][:3], last, strict=True):
            assert all(abs(b / M - t) < 1e-3 for b, t in zip(row[3:], target_row, strict=True))


@pytest.mark.parametrize(
    ("liquid", "targets"),
    [
        (True, [[0.3782, 0.3782, 0.2436], [0.3628, 0.3628, 0.2745], [0.3541, 0.3541, 0.2917],
                [0.3487, 0.3487, 0.3026]]),
        (False, [[0.3734, 0.3734, 0.2532], [0.3611, 0.3611, 0.2779], [0.3541, 0.3541, 0.2919],
                 [0.3495, 0.3495, 0.3009]]),
    ],
)  # fmt: skip
def test_yuma3_one_epoch_switch_matches_the_chain_targets(
    liquid: bool, targets: list[list[float]]
) -> None:
    together = [[M, 0]] * 3
    schedule: list[list[list[int]] | None] = [together, together, [[M, 0], [M, 0], [0, M]]]
    schedule += [together] * 3
    out = run_scenario(yuma3_scenario([33, 33, 34, 0, 0], schedule, [3, 4], liquid=liquid))[1:]
    for result in out[:2]:
        start = zip(result["dividends"], [0.33, 0.33, 0.34, 0.0, 0.0], strict=True)
        assert all(abs(d / M - t) < 1e-3 for d, t in start)
    for result, target in zip(out[2:], targets, strict=True):
        for got, want in zip(result["dividends"], target, strict=False):
            assert abs(got / M - want) < 1e-3
    if not liquid:  # test_yuma_3_liquid_alpha_disabled also lists these bonds (to uid 3, 4)
        assert [row[3:] for row in out[2]["bonds"][:3]] == [[4_792, 0], [4_792, 0], [3_154, 1_638]]


def test_yuma3_drops_bonds_at_columns_a_validator_stops_weighting() -> None:
    """Spec 11.1: with the zero weight omitted, A's bond to miner 3 goes to 0 at once."""
    scenario = yuma3_scenario([8, 1, 1, 0, 0], KAPPA_MOVES_FIRST[:2], [3, 4], liquid=True)
    explicit = run_scenario(scenario)
    for op in scenario["ops"]:
        if op["op"] == "set_weights":  # what the SDK submits: zeros filtered out
            kept = [(u, v) for u, v in zip(op["uids"], op["values"], strict=True) if v > 0]
            op["uids"], op["values"] = [u for u, _ in kept], [v for _, v in kept]
    omitted = run_scenario(scenario)
    assert abs(explicit[2]["bonds"][0][3] / M - 0.0908) < 1e-3
    assert omitted[2]["bonds"][0][3] == 0
    assert omitted[2]["dividends"] == explicit[2]["dividends"]


# --- docs/yuma.md section 11: gotchas ---------------------------------------------------------


def test_old_permits_mask_and_new_permits_are_stored() -> None:
    inputs = make_inputs(validator_permit=(False, False, False, False))
    first = compute_epoch(inputs)
    # Nobody held a permit: weights do not count, yet permits are granted for next time.
    assert first.incentive_u16 == (0, 0, 0, 0)
    assert first.validator_permit == (True, True, False, False)
    second = compute_epoch(replace(inputs, validator_permit=first.validator_permit))
    assert second.incentive_u16[2] > 0


def test_permitted_validators_without_weights_count_as_zero_in_the_median() -> None:
    # Uid 0 puts half its (normalized) weight on uid 3; uid 1 puts none there, which counts
    # as a score of 0, not as an abstention.
    assert compute_epoch(make_inputs(stake=(3, 1, 0, 0))).consensus_u16[3] == M // 2
    # Half the stake says 0.5, half says 0: kappa < 0.5 resolves to the higher weight.
    assert compute_epoch(make_inputs(stake=(1, 1, 0, 0))).consensus_u16[3] == M // 2
    # Three quarters of the stake scores uid 3 at 0.
    assert compute_epoch(make_inputs(stake=(1, 3, 0, 0))).consensus_u16[3] == 0


def test_owner_keeps_its_self_weight_others_lose_theirs() -> None:
    weights = (((0, M), (2, M)), ((1, M), (2, M)), (), ())
    with_owner = compute_epoch(make_inputs(weights=weights, owner_uid=0, stake=(1, 1, 0, 0)))
    without = compute_epoch(make_inputs(weights=weights, stake=(1, 1, 0, 0)))
    assert with_owner.incentive_u16[0] > 0  # the owner's self-weight survived
    assert with_owner.incentive_u16[1] == 0  # uid 1's self-weight did not
    assert without.incentive_u16[0] == 0


def test_owner_always_has_a_permit_and_no_stake_threshold() -> None:
    params = YumaParams(yuma3=False, max_validators=1, stake_threshold=10)
    result = compute_epoch(make_inputs(params=params, owner_uid=3, stake=(30, 5, 0, 5)))
    assert result.validator_permit == (True, False, False, True)
    assert result.stake_u16[3] > 0 and result.stake_u16[1] == 0


def test_owner_can_self_weight_like_the_chain_test() -> None:
    """epoch.rs::test_can_set_self_weight_as_subnet_owner: equal incentive to both uids."""
    inputs = EpochInputs(
        block=2,
        tempo=360,
        emission=1_000_000_000,
        stake=(5_000_000_000_000, 0),
        registered_at=(1, 1),
        last_update=(2, 0),
        validator_permit=(True, False),
        weights=(((0, M // 2), (1, M // 2)), ()),
        bonds=((), ()),
        params=YumaParams(yuma3=False),
        owner_uid=0,
    )
    result = compute_epoch(inputs)
    assert result.miner_emission[0] == result.miner_emission[1] > 0


def test_weights_set_before_a_registration_are_outdated() -> None:
    # Uid 3 re-registered at block 6, after uid 0's and uid 1's last update (5).
    result = compute_epoch(make_inputs(registered_at=(1, 1, 1, 6)))
    assert result.incentive_u16[3] == 0
    assert result.incentive_u16[2] == M


def test_commit_block_mask_hides_uids_registered_after_the_commit() -> None:
    base = make_inputs(registered_at=(1, 1, 1, 4), last_update=(5, 5, 1, 1))
    assert compute_epoch(base).incentive_u16[3] > 0
    # Uid 0 committed at block 3, before uid 3 registered at 4: its weight on 3 is masked.
    masked = compute_epoch(replace(base, commit_blocks=(3, None, None, None)))
    assert masked.incentive_u16[3] == 0
    # A commit at block 4 (not before the registration) masks nothing.
    assert compute_epoch(replace(base, commit_blocks=(4, None, None, None))).incentive_u16[3] > 0


def test_bonds_to_a_replaced_uid_are_masked_for_one_tempo() -> None:
    scenario: dict[str, Any] = {
        "params": {"tempo": 2, "max_validators": 4, "yuma3": False},
        "neurons": neurons([1, 1, 0, 0], registered_at=1),
        "ops": [
            epoch_op(1),
            weights_op(0, [2, 3], [M, M], 2),
            weights_op(1, [2, 3], [M, M], 2),
            epoch_op(4),
            {"op": "replace_neuron", "uid": 3, "block": 5},
            epoch_op(6),
        ],
    }
    _, before, after = run_scenario(scenario)
    assert before["bonds"][0][3] == M
    # last_tempo = 6 - 2 = 4 <= 5: the old bonds to uid 3 are dropped before the EMA, and
    # the weights to it were zeroed by the replacement, so no new bond forms either.
    assert after["bonds"][0][3] == 0 and after["bonds"][1][3] == 0
    assert after["bonds"][0][2] == M


def test_emission_fallback_to_active_stake_then_to_stake() -> None:
    no_weights = make_inputs(weights=((), (), (), ()))
    result = compute_epoch(no_weights)
    assert result.emission == (750_000_000, 250_000_000, 0, 0)
    assert result.validator_emission == result.emission
    assert result.miner_emission == (0, 0, 0, 0)
    # Everyone inactive: the active stake is zero, so emission follows the raw stake.
    stale = replace(no_weights, block=10_000, params=YumaParams(yuma3=False, activity_cutoff=10))
    result = compute_epoch(stale)
    assert result.active == (False, False, False, False)
    assert result.emission == (750_000_000, 250_000_000, 0, 0)


def test_bonds_write_rule() -> None:
    old_row = ((2, 1_000),)
    inputs = make_inputs(
        stake=(3, 1, 0, 0),
        validator_permit=(True, True, False, False),
        bonds=((), ((2, 500),), old_row, ()),
        params=YumaParams(yuma3=False, max_validators=1),
    )
    result = compute_epoch(inputs)
    assert result.validator_permit == (True, False, False, False)
    assert result.bonds_u16[0] != ()  # new permit: the new row
    assert result.bonds_u16[1] == ()  # lost its permit: emptied
    assert result.bonds_u16[2] == old_row  # neither: untouched (docs/yuma.md step 13)


def test_stake_threshold_filters_stake_and_permits() -> None:
    params = YumaParams(yuma3=False, stake_threshold=2, max_validators=4)
    result = compute_epoch(make_inputs(params=params))
    assert result.stake_u16[1] == 0
    assert result.validator_permit[:2] == (True, False)


def test_new_permits_evict_the_lower_uid_on_ties() -> None:
    stake = [fx(1, 4)] * 4
    assert compute_new_permit(stake, 2, None) == [False, False, True, True]
    assert compute_new_permit(stake, 5, None) == [True] * 4
    assert compute_new_permit([0, fx(1)], 5, None) == [False, True]


# --- the weighted median ---------------------------------------------------------------


def test_weighted_median_by_hand() -> None:
    stake = [fx(1, 4)] * 4
    kappa = fx(1, 2)
    minority = fx(1) - kappa
    median = compute_weighted_median
    # Scores 0.1, 0.2, 0.3, 0.4: half the stake backs >= 0.3, so 0.3 is the median.
    scores = [fx(1, 10), fx(2, 10), fx(3, 10), fx(4, 10)]
    assert median(stake, scores, [0, 1, 2, 3], minority, 0, fx(1)) == scores[2]
    # Order of the list does not change the value here.
    shuffled = [scores[i] for i in (3, 0, 2, 1)]
    assert median(stake, shuffled, [0, 1, 2, 3], minority, 0, fx(1)) == scores[2]
    assert median([], [], [], minority, 0, 0) == 0
    assert median([fx(1)], [fx(7, 10)], [0], minority, 0, fx(1)) == fx(7, 10)
    assert median([fx(1)], [fx(1), fx(1)], [0], minority, 0, fx(1)) == 0  # shapes differ


@given(
    st.lists(st.integers(min_value=1, max_value=1_000), min_size=1, max_size=12),
    st.data(),
)
@settings(max_examples=150, deadline=None)
def test_weighted_median_is_a_score_backed_by_kappa(stakes: list[int], data: Any) -> None:
    scores = data.draw(
        st.lists(
            st.sampled_from([0, fx(1, 10), fx(1, 2), fx(1)]),
            min_size=len(stakes),
            max_size=len(stakes),
        )
    )
    total = sum(stakes)
    use_stake = [fx(s, total) for s in stakes]
    stake_sum = sum(use_stake)
    kappa = fx(1, 2) - 1
    minority = stake_sum - kappa
    value = compute_weighted_median(
        use_stake, scores, list(range(len(stakes))), minority, 0, stake_sum
    )
    assert value in scores
    # At least kappa of the stake scores at or above the median (up to rounding of stake).
    backing = sum(s for s, score in zip(use_stake, scores, strict=True) if score >= value)
    assert backing >= kappa - len(stakes)


# --- the liquid-alpha lookup walk -----------------------------------------------------


def literal_walk(row: list[tuple[int, int]], n: int) -> dict[int, int]:
    """The chain's loop as written: a peekable cursor, columns 0..n."""
    reads: dict[int, int] = {}
    position = 0
    for j in range(n):
        while position < len(row):
            uid, value = row[position]
            if uid < j:
                position += 1
                continue
            if uid == j:
                reads[j] = value
            break
    return reads


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=9)),
        max_size=10,
    )
)
def test_walk_lookup_reads_what_the_chain_loop_reads(row: list[tuple[int, int]]) -> None:
    assert compute_walk_lookup(row, 10) == literal_walk(row, 10)


# --- properties -----------------------------------------------------------------------


@st.composite
def epoch_inputs(draw: st.DrawFn) -> EpochInputs:
    n = draw(st.integers(min_value=1, max_value=7))
    u16 = st.integers(min_value=0, max_value=M)
    block = draw(st.integers(min_value=0, max_value=60))
    blocks = st.integers(min_value=0, max_value=60)

    def row() -> tuple[tuple[int, int], ...]:
        uids = draw(st.lists(st.integers(min_value=0, max_value=n - 1), unique=True))
        return tuple((j, draw(u16)) for j in uids)

    params = YumaParams(
        kappa_u16=draw(u16),
        bonds_penalty_u16=draw(u16),
        bonds_moving_average=draw(st.integers(min_value=0, max_value=1_000_000)),
        max_validators=draw(st.integers(min_value=0, max_value=8)),
        activity_cutoff=draw(st.integers(min_value=0, max_value=40)),
        stake_threshold=draw(st.integers(min_value=0, max_value=3)),
        yuma3=draw(st.booleans()),
        liquid_alpha=draw(st.booleans()),
        alpha_low_u16=draw(st.integers(min_value=0, max_value=30_000)),
        alpha_high_u16=draw(st.integers(min_value=30_000, max_value=M)),
        alpha_sigmoid_steepness=draw(st.integers(min_value=-2_000, max_value=2_000)),
    )
    return EpochInputs(
        block=block,
        tempo=draw(st.integers(min_value=0, max_value=10)),
        last_step_block=draw(st.integers(min_value=0, max_value=60)),
        emission=draw(st.integers(min_value=0, max_value=U64_MAX)),
        stake=tuple(draw(st.integers(min_value=0, max_value=10**12)) for _ in range(n)),
        registered_at=tuple(draw(blocks) for _ in range(n)),
        last_update=tuple(draw(blocks) for _ in range(n)),
        validator_permit=tuple(draw(st.booleans()) for _ in range(n)),
        weights=tuple(row() for _ in range(n)),
        bonds=tuple(row() for _ in range(n)),
        params=params,
        owner_uid=draw(st.none() | st.integers(min_value=0, max_value=n - 1)),
        commit_blocks=draw(st.none() | st.tuples(*[st.none() | blocks for _ in range(n)])),
    )


def assert_in_range(result: EpochResult, inputs: EpochInputs) -> None:
    n = len(inputs.stake)
    for vector in (
        result.stake_u16,
        result.consensus_u16,
        result.incentive_u16,
        result.dividends_u16,
        result.validator_trust_u16,
    ):
        assert len(vector) == n and all(0 <= v <= M for v in vector)
    for row in result.bonds_u16:
        assert all(0 <= j < n and 0 <= v <= M for j, v in row)


@given(epoch_inputs())
@settings(max_examples=300, deadline=None)
def test_epoch_never_emits_more_than_given_and_stays_in_range(inputs: EpochInputs) -> None:
    result = compute_epoch(inputs)
    assert sum(result.emission) <= inputs.emission
    assert sum(result.miner_emission) + sum(result.validator_emission) <= inputs.emission
    assert_in_range(result, inputs)
    permits = sum(result.validator_permit)
    assert permits <= inputs.params.max_validators + (inputs.owner_uid is not None) or (
        len(inputs.stake) < inputs.params.max_validators
    )
    assert compute_epoch(inputs) == result  # deterministic


@given(epoch_inputs())
@settings(max_examples=100, deadline=None)
def test_emission_is_fully_distributed_up_to_flooring(inputs: EpochInputs) -> None:
    result = compute_epoch(inputs)
    threshold, owner = inputs.params.stake_threshold, inputs.owner_uid
    if any(s > 0 and (s >= threshold or uid == owner) for uid, s in enumerate(inputs.stake)):
        # Each of n shares is floored twice (to 2**-32, then to a base unit).
        slack = len(inputs.stake) * (inputs.emission // (1 << 31) + 2) + inputs.emission // 10**6
        assert inputs.emission - sum(result.emission) <= slack


# --- invalid inputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"registered_at": (1, 1, 1)},
        {"weights": (((2, M),), (), ())},
        {"stake": (-1, 1, 0, 0)},
        {"weights": (((9, 70_000),), (), (), ())},
        {"params": YumaParams(kappa_u16=70_000)},
        {"params": YumaParams(alpha_sigmoid_steepness=40_000)},
        {"commit_blocks": (None,)},
        {"owner_uid": -1},
    ],
)
def test_invalid_epoch_inputs_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidEpochInputs) as raised:
        compute_epoch(make_inputs(**overrides))
    assert raised.value.code == 2050


def test_a_single_uid_subnet_pays_everything_to_it() -> None:
    inputs = make_inputs(
        stake=(5,),
        registered_at=(0,),
        last_update=(0,),
        validator_permit=(False,),
        weights=((),),
        bonds=((),),
    )
    result = compute_epoch(inputs)
    assert result.emission == (1_000_000_000,)
    assert result.stake_u16 == (M,)
    assert ONE_I32F32 == 1 << 32

"""The vectorized epoch gives the readable epoch's bits: a differential test.

``compute_epoch_fast`` must return exactly ``compute_epoch``'s result on every input (spec
``yuma.md``; STYLE rule 12). Random epochs, drawn by a seeded generator, cover both bond
paths, liquid alpha, the owner uid, commit-reveal masks, outdated weights, empty rows, zero
and huge stakes, ties in the median, unsorted and foreign-column rows, and odd parameters.
``compute_epoch_vectorized`` is compared directly (``None`` means it handed the epoch to
the readable path); most epochs must take the vectorized path, or the test proves nothing.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np
import pytest

from agora.protocol.consensus.errors import InvalidEpochInputs
from agora.protocol.consensus.fixed import (
    I32F32,
    ONE_I32F32,
    U64_MAX,
    compute_exp,
    compute_exp_safe,
    compute_normalized,
    safe_div,
    saturating_div,
    saturating_mul,
    saturating_sub,
)
from agora.protocol.consensus.yuma import (
    EpochInputs,
    EpochResult,
    YumaParams,
    compute_epoch,
    compute_weighted_median,
)
from agora.protocol.consensus.yuma_fast import (
    Layout,
    compute_consensus_vectorized,
    compute_epoch_fast,
    compute_epoch_vectorized,
    compute_exp_safe_vectorized,
    compute_exp_vectorized,
)
from agora.protocol.consensus.yuma_fast import (
    _div_nonneg as div_nonneg,
)
from agora.protocol.consensus.yuma_fast import (
    _mul_by_scalar as mul_by_scalar,
)
from agora.protocol.consensus.yuma_fast import (
    _mul_signed as mul_signed,
)
from agora.protocol.consensus.yuma_fast import (
    _one_over as one_over,
)

M = 65_535
TIE_VALUES = (0, 1, 16_383, 32_767, 32_768, 49_151, M)

Rng = np.random.Generator


# --- random inputs -------------------------------------------------------------------


def _chance(rng: Rng, percent: int) -> bool:
    return int(rng.integers(0, 100)) < percent


def _pick(rng: Rng, options: tuple[int, ...] | list[int]) -> int:
    return int(options[int(rng.integers(0, len(options)))])


def _random_u64(rng: Rng, low: int, high: int) -> int:
    return int(rng.integers(low, high, endpoint=True, dtype=np.uint64))


def _random_value(rng: Rng, ties: bool) -> int:
    return _pick(rng, TIE_VALUES) if ties else int(rng.integers(0, M + 1))


def _random_row(rng: Rng, n: int, *, ties: bool, dense: bool) -> tuple[tuple[int, int], ...]:
    """A sparse row: any subset of uids (a few beyond n), sorted or not."""
    if _chance(rng, 15):
        return ()
    span = n + (3 if _chance(rng, 10) else 0)
    count = span if dense else int(rng.integers(1, span + 1))
    cols = [int(c) for c in rng.choice(span, size=count, replace=False)]
    if _chance(rng, 70):
        cols.sort()
    values = [_random_value(rng, ties) for _ in cols]
    if values and _chance(rng, 70):
        values[int(rng.integers(0, len(values)))] = M  # set_weights max-upscales rows
    return tuple(zip(cols, values, strict=True))


def _repeat_a_uid(rng: Rng, rows: list[tuple[tuple[int, int], ...]]) -> None:
    """A uid twice in one row: the ledger never stores it, only the readable path takes it."""
    uid = int(rng.integers(0, len(rows)))
    if rows[uid]:
        rows[uid] = (*rows[uid], (rows[uid][0][0], _random_value(rng, ties=False)))


def _random_stake(rng: Rng) -> int:
    kind = int(rng.integers(0, 10))
    if kind < 2:
        return 0
    if kind < 4:
        return _pick(rng, (1, 2, 3, 1_000))  # equal stakes: ties in permits and the median
    if kind == 4:
        return _random_u64(rng, U64_MAX - 1_000, U64_MAX)
    return int(rng.integers(1, 10**15))


def random_params(rng: Rng, n: int) -> YumaParams:
    return YumaParams(
        kappa_u16=_pick(rng, (0, 1, 32_767, 32_768, M, int(rng.integers(0, M + 1)))),
        bonds_penalty_u16=_pick(rng, (0, M, M, int(rng.integers(0, M + 1)))),
        bonds_moving_average=_pick(
            rng,
            (900_000, 900_000, 0, 1_000_000, 975_000, int(rng.integers(0, 1_000_001))),
        )
        if _chance(rng, 97)
        else 2_000_000,  # an EMA weight of -1: only the readable path takes it
        max_validators=int(rng.integers(0, n + 3)),
        activity_cutoff=_pick(rng, (5_000, int(rng.integers(0, 30)))),
        stake_threshold=_pick(rng, (0, 0, 3, 10**12)),
        yuma3=_chance(rng, 50),
        liquid_alpha=_chance(rng, 50),
        alpha_low_u16=_pick(rng, (45_875, 0, int(rng.integers(0, M + 1)))),
        alpha_high_u16=_pick(rng, (58_982, M, int(rng.integers(0, M + 1)))),
        alpha_sigmoid_steepness=_pick(
            rng, (1_000, 0, -1_000, 32_767, -32_768, int(rng.integers(-(1 << 15), 1 << 15)))
        ),
    )


def random_inputs(rng: Rng, n: int, *, validators: int | None = None) -> EpochInputs:
    """One epoch's inputs; ``validators`` given: that many dense rows and no others."""
    ties = _chance(rng, 40)
    block = int(rng.integers(0, 40))
    permitted = [_chance(rng, 50) for _ in range(n)]
    if validators is not None:
        permitted = [uid < validators for uid in range(n)]
    weights: list[tuple[tuple[int, int], ...]] = []
    bonds: list[tuple[tuple[int, int], ...]] = []
    for uid in range(n):
        setter = validators is None or permitted[uid]
        dense = validators is not None
        weights.append(_random_row(rng, n, ties=ties, dense=dense) if setter else ())
        holds_bonds = permitted[uid] or (validators is None and _chance(rng, 10))
        bonds.append(_random_row(rng, n, ties=False, dense=dense) if holds_bonds else ())
    if _chance(rng, 4):
        _repeat_a_uid(rng, weights if _chance(rng, 50) else bonds)
    commit_blocks = None
    if _chance(rng, 30):
        commit_blocks = tuple(
            None if _chance(rng, 30) else int(rng.integers(0, 40)) for _ in range(n)
        )
    owner_uid = None
    if _chance(rng, 40):
        owner_uid = int(rng.integers(0, n + 2))
    return EpochInputs(
        block=block,
        tempo=_pick(rng, (0, 1, 10, 360)),
        last_step_block=_pick(rng, (0, 0, int(rng.integers(0, 40)))),
        emission=_pick(rng, (10**9, 0, _random_u64(rng, 0, U64_MAX))),
        stake=tuple(_random_stake(rng) for _ in range(n)),
        registered_at=tuple(int(v) for v in rng.integers(0, 25, size=n)),
        last_update=tuple(int(v) for v in rng.integers(0, 40, size=n)),
        validator_permit=tuple(permitted),
        weights=tuple(weights),
        bonds=tuple(bonds),
        params=random_params(rng, n),
        owner_uid=owner_uid,
        commit_blocks=commit_blocks,
    )


def _differences(expected: EpochResult, actual: EpochResult) -> list[str]:
    return [
        f.name for f in fields(EpochResult) if getattr(expected, f.name) != getattr(actual, f.name)
    ]


def check_same(inputs: EpochInputs) -> bool:
    """Assert the vectorized epoch equals the readable one; True if it did not fall back."""
    expected = compute_epoch(inputs)
    actual = compute_epoch_vectorized(inputs)
    if actual is None:
        return False
    assert actual == expected, f"fields differ: {_differences(expected, actual)}\n{inputs!r}"
    return True


# --- the differential tests ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_random_small_subnets_give_the_same_epoch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases, vectorized = 350, 0
    for _ in range(cases):
        n = int(rng.integers(1, 65)) if _chance(rng, 60) else int(rng.integers(1, 9))
        vectorized += check_same(random_inputs(rng, n))
    # Fallbacks: a uid twice in a row, an EMA weight outside [0, 1], stakes past 2**63.
    assert vectorized >= cases * 9 // 10


@pytest.mark.parametrize("seed", range(4))
def test_epoch_sequences_give_the_same_epochs(seed: int) -> None:
    """Bonds and permits fed from one epoch to the next, as the ledger does."""
    rng = np.random.default_rng(1_000 + seed)
    epochs, vectorized = 0, 0
    for _ in range(40):
        inputs = random_inputs(rng, int(rng.integers(1, 33)))
        for step in range(5):
            expected = compute_epoch(inputs)
            vectorized += check_same(inputs)
            epochs += 1
            fresh = random_inputs(rng, len(inputs.stake))
            inputs = replace(
                inputs,
                block=inputs.block + int(rng.integers(1, 4)),
                last_step_block=inputs.block if step % 2 else 0,
                validator_permit=expected.validator_permit,
                bonds=expected.bonds_u16,
                weights=fresh.weights if _chance(rng, 50) else inputs.weights,
                last_update=fresh.last_update if _chance(rng, 30) else inputs.last_update,
            )
    # A sequence keeps its parameters, so one that falls back does so five times.
    assert vectorized >= epochs * 4 // 5


@pytest.mark.parametrize(
    ("n", "validators", "yuma3", "liquid_alpha"),
    [
        (256, 64, False, False),
        (256, 64, True, True),
        (512, 16, True, False),
        (1024, 16, False, True),
        (1024, 24, True, True),
    ],
)
def test_large_dense_subnets_give_the_same_epoch(
    n: int, validators: int, yuma3: bool, liquid_alpha: bool
) -> None:
    rng = np.random.default_rng(n + validators)
    inputs = random_inputs(rng, n, validators=validators)
    params = replace(
        inputs.params,
        yuma3=yuma3,
        liquid_alpha=liquid_alpha,
        bonds_moving_average=900_000,
        max_validators=validators,
    )
    assert check_same(replace(inputs, params=params))


def test_the_public_function_falls_back_to_the_same_epoch() -> None:
    rng = np.random.default_rng(7)
    inputs = random_inputs(rng, 12)
    weights = list(inputs.weights)
    weights[0] = ((3, M), (3, 7), (5, M))  # a repeated uid: only the readable path takes it
    outside = replace(
        inputs, weights=tuple(weights), validator_permit=(True,) * 12, stake=(10,) * 12
    )
    assert compute_epoch_vectorized(outside) is None
    assert compute_epoch_fast(outside) == compute_epoch(outside)
    for _ in range(20):
        inputs = random_inputs(rng, int(rng.integers(1, 20)))
        assert compute_epoch_fast(inputs) == compute_epoch(inputs)


@pytest.mark.parametrize("yuma3", [False, True])
def test_a_subnet_without_uids_gives_the_same_epoch(yuma3: bool) -> None:
    empty = EpochInputs(
        block=5,
        tempo=1,
        emission=10,
        stake=(),
        registered_at=(),
        last_update=(),
        validator_permit=(),
        weights=(),
        bonds=(),
        params=YumaParams(yuma3=yuma3),
    )
    assert check_same(empty)


def _base_inputs() -> EpochInputs:
    return EpochInputs(
        block=10,
        tempo=1,
        emission=10**9,
        stake=(3, 1, 0, 0),
        registered_at=(1, 1, 1, 1),
        last_update=(5, 5, 1, 1),
        validator_permit=(True, True, False, False),
        weights=(((2, M), (3, M)), ((2, M),), (), ()),
        bonds=((), (), (), ()),
        params=YumaParams(yuma3=False, max_validators=4),
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"stake": (3, 1, 0)},
        {"weights": (((2, M),), (), ())},
        {"bonds": ((), (), (), (), ())},
        {"weights": (((2, M + 1),), (), (), ())},
        {"weights": (((-1, M),), (), (), ())},
        {"bonds": ((), ((1 << 70, 1),), (), ())},
        {"stake": (-1, 1, 0, 0)},
        {"stake": (U64_MAX + 1, 1, 0, 0)},
        {"last_update": (5, 5, 1)},
        {"owner_uid": M + 1},
        {"params": YumaParams(kappa_u16=M + 1)},
        {"params": YumaParams(alpha_sigmoid_steepness=1 << 15)},
        {"commit_blocks": (None,)},
        # Several faults: the readable order decides which error is raised.
        {"registered_at": (1,), "weights": (((2, -5),), (), (), ())},
        {"weights": (((2, M + 1),), (), (), ()), "owner_uid": -1},
    ],
)
def test_invalid_inputs_raise_the_readable_error(overrides: dict[str, Any]) -> None:
    inputs = replace(_base_inputs(), **overrides)
    with pytest.raises(InvalidEpochInputs) as readable:
        compute_epoch(inputs)
    with pytest.raises(InvalidEpochInputs) as fast:
        compute_epoch_fast(inputs)
    assert type(fast.value) is type(readable.value)
    assert str(fast.value) == str(readable.value)


# --- the steps and helpers that are not the readable code ---------------------------


def test_consensus_by_sorting_equals_the_partition_search() -> None:
    """Many columns with ties and zero stakes, against ``compute_weighted_median`` itself."""
    rng = np.random.default_rng(11)
    palette = (0, 1, ONE_I32F32 // 4, ONE_I32F32 // 2, ONE_I32F32)
    for _ in range(400):
        voters = int(rng.integers(1, 12))
        n = voters + int(rng.integers(0, 6))  # uids 0..voters-1 hold the rows
        active_stake = [_pick(rng, (0, 1, 5, ONE_I32F32 // 3, ONE_I32F32)) for _ in range(voters)]
        kappa = _pick(rng, (0, 1, ONE_I32F32 // 2 - 1, ONE_I32F32 // 2, ONE_I32F32))
        scores = [[_pick(rng, palette) for _ in range(n)] for _ in range(voters)]
        layout = Layout(
            n=n,
            live=np.arange(voters, dtype=np.int64),
            position=np.array([*range(voters), *[-1] * (n - voters)], dtype=np.int64),
        )
        dense = np.array(scores, dtype=np.int64)
        got = compute_consensus_vectorized(active_stake + [0] * (n - voters), dense, layout, kappa)
        use_stake = compute_normalized([s for s in active_stake if s > 0])
        minority = saturating_sub(sum(use_stake), kappa)
        columns = [
            [row[j] for row, s in zip(scores, active_stake, strict=True) if s > 0] for j in range(n)
        ]
        expected = [
            compute_weighted_median(
                use_stake, column, list(range(len(use_stake))), minority, 0, sum(use_stake)
            )
            for column in columns
        ]
        assert got == expected


def test_exp_series_matches_the_library_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    limit = 20 << 32
    xs = [0, 1, -1, ONE_I32F32, -ONE_I32F32, limit, -limit, limit - 1, -limit + 1, 1 << 31]
    xs += [int(v) for v in rng.integers(-limit, limit, size=3_000, endpoint=True)]
    xs += [int(v) for v in rng.integers(-(5 << 32), 5 << 32, size=2_000)]
    got = compute_exp_vectorized(np.array(xs, dtype=np.int64)).tolist()
    for x, value in zip(xs, got, strict=True):
        expected = compute_exp(x)
        assert expected is not None  # the series never overflows within [-20, 20]
        assert value == expected, x
    wide = [I32F32.min_bits, -(1 << 40), 1 << 40, I32F32.max_bits, *xs[:50]]
    safe = compute_exp_safe_vectorized(np.array(wide, dtype=np.int64)).tolist()
    assert safe == [compute_exp_safe(x) for x in wide]


def test_products_and_quotients_match_fixed() -> None:
    rng = np.random.default_rng(5)
    one = ONE_I32F32
    edges = [0, 1, 2, one - 1, one, one // 2, one // 3, 12_345]
    a = edges + [int(v) for v in rng.integers(-one, one, size=4_000, endpoint=True)]
    b = list(reversed(edges)) + [int(v) for v in rng.integers(-one, one, size=4_000)]
    signed = mul_signed(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)).tolist()
    assert signed == [saturating_mul(x, y) for x, y in zip(a, b, strict=True)]

    half = 1 << 31
    e = [0, half, -half, 1, -1] + [int(v) for v in rng.integers(-half, half, size=2_000)]
    for factor in (0, 1, -1, saturating_div(1_000 << 32, -100 << 32), (327 << 32) + 5, -(3 << 40)):
        assert mul_by_scalar(np.array(e, dtype=np.int64), factor).tolist() == [
            saturating_mul(factor, v) for v in e
        ]

    numerators = [0, 1, one, 1 << 40, (1 << 62) + 3] + [
        int(v) for v in rng.integers(0, 1 << 50, size=3_000)
    ]
    divisors = [1, 1, 3, (1 << 48) - 1, 7] + [int(v) for v in rng.integers(1, 1 << 48, size=3_000)]
    quotients = div_nonneg(np.array(numerators), np.array(divisors)).tolist()
    assert quotients == [safe_div(x, y) for x, y in zip(numerators, divisors, strict=True)]
    # Every numerator below 2**32: the one-division branch, any divisor.
    small = [0, 1, one - 1, 7] + [int(v) for v in rng.integers(0, one, size=3_000)]
    any_divisor = (
        [1, 2, I32F32.max_bits, 3]
        + [int(v) for v in rng.integers(1, 1 << 62, size=1_500)]
        + [int(v) for v in rng.integers(1, 1 << 20, size=1_500)]
    )
    quotients = div_nonneg(np.array(small), np.array(any_divisor)).tolist()
    assert quotients == [safe_div(x, y) for x, y in zip(small, any_divisor, strict=True)]

    denominators = [one, one + 1, 2 * one, 3 * one, (1 << 62) + 1, I32F32.max_bits]
    denominators += [int(v) for v in rng.integers(one, 1 << 62, size=2_000)]
    assert one_over(np.array(denominators, dtype=np.int64)).tolist() == [
        saturating_div(one, d) for d in denominators
    ]

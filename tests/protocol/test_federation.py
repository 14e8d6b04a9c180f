"""The integer aggregate every node repeats: exact, order-free, bounded, and refusing bad input."""

from __future__ import annotations

import random

import pytest

from agora.protocol.errors import (
    FederationError,
    InvalidVector,
    NothingToAggregate,
    VectorShapeMismatch,
)
from agora.protocol.federation import (
    FIXED_ONE,
    MAX_PARAMETERS,
    VALUE_MAX,
    compute_aggregate,
    compute_clipped,
    compute_commitment,
    compute_lower_median,
    compute_model_hash,
    compute_norm,
    compute_update_hash,
    decode_vector,
    encode_vector,
)


def test_vectors_round_trip_and_hashes_are_domain_separated() -> None:
    vector = (0, -1, FIXED_ONE, VALUE_MAX, -(2**31))
    assert decode_vector(encode_vector(vector)) == vector
    assert compute_model_hash(vector) != compute_update_hash(vector)
    assert compute_model_hash(vector) == compute_model_hash(list(vector))
    assert compute_model_hash(vector) != compute_model_hash((0, -1, FIXED_ONE, VALUE_MAX, 0))


@pytest.mark.parametrize(
    "vector", [(), (2**31,), (-(2**31) - 1,), (True,), (0,) * (MAX_PARAMETERS + 1)]
)
def test_invalid_vectors_are_refused(vector: tuple[int, ...]) -> None:
    with pytest.raises(InvalidVector) as error:
        encode_vector(vector)
    assert error.value.code == 2501
    assert isinstance(error.value, FederationError) and FederationError.code == 2500


@pytest.mark.parametrize("raw", [b"", b"\x00\x00\x00\x02\x00\x00\x00\x01", b"\x00\x00\x00\x00"])
def test_undecodable_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidVector):
        decode_vector(raw)


def test_norm_median_and_clip() -> None:
    assert compute_norm((3, 4)) == 5
    assert compute_lower_median([5, 1, 4, 2]) == 2
    assert compute_lower_median([3]) == 3
    assert compute_clipped((3, -4), 10) == (3, -4)
    assert compute_clipped((300, -400), 5) == (3, -4)
    # Truncation toward zero, the same on both signs.
    assert compute_clipped((7, -7), 3) == (2, -2)


def test_aggregate_clips_to_the_median_and_averages_toward_zero() -> None:
    parent = (10, 10)
    updates = [(3, 0), (0, 4), (-300, 0)]  # norms 3, 4, 300: the median is 4
    # clipped: (3, 0), (0, 4), (-4, 0); sums (-1, 4); means truncated (0, 1)
    assert compute_aggregate(parent, updates) == (10, 11)


def test_aggregate_is_independent_of_order_and_saturates() -> None:
    rng = random.Random(5)
    parent = tuple(rng.randint(-(2**20), 2**20) for _ in range(50))
    updates = [tuple(rng.randint(-(2**18), 2**18) for _ in range(50)) for _ in range(9)]
    expected = compute_aggregate(parent, updates)
    for _ in range(5):
        shuffled = updates[:]
        rng.shuffle(shuffled)
        assert compute_aggregate(parent, shuffled) == expected
    assert compute_aggregate((VALUE_MAX,), [(5,)]) == (VALUE_MAX,)


def test_aggregate_refuses_wrong_shapes_and_empty_rounds() -> None:
    with pytest.raises(VectorShapeMismatch) as mismatch:
        compute_aggregate((0, 0), [(1, 1), (1, 1, 1)])
    assert mismatch.value.code == 2502
    with pytest.raises(NothingToAggregate) as empty:
        compute_aggregate((0, 0), [])
    assert empty.value.code == 2503


def test_commitment_binds_contributor_round_and_update() -> None:
    update_hash = compute_update_hash((1, 2, 3))
    base = compute_commitment(b"a" * 32, 1, 7, update_hash)
    assert base != compute_commitment(b"b" * 32, 1, 7, update_hash)
    assert base != compute_commitment(b"a" * 32, 1, 8, update_hash)
    assert base != compute_commitment(b"a" * 32, 2, 7, update_hash)
    assert base != compute_commitment(b"a" * 32, 1, 7, compute_update_hash((1, 2, 4)))

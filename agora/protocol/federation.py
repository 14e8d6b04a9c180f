"""Fixed-point models and the integer aggregate of a federated round: what every node repeats.

A federated subnet trains one small model. Its parameters, and every contributor's update to
them, are vectors of signed 32-bit integers read as fixed point with ``FRACTION_BITS``
fractional bits (``x / 2**16``). Training happens off chain, in floating point, on each
contributor's own data (``agora.tasks.federated``); only these integers cross the wire and
reach the ledger, so the aggregate is exact integer arithmetic that gives the same bytes, and
the same hash, on every machine.

Trust model. The ledger holds, for a round: the parent model's vector, every contributor's
revealed update (each bound earlier to a commitment made before any update was revealed), and
the subnet's consensus on those updates (each contributor's ``incentive_u16`` from the epoch
that closed the round, which is where the validators' private held-out sets enter, and only
through their weights). ``compute_aggregate`` is a pure function of exactly that, so the state
transition itself recomputes it and refuses a round record whose new model hash differs. No
node trusts the aggregator's word, and no validator's data ever needs to be shown.

The aggregate, step by step (``compute_aggregate``):

1. Only contributors the subnet paid for this round (incentive above 0) are included: an
   update whose removal improved the validators' held-out loss earned nothing, and is left out.
2. Each included update's L2 norm is ``isqrt`` of its sum of squares.
3. Every included update is clipped to the round's median norm (the lower median when the
   count is even): a single update scaled up a hundredfold weighs no more than a typical one.
4. The clipped updates are summed coordinate by coordinate and divided by their count,
   truncating toward zero (the remainder of each coordinate is dropped, never carried).
5. The mean is added to the parent model and saturated to the i32 range.

Vectors are encoded as their count (u32) followed by each value as a big-endian signed i32,
and hashed with BLAKE2b-256 under a domain tag, so a model hash can never pass for an update
hash. Its errors are in errors.py (codes 2500-2519 of the data range).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from math import isqrt

from agora.protocol.errors import InvalidVector, NothingToAggregate, VectorShapeMismatch

FRACTION_BITS = 16
FIXED_ONE = 1 << FRACTION_BITS
VALUE_MIN = -(1 << 31)
VALUE_MAX = (1 << 31) - 1
# Parameters a federated model may have: the encoding of an update must fit in one
# transaction (``max_transaction_bytes`` is 16 KiB by default).
MAX_PARAMETERS = 3_072
MODEL_HASH_TAG = b"agora/federated/model/v1"
UPDATE_HASH_TAG = b"agora/federated/update/v1"
COMMITMENT_TAG = b"agora/federated/commitment/v1"

Vector = tuple[int, ...]


def validate_vector(values: Sequence[int], what: str = "vector") -> None:
    if not 1 <= len(values) <= MAX_PARAMETERS:
        raise InvalidVector(f"a {what} holds 1..{MAX_PARAMETERS} parameters, not {len(values)}")
    for index, value in enumerate(values):
        if type(value) is not int or not VALUE_MIN <= value <= VALUE_MAX:
            raise InvalidVector(f"{what}[{index}] is not a signed 32-bit integer")


def encode_vector(values: Sequence[int]) -> bytes:
    validate_vector(values)
    out = bytearray(len(values).to_bytes(4, "big"))
    for value in values:
        out += value.to_bytes(4, "big", signed=True)
    return bytes(out)


def decode_vector(raw: bytes) -> Vector:
    if len(raw) < 4 or len(raw) != 4 + 4 * int.from_bytes(raw[:4], "big"):
        raise InvalidVector("the bytes are not a count followed by that many i32 values")
    values = tuple(
        int.from_bytes(raw[offset : offset + 4], "big", signed=True)
        for offset in range(4, len(raw), 4)
    )
    validate_vector(values)
    return values


def compute_model_hash(model: Sequence[int]) -> bytes:
    """The content address of a model: the name it is fetched, served and paid by."""
    return hashlib.blake2b(MODEL_HASH_TAG + encode_vector(model), digest_size=32).digest()


def compute_update_hash(update: Sequence[int]) -> bytes:
    return hashlib.blake2b(UPDATE_HASH_TAG + encode_vector(update), digest_size=32).digest()


def compute_commitment(
    contributor: bytes, netuid: int, round_number: int, update_hash: bytes
) -> bytes:
    """What a contributor commits before any update of the round is revealed.

    The contributor's key is inside, so replaying someone else's revealed update needs a
    commitment made before the reveal: a copycat cannot have one.
    """
    material = (
        COMMITMENT_TAG
        + contributor
        + netuid.to_bytes(2, "big")
        + round_number.to_bytes(8, "big")
        + update_hash
    )
    return hashlib.blake2b(material, digest_size=32).digest()


def compute_norm(vector: Sequence[int]) -> int:
    """The L2 norm, floored to an integer (in the vector's own fixed-point units)."""
    return isqrt(sum(value * value for value in vector))


def compute_lower_median(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def compute_clipped(update: Sequence[int], bound: int) -> Vector:
    """``update`` scaled to norm ``bound`` when above it; each value truncated toward zero."""
    norm = compute_norm(update)
    if norm <= bound:
        return tuple(update)
    return tuple(_truncating_div(value * bound, norm) for value in update)


def _truncating_div(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator  # the remainder is dropped, toward zero
    return quotient if numerator >= 0 else -quotient


def _saturate(value: int) -> int:
    return max(VALUE_MIN, min(VALUE_MAX, value))


def compute_aggregate(parent: Sequence[int], updates: Sequence[Sequence[int]]) -> Vector:
    """The next model from the parent and the included updates (steps 2-5 of the docstring).

    The caller passes only the included updates (step 1); their order does not matter.
    """
    validate_vector(parent, "model")
    if not updates:
        raise NothingToAggregate("no update was paid for this round; the model stays as it is")
    for update in updates:
        validate_vector(update, "update")
        if len(update) != len(parent):
            raise VectorShapeMismatch(
                f"an update has {len(update)} parameters; the model has {len(parent)}"
            )
    bound = compute_lower_median([compute_norm(update) for update in updates])
    clipped = [compute_clipped(update, bound) for update in updates]
    count = len(clipped)
    return tuple(
        _saturate(weight + _truncating_div(sum(column), count))
        for weight, column in zip(parent, zip(*clipped, strict=True), strict=True)
    )

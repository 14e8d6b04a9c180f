"""Stateless rules for joining a subnet: the registration price and the uid a newcomer takes.

Registration burns a price that rises with demand and decays with time (docs/yuma.md section 10):
each block multiplies it by a factor ``f`` with ``f ** half_life = 1/2``, each registration
multiplies it by a governance-set multiplier, and both stay within ``[min_burn, max_burn]``.
When the subnet is full, the newcomer replaces the uid with the lowest emission among those
past their immunity period, so a slot is only lost by being useless for long enough.

The ledger reads the state and calls these pure helpers with plain values. Integer-only: the
decay factor is a Q32 number found by bisection, and the multiplier is a U64F64 bit pattern,
both with the chain's floors, so prices match it to the base unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from agora.protocol.consensus.errors import InvalidRegistrationPrice, NoUidToPrune
from agora.protocol.consensus.fixed import (
    U16_MAX,
    U64_MAX,
    U64F64,
    compute_mul_by_q32,
    compute_pow_q32,
    from_int,
    saturating_mul,
    to_u64,
)

ONE_U64F64 = 1 << 64
DEFAULT_BURN_INCREASE_MULT_U64F64 = 23_242_897_532_874_035_200
"""1.26 as the chain stores it: ``U64F64::from_num(1.26)``, the double nearest 1.26 (exact in
U64F64), so ``bits / 2**64`` is 1.26000000000000000888..."""
DEFAULT_BURN_HALF_LIFE = 360  # blocks
MAX_BURN_HALF_LIFE = 36_100  # the largest half-life governance may set on the chain


@dataclass(frozen=True, slots=True, kw_only=True)
class BurnPriceRules:
    """How a subnet's registration price moves. Amounts in base units."""

    min_burn: int
    max_burn: int
    half_life: int = DEFAULT_BURN_HALF_LIFE  # blocks; 0 turns the decay off
    increase_mult_u64f64: int = DEFAULT_BURN_INCREASE_MULT_U64F64


def validate_burn_price_rules(rules: BurnPriceRules) -> None:
    if not 0 <= rules.min_burn <= rules.max_burn <= U64_MAX:
        raise InvalidRegistrationPrice(
            f"need 0 <= min_burn ({rules.min_burn}) <= max_burn ({rules.max_burn}) < 2**64"
        )
    if not 0 <= rules.half_life <= U16_MAX:
        raise InvalidRegistrationPrice(f"half-life {rules.half_life} is not a u16")
    if not 0 <= rules.increase_mult_u64f64 <= U64F64.max_bits:
        raise InvalidRegistrationPrice("the increase multiplier must be a U64F64 bit pattern")


@lru_cache(maxsize=64)
def compute_burn_decay_factor_q32(half_life: int) -> int:
    """The per-block factor ``f`` in Q32: the largest ``f`` with ``f ** half_life <= 1/2``,
    by bisection on ``pow_q32`` (which floors each step exactly as the chain does)."""
    if half_life == 0:
        return 1 << 32
    half = 1 << 31
    low, high = 0, 1 << 32
    while low + 1 < high:
        middle = low + ((high - low) >> 1)
        if compute_pow_q32(middle, half_life) > half:
            high = middle
        else:
            low = middle
    return low


def compute_burn_after_block(burn: int, rules: BurnPriceRules, block: int) -> int:
    """The price at the start of ``block``: one step of decay (none at genesis), clamped."""
    validate_burn_price_rules(rules)
    if not 0 <= burn <= U64_MAX:
        raise InvalidRegistrationPrice(f"burn {burn} is not a u64 amount")
    new_burn = burn
    if rules.half_life > 0 and block > 1:
        new_burn = compute_mul_by_q32(burn, compute_burn_decay_factor_q32(rules.half_life))
    return min(max(new_burn, rules.min_burn), rules.max_burn)


def compute_burn_after_registration(burn: int, rules: BurnPriceRules) -> int:
    """The price after a successful registration: times the multiplier (at least 1), floored,
    clamped."""
    validate_burn_price_rules(rules)
    if not 0 <= burn <= U64_MAX:
        raise InvalidRegistrationPrice(f"burn {burn} is not a u64 amount")
    multiplier = max(rules.increase_mult_u64f64, ONE_U64F64)
    raised = to_u64(saturating_mul(from_int(burn, U64F64), multiplier, U64F64), U64F64)
    return min(max(raised, rules.min_burn), rules.max_burn)


# --- pruning -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PruningCandidate:
    """One uid as pruning sees it."""

    uid: int
    emission: int  # the stored combined emission of the last epoch, base units
    registered_at: int


def compute_immortal_owner_uids(
    owner_uid: int | None,
    owner_coldkey_uids: Sequence[tuple[int, int]],
    limit: int,
) -> tuple[int, ...]:
    """The owner's uids that are never pruned (the chain's ``get_immune_owner_tuples``).

    ``owner_coldkey_uids`` are ``(uid, registered_at)`` of the owner coldkey's hotkeys on the
    subnet. The ``limit`` earliest registered are kept (ties: lower uid); the owner hotkey's
    uid is then put first if missing, and the list cut to ``limit`` again.
    """
    ordered = sorted(owner_coldkey_uids, key=lambda pair: (pair[1], pair[0]))
    immortal = [uid for uid, _ in ordered][:limit]
    if owner_uid is not None and owner_uid not in immortal:
        immortal.insert(0, owner_uid)
        immortal = immortal[:limit]
    return tuple(immortal)


def compute_uid_to_prune(
    candidates: Sequence[PruningCandidate],
    *,
    block: int,
    immunity_period: int,
    min_non_immune_uids: int,
    immortal_uids: Sequence[int] = (),
) -> int:
    """The uid a newcomer replaces in a full subnet (the chain's ``get_neuron_to_prune``).

    The lowest ``(emission, registered_at, uid)`` among uids past their immunity period,
    provided more than ``min_non_immune_uids`` of them remain; otherwise the same minimum
    among immune uids. Immortal owner uids are never chosen.
    """
    immortal = set(immortal_uids)
    free: list[tuple[int, int, int]] = []
    immune: list[tuple[int, int, int]] = []
    for candidate in candidates:
        if candidate.uid in immortal:
            continue
        key = (candidate.emission, candidate.registered_at, candidate.uid)
        if is_immune(candidate.registered_at, block, immunity_period):
            immune.append(key)
        else:
            free.append(key)
    if free and len(free) > min_non_immune_uids:
        return min(free)[2]
    if immune:
        return min(immune)[2]
    raise NoUidToPrune(
        "no uid can be replaced: every uid is an owner key, or too few are past immunity"
    )


def is_immune(registered_at: int, block: int, immunity_period: int) -> bool:
    """A newly registered uid cannot be pruned for ``immunity_period`` blocks."""
    return max(block - registered_at, 0) < immunity_period

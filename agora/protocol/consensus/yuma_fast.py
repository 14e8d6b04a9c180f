"""One subnet epoch of Yuma Consensus, vectorized: the bits of ``yuma.compute_epoch``, faster.

``yuma.py`` is the readable port of the chain's epoch; it spends its time in Python loops
over every (validator, uid) entry, about two seconds for 1024 uids and 256 validators.
``compute_epoch_fast`` runs the same steps, in the same order and with the same names, on
numpy integer arrays. It must give the same ``EpochResult`` for every input; a differential
test (``tests/protocol/consensus/test_yuma_fast.py``) checks this on thousands of random epochs.

How the bits are kept:

- Only integer dtypes. Each I32F32 value is its int64 bit pattern, as in ``fixed.py``.
- The steps that are O(n), over a vector of uids (stake, permits, normalizations, emission),
  call the readable functions, which are exact by construction.
- The steps that are O(entries) use the helpers below, whose preconditions (operand bounds)
  make every intermediate fit in 64 bits. Each helper checks its bounds (a vectorized
  ``min``/``max``) and raises ``_OutsideFastRange`` where they fail. Then the epoch is
  computed by the readable path. The bounds hold on every state the ledger builds, so this
  fallback exists to keep the function exact on any input, not to be taken: it is taken
  where a bounds argument fails on purpose-built inputs, e.g. a ``bonds_moving_average``
  above 10**6 (an EMA weight below 0), or stakes summing past 2**63 base units (the
  chain's I64F64 sum then wraps and normalized stakes turn negative). The other fallbacks
  are for inputs the ledger never stores: a uid twice in one row, and a row whose u16
  weights sum to 2**31 or more.
- Where the chain's saturating arithmetic is used, the bounds show that it never saturates,
  so a plain sum equals the saturating one (and a saturating sum of non-negative terms
  does not depend on the order of the terms).
- Sparse matrices keep the chain's entry order where it is read (stored weight rows,
  the bonds of the liquid-alpha path). Elsewhere they are densified over the rows that can
  hold an entry; this is the same as the chain's sparse rows as long as no row holds a
  uid twice.

The weighted median (step 6) is not the chain's partition search but a sort. Both give the
smallest score ``v`` whose stake at or below ``v`` exceeds ``minority`` (or the largest
score if none does), whatever the pivot order; see ``compute_consensus_vectorized``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from agora.protocol.consensus.fixed import (
    E_I32F32,
    HALF_I32F32,
    I32F32,
    MINUS_HUNDRED_I32F32,
    ONE_I32F32,
    U16_MAX,
    U64_MAX,
    checked_mul,
    compute_normalized,
    saturating_div,
    saturating_sub,
    u16_proportion_to_fixed,
    wrapping_sum,
)
from agora.protocol.consensus.yuma import (
    EpochInputs,
    EpochResult,
    WeightRow,
    YumaParams,
    compute_active,
    compute_active_stake,
    compute_bonds_alpha,
    compute_bonds_to_store,
    compute_disabled_liquid_alpha,
    compute_emissions,
    compute_epoch,
    compute_last_tempo,
    compute_new_permit,
    compute_old_permit,
    compute_stake,
    compute_u16_proportions,
    validate_epoch_inputs,
)

Int64Array = npt.NDArray[np.int64]
UInt64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]

_LOW_32 = np.uint64(0xFFFF_FFFF)
_TWO_POW_63 = np.uint64(1 << 63)
_EXP_LIMIT_I32F32 = 20 << 32
_I64_MAX = I32F32.max_bits
_KEY_SHIFT = 17  # row * 2**17 + col orders entries by row, then column (cols are < 2**16 + 1)


class _OutsideFastRange(Exception):
    """A vectorized step's precondition fails: the readable path computes this epoch.

    Never leaves this module: ``compute_epoch_fast`` catches it.
    """


@dataclass(frozen=True, slots=True)
class Entries:
    """A sparse matrix as three aligned vectors, entries in the order they are held.

    ``rows`` is non-decreasing: the entries of row 0, then of row 1, and so on. ``values``
    are I32F32 bits, or raw u16 for rows just read from the inputs.
    """

    rows: Int64Array
    cols: Int64Array
    values: Int64Array

    def select(self, keep: BoolArray) -> Entries:
        return Entries(rows=self.rows[keep], cols=self.cols[keep], values=self.values[keep])

    def with_values(self, values: Int64Array) -> Entries:
        return Entries(rows=self.rows, cols=self.cols, values=values)


@dataclass(frozen=True, slots=True)
class Layout:
    """The rows that can hold an entry (weights that count, or bonds), densified.

    A dense matrix has one row per live uid, in uid order, and ``n`` columns;
    ``position[uid]`` is the uid's row there, or -1.
    """

    n: int
    live: Int64Array
    position: Int64Array

    def dense(self, entries: Entries) -> Int64Array:
        """The entries' values at their (row, col), 0 elsewhere; rows are uids."""
        matrix = np.zeros((len(self.live), self.n), dtype=np.int64)
        matrix[self.position[entries.rows], entries.cols] = entries.values
        return matrix

    def per_uid(self, per_live_row: Int64Array) -> list[int]:
        """A vector over the live rows, widened to every uid (0 where not live)."""
        full = np.zeros(self.n, dtype=np.int64)
        full[self.live] = per_live_row
        return [int(v) for v in full.tolist()]


# --- the epoch -----------------------------------------------------------------------


def compute_epoch_fast(inputs: EpochInputs) -> EpochResult:
    """Run one epoch: the same result as ``yuma.compute_epoch``, the same errors."""
    result = compute_epoch_vectorized(inputs)
    return compute_epoch(inputs) if result is None else result


def compute_epoch_vectorized(inputs: EpochInputs) -> EpochResult | None:
    """The vectorized epoch, or ``None`` where a precondition fails (the caller falls back).

    Invalid inputs raise ``InvalidEpochInputs``, the same error ``compute_epoch`` raises.
    """
    stored = read_epoch_rows(inputs)
    if stored is None:
        return None
    try:
        return _compute_epoch_vectorized(inputs, *stored)
    except _OutsideFastRange:
        return None


def _compute_epoch_vectorized(
    inputs: EpochInputs, stored_weights: Entries, stored_bonds: Entries
) -> EpochResult:
    """``compute_epoch``'s steps, one for one; raises ``_OutsideFastRange``."""
    n, params = len(inputs.stake), inputs.params
    # 1-4. Activity, stake, permits, active stake: vectors over uids, the readable steps.
    active = compute_active(inputs.last_update, inputs.block, params.activity_cutoff)
    stake = compute_stake(inputs.stake, inputs.owner_uid, params.stake_threshold)
    old_permit = compute_old_permit(inputs.validator_permit, inputs.owner_uid)
    new_permit = compute_new_permit(stake, params.max_validators, inputs.owner_uid)
    active_stake = compute_active_stake(stake, active, old_permit)
    # 5. Weights that count, row-normalized.
    kept_weights = compute_weights_mask(inputs, stored_weights, old_permit)
    layout = compute_layout(n, kept_weights.rows, stored_bonds.rows)
    weights = compute_weights_vectorized(kept_weights, layout)
    # 6. Consensus.
    kappa = u16_proportion_to_fixed(params.kappa_u16)
    consensus = compute_consensus_vectorized(active_stake, layout.dense(weights), layout, kappa)
    # 7. Clipping and validator trust.
    clipped = compute_clipped_vectorized(weights, consensus)
    validator_trust = layout.per_uid(compute_row_sums(clipped, layout))
    # 8. Incentive.
    clipped_dense = layout.dense(clipped)
    incentive = compute_incentive_vectorized(clipped_dense, active_stake, layout)
    # 9-10. Weights for bonds and the bond mask's horizon.
    beta = u16_proportion_to_fixed(params.bonds_penalty_u16)
    weights_for_bonds = compute_interpolated_vectorized(
        weights, clipped, clipped_dense, layout, beta
    )
    last_tempo = compute_last_tempo(inputs.block, inputs.tempo, inputs.last_step_block)
    bonds = compute_masked_bonds_vectorized(stored_bonds, last_tempo, inputs.registered_at)
    terms = VectorTerms(
        layout=layout,
        weights_for_bonds=weights_for_bonds,
        bonds=bonds,
        consensus=consensus,
        incentive=incentive,
        active_stake=active_stake,
    )
    # 11. Bonds and dividends.
    if params.yuma3:
        dividends, new_bonds = compute_yuma3_bonds_vectorized(inputs, terms)
    else:
        dividends, new_bonds = compute_yuma2_bonds_vectorized(inputs, terms)
    # 12. Emission.
    combined, to_miners, to_validators = compute_emissions(
        incentive, dividends, active_stake, stake, inputs.emission
    )
    # 13. Outputs.
    rows_u16 = compute_bond_rows(new_bonds, layout, new_permit)
    return EpochResult(
        active=tuple(active),
        validator_permit=tuple(new_permit),
        stake_u16=compute_u16_proportions_vectorized(stake),
        consensus_u16=compute_u16_proportions_vectorized(consensus),
        incentive_u16=compute_u16_proportions_vectorized(incentive),
        dividends_u16=compute_u16_proportions_vectorized(dividends),
        validator_trust_u16=compute_u16_proportions_vectorized(validator_trust),
        emission=combined,
        miner_emission=to_miners,
        validator_emission=to_validators,
        bonds_u16=compute_bonds_to_store(inputs.bonds, rows_u16, old_permit, new_permit),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class VectorTerms:
    """What both bond paths read (steps 6 to 10), vectorized."""

    layout: Layout
    weights_for_bonds: Entries
    bonds: Entries  # masked, u16 as stored, in stored order, columns may be >= n
    consensus: list[int]
    incentive: list[int]
    active_stake: list[int]


# --- inputs --------------------------------------------------------------------------


def read_epoch_rows(inputs: EpochInputs) -> tuple[Entries, Entries] | None:
    """The stored weight and bond rows as arrays, validated as ``validate_epoch_inputs`` does.

    The readable validation loops over every entry; here the entries are checked as arrays,
    and the readable validation runs on the inputs without their rows. On any problem the
    readable validation runs on the whole inputs, so the error raised is exactly its error.
    ``None``: the rows cannot be read as arrays but the readable validation accepts them.
    """
    n = len(inputs.stake)
    if len(inputs.weights) != n or len(inputs.bonds) != n:
        validate_epoch_inputs(inputs)
        return None
    try:
        weights = _read_rows(inputs.weights)
        bonds = _read_rows(inputs.bonds)
    except (OverflowError, TypeError, ValueError):
        validate_epoch_inputs(inputs)
        return None
    if not (_is_u16(weights) and _is_u16(bonds)):
        validate_epoch_inputs(inputs)
        return None
    validate_epoch_inputs(replace(inputs, weights=((),) * n, bonds=((),) * n))
    return weights, bonds


def _read_rows(rows: tuple[WeightRow, ...]) -> Entries:
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    total = int(lengths.sum())
    flat = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(rows)),
        dtype=np.int64,
        count=2 * total,
    )
    uids = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    return Entries(rows=uids, cols=flat[0::2], values=flat[1::2])


def _is_u16(entries: Entries) -> bool:
    if len(entries.cols) == 0:
        return True
    return bool(
        entries.cols.min() >= 0
        and entries.cols.max() <= U16_MAX
        and entries.values.min() >= 0
        and entries.values.max() <= U16_MAX
    )


def _u64_vector(values: tuple[int, ...] | list[int]) -> UInt64Array:
    return np.array(values, dtype=np.uint64).reshape(len(values))


# --- step 5: weights -----------------------------------------------------------------


def compute_weights_mask(inputs: EpochInputs, stored: Entries, permit: list[bool]) -> Entries:
    """The stored weight entries that count (``compute_weights``' filters), raw u16."""
    n = len(inputs.stake)
    rows, cols = stored.rows, stored.cols
    in_range = cols < n
    col_uid = np.where(in_range, cols, 0)
    registered_at = _u64_vector(inputs.registered_at)[col_uid]
    last_update = _u64_vector(inputs.last_update)[rows]
    commit_block = _u64_vector(_commit_blocks(inputs))[rows]
    owner = -1 if inputs.owner_uid is None else inputs.owner_uid
    keep = (
        np.array(permit, dtype=np.bool_).reshape(n)[rows]
        & in_range
        # The owner may weight itself; anyone else's self-weight is dropped.
        & ((cols != rows) | (rows == owner))
        # Set before uid j was (re)registered, or committed before: not about its holder.
        & (last_update > registered_at)
        & (commit_block >= registered_at)
    )
    return stored.select(keep)


def _commit_blocks(inputs: EpochInputs) -> list[int]:
    if inputs.commit_blocks is None:
        return [U64_MAX] * len(inputs.stake)
    return [U64_MAX if block is None else block for block in inputs.commit_blocks]


def compute_layout(n: int, weight_rows: Int64Array, bond_rows: Int64Array) -> Layout:
    """The live rows: uids with a weight that counts or a stored bond."""
    is_live = np.zeros(n, dtype=np.bool_)
    is_live[weight_rows] = True
    is_live[bond_rows] = True
    live = np.flatnonzero(is_live).astype(np.int64)
    position = np.full(n, -1, dtype=np.int64)
    position[live] = np.arange(len(live), dtype=np.int64)
    return Layout(n=n, live=live, position=position)


def compute_weights_vectorized(kept: Entries, layout: Layout) -> Entries:
    """Row-normalize the kept u16 weights (``_row_normalized``).

    Every value is a u16 shifted by 32, so a row's I32F32 sum is ``S << 32`` with ``S`` the
    sum of its u16 values, and ``safe_div(w << 32, S << 32) = (w << 32) // S``. With
    ``S < 2**31`` the sum does not wrap, and ``w <= S`` keeps the quotient in [0, 2**32].
    """
    _require_distinct(kept, layout)
    sums = compute_row_sums(kept, layout)
    if len(sums) and int(sums.max()) >= 1 << 31:
        raise _OutsideFastRange("a weight row's u16 sum reaches 2**31")
    row_sum = sums[layout.position[kept.rows]]
    shifted = kept.values << 32
    values = np.where(row_sum > 0, shifted // np.maximum(row_sum, 1), shifted)
    return kept.with_values(values.astype(np.int64))


def _require_distinct(entries: Entries, layout: Layout) -> None:
    """Densifying is exact only if no row holds a column twice (the ledger never stores so)."""
    marks = np.zeros((len(layout.live), layout.n), dtype=np.bool_)
    marks[layout.position[entries.rows], entries.cols] = True
    if int(np.count_nonzero(marks)) != len(entries.rows):
        raise _OutsideFastRange("a row holds the same uid twice")


def compute_row_sums(entries: Entries, layout: Layout) -> Int64Array:
    """Per live row, the wrapping sum of its entries (``Iterator::sum`` in a release build).

    int64 array arithmetic wraps modulo 2**64, so the difference of two prefix sums is the
    row's wrapping sum, whatever the magnitudes.
    """
    prefix = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(entries.values)))
    starts = np.searchsorted(entries.rows, layout.live, side="left")
    ends = np.searchsorted(entries.rows, layout.live, side="right")
    return (prefix[ends] - prefix[starts]).astype(np.int64)


# --- step 6: consensus ---------------------------------------------------------------


def compute_consensus_vectorized(
    active_stake: list[int], weights_dense: Int64Array, layout: Layout, kappa: int
) -> list[int]:
    """``weighted_median_col_sparse`` for every column at once.

    The chain's search keeps a candidate list ``P`` of the voters with scores in an open
    interval ``(a, b)`` and bounds ``low = F(a)``, ``high = F(b-)``, where ``F(x)`` is the
    stake of voters scoring at most ``x`` and ``F(x-)`` below ``x`` (no sum saturates: the
    stakes are normalized, each at most 2**32). At pivot ``p`` it goes lower iff
    ``minority < F(p-)`` (and ``P`` has a score below ``p``), upper iff
    ``F(p) <= minority`` (and one above), else returns ``p``. Let ``p*`` be the smallest
    score with ``F(p*) > minority``. A pivot below ``p*`` goes upper, one above goes lower,
    both keep ``p*`` in ``P``, and ``p*`` itself is returned: the result is ``p*`` whatever
    the pivots. If no score has ``F > minority`` (kappa 0), every step goes upper and the
    result is the largest score. Both are read off the column sorted by score.
    """
    n = layout.n
    use_stake = compute_normalized([s for s in active_stake if s > 0])
    voter_count = len(use_stake)
    if voter_count == 0:
        return [0] * n
    minority = saturating_sub(wrapping_sum(use_stake), kappa)
    voter_uids = np.flatnonzero(np.array([s > 0 for s in active_stake], dtype=np.bool_))
    voter_rows = layout.position[voter_uids]
    scores = np.zeros((voter_count, n), dtype=np.int64)
    has_row = voter_rows >= 0
    scores[has_row] = weights_dense[voter_rows[has_row]]
    _require_range(scores, 0, ONE_I32F32)
    # Sort each column's (score, voter) pairs as one key: scores need 33 bits, voters 16.
    keys = np.ascontiguousarray(scores.T) << 16
    keys |= np.arange(voter_count, dtype=np.int64)
    keys.sort(axis=1)
    stake_by_voter = np.array(use_stake, dtype=np.int64)
    cumulative = np.cumsum(stake_by_voter[keys & 0xFFFF], axis=1)
    above = cumulative > minority
    chosen = np.where(above[:, -1], np.argmax(above, axis=1), voter_count - 1)
    medians = keys[np.arange(n), chosen] >> 16
    return [int(v) for v in medians.tolist()]


# --- step 7: clipping ----------------------------------------------------------------


def compute_clipped_vectorized(weights: Entries, consensus: list[int]) -> Entries:
    """``col_clip_sparse``: cut to consensus; an entry above a consensus of 0 is dropped."""
    threshold = np.array(consensus, dtype=np.int64).reshape(len(consensus))[weights.cols]
    over = threshold < weights.values
    keep = ~over | (threshold > 0)
    return weights.with_values(np.where(over, threshold, weights.values)).select(keep)


# --- step 8: incentive ---------------------------------------------------------------


def compute_incentive_vectorized(
    clipped_dense: Int64Array, active_stake: list[int], layout: Layout
) -> list[int]:
    """``R_j = sum_i A_i * clipped_ij``, normalized. Products are at most 2**32 (both factors
    are), sums at most 2**48: the chain's saturating adds never saturate."""
    scale = _live_vector(active_stake, layout)
    ranks = _mul_nonneg(clipped_dense, scale[:, None]).sum(axis=0)
    return compute_normalized([int(v) for v in ranks.tolist()])


def _live_vector(per_uid: list[int], layout: Layout) -> Int64Array:
    vector = np.array(per_uid, dtype=np.int64).reshape(layout.n)
    return vector[layout.live]


# --- step 9: weights for bonds -------------------------------------------------------


def compute_interpolated_vectorized(
    weights: Entries, clipped: Entries, clipped_dense: Int64Array, layout: Layout, ratio: int
) -> Entries:
    """``interpolate_sparse``: ``W + ratio * (clipped - W)``, keeping values > 0, sorted.

    Ratios 0 and 1 return a matrix as it is, in its row order. Otherwise: a weight's
    clipped value is at most the weight (0 where the clip dropped it), so the difference
    is in [-2**32, 0], and ``0 < ratio < 2**32``: ``_mul_signed`` applies, and the sum
    cannot saturate.
    """
    if ratio == 0:
        return weights
    if ratio == ONE_I32F32:
        return clipped
    clipped_at = clipped_dense[layout.position[weights.rows], weights.cols]
    values = weights.values + _mul_signed(clipped_at - weights.values, ratio)
    return _sorted_by_uid(weights.with_values(values).select(values > 0))


def _sorted_by_uid(entries: Entries) -> Entries:
    """Each row's entries by ascending column: the order of a row the chain densified."""
    keys = (entries.rows << _KEY_SHIFT) | entries.cols
    if len(keys) < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return entries
    order = np.argsort(keys, kind="stable")
    return Entries(rows=entries.rows[order], cols=entries.cols[order], values=entries.values[order])


# --- step 10: bond masking -----------------------------------------------------------


def compute_masked_bonds_vectorized(
    stored: Entries, last_tempo: int, registered_at: tuple[int, ...]
) -> Entries:
    """Drop bonds to uids registered at or after ``last_tempo`` (a column >= n reads 0).

    Columns >= n are kept here: they take no part in the arithmetic, but they move the
    liquid-alpha lookup's cursor (``compute_walk_lookup``).
    """
    n = len(registered_at)
    in_range = stored.cols < n
    registered = np.where(
        in_range, _u64_vector(registered_at)[np.where(in_range, stored.cols, 0)], np.uint64(0)
    )
    return stored.select(~(np.uint64(last_tempo) <= registered))


# --- step 11a: original (Yuma2) bonds ------------------------------------------------


def compute_yuma2_bonds_vectorized(
    inputs: EpochInputs, terms: VectorTerms
) -> tuple[list[int], Entries]:
    """``compute_yuma2_bonds``: dividends and the new bond rows (u16, sorted by uid)."""
    layout = terms.layout
    stored = layout.dense(_in_columns(terms.bonds, layout))
    bonds = compute_u16_col_normalized(stored)
    scale = _live_vector(terms.active_stake, layout)
    delta = _mul_nonneg(layout.dense(terms.weights_for_bonds), scale[:, None])
    delta = compute_col_normalized_dense(delta)
    alpha = compute_bonds_alpha(inputs.params.bonds_moving_average)
    ema = _mul_nonneg(delta, alpha) + _mul_nonneg(bonds, _one_minus(alpha))
    present = ema > 0
    ema = compute_col_normalized_dense(ema)
    incentive = np.array(terms.incentive, dtype=np.int64).reshape(layout.n)
    per_validator = _mul_nonneg(ema, incentive[None, :]).sum(axis=1)
    dividends = compute_normalized(layout.per_uid(per_validator))
    upscaled = compute_col_max_upscaled_dense(ema)
    rows = _entries_from_dense(present, upscaled, layout)
    return dividends, rows.with_values(_proportion_to_u16(rows.values))


def _in_columns(bonds: Entries, layout: Layout) -> Entries:
    """The bond entries that take part in the arithmetic, checked to densify exactly."""
    kept = bonds.select(bonds.cols < layout.n)
    _require_distinct(kept, layout)
    return kept


def compute_u16_col_normalized(stored_u16: Int64Array) -> Int64Array:
    """``inplace_col_normalize_sparse`` of ``b << 32``: ``(b << 32) // B`` with ``B`` the
    column's u16 sum (the I32F32 sum is ``B << 32``; below 2**31 it does not saturate)."""
    col_sum = stored_u16.sum(axis=0)
    if len(col_sum) and int(col_sum.max()) >= 1 << 31:
        raise _OutsideFastRange("a bond column's u16 sum reaches 2**31")
    shifted = stored_u16 << 32
    return np.where(col_sum > 0, shifted // np.maximum(col_sum, 1), shifted).astype(np.int64)


def compute_col_normalized_dense(matrix: Int64Array) -> Int64Array:
    """``inplace_col_normalize_sparse`` of non-negative values: columns summing to 0 stay."""
    _require_range(matrix, 0, 1 << 40)
    col_sum = matrix.sum(axis=0)  # at most 2**56: the saturating sum does not saturate
    return np.where(col_sum != 0, _div_nonneg(matrix, np.maximum(col_sum, 1)), matrix)


def compute_col_max_upscaled_dense(matrix: Int64Array) -> Int64Array:
    """``inplace_col_max_upscale_sparse`` of non-negative values: the largest becomes 1."""
    if matrix.shape[0] == 0:
        return matrix
    col_max = matrix.max(axis=0)
    return np.where(col_max != 0, _div_nonneg(matrix, np.maximum(col_max, 1)), matrix)


def _entries_from_dense(present: BoolArray, values: Int64Array, layout: Layout) -> Entries:
    """The present entries of a dense matrix, by row and then by column (the chain's order
    for a row it densified)."""
    live_rows, cols = np.nonzero(present)
    return Entries(rows=layout.live[live_rows], cols=cols.astype(np.int64), values=values[present])


# --- step 11b: Yuma3 bonds -----------------------------------------------------------


def compute_yuma3_bonds_vectorized(
    inputs: EpochInputs, terms: VectorTerms
) -> tuple[list[int], Entries]:
    """``compute_yuma3_bonds``: dividends and the new bond rows (u16 proportions)."""
    layout, params = terms.layout, inputs.params
    # u16_proportion_to_fixed(b) = safe_div(b << 32, 65535 << 32) = (b << 32) // 65535.
    proportions = terms.bonds.with_values((terms.bonds.values << 32) // U16_MAX)
    bonds = layout.dense(_in_columns(proportions, layout))
    if params.liquid_alpha and any(c != 0 for c in terms.consensus):
        ema = compute_liquid_alpha_ema_vectorized(proportions, bonds, terms, inputs)
        ema_dense = layout.dense(ema)
    else:
        alpha = compute_disabled_liquid_alpha(params)
        weights = layout.dense(terms.weights_for_bonds)
        ema_dense = _mul_nonneg(weights, alpha) + _mul_nonneg(bonds, _one_minus(alpha))
        ema = _entries_from_dense(ema_dense > 0, ema_dense, layout)
    ema_normalized = compute_col_normalized_dense(ema_dense)
    incentive = np.array(terms.incentive, dtype=np.int64).reshape(layout.n)
    per_validator = layout.per_uid(_mul_nonneg(ema_normalized, incentive[None, :]).sum(axis=1))
    dividends = compute_normalized(
        [_checked_mul_or_zero(b, s) for b, s in zip(per_validator, terms.active_stake, strict=True)]
    )
    return dividends, ema.with_values(_proportion_to_u16(ema.values))


def _checked_mul_or_zero(a: int, b: int) -> int:
    product = checked_mul(a, b)
    return 0 if product is None else product


def compute_liquid_alpha_ema_vectorized(
    bonds: Entries, bonds_dense: Int64Array, terms: VectorTerms, inputs: EpochInputs
) -> Entries:
    """``mat_ema_alpha_sparse``: one alpha per entry of the weights for bonds.

    Only the entries of the weights for bonds are emitted (an old bond elsewhere is
    dropped), in their order. Alpha reads the weight and the bond the chain's lookup walk
    reads (``_is_walk_read``); the EMA itself uses the entries' own values.
    """
    layout, params = terms.layout, inputs.params
    weights = terms.weights_for_bonds
    at = (layout.position[weights.rows], weights.cols)
    bond_reads = bonds.select(_is_walk_read(bonds) & (bonds.cols < layout.n))
    consensus = np.array(terms.consensus, dtype=np.int64).reshape(layout.n)
    alpha = compute_alpha_sigmoid_vectorized(
        consensus[weights.cols],
        np.where(_is_walk_read(weights), weights.values, 0),
        layout.dense(bond_reads)[at],
        params,
    )
    decayed = _mul_nonneg(bonds_dense[at], ONE_I32F32 - alpha)
    increase = np.maximum(_mul_nonneg(alpha, weights.values), 0)
    values = np.minimum(decayed + increase, ONE_I32F32)
    return weights.with_values(values).select(values > 0)


def _is_walk_read(entries: Entries) -> BoolArray:
    """Which entries the chain's forward-only lookup reads (``compute_walk_lookup``): those
    whose column is above every earlier column of their row."""
    keys = (entries.rows << _KEY_SHIFT) | entries.cols
    if len(keys) == 0:
        return np.zeros(0, dtype=np.bool_)
    running_max = np.maximum.accumulate(keys)
    before = np.concatenate((np.full(1, -1, dtype=np.int64), running_max[:-1]))
    return keys > before


def compute_alpha_sigmoid_vectorized(
    consensus: Int64Array, weight: Int64Array, bond: Int64Array, params: YumaParams
) -> Int64Array:
    """``compute_alpha_sigmoid`` per entry. Consensus, weights and bonds are in [0, 2**32],
    so no difference saturates; see the helpers for the products."""
    low = u16_proportion_to_fixed(params.alpha_low_u16)
    high = u16_proportion_to_fixed(params.alpha_high_u16)
    diff_buy = np.clip(weight - consensus, 0, ONE_I32F32)
    diff_sell = np.clip(bond - weight, 0, ONE_I32F32)
    diff = np.where(weight >= bond, diff_buy, diff_sell)
    factor = saturating_div(params.alpha_sigmoid_steepness << 32, MINUS_HUNDRED_I32F32)
    exponent = _mul_by_scalar(diff - HALF_I32F32, factor)
    sigmoid = _one_over(ONE_I32F32 + compute_exp_safe_vectorized(exponent))
    alpha = low + _mul_signed(sigmoid, high - low)
    return np.maximum(np.minimum(alpha, high), low)


def compute_exp_safe_vectorized(x: Int64Array) -> Int64Array:
    """``exp_safe``: clamp to [-20, 20], then the library's series, once per distinct value."""
    clamped = np.clip(x, -_EXP_LIMIT_I32F32, _EXP_LIMIT_I32F32)
    distinct, inverse = np.unique(clamped, return_inverse=True)
    return compute_exp_vectorized(distinct)[inverse.reshape(x.shape)]


def compute_exp_vectorized(x: Int64Array) -> Int64Array:
    """``fixed.compute_exp`` for ``|x| <= 20``: Taylor terms 2..31, ``1/exp(|x|)`` below 0.

    In that range no value leaves I32F32 (the largest term, before its division, is about
    ``20**20/19! < 2**30`` and ``exp(20) < 2**29``), so the library never errs. The
    product ``term * |x|`` needs up to 95 bits; with ``|x| = h * 2**32 + l`` and
    ``term = t * 2**32 + u`` its floor over 2**32 is
    ``term * h + t * l + (u * l >> 32)``, each part below 2**63 and ``u * l < 2**64``.
    """
    _require_range(x, -_EXP_LIMIT_I32F32, _EXP_LIMIT_I32F32)
    operand = np.abs(x).astype(np.uint64)
    operand_high = operand >> np.uint64(32)
    operand_low = operand & _LOW_32
    result = operand + np.uint64(ONE_I32F32)
    term = operand.copy()
    for i in range(2, 32):
        term = (
            term * operand_high
            + (term >> np.uint64(32)) * operand_low
            + (((term & _LOW_32) * operand_low) >> np.uint64(32))
        )
        term //= np.uint64(i)
        result += term
    value = np.where(x < 0, _one_over(result.astype(np.int64)), result.astype(np.int64))
    return np.where(x == ONE_I32F32, E_I32F32, value).astype(np.int64)


# --- step 13: bond rows --------------------------------------------------------------


def compute_bond_rows(bonds: Entries, layout: Layout, new_permit: list[bool]) -> list[WeightRow]:
    """The new bond row of each uid, as the readable path hands it to the write rule.

    Only rows of uids with a new permit are ever stored, so only those are built. Building
    a million pairs is most of a dense epoch's time; a row over every uid in order (the
    dense case) reuses one list of column ints instead of converting its columns.
    """
    rows: list[WeightRow] = [()] * layout.n
    permit = np.array(new_permit, dtype=np.bool_).reshape(layout.n)
    wanted = bonds.select(permit[bonds.rows])
    if len(wanted.rows) == 0:
        return rows
    uids, starts = np.unique(wanted.rows, return_index=True)
    ends = np.append(starts[1:], len(wanted.rows))
    every_uid = np.arange(layout.n, dtype=np.int64)
    every_uid_list = every_uid.tolist()
    for uid, start, end in zip(uids.tolist(), starts.tolist(), ends.tolist(), strict=True):
        cols = wanted.cols[start:end]
        if end - start == layout.n and np.array_equal(cols, every_uid):
            col_list = every_uid_list
        else:
            col_list = cols.tolist()
        rows[uid] = tuple(zip(col_list, wanted.values[start:end].tolist(), strict=True))
    return rows


# --- fixed-point helpers on arrays ---------------------------------------------------


def _require_range(values: Int64Array, low: int, high: int) -> None:
    """Raise ``_OutsideFastRange`` unless every value is in [low, high]."""
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        raise _OutsideFastRange(f"a value is outside [{low}, {high}]")


def _as_array(value: Int64Array | int) -> Int64Array:
    return np.asarray(value, dtype=np.int64)


def _one_minus(alpha: int) -> int:
    """``1 - alpha`` for an EMA weight, which must be a proportion for the helpers' bounds."""
    if not 0 <= alpha <= ONE_I32F32:
        raise _OutsideFastRange("the EMA weight is not in [0, 1]")
    return ONE_I32F32 - alpha


def _mul_parts(a: Int64Array, b: Int64Array) -> tuple[UInt64Array, UInt64Array]:
    """``floor(a * b / 2**32)`` and ``a * b mod 2**32`` for ``0 <= a, b <= 2**32``.

    ``a = h * 2**32 + l`` with ``h`` 0 or 1: ``a * b = h * b * 2**32 + l * b``, and
    ``l * b <= (2**32 - 1) * 2**32 < 2**64`` fits a u64.
    """
    a_u = a.astype(np.uint64)
    b_u = b.astype(np.uint64)
    low_product = (a_u & _LOW_32) * b_u
    floor = (a_u >> np.uint64(32)) * b_u + (low_product >> np.uint64(32))
    return floor, low_product & _LOW_32


def _mul_nonneg(a: Int64Array | int, b: Int64Array | int) -> Int64Array:
    """``saturating_mul`` of I32F32 values in [0, 1]: the floored product, never saturated."""
    a_array, b_array = _as_array(a), _as_array(b)
    _require_range(a_array, 0, ONE_I32F32)
    _require_range(b_array, 0, ONE_I32F32)
    floor, _ = _mul_parts(a_array, b_array)
    return floor.astype(np.int64)


def _mul_signed(a: Int64Array | int, b: Int64Array | int) -> Int64Array:
    """``saturating_mul`` of I32F32 values in [-1, 1]: the product floored (toward minus
    infinity, as the chain's arithmetic shift does), never saturated."""
    a_array, b_array = _as_array(a), _as_array(b)
    _require_range(a_array, -ONE_I32F32, ONE_I32F32)
    _require_range(b_array, -ONE_I32F32, ONE_I32F32)
    floor, remainder = _mul_parts(np.abs(a_array), np.abs(b_array))
    magnitude = floor.astype(np.int64)
    ceiling = magnitude + (remainder != 0).astype(np.int64)
    return np.where((a_array < 0) != (b_array < 0), -ceiling, magnitude).astype(np.int64)


def _mul_by_scalar(values: Int64Array, factor: int) -> Int64Array:
    """``saturating_mul(factor, v)`` for any I32F32 ``factor`` and ``|v| <= 2**31``.

    With ``factor = h * 2**32 + l`` (``h`` signed, ``0 <= l < 2**32``):
    ``floor(factor * v / 2**32) = h * v + floor(l * v / 2**32)``; ``|l * v| < 2**63`` and
    ``|h * v| < 2**62``, so nothing overflows and the result is in range.
    """
    _require_range(values, -(1 << 31), 1 << 31)
    high, low = factor >> 32, factor & 0xFFFF_FFFF
    return (values * high + ((values * low) >> 32)).astype(np.int64)


def _div_nonneg(a: Int64Array, b: Int64Array) -> Int64Array:
    """``safe_div(a, b)`` for ``a >= 0`` and ``b > 0``: ``floor(a * 2**32 / b)``, 0 where
    it leaves I32F32.

    With every ``a < 2**32`` (a normalization's usual case), ``a << 32`` fits a u64: one
    division. Otherwise, for ``b < 2**48``, long division in u64: ``a = q * b + r``, then
    ``r * 2**32 / b`` in two 16-bit steps, each numerator below ``b * 2**16 < 2**64``.
    """
    _require_range(a, 0, _I64_MAX)
    _require_range(b, 1, _I64_MAX)
    a_u, b_u = a.astype(np.uint64), b.astype(np.uint64)
    if a.size == 0 or int(a.max()) < 1 << 32:
        quotient = (a_u << np.uint64(32)) // b_u
        return np.where(quotient <= np.uint64(_I64_MAX), quotient, np.uint64(0)).astype(np.int64)
    _require_range(b, 1, (1 << 48) - 1)
    shift = np.uint64(16)
    quotient, remainder = np.divmod(a_u, b_u)
    high, remainder = np.divmod(remainder << shift, b_u)
    low = (remainder << shift) // b_u
    fits = quotient < np.uint64(1 << 31)
    bits = (quotient << np.uint64(32)) | (high << shift) | low
    return np.where(fits, bits, np.uint64(0)).astype(np.int64)


def _one_over(denominator: Int64Array) -> Int64Array:
    """``saturating_div(1, d)`` for ``2**32 <= d < 2**63``: ``floor(2**64 / d)``, at most
    2**32. As ``2**64`` is no u64: ``2 * floor(2**63 / d)``, plus 1 if twice the remainder
    reaches ``d``."""
    _require_range(denominator, ONE_I32F32, _I64_MAX)
    d = denominator.astype(np.uint64)
    half, remainder = np.divmod(_TWO_POW_63, d)
    return (half * np.uint64(2) + (remainder * np.uint64(2) >= d)).astype(np.int64)


def compute_u16_proportions_vectorized(values: list[int]) -> tuple[int, ...]:
    """``compute_u16_proportions`` of a vector over uids (the readable one past 2**46)."""
    if any(not -(1 << 46) <= v <= 1 << 46 for v in values):
        return compute_u16_proportions(values)
    return tuple(_proportion_to_u16(np.array(values, dtype=np.int64)).tolist())


def _proportion_to_u16(values: Int64Array) -> Int64Array:
    """``fixed_proportion_to_u16``: ``saturating_mul(v, 65535)`` is exactly ``v * 65535``
    for ``|v| < 2**46``, then floored to an integer and clamped to u16."""
    _require_range(values, -(1 << 46), 1 << 46)
    floored: Int64Array = (values * U16_MAX) >> 32
    return np.minimum(np.maximum(floored, 0), U16_MAX).astype(np.int64)

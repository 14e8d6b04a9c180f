"""One subnet epoch of Yuma Consensus, bit for bit as the Bittensor chain computes it.

A subnet designer must be able to trust that Agora's numbers are Bittensor's numbers on the
same inputs, so this module ports the chain's sparse epoch (``epoch_mechanism``,
``docs/yuma.md`` section 4) step by step, in the fixed-point arithmetic of ``fixed.py``. It reads
no state: ``compute_epoch`` takes every input as plain values and returns every output, and
the ledger (or the simulator) applies them. ``compute_epoch`` is a flat list of the spec's
steps; each step is a function named after it.

Matrices are sparse, as on the chain: a list of rows, each a list of ``(column uid, bits)``
in the order the chain would hold them. Row order matters in two places (the weighted
median's pivot and the liquid-alpha lookup), so rows are never sorted unless the chain sorts
them. Where a row is densified on the chain, a dict with the same keys gives the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agora.protocol.consensus.errors import InvalidEpochInputs
from agora.protocol.consensus.fixed import (
    HALF_I32F32,
    I32F32,
    I64F64,
    MINUS_HUNDRED_I32F32,
    ONE_I32F32,
    U16_MAX,
    U64_MAX,
    checked_mul,
    compute_exp_safe,
    compute_normalized,
    convert,
    convert_wrapping,
    fixed_proportion_to_u16,
    from_int,
    safe_div,
    saturating_add,
    saturating_div,
    saturating_mul,
    saturating_sub,
    to_u64,
    u16_proportion_to_fixed,
    wrap,
    wrapping_sum,
)

WeightRow = tuple[tuple[int, int], ...]
"""A stored sparse row of ``(uid, u16 value)``: weights set by, or bonds held by, one uid."""

SparseMatrix = list[list[tuple[int, int]]]
"""Rows of ``(column uid, I32F32 bits)``, one row per uid."""

I32F32_MAX = I32F32.max_bits


@dataclass(frozen=True, slots=True, kw_only=True)
class YumaParams:
    """A subnet's consensus hyperparameters, in the chain's storage units.

    The defaults are those of a new Agora subnet, stated here once: the ledger's
    ``subnets.Hyperparameters`` and the simulator (``agora.simulate``) both take theirs from
    ``DEFAULT_YUMA_PARAMS``, and a test holds them equal. They are Bittensor's runtime
    defaults (docs/yuma.md section 3) with two Agora choices, those the ledger has always
    used, since a new default would change every state root: Yuma3 bonds on and liquid alpha
    off (docs/yuma.md section 0), and ``max_validators`` 64 (Bittensor's runtime has 128).
    """

    kappa_u16: int = 32_767
    bonds_penalty_u16: int = 65_535
    bonds_moving_average: int = 900_000  # millionths; the EMA keeps this share of old bonds
    max_validators: int = 64
    activity_cutoff: int = 5_000  # blocks without a weights update before a uid is inactive
    stake_threshold: int = 0  # base units
    yuma3: bool = True
    liquid_alpha: bool = False
    alpha_low_u16: int = 45_875
    alpha_high_u16: int = 58_982
    alpha_sigmoid_steepness: int = 1_000  # i16


# The consensus parameters of a new subnet: the one object the chain and the simulator share.
DEFAULT_YUMA_PARAMS = YumaParams()


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochInputs:
    """Everything one epoch reads, as of the block it runs in. Every tuple is indexed by uid.

    ``validator_permit`` is the permit vector the previous epoch produced (it masks this
    epoch). ``commit_blocks`` is ``None`` when commit-reveal is off; otherwise, per uid, the
    block of its earliest unexpired commit (``weights.compute_commit_block_for_mask``), or
    ``None`` when it has none. Weight rows are in stored (submission) order; bond rows are
    as the previous epoch returned them.
    """

    block: int
    tempo: int
    last_step_block: int = 0  # 0 until the scheduler has run an epoch (manual epochs keep 0)
    emission: int  # base units to distribute
    stake: tuple[int, ...]  # base units, own plus delegated
    registered_at: tuple[int, ...]
    last_update: tuple[int, ...]
    validator_permit: tuple[bool, ...]
    weights: tuple[WeightRow, ...]
    bonds: tuple[WeightRow, ...]
    params: YumaParams
    owner_uid: int | None = None
    commit_blocks: tuple[int | None, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochResult:
    """Everything one epoch produces, per uid (docs/yuma.md step 13).

    ``bonds_u16`` is the bond matrix after the write rule, ready to store; ``validator_permit``
    is the new permit vector, to store for the next epoch.
    """

    active: tuple[bool, ...]
    validator_permit: tuple[bool, ...]
    stake_u16: tuple[int, ...]
    consensus_u16: tuple[int, ...]
    incentive_u16: tuple[int, ...]
    dividends_u16: tuple[int, ...]
    validator_trust_u16: tuple[int, ...]
    emission: tuple[int, ...]  # combined, base units (the chain's stored ``Emission``)
    miner_emission: tuple[int, ...]  # base units, from incentive
    validator_emission: tuple[int, ...]  # base units, from dividends
    bonds_u16: tuple[WeightRow, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BondTerms:
    """What both bond paths read besides the stored bonds (steps 6 to 10)."""

    weights_for_bonds: SparseMatrix
    consensus: list[int]
    incentive: list[int]
    active_stake: list[int]
    last_tempo: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BondsOutcome:
    """What a bond path hands back: dividends and the bond rows a permitted uid stores."""

    dividends: list[int]
    rows_u16: list[WeightRow]


def compute_epoch(inputs: EpochInputs) -> EpochResult:
    """Run one epoch (docs/yuma.md section 4): a pure function of its inputs."""
    validate_epoch_inputs(inputs)
    n, params = len(inputs.stake), inputs.params
    # 1. Activity: uids that set no weights for longer than the cutoff are inactive.
    active = compute_active(inputs.last_update, inputs.block, params.activity_cutoff)
    # 2. Stake, thresholded and normalized.
    stake = compute_stake(inputs.stake, inputs.owner_uid, params.stake_threshold)
    # 3. Permits: the previous epoch's mask this one; the new ones are for the next.
    old_permit = compute_old_permit(inputs.validator_permit, inputs.owner_uid)
    new_permit = compute_new_permit(stake, params.max_validators, inputs.owner_uid)
    # 4. Active stake: active, permitted voters only.
    active_stake = compute_active_stake(stake, active, old_permit)
    # 5. Weights that count, row-normalized.
    weights = compute_weights(inputs, old_permit)
    # 6. Consensus: the kappa-backed weight per miner.
    kappa = u16_proportion_to_fixed(params.kappa_u16)
    consensus = compute_consensus(active_stake, weights, n, kappa)
    # 7. Clipping at consensus; validator trust is what survives of each row.
    clipped = compute_clipped_weights(weights, consensus)
    validator_trust = [wrapping_sum([v for _, v in row]) for row in clipped]
    # 8. Incentive.
    incentive = compute_incentive(clipped, active_stake, n)
    # 9-10. Weights for bonds (bonds penalty) and the bond mask's horizon.
    beta = u16_proportion_to_fixed(params.bonds_penalty_u16)
    terms = BondTerms(
        weights_for_bonds=compute_interpolated(weights, clipped, n, beta),
        consensus=consensus,
        incentive=incentive,
        active_stake=active_stake,
        last_tempo=compute_last_tempo(inputs.block, inputs.tempo, inputs.last_step_block),
    )
    # 11. Bonds and dividends: Yuma3 (11b) or the original path (11a).
    bonds = (
        compute_yuma3_bonds(inputs, terms) if params.yuma3 else compute_yuma2_bonds(inputs, terms)
    )
    # 12. Emission.
    combined, to_miners, to_validators = compute_emissions(
        incentive, bonds.dividends, active_stake, stake, inputs.emission
    )
    # 13. Outputs, proportions as u16, and the bond rows after the write rule.
    return EpochResult(
        active=tuple(active),
        validator_permit=tuple(new_permit),
        stake_u16=compute_u16_proportions(stake),
        consensus_u16=compute_u16_proportions(consensus),
        incentive_u16=compute_u16_proportions(incentive),
        dividends_u16=compute_u16_proportions(bonds.dividends),
        validator_trust_u16=compute_u16_proportions(validator_trust),
        emission=combined,
        miner_emission=to_miners,
        validator_emission=to_validators,
        bonds_u16=compute_bonds_to_store(inputs.bonds, bonds.rows_u16, old_permit, new_permit),
    )


def compute_u16_proportions(values: list[int]) -> tuple[int, ...]:
    return tuple(fixed_proportion_to_u16(v) for v in values)


# --- inputs --------------------------------------------------------------------------


def validate_epoch_inputs(inputs: EpochInputs) -> None:
    """Raise ``InvalidEpochInputs`` unless every vector has one entry per uid, in range."""
    n = len(inputs.stake)
    vectors: dict[str, Sequence[object]] = {
        "registered_at": inputs.registered_at,
        "last_update": inputs.last_update,
        "validator_permit": inputs.validator_permit,
        "weights": inputs.weights,
        "bonds": inputs.bonds,
    }
    if inputs.commit_blocks is not None:
        vectors["commit_blocks"] = inputs.commit_blocks
    for name, vector in vectors.items():
        if len(vector) != n:
            raise InvalidEpochInputs(f"{name} has {len(vector)} entries for {n} uids")
    if n > U16_MAX + 1:
        raise InvalidEpochInputs(f"{n} uids do not fit in u16 uids")
    for name, values in (
        ("stake", inputs.stake),
        ("registered_at", inputs.registered_at),
        ("last_update", inputs.last_update),
        ("block/tempo/last_step_block/emission", _scalars(inputs)),
    ):
        if any(not 0 <= v <= U64_MAX for v in values):
            raise InvalidEpochInputs(f"{name}: every value must be a u64")
    for name, rows in (("weights", inputs.weights), ("bonds", inputs.bonds)):
        for uid, row in enumerate(rows):
            if any(not (0 <= j <= U16_MAX and 0 <= v <= U16_MAX) for j, v in row):
                raise InvalidEpochInputs(f"{name}[{uid}]: uids and values must be u16")
    if inputs.owner_uid is not None and not 0 <= inputs.owner_uid <= U16_MAX:
        raise InvalidEpochInputs("owner_uid must be a u16")
    _validate_params(inputs.params)


def _scalars(inputs: EpochInputs) -> tuple[int, ...]:
    return (inputs.block, inputs.tempo, inputs.last_step_block, inputs.emission)


def _validate_params(params: YumaParams) -> None:
    for name in (
        "kappa_u16",
        "bonds_penalty_u16",
        "alpha_low_u16",
        "alpha_high_u16",
        "max_validators",
    ):
        if not 0 <= getattr(params, name) <= U16_MAX:
            raise InvalidEpochInputs(f"params.{name} must be a u16")
    for name in ("bonds_moving_average", "activity_cutoff", "stake_threshold"):
        if not 0 <= getattr(params, name) <= U64_MAX:
            raise InvalidEpochInputs(f"params.{name} must be a u64")
    if not -(1 << 15) <= params.alpha_sigmoid_steepness < (1 << 15):
        raise InvalidEpochInputs("params.alpha_sigmoid_steepness must be an i16")


def compute_activity_cutoff_blocks(factor_milli: int, tempo: int) -> int:
    """The chain's activity cutoff: ``max(1, factor * tempo / 1000)`` blocks, floored."""
    return max(1, min(factor_milli * tempo, U64_MAX) // 1000)


# --- step 1: activity ----------------------------------------------------------------


def compute_active(last_update: Sequence[int], block: int, cutoff: int) -> list[bool]:
    """A uid is active unless it has not set weights for more than ``cutoff`` blocks."""
    return [not min(updated + cutoff, U64_MAX) < block for updated in last_update]


# --- step 2: stake -------------------------------------------------------------------


def compute_stake(stake: Sequence[int], owner_uid: int | None, threshold: int) -> list[int]:
    """Stake below the threshold counts as 0 (not the owner's); normalized in I64F64."""
    raw = [from_int(s, I64F64) for s in stake]
    filtered = [
        0 if uid != owner_uid and to_u64(s, I64F64) < threshold else s for uid, s in enumerate(raw)
    ]
    normalized = compute_normalized(filtered, I64F64)
    return [convert(s, I64F64, I32F32) for s in normalized]


# --- step 3: validator permits -------------------------------------------------------


def compute_old_permit(permit: Sequence[bool], owner_uid: int | None) -> list[bool]:
    """The previous epoch's permits mask this epoch; the subnet owner always has one."""
    old = list(permit)
    if owner_uid is not None and owner_uid < len(old):
        old[owner_uid] = True
    return old


def compute_new_permit(stake: list[int], max_validators: int, owner_uid: int | None) -> list[bool]:
    """``is_topk_nonzero``: the ``max_validators`` largest non-zero stakes, plus the owner.

    A stable ascending sort evicts the first ``n - k`` indices, so a tie evicts the lower uid.
    """
    n = len(stake)
    permit = [s != 0 for s in stake]
    if n >= max_validators:
        for uid in sorted(range(n), key=lambda i: stake[i])[: n - max_validators]:
            permit[uid] = False
    if owner_uid is not None and owner_uid < n:
        permit[owner_uid] = True
    return permit


# --- step 4: active stake ------------------------------------------------------------


def compute_active_stake(stake: list[int], active: list[bool], permit: list[bool]) -> list[int]:
    """Only active uids that held a permit before this epoch vote with their stake."""
    masked = [s if active[i] and permit[i] else 0 for i, s in enumerate(stake)]
    return compute_normalized(masked)


# --- step 5: weights -----------------------------------------------------------------


def compute_weights(inputs: EpochInputs, permit: list[bool]) -> SparseMatrix:
    """The weights that count, each row normalized to sum to 1 (or left empty)."""
    n = len(inputs.stake)
    registered_at = inputs.registered_at
    rows: SparseMatrix = []
    for i, stored in enumerate(inputs.weights):
        if not permit[i]:
            rows.append([])  # weights of uids without a permit never count
            continue
        commit_block = _commit_block(inputs.commit_blocks, i)
        row = [
            (j, w << 32)
            for j, w in stored
            if j < n
            # The owner may weight itself; anyone else's self-weight is dropped.
            and (j != i or i == inputs.owner_uid)
            # A weight set before uid j was (re)registered was meant for its predecessor.
            and not inputs.last_update[i] <= registered_at[j]
            # Committed before j registered: the weight cannot be about the new holder.
            and not commit_block < registered_at[j]
        ]
        rows.append(_row_normalized(row))
    return rows


def _commit_block(commit_blocks: tuple[int | None, ...] | None, uid: int) -> int:
    if commit_blocks is None:
        return U64_MAX  # commit-reveal off: no column is masked
    block = commit_blocks[uid]
    return U64_MAX if block is None else block


def _row_normalized(row: list[tuple[int, int]]) -> list[tuple[int, int]]:
    total = wrapping_sum([v for _, v in row])
    if total > 0:
        return [(j, safe_div(v, total)) for j, v in row]
    return row


# --- step 6: consensus ---------------------------------------------------------------


def compute_consensus(
    active_stake: list[int], weights: SparseMatrix, n: int, kappa: int
) -> list[int]:
    """``weighted_median_col_sparse``: per column, the weight backed by kappa of the stake.

    Voters are the uids with positive active stake, in uid order; a voter with no entry in a
    column scores 0 there.
    """
    use_stake = compute_normalized([s for s in active_stake if s > 0])
    stake_sum = wrapping_sum(use_stake)
    minority = saturating_sub(stake_sum, kappa)
    scores = [[0] * len(use_stake) for _ in range(n)]
    voter = 0
    for s, row in zip(active_stake, weights, strict=False):
        if s > 0:
            for j, value in row:
                if j < n:
                    scores[j][voter] = value
            voter += 1
    voters = list(range(len(use_stake)))
    return [
        compute_weighted_median(use_stake, column, voters, minority, 0, stake_sum)
        for column in scores
    ]


def compute_weighted_median(
    stake: list[int],
    score: list[int],
    partition: list[int],
    minority: int,
    low: int,
    high: int,
) -> int:
    """The chain's deterministic stake-weighted median (mid-pivot partition search).

    The pivot is the middle element of the current index list in list order, so the list is
    partitioned in place of a sort, exactly as the chain does, to land on the same value.
    """
    if len(stake) != len(score):
        return 0
    current = list(partition)
    for _ in range(len(partition) + 1):
        if not current:
            return 0
        if len(current) == 1:
            return score[current[0]] if current[0] < len(score) else 0
        pivot = score[current[len(current) // 2]]
        lower: list[int] = []
        upper: list[int] = []
        lower_stake = 0
        upper_stake = 0
        for idx in current:
            value = score[idx]
            if value == pivot:
                continue
            if value < pivot:
                lower_stake = saturating_add(lower_stake, stake[idx])
                lower.append(idx)
            else:
                upper_stake = saturating_add(upper_stake, stake[idx])
                upper.append(idx)
        if minority < saturating_add(low, lower_stake) and lower:
            current = lower
            high = saturating_add(low, lower_stake)
        elif saturating_sub(high, upper_stake) <= minority and upper:
            current = upper
            low = saturating_sub(high, upper_stake)
        else:
            return pivot
    return 0  # the chain's safety limit on iterations; never reached by a valid partition


# --- step 7: clipping ----------------------------------------------------------------


def compute_clipped_weights(weights: SparseMatrix, consensus: list[int]) -> SparseMatrix:
    """``col_clip_sparse``: weights above consensus are cut to it; dropped when it is 0."""
    clipped: SparseMatrix = []
    for row in weights:
        out: list[tuple[int, int]] = []
        for j, value in row:
            threshold = consensus[j] if j < len(consensus) else 0
            if threshold < value:
                if threshold > 0:
                    out.append((j, threshold))
            else:
                out.append((j, value))
        clipped.append(out)
    return clipped


# --- step 8: incentive ---------------------------------------------------------------


def compute_incentive(clipped: SparseMatrix, active_stake: list[int], n: int) -> list[int]:
    """Rank ``R_j = sum_i A_i * clipped_ij`` (``matmul_sparse``), normalized."""
    ranks = [0] * n
    for scale, row in zip(active_stake, clipped, strict=False):
        for j, value in row:
            if j < n:
                ranks[j] = saturating_add(ranks[j], saturating_mul(scale, value))
    return compute_normalized(ranks)


# --- step 9: weights for bonds -------------------------------------------------------


def compute_interpolated(
    weights: SparseMatrix, clipped: SparseMatrix, n: int, ratio: int
) -> SparseMatrix:
    """``interpolate_sparse``: ``W + ratio * (clipped - W)``, keeping only values > 0.

    Ratio 0 and 1 return a matrix unchanged (in its row order); otherwise each row is
    densified over 0..n, so the result comes out sorted by uid.
    """
    if ratio == 0:
        return [list(row) for row in weights]
    if ratio == ONE_I32F32:
        return [list(row) for row in clipped]
    result: SparseMatrix = []
    for row1, row2 in zip(weights, clipped, strict=True):
        dense1 = {j: v for j, v in row1 if j < n}
        dense2 = {j: v for j, v in row2 if j < n}
        out: list[tuple[int, int]] = []
        for j in sorted(dense1.keys() | dense2.keys()):
            v1 = dense1.get(j, 0)
            value = saturating_add(v1, saturating_mul(ratio, saturating_sub(dense2.get(j, 0), v1)))
            if value > 0:
                out.append((j, value))
        result.append(out)
    return result


# --- step 10: bond masking -----------------------------------------------------------


def compute_last_tempo(block: int, tempo: int, last_step_block: int) -> int:
    """The block of the previous epoch; uids registered since then hold no bonds yet."""
    if last_step_block == 0:
        return max(block - tempo, 0)
    return min(last_step_block + 1, U64_MAX)


def compute_masked_bonds(
    bonds: SparseMatrix, last_tempo: int, registered_at: Sequence[int]
) -> SparseMatrix:
    """Drop bonds to uids registered at or after ``last_tempo``: they belong to a predecessor."""
    n = len(registered_at)
    return [
        [(j, v) for j, v in row if not last_tempo <= (registered_at[j] if j < n else 0)]
        for row in bonds
    ]


# --- step 11a: original (Yuma2) bonds ------------------------------------------------


def compute_yuma2_bonds(inputs: EpochInputs, terms: BondTerms) -> BondsOutcome:
    """Bonds as a column-normalized EMA of stake-weighted weights; stored column max-upscaled."""
    n = len(inputs.stake)
    stored = [[(j, b << 32) for j, b in row] for row in inputs.bonds]
    masked = compute_masked_bonds(stored, terms.last_tempo, inputs.registered_at)
    bonds = compute_col_normalized(masked, n)
    # Each validator's new bond observation: its weights scaled by its active stake.
    delta = [
        [(j, saturating_mul(v, scale)) for j, v in row]
        for row, scale in zip(terms.weights_for_bonds, terms.active_stake, strict=True)
    ]
    delta = compute_col_normalized(delta, n)
    alpha = compute_bonds_alpha(inputs.params.bonds_moving_average)
    ema = compute_col_normalized(compute_ema(delta, bonds, alpha), n)
    incentive = terms.incentive
    dividends = compute_normalized(
        [_saturating_sum([saturating_mul(incentive[j], v) for j, v in row if j < n]) for row in ema]
    )
    upscaled = compute_col_max_upscaled(ema, n)
    rows = [tuple((j, fixed_proportion_to_u16(v)) for j, v in row) for row in upscaled]
    return BondsOutcome(dividends=dividends, rows_u16=rows)


def _saturating_sum(values: list[int]) -> int:
    """``matmul_transpose_sparse``'s accumulator: saturating, unlike ``Iterator::sum``."""
    total = 0
    for value in values:
        total = saturating_add(total, value)
    return total


def compute_bonds_alpha(bonds_moving_average: int) -> int:
    """EMA weight of the new observation: ``1 - moving_average / 10**6`` (I64F64, floored)."""
    share = safe_div(from_int(bonds_moving_average, I64F64), from_int(1_000_000, I64F64), I64F64)
    return saturating_sub(ONE_I32F32, convert(share, I64F64, I32F32))


def compute_col_normalized(matrix: SparseMatrix, n: int) -> SparseMatrix:
    """``inplace_col_normalize_sparse``: each column sums to 1; zero columns are left alone."""
    col_sum = [0] * n
    for row in matrix:
        for j, v in row:
            if j < n:
                col_sum[j] = saturating_add(col_sum[j], v)
    return [
        [(j, safe_div(v, col_sum[j]) if j < n and col_sum[j] != 0 else v) for j, v in row]
        for row in matrix
    ]


def compute_col_max_upscaled(matrix: SparseMatrix, n: int) -> SparseMatrix:
    """``inplace_col_max_upscale_sparse``: each column's largest entry becomes 1."""
    col_max = [0] * n
    for row in matrix:
        for j, v in row:
            if j < n and col_max[j] < v:
                col_max[j] = v
    return [
        [(j, safe_div(v, col_max[j]) if j < n and col_max[j] != 0 else v) for j, v in row]
        for row in matrix
    ]


def compute_ema(new: SparseMatrix, old: SparseMatrix, alpha: int) -> SparseMatrix:
    """``mat_ema_sparse``: ``alpha * new + (1 - alpha) * old`` over the union of columns.

    The chain densifies each row over 0..n and keeps values > 0, so rows come out sorted.
    """
    n = len(new)
    one_minus_alpha = saturating_sub(ONE_I32F32, alpha)
    result: SparseMatrix = []
    for new_row, old_row in zip(new, old, strict=True):
        acc: dict[int, int] = {}
        for j, v in new_row:
            if j < n:
                acc[j] = saturating_add(acc.get(j, 0), saturating_mul(alpha, v))
        for j, v in old_row:
            if j < n:
                acc[j] = saturating_add(acc.get(j, 0), saturating_mul(one_minus_alpha, v))
        result.append([(j, acc[j]) for j in sorted(acc) if acc[j] > 0])
    return result


# --- step 11b: Yuma3 bonds -----------------------------------------------------------


def compute_yuma3_bonds(inputs: EpochInputs, terms: BondTerms) -> BondsOutcome:
    """Bonds as absolute proportions, updated by an EMA (fixed or liquid alpha)."""
    n = len(inputs.stake)
    params = inputs.params
    stored = [[(j, u16_proportion_to_fixed(b)) for j, b in row] for row in inputs.bonds]
    bonds = compute_masked_bonds(stored, terms.last_tempo, inputs.registered_at)
    weights = terms.weights_for_bonds
    if params.liquid_alpha and any(c != 0 for c in terms.consensus):
        ema = compute_liquid_alpha_ema(weights, bonds, terms.consensus, params)
    else:
        ema = compute_ema(weights, bonds, compute_disabled_liquid_alpha(params))
    incentive = terms.incentive
    ema_normalized = compute_col_normalized(ema, n)
    bonds_per_validator = [
        wrapping_sum(
            [product for j, v in row if j < n and (product := saturating_mul(v, incentive[j])) != 0]
        )
        for row in ema_normalized
    ]
    dividends = compute_normalized(
        [
            _checked_mul_or_zero(b, s)
            for b, s in zip(bonds_per_validator, terms.active_stake, strict=True)
        ]
    )
    rows = [tuple((j, fixed_proportion_to_u16(v)) for j, v in row) for row in ema]
    return BondsOutcome(dividends=dividends, rows_u16=rows)


def _checked_mul_or_zero(a: int, b: int) -> int:
    product = checked_mul(a, b)
    return 0 if product is None else product


def compute_disabled_liquid_alpha(params: YumaParams) -> int:
    """The fixed EMA weight of Yuma3 without liquid alpha (unchecked conversions wrap)."""
    average = wrap(params.bonds_moving_average << 64, I64F64)
    share = saturating_div(average, from_int(1_000_000, I64F64), I64F64)
    return saturating_sub(ONE_I32F32, convert_wrapping(share, I64F64, I32F32))


def compute_liquid_alpha_ema(
    weights: SparseMatrix, bonds: SparseMatrix, consensus: list[int], params: YumaParams
) -> SparseMatrix:
    """``mat_ema_alpha_sparse`` with a per-entry alpha from the sigmoid of the disagreement.

    Only the columns present in row i of the weights survive: an old bond at a column the
    validator did not weight this epoch is dropped, not decayed (docs/yuma.md section 11, item 1).
    """
    n = len(consensus)
    low = u16_proportion_to_fixed(params.alpha_low_u16)
    high = u16_proportion_to_fixed(params.alpha_high_u16)
    steepness = params.alpha_sigmoid_steepness << 32
    result: SparseMatrix = []
    for weight_row, bond_row in zip(weights, bonds, strict=True):
        # The chain computes alpha for every column; only those in this row's bonds or
        # weights are ever read, so only those are computed here.
        seen_weights = compute_walk_lookup(weight_row, n)
        seen_bonds = compute_walk_lookup(bond_row, n)
        alpha = {
            j: compute_alpha_sigmoid(
                consensus[j], seen_weights.get(j, 0), seen_bonds.get(j, 0), low, high, steepness
            )
            for j, _ in (*bond_row, *weight_row)
            if j < n
        }
        decayed: dict[int, int] = {}
        for j, old in bond_row:
            if j < n:
                decayed[j] = saturating_mul(saturating_sub(ONE_I32F32, alpha[j]), old)
        out: list[tuple[int, int]] = []
        for j, new in weight_row:
            if j < n:
                increase = max(saturating_mul(alpha[j], new), 0)
                value = min(saturating_add(decayed.get(j, 0), increase), ONE_I32F32)
                if value > 0:
                    out.append((j, value))
        result.append(out)
    return result


def compute_walk_lookup(row: list[tuple[int, int]], n: int) -> dict[int, int]:
    """The values the chain's liquid-alpha lookup reads from a row, by column.

    The chain walks columns 0..n with a forward-only cursor over the row in stored order
    (docs/yuma.md section 11, item 10): at column j it skips entries with uid < j and reads
    the entry if its uid equals j. On an unsorted row some entries are skipped before their column
    comes, and then read as 0. This computes the same reads in one pass: the cursor reaches
    entry p at column ``max(uid of earlier entries) + 1`` (or 0), and reads it iff its uid is
    not below that column.
    """
    reads: dict[int, int] = {}
    reached_at = 0
    for j, value in row:
        if reached_at <= j < n:
            reads.setdefault(j, value)
        reached_at = max(reached_at, j + 1)
    return reads


def compute_alpha_sigmoid(
    consensus: int, weight: int, bond: int, low: int, high: int, steepness: int
) -> int:
    """Liquid alpha for one entry: near ``high`` when the validator departs from consensus
    (buying) or from its own bond (selling), near ``low`` when it agrees."""
    diff_buy = _clamp(saturating_sub(weight, consensus), 0, ONE_I32F32)
    diff_sell = _clamp(saturating_sub(bond, weight), 0, ONE_I32F32)
    diff = diff_buy if weight >= bond else diff_sell
    exponent = saturating_mul(
        saturating_div(steepness, MINUS_HUNDRED_I32F32), saturating_sub(diff, HALF_I32F32)
    )
    sigmoid = saturating_div(ONE_I32F32, saturating_add(ONE_I32F32, compute_exp_safe(exponent)))
    alpha = saturating_add(low, saturating_mul(sigmoid, saturating_sub(high, low)))
    return _clamp(alpha, low, high)


def _clamp(value: int, low: int, high: int) -> int:
    """``clamp_value``: the upper bound first, then the lower one (as the chain orders them)."""
    return max(min(value, high), low)


# --- step 12: emission ---------------------------------------------------------------


def compute_emissions(
    incentive: list[int],
    dividends: list[int],
    active_stake: list[int],
    stake: list[int],
    emission: int,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Split ``emission`` base units: (combined, miners' by incentive, validators' by dividends).

    With no usable weights at all (``E_sum == 0``) validators are paid by active stake, or by
    stake when nobody is active, so an epoch never burns its emission for lack of votes.
    """
    combined = [saturating_add(i, d) for i, d in zip(incentive, dividends, strict=True)]
    emission_sum = wrapping_sum(combined)
    miner_share = _divided_by(incentive, emission_sum)
    validator_share = _divided_by(dividends, emission_sum)
    combined_share = compute_normalized(combined)
    if emission_sum == 0:
        fallback = stake if wrapping_sum(active_stake) == 0 else active_stake
        validator_share = list(fallback)
        combined_share = list(fallback)
    return (
        compute_base_units(combined_share, emission),
        compute_base_units(miner_share, emission),
        compute_base_units(validator_share, emission),
    )


def _divided_by(values: list[int], total: int) -> list[int]:
    if total == 0:
        return list(values)
    return [safe_div(v, total) for v in values]


def compute_base_units(shares: list[int], emission: int) -> tuple[int, ...]:
    """``floor(I96F32(share) * emission)`` per uid, saturated to u64: the remainder of each
    floor is not distributed by the epoch (the caller decides where dust goes)."""
    return tuple(min(max((share * emission) >> 32, 0), U64_MAX) for share in shares)


# --- step 13: bonds write rule -------------------------------------------------------


def compute_bonds_to_store(
    stored: tuple[WeightRow, ...],
    new_rows: list[WeightRow],
    old_permit: list[bool],
    new_permit: list[bool],
) -> tuple[WeightRow, ...]:
    """A uid with a new permit stores its new bond row; one that just lost its permit stores
    an empty row; any other keeps its stored row (docs/yuma.md step 13).

    The chain's persist step writes a row for every uid, so in the third case it writes an
    empty row. Only uids that held a permit ever hold bonds (a replacement clears both), so
    the stored row is already empty there and the two agree on any state the ledger builds.
    """
    result: list[WeightRow] = []
    for uid, row in enumerate(stored):
        if new_permit[uid]:
            result.append(new_rows[uid])
        elif old_permit[uid]:
            result.append(())
        else:
            result.append(row)
    return tuple(result)

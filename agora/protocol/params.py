"""The chain's parameters: one dataclass, set at genesis and later changed only by governance.

Every value is an integer (amounts in base units, 1 AGR = 10^9), so the encoding is the
u64 of each field in declaration order and the parameters are part of the committed state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from agora.protocol.codec import U64, FieldType, Record
from agora.protocol.errors import InvalidGenesis

BASE_UNITS_PER_AGR = 1_000_000_000
# The whole of a ``*_u16`` proportion.
U16_ONE = 65_535
# Bounds on the data royalty share: at most half of what a model's server is paid.
MAX_DATA_ROYALTY_U16 = 32_767


@dataclass(frozen=True, slots=True, kw_only=True)
class Params:
    # Paid to the treasury by every transaction, successful or not, with a valid signature.
    min_fee: int = 1_000
    # Bounds that keep a block cheap to decode and apply for every node.
    max_transaction_bytes: int = 16_384
    max_block_transactions: int = 10_000
    # Subnets: the amount a creator locks, and how many subnets may exist.
    subnet_lock_cost: int = 100 * BASE_UNITS_PER_AGR
    max_subnets: int = 64
    # Emission: minted per block, halved every interval, never past the supply cap.
    initial_block_emission: int = BASE_UNITS_PER_AGR
    halving_interval_blocks: int = 10_500_000
    supply_cap: int = 21_000_000 * BASE_UNITS_PER_AGR
    # The subnet owner's share of each epoch's emission, a u16 proportion (18%).
    owner_cut_u16: int = 11_796
    # A validator's take (commission on its delegators' dividends): default and bounds.
    default_take_u16: int = 11_796
    max_take_u16: int = 11_796
    # Payment channels: the protocol's share of every claim, a u16 proportion (5%), and the
    # part of that share paid to the subnet's validators at its next epoch (about half); the
    # rest of the share goes to the treasury.
    channel_fee_u16: int = 3_277
    channel_fee_validators_u16: int = 32_767
    # Data royalties: the share of a claim's payee part paid to the contributors of the model
    # the payee serves, when it has lineage (``data.py``); at most MAX_DATA_ROYALTY_U16.
    data_royalty_u16: int = 6_553
    # Governance. The treasury's share of each block's emission, taken before the subnets'
    # split (0 by default: the treasury lives on fees and rounding until a vote sets it).
    treasury_emission_u16: int = 0
    # A vote weighs stake plus this many thousandths of a base unit of power per base unit
    # the ledger paid the voter for measured work (miner incentive, validator dividends) over
    # the last ``contribution_window_epochs`` governance epochs (λ = 10 by default).
    contribution_weight_per_mille: int = 10_000
    governance_epoch_blocks: int = 360
    contribution_window_epochs: int = 30
    # The share of decisive votes (yes, no, veto) that vetoes a proposal and takes its deposit.
    veto_threshold_u16: int = 21_845
    # Each step of conviction multiplies a vote's stake and locks it this much longer.
    conviction_lock_blocks: int = 7_200


# Hard bounds, inclusive, that no genesis file and no vote can cross.
PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "min_fee": (0, 1_000 * BASE_UNITS_PER_AGR),
    "max_transaction_bytes": (128, 1_048_576),
    "max_block_transactions": (1, 100_000),
    "subnet_lock_cost": (0, 1_000_000 * BASE_UNITS_PER_AGR),
    "max_subnets": (1, 4_096),
    "initial_block_emission": (0, 1_000 * BASE_UNITS_PER_AGR),
    "halving_interval_blocks": (1, 1 << 40),
    "supply_cap": (0, (1 << 64) - 1),
    "owner_cut_u16": (0, U16_ONE),
    "default_take_u16": (0, U16_ONE),
    "max_take_u16": (0, U16_ONE),
    "channel_fee_u16": (0, U16_ONE // 2),
    "channel_fee_validators_u16": (0, U16_ONE),
    "treasury_emission_u16": (0, U16_ONE // 4),
    "contribution_weight_per_mille": (0, 1_000_000),
    "governance_epoch_blocks": (1, 1_000_000),
    "contribution_window_epochs": (1, 64),
    "veto_threshold_u16": (U16_ONE // 10, U16_ONE),
    "conviction_lock_blocks": (0, 10_000_000),
    "data_royalty_u16": (0, MAX_DATA_ROYALTY_U16),
}


def validate_params_consistent(params: Params) -> str | None:
    """What is wrong with a set of parameters that each sit within their bounds, or None."""
    if params.default_take_u16 > params.max_take_u16:
        return "default_take_u16 cannot exceed max_take_u16"
    return None


PARAMS_RECORD: Record[Params] = Record(
    Params,
    tuple((f.name, U64) for f in fields(Params)),
)

_U64_FIELD: FieldType[int] = U64


def params_from_json(value: Any) -> Params:
    """Genesis parameters: omitted ones take their defaults; unknown ones are an error."""
    if not isinstance(value, dict):
        raise InvalidGenesis("params: expected an object")
    known = {f.name for f in fields(Params)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidGenesis(f"params.{unknown[0]}: unknown parameter")
    checked = {}
    for name, raw in value.items():
        try:
            checked[name] = _U64_FIELD.from_json(raw, f"params.{name}")
        except Exception as error:
            raise InvalidGenesis(str(error)) from None
        if name.endswith("_u16") and checked[name] > U16_ONE:
            raise InvalidGenesis(f"params.{name}: a u16 proportion is at most {U16_ONE}")
        low, high = PARAM_BOUNDS[name]
        if not low <= checked[name] <= high:
            raise InvalidGenesis(f"params.{name}: must be between {low} and {high}")
    params = Params(**checked)
    problem = validate_params_consistent(params)
    if problem is not None:
        raise InvalidGenesis(f"params: {problem}")
    return params

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
    if checked.get("data_royalty_u16", 0) > MAX_DATA_ROYALTY_U16:
        raise InvalidGenesis(f"params.data_royalty_u16: at most {MAX_DATA_ROYALTY_U16}")
    return Params(**checked)

"""AGR amounts as people write them, and the base units the ledger counts in: one place.

The ledger holds integers (1 AGR = 10^9 base units, ``protocol.params.BASE_UNITS_PER_AGR``).
People write decimals: ``12``, ``0.5``, ``0.001``. ``parse_agr`` turns such text into base
units exactly (``Decimal``, never a float: ``0.1`` is 100_000_000, not a rounding of it) and
refuses what has no exact value; ``format_agr`` writes base units back without trailing zeros.
Every command, price and receipt goes through these two functions.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from agora.errors import AgoraError
from agora.protocol.params import BASE_UNITS_PER_AGR


class InvalidAmount(AgoraError):
    """Text that is not a positive amount of AGR with at most nine decimals."""

    code = 3300


def parse_agr(text: str) -> int:
    """``"1.5"`` -> ``1_500_000_000`` base units, exactly; anything else raises InvalidAmount."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidAmount(f"{text!r} is not an amount; write AGR like 12 or 0.5") from None
    if not value.is_finite():
        raise InvalidAmount(f"{text!r} is not an amount; write AGR like 12 or 0.5")
    base_units = value * BASE_UNITS_PER_AGR
    if base_units != base_units.to_integral_value() or base_units <= 0:
        raise InvalidAmount(f"{text.strip()} AGR is not a positive amount with at most 9 decimals")
    return int(base_units)


def format_agr(base_units: int, *, unit: bool = True) -> str:
    """``1_500_000`` -> ``"0.0015 AGR"`` (``"0.0015"`` without ``unit``), exact."""
    whole, fraction = divmod(base_units, BASE_UNITS_PER_AGR)
    number = f"{whole}.{fraction:09d}".rstrip("0").rstrip(".")
    return f"{number} AGR" if unit else number

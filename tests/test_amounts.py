"""AGR text and base units: exact both ways, and text with no exact value is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.amounts import InvalidAmount, format_agr, parse_agr
from agora.protocol.params import BASE_UNITS_PER_AGR


@pytest.mark.parametrize(
    ("text", "base_units"),
    [
        ("1", BASE_UNITS_PER_AGR),
        ("12", 12 * BASE_UNITS_PER_AGR),
        ("0.5", BASE_UNITS_PER_AGR // 2),
        ("0.1", 100_000_000),
        ("0.000000001", 1),
        (" 2.25 ", 2_250_000_000),
        ("1e-3", 1_000_000),
    ],
)
def test_parse_is_exact(text: str, base_units: int) -> None:
    assert parse_agr(text) == base_units


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "0", "-1", "0.0000000001", "NaN", "inf"])
def test_text_without_an_exact_positive_value_is_refused(text: str) -> None:
    with pytest.raises(InvalidAmount) as raised:
        parse_agr(text)
    assert raised.value.code == 3300 and "AGR" in raised.value.message


@pytest.mark.parametrize(
    ("base_units", "text"),
    [(1, "0.000000001"), (1_500_000, "0.0015"), (BASE_UNITS_PER_AGR, "1"), (0, "0")],
)
def test_format_drops_trailing_zeros(base_units: int, text: str) -> None:
    assert format_agr(base_units, unit=False) == text
    assert format_agr(base_units) == f"{text} AGR"


@given(st.integers(min_value=1, max_value=10**20))
def test_format_then_parse_is_the_identity(base_units: int) -> None:
    assert parse_agr(format_agr(base_units, unit=False)) == base_units

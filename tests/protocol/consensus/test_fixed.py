"""The fixed-point primitives round, saturate and divide exactly like substrate-fixed.

Expected values are worked out by hand from the spec's rules (section 1) or taken from the
chain's own tests (``tests/math.rs``), which is what "same bits" is measured against.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.protocol.consensus import fixed
from agora.protocol.consensus.fixed import (
    I32F32,
    I64F64,
    ONE_I32F32,
    U64F64,
    checked_div,
    checked_mul,
    compute_exp,
    compute_exp_safe,
    compute_max_upscale_to_u16,
    compute_normalized,
    compute_round,
    compute_u16_max_upscale,
    convert,
    fixed_proportion_to_u16,
    is_max_limited,
    safe_div,
    saturating_add,
    saturating_div,
    saturating_mul,
    saturating_sub,
    to_u16,
    to_u64,
    u16_proportion_to_fixed,
    u16_to_fixed,
    wrapping_sum,
)

MAX = I32F32.max_bits
MIN = I32F32.min_bits
i32f32_bits = st.integers(min_value=MIN, max_value=MAX)


def fx(value: int | str) -> int:
    """An exactly representable decimal as I32F32 bits (test helper)."""
    scaled = Fraction(value) * ONE_I32F32
    assert scaled.denominator == 1
    return int(scaled)


# --- section 1: mul floors, div truncates ---------------------------------------------


def test_mul_is_an_arithmetic_shift_so_it_floors() -> None:
    smallest = 1  # 2**-32
    assert saturating_mul(smallest, fx("0.5")) == 0
    # -2**-32 * 0.5 = -2**-33, floored to -2**-32, not truncated to 0.
    assert saturating_mul(-smallest, fx("0.5")) == -1
    assert saturating_mul(fx(3), fx("0.25")) == fx("0.75")


def test_div_truncates_toward_zero() -> None:
    # 1/3 and -1/3: the magnitude is the same, the sign follows.
    third = checked_div(ONE_I32F32, fx(3))
    assert third == (1 << 32) // 3
    assert checked_div(-ONE_I32F32, fx(3)) == -third
    assert checked_div(ONE_I32F32, -fx(3)) == -third


def test_safe_div_returns_zero_on_zero_divisor_and_on_overflow() -> None:
    assert safe_div(fx(5), 0) == 0
    assert safe_div(MAX, 1) == 0  # MAX / 2**-32 does not fit
    assert checked_div(fx(5), 0) is None
    assert checked_div(MAX, 1) is None


def test_saturating_ops_clamp_to_the_type_range() -> None:
    assert saturating_add(MAX, 1) == MAX
    assert saturating_sub(MIN, 1) == MIN
    assert saturating_mul(MAX, fx(2)) == MAX
    assert saturating_mul(MAX, -fx(2)) == MIN
    assert saturating_div(MAX, fx("0.5")) == MAX
    assert saturating_div(MAX, -fx("0.5")) == MIN
    with pytest.raises(ZeroDivisionError):
        saturating_div(ONE_I32F32, 0)


def test_checked_mul_reports_overflow() -> None:
    assert checked_mul(MAX, fx(2)) is None
    assert checked_mul(fx(2), fx(3)) == fx(6)


def test_wrapping_sum_wraps_like_a_release_build() -> None:
    assert wrapping_sum([MAX, 1]) == MIN
    assert wrapping_sum([]) == 0
    assert wrapping_sum([fx("0.25")] * 4) == ONE_I32F32


def test_i64f64_normalization_then_truncation_to_i32f32() -> None:
    # Stake normalisation: 1/10 in I64F64, then the extra 32 bits are dropped (a floor).
    tenth = safe_div(1 << 64, 10 << 64, I64F64)
    assert tenth == (1 << 64) // 10
    assert convert(tenth, I64F64, I32F32) == ((1 << 64) // 10) >> 32
    assert convert(I64F64.max_bits, I64F64, I32F32) == MAX


def test_conversions_to_integers_floor_and_saturate() -> None:
    assert to_u16(fx(70_000)) == 65_535
    assert to_u16(-1) == 0
    assert to_u16(fx("2.75")) == 2
    assert to_u64(fx("-0.5")) == 0
    assert to_u64(fx(5) + 1, I32F32) == 5
    assert to_u64(1 << 64, U64F64) == 1


def test_round_is_half_away_from_zero() -> None:
    assert compute_round(fx("2.5")) == fx(3)
    assert compute_round(fx("2.25")) == fx(2)
    assert compute_round(fx("-2.5")) == fx(-3)
    assert compute_round(fx("-2.25")) == fx(-2)
    assert compute_round(fx("-0.75")) == fx(-1)


# --- proportions ----------------------------------------------------------------------


def test_proportion_helpers() -> None:
    assert u16_to_fixed(65_535) == fx(65_535)
    assert u16_proportion_to_fixed(65_535) == ONE_I32F32
    assert u16_proportion_to_fixed(0) == 0
    assert u16_proportion_to_fixed(32_767) == (32_767 << 32) // 65_535
    assert fixed_proportion_to_u16(ONE_I32F32) == 65_535
    assert fixed_proportion_to_u16(fx("0.5")) == 32_767  # floor(32767.5)
    assert fixed_proportion_to_u16(fx(2)) == 65_535  # saturates
    assert fixed_proportion_to_u16(-ONE_I32F32) == 0


@given(st.integers(min_value=0, max_value=65_535))
def test_u16_round_trip_never_gains(value: int) -> None:
    # u16 -> proportion -> u16 loses at most one unit, never gains (both steps floor).
    back = fixed_proportion_to_u16(u16_proportion_to_fixed(value))
    assert value - 1 <= back <= value


def test_kappa_and_ema_alpha_constants_of_the_spec() -> None:
    # Spec section 3: bonds_moving_average 900_000 gives alpha bits 429496730.
    from agora.protocol.consensus.yuma import compute_bonds_alpha

    assert compute_bonds_alpha(900_000) == 429_496_730
    assert u16_proportion_to_fixed(32_767) == 2_147_450_879


# --- max upscale (vec_max_upscale_to_u16, vec_u16_max_upscale_to_u16) -----------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [  # tests/math.rs::test_vec_u16_max_upscale_to_u16
        ([], []),
        ([0], [0]),
        ([0, 0], [0, 0]),
        ([1], [65_535]),
        ([0, 1], [0, 65_535]),
        ([65_534], [65_535]),
        ([65_535, 65_535], [65_535, 65_535]),
        ([0, 1, 65_534], [0, 1, 65_535]),
        ([0, 1, 2, 3, 4, 65_533, 65_535], [0, 1, 2, 3, 4, 65_533, 65_535]),
        # Worked by hand: 16383 * 65535 / 65535 ...; 1/3 and 2/3 round half away from zero.
        ([1, 2], [32_768, 65_535]),
        ([1, 3], [21_845, 65_535]),
    ],
)
def test_u16_max_upscale(values: list[int], expected: list[int]) -> None:
    assert list(compute_u16_max_upscale(values)) == expected


def test_max_upscale_of_fixed_values_from_the_chain_tests() -> None:
    cases = [  # tests/math.rs::test_vec_max_upscale_to_u16, the exactly representable ones
        ([fx(16_384)], [65_535]),
        ([fx(32_768)], [65_535]),
        ([fx(32_769)], [65_535]),
        ([fx(65_535)], [65_535]),
        ([MAX], [65_535]),
        ([0, fx(1), fx(65_535)], [0, 1, 65_535]),
        ([0, fx("0.5"), fx(1), fx("1.5"), fx(2), fx(32_768)], [0, 1, 2, 3, 4, 65_535]),
        (
            [0, fx("0.5"), fx(1), fx("1.5"), fx(2), fx(32_768), fx(32_769)],
            [0, 1, 2, 3, 4, 65_533, 65_535],
        ),
        ([0, fx(1), fx(32_768), fx(32_769), MAX], [0, 0, 1, 1, 65_535]),
    ]
    for values, expected in cases:
        assert list(compute_max_upscale_to_u16(values)) == expected


@given(st.lists(st.integers(min_value=0, max_value=65_535), min_size=1, max_size=20))
def test_max_upscale_keeps_order_and_hits_65535(values: list[int]) -> None:
    upscaled = compute_u16_max_upscale(values)
    assert all(0 <= v <= 65_535 for v in upscaled)
    if max(values) > 0:
        assert max(upscaled) == 65_535
    for i, a in enumerate(values):
        for j, b in enumerate(values):
            if a <= b:
                assert upscaled[i] <= upscaled[j]


def test_check_vec_max_limited_cases_of_the_chain() -> None:
    m = 65_535
    assert is_max_limited([], 0)
    assert is_max_limited([], m)
    assert is_max_limited([m], m)
    assert not is_max_limited([m], m - 1)
    assert not is_max_limited([m], 0)
    assert is_max_limited([0], m)
    assert is_max_limited([0, m], m)
    assert not is_max_limited([0, m, m], m // 2)
    assert is_max_limited([0, m, m], m // 2 + 1)
    assert not is_max_limited([0, m, m, m], m // 3 - 1)
    assert is_max_limited([0, m, m, m], m // 3)


def test_normalize_leaves_a_zero_vector_alone() -> None:
    assert compute_normalized([0, 0]) == [0, 0]
    assert compute_normalized([fx(1), fx(3)]) == [fx("0.25"), fx("0.75")]


# --- exp_safe ---------------------------------------------------------------------------


def test_exp_special_cases() -> None:
    assert compute_exp(0) == ONE_I32F32
    # exp(1) is the library's I9F23 constant e, widened: 23 fractional bits only.
    assert compute_exp(ONE_I32F32) == fixed.E_I32F32
    assert fixed.E_I32F32 == 22_802_600 << 9
    # exp(-1) runs the series and inverts it: close to, not equal to, 1/E_I32F32.
    assert abs(compute_exp(-ONE_I32F32) - safe_div(ONE_I32F32, fixed.E_I32F32)) < 1 << 12


def test_exp_safe_clamps_to_plus_minus_twenty() -> None:
    # tests/math.rs::test_math_exp_safe
    twenty = fx(20)
    assert compute_exp_safe(-twenty) == compute_exp(-twenty)
    assert compute_exp_safe(-twenty - ONE_I32F32) == compute_exp(-twenty)
    assert compute_exp_safe(MIN) == compute_exp(-twenty)
    assert compute_exp_safe(twenty) == compute_exp(twenty)
    assert compute_exp_safe(twenty + ONE_I32F32) == compute_exp(twenty)
    assert compute_exp_safe(MAX) == compute_exp(twenty)


def test_exp_series_is_close_to_e_to_the_x_but_its_own_bits() -> None:
    # The truncated series (terms 2..31) at x = 2: within a few ulps of e**2.
    value = compute_exp(fx(2))
    assert value is not None
    expected = Fraction(738_905_609_893_065, 10**14)  # e**2 to 15 digits
    assert abs(Fraction(value, ONE_I32F32) - expected) < Fraction(1, 10**7)


def literal_exp(x: int) -> int | None:
    """The library's loop written with the checked operations, as in its source."""
    if x == 0:
        return ONE_I32F32
    if x == ONE_I32F32:
        return fixed.E_I32F32
    operand = -x if x < 0 else x
    result = fixed.checked_add(operand, ONE_I32F32)
    term = operand
    for i in range(2, 32):
        if result is None:
            return None
        product = checked_mul(term, operand)
        if product is None:
            return None
        quotient = checked_div(product, i << 32)
        if quotient is None:
            return None
        term = quotient
        result = fixed.checked_add(result, term)
    if result is None:
        return None
    return checked_div(ONE_I32F32, result) if x < 0 else result


@given(st.integers(min_value=-(25 << 32), max_value=25 << 32))
def test_exp_equals_the_literal_series(x: int) -> None:
    assert compute_exp(x) == literal_exp(x)


@given(st.integers(min_value=-(20 << 32), max_value=20 << 32))
def test_exp_safe_is_positive_and_monotone_in_range(x: int) -> None:
    value = compute_exp_safe(x)
    assert value >= 0
    assert compute_exp_safe(x + (1 << 28)) >= value


# --- properties of the primitives -----------------------------------------------------


@given(i32f32_bits, i32f32_bits)
def test_saturating_results_stay_in_range(a: int, b: int) -> None:
    for value in (saturating_add(a, b), saturating_sub(a, b), saturating_mul(a, b)):
        assert MIN <= value <= MAX
    if b != 0:
        assert MIN <= saturating_div(a, b) <= MAX
        assert MIN <= safe_div(a, b) <= MAX


@given(st.integers(min_value=0, max_value=1 << 40), st.integers(min_value=1, max_value=1 << 40))
def test_mul_then_div_matches_exact_rationals(a: int, b: int) -> None:
    product = saturating_mul(a, b)
    assert product == (a * b) >> 32
    quotient = checked_div(a, b)
    exact = Fraction(a, b) * ONE_I32F32
    if quotient is not None:
        assert quotient == int(exact)  # truncation of a positive quotient


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_u64f64_round_trip_of_integers(value: int) -> None:
    assert to_u64(fixed.from_int(value, U64F64), U64F64) == value


def test_the_consensus_package_is_pure() -> None:
    """No binary floating point, clock, randomness, OS or file access in the protocol math."""
    package = Path(fixed.__file__).parent
    forbidden = re.compile(
        r"\bfloat\b|^\s*(import|from)\s+(time|random|os|io|pathlib|secrets)\b|\bopen\(",
        re.MULTILINE,
    )
    for source in sorted(package.glob("*.py")):
        match = forbidden.search(source.read_text(encoding="utf-8"))
        assert match is None, f"{source.name}: {match.group(0) if match else ''}"

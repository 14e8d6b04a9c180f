"""Fixed-point arithmetic with the exact bits of the chain's `substrate-fixed` v0.6.0.

Yuma Consensus is only reproducible if every node rounds the same way, so Agora does not
approximate it with fractions or IEEE doubles: each value is the integer bit pattern of a
signed or unsigned fixed-point number (``I32F32`` holds ``value * 2**32`` in 64 bits), and
each operation is the one the chain calls, with the chain's rounding, overflow and
division-by-zero rules (``docs/yuma.md`` section 1):

- multiplication floors (``(a * b) >> frac``, an arithmetic shift);
- division truncates toward zero (``(a << frac) / b`` in Rust integer division);
- ``checked_*`` give ``None`` on overflow, ``saturating_*`` clamp to the type's range,
  ``safe_div`` gives 0 on a zero divisor or an overflow, ``wrapping_sum`` wraps like the
  ``Iterator::sum`` of a release build;
- narrowing conversions drop the extra fractional bits (a floor) and saturate.

The primitives keep the names of the Rust methods they mirror, whose prefixes already say
what each may do (fail, clamp, wrap, return zero), so any line of ``yuma.py`` can be checked
against the spec. Composite math is named ``compute_*``. Every function is pure and works on
plain ``int``; the default type is ``I32F32``, in which almost the whole epoch runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FixedType:
    """The shape of one fixed-point type: fractional bits and the range of its bit pattern."""

    name: str
    frac_bits: int
    min_bits: int
    max_bits: int

    @property
    def one(self) -> int:
        return 1 << self.frac_bits


I32F32 = FixedType("I32F32", 32, -(1 << 63), (1 << 63) - 1)
I64F64 = FixedType("I64F64", 64, -(1 << 127), (1 << 127) - 1)
I96F32 = FixedType("I96F32", 32, -(1 << 127), (1 << 127) - 1)
U64F64 = FixedType("U64F64", 64, 0, (1 << 128) - 1)
U96F32 = FixedType("U96F32", 32, 0, (1 << 128) - 1)

ONE_I32F32 = I32F32.one
ZERO = 0
U16_MAX = 65_535
U64_MAX = (1 << 64) - 1
U16_MAX_I32F32 = U16_MAX << 32
# 0.5 and -100 are exact in I32F32; the chain writes them as from_num(0.5) and from_num(-100).
HALF_I32F32 = 1 << 31
MINUS_HUNDRED_I32F32 = -100 << 32


# --- range handling ------------------------------------------------------------------


def is_in_range(bits: int, t: FixedType = I32F32) -> bool:
    return t.min_bits <= bits <= t.max_bits


def saturate(bits: int, t: FixedType = I32F32) -> int:
    if bits > t.max_bits:
        return t.max_bits
    if bits < t.min_bits:
        return t.min_bits
    return bits


def wrap(bits: int, t: FixedType = I32F32) -> int:
    """Two's-complement wrap, what an unchecked ``+`` does in a release build."""
    span = t.max_bits - t.min_bits + 1
    return (bits - t.min_bits) % span + t.min_bits


def _truncating_div(numerator: int, denominator: int) -> int:
    """Rust's integer ``/``: the quotient rounded toward zero (Python's ``//`` floors)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator < 0) == (denominator < 0) else -quotient


# --- addition and subtraction --------------------------------------------------------


def saturating_add(a: int, b: int, t: FixedType = I32F32) -> int:
    return saturate(a + b, t)


def saturating_sub(a: int, b: int, t: FixedType = I32F32) -> int:
    return saturate(a - b, t)


def checked_add(a: int, b: int, t: FixedType = I32F32) -> int | None:
    total = a + b
    return total if is_in_range(total, t) else None


def wrapping_sum(values: list[int] | tuple[int, ...], t: FixedType = I32F32) -> int:
    """``values.iter().sum()``: the chain builds without overflow checks, so a sum wraps."""
    return wrap(sum(values), t)


# --- multiplication ------------------------------------------------------------------


def checked_mul(a: int, b: int, t: FixedType = I32F32) -> int | None:
    product = (a * b) >> t.frac_bits
    return product if is_in_range(product, t) else None


def saturating_mul(a: int, b: int, t: FixedType = I32F32) -> int:
    product = (a * b) >> t.frac_bits
    if is_in_range(product, t):
        return product
    # The chain saturates by the signs of the operands, which agrees with the product's sign.
    return t.min_bits if (a < 0) != (b < 0) else t.max_bits


# --- division ------------------------------------------------------------------------


def checked_div(a: int, b: int, t: FixedType = I32F32) -> int | None:
    if b == 0:
        return None
    quotient = _truncating_div(a << t.frac_bits, b)
    return quotient if is_in_range(quotient, t) else None


def safe_div(a: int, b: int, t: FixedType = I32F32) -> int:
    """``checked_div(..).unwrap_or_default()``: 0 on a zero divisor and on overflow."""
    quotient = checked_div(a, b, t)
    return 0 if quotient is None else quotient


def saturating_div(a: int, b: int, t: FixedType = I32F32) -> int:
    """Clamps on overflow; a zero divisor is a bug (the chain panics), never a protocol case."""
    if b == 0:
        raise ZeroDivisionError("saturating_div by zero")
    quotient = _truncating_div(a << t.frac_bits, b)
    if is_in_range(quotient, t):
        return quotient
    return t.min_bits if (a < 0) != (b < 0) else t.max_bits


# --- conversions ---------------------------------------------------------------------


def from_int(value: int, t: FixedType = I32F32) -> int:
    """``saturating_from_num(integer)``: exact when it fits, clamped otherwise."""
    return saturate(value << t.frac_bits, t)


def to_int_saturating(bits: int, t: FixedType, low: int, high: int) -> int:
    """``saturating_to_num::<int type>()``: drops the fraction (a floor), clamps to the type."""
    value = bits >> t.frac_bits
    return min(max(value, low), high)


def to_u16(bits: int, t: FixedType = I32F32) -> int:
    return to_int_saturating(bits, t, 0, U16_MAX)


def to_u64(bits: int, t: FixedType = I32F32) -> int:
    return to_int_saturating(bits, t, 0, U64_MAX)


def convert(bits: int, source: FixedType, target: FixedType) -> int:
    """``Target::saturating_from_num(source)``: extra fractional bits are dropped (a floor)."""
    shift = source.frac_bits - target.frac_bits
    moved = bits >> shift if shift >= 0 else bits << -shift
    return saturate(moved, target)


def convert_wrapping(bits: int, source: FixedType, target: FixedType) -> int:
    """``Target::from_num(source)`` of a release build: drops bits, wraps instead of clamping."""
    shift = source.frac_bits - target.frac_bits
    moved = bits >> shift if shift >= 0 else bits << -shift
    return wrap(moved, target)


def compute_round(bits: int, t: FixedType = I32F32) -> int:
    """``.round()``: to the nearest integer, ties away from zero (result in the same type)."""
    frac_mask = t.one - 1
    half = t.one >> 1
    integer = bits & ~frac_mask
    fraction = bits & frac_mask
    if fraction < half:
        return integer
    if fraction == half and bits < 0:
        # -k.5 rounds away from zero, i.e. down to -(k+1), which is the floor already taken.
        return integer
    return integer + t.one


# --- proportions (epoch/math.rs) ------------------------------------------------------


def u16_to_fixed(value_u16: int) -> int:
    """The raw u16 as an I32F32 number, not a proportion (``65535 -> 65535.0``)."""
    return value_u16 << 32


def u16_proportion_to_fixed(value_u16: int) -> int:
    """``value / 65535`` in I32F32, truncated."""
    return safe_div(value_u16 << 32, U16_MAX_I32F32)


def fixed_proportion_to_u16(bits: int) -> int:
    """``floor(x * 65535)``, saturated to u16: how every proportion is stored and reported."""
    return to_u16(saturating_mul(bits, U16_MAX_I32F32))


def compute_max_upscale_to_u16(values: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``vec_max_upscale_to_u16`` of I32F32 values: scale so the largest becomes 65535.

    Above 32768 the chain divides 65535 by the maximum first, so the product cannot overflow;
    otherwise it multiplies first, which keeps precision. Both round half away from zero.
    """
    if not values:
        return ()
    largest = max(values)
    if largest == 0:
        return tuple(to_u16(saturating_mul(v, U16_MAX_I32F32)) for v in values)
    if largest > (32_768 << 32):
        ratio = safe_div(U16_MAX_I32F32, largest)
        return tuple(to_u16(compute_round(saturating_mul(v, ratio))) for v in values)
    return tuple(
        to_u16(compute_round(safe_div(saturating_mul(v, U16_MAX_I32F32), largest))) for v in values
    )


def compute_u16_max_upscale(values_u16: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``vec_u16_max_upscale_to_u16``: how ``set_weights`` stores a row (its max becomes 65535)."""
    return compute_max_upscale_to_u16([v << 32 for v in values_u16])


def compute_normalized(values: list[int], t: FixedType = I32F32) -> list[int]:
    """``inplace_normalize``: divide by the (wrapping) sum; a zero sum leaves values as they are."""
    total = wrapping_sum(values, t)
    if total == 0:
        return list(values)
    return [safe_div(v, total, t) for v in values]


def is_max_limited(values_u16: list[int] | tuple[int, ...], max_limit_u16: int) -> bool:
    """``check_vec_max_limited``: whether the largest normalized value is within the limit."""
    limit = safe_div(max_limit_u16 << 32, U16_MAX_I32F32)
    normalized = compute_normalized([v << 32 for v in values_u16])
    return not normalized or max(normalized) <= limit


# --- exponential (substrate_fixed::transcendental::exp, I32F32 in and out) -------------

# e as the library stores it for this function: an I9F23 constant (23 fractional bits),
# taken from its 126-bit U2F126 e, then widened exactly to I32F32.
_E_I9F23_BITS = 0xADF8_5458_A2BB_4A9A_AFDC_5620_273D_3CF1 >> 103
E_I32F32 = _E_I9F23_BITS << (32 - 23)
_EXP_LIMIT_I32F32 = 20 << 32


def compute_exp(x: int) -> int | None:
    """The library's ``exp``: Taylor terms 2..31 in I32F32, ``1/exp(|x|)`` for negative x.

    ``None`` stands for its ``Err``: an intermediate value left the I32F32 range.
    """
    if x == 0:
        return ONE_I32F32
    if x == ONE_I32F32:
        return E_I32F32
    negative = x < 0
    operand = -x if negative else x
    if not is_in_range(operand):
        return None
    # From here every value is non-negative, so checked_mul is a plain floor shift and
    # checked_div(term, i) is ``term // i`` (``(term << 32) / (i << 32)`` truncated): written
    # out, with the same range checks, because this loop runs for every liquid-alpha entry.
    limit = I32F32.max_bits
    result = operand + ONE_I32F32
    if result > limit:
        return None
    term = operand
    for i in range(2, 32):
        term = (term * operand) >> 32
        if term > limit:
            return None
        term //= i
        result += term
        if result > limit:
            return None
    if negative:
        return checked_div(ONE_I32F32, result)
    return result


def compute_exp_safe(x: int) -> int:
    """``exp_safe``: clamp to [-20, 20], then 0 or I32F32::MAX if the series overflows."""
    clamped = min(max(x, -_EXP_LIMIT_I32F32), _EXP_LIMIT_I32F32)
    value = compute_exp(clamped)
    if value is not None:
        return value
    return 0 if clamped <= 0 else I32F32.max_bits


# --- Q32 integers (registration prices) -----------------------------------------------


def compute_mul_by_q32(value: int, factor_q32: int) -> int:
    """``value * factor / 2**32``, floored and clamped to u64 (``mul_by_q32``)."""
    return min((value * factor_q32) >> 32, U64_MAX)


def compute_pow_q32(base_q32: int, exponent: int) -> int:
    """``base ** exponent`` in Q32 by squaring, each step floored as ``mul_by_q32`` does."""
    result = 1 << 32
    factor = base_q32
    power = exponent
    while power > 0:
        if power & 1:
            result = compute_mul_by_q32(result, factor)
        power >>= 1
        if power > 0:
            factor = compute_mul_by_q32(factor, factor)
    return result

"""Account addresses: an ed25519 public key shown as a checksummed bech32m string.

Every account is keyed by its 32-byte public key. People see it as ``agr1...``: bech32m
(BIP-350) carries a 6-character checksum that detects any error in up to four characters,
so a mistyped address is rejected before funds move, never sent into the void.
"""

from __future__ import annotations

from typing import NewType

from agora.protocol.errors import InvalidAddress

Address = NewType("Address", bytes)

ADDRESS_PREFIX = "agr"
PUBLIC_KEY_SIZE = 32

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHAR_VALUE = {c: i for i, c in enumerate(_CHARSET)}
_BECH32M_CONST = 0x2BC830A3
_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_GENERATORS):
            if (top >> i) & 1:
                check ^= generator
    return check


def _expand_prefix(prefix: str) -> list[int]:
    return [ord(c) >> 5 for c in prefix] + [0] + [ord(c) & 31 for c in prefix]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    accumulator = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((accumulator >> bits) & max_value)
    if pad and bits:
        out.append((accumulator << (to_bits - bits)) & max_value)
    elif not pad and (bits >= from_bits or (accumulator << (to_bits - bits)) & max_value):
        raise InvalidAddress("address has trailing bits: it was mistyped or truncated")
    return out


def encode_address(public_key: bytes) -> str:
    """Show a public key as ``agr1...`` with its checksum."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidAddress(f"a public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    data = _convert_bits(public_key, 8, 5, pad=True)
    checksum_input = _expand_prefix(ADDRESS_PREFIX) + data + [0] * 6
    polymod = _polymod(checksum_input) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return ADDRESS_PREFIX + "1" + "".join(_CHARSET[d] for d in data + checksum)


def decode_address(text: str) -> Address:
    """Parse ``agr1...`` back into a public key; any typo raises InvalidAddress."""
    if not isinstance(text, str):
        raise InvalidAddress("an address is a string like agr1...")
    if text.lower() != text and text.upper() != text:
        raise InvalidAddress("address mixes upper and lower case")
    lowered = text.lower()
    prefix, separator, rest = lowered.rpartition("1")
    if not separator or prefix != ADDRESS_PREFIX:
        raise InvalidAddress(f"address must start with {ADDRESS_PREFIX}1, got {text[:8]!r}")
    if len(rest) < 7 or any(c not in _CHAR_VALUE for c in rest):
        raise InvalidAddress("address contains characters outside the bech32 alphabet")
    values = [_CHAR_VALUE[c] for c in rest]
    if _polymod(_expand_prefix(prefix) + values) != _BECH32M_CONST:
        raise InvalidAddress(f"address checksum does not match: {text!r} was mistyped")
    public_key = bytes(_convert_bits(values[:-6], 5, 8, pad=False))
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidAddress(f"address holds {len(public_key)} bytes, expected {PUBLIC_KEY_SIZE}")
    return Address(public_key)

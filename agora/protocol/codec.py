"""The canonical byte encoding, and the JSON form of the same values.

One encoding is used for hashing, signing, storing and batching, so it must have exactly one
byte string per value:

- unsigned integers: fixed width, big-endian (``u8``, ``u16``, ``u32``, ``u64``);
- booleans: one byte, 0 or 1 (any other byte is malformed);
- fixed bytes (hashes, public keys): the raw bytes, no length;
- variable bytes and text (UTF-8): a u32 length, then the bytes;
- lists: a u32 count, then each item;
- records: their fields in declaration order, nothing between them.

Decoding rejects trailing bytes, short input, out-of-range values and over-long fields, so
decode(encode(x)) == x and encode(decode(b)) == b for every b that decodes. The JSON form is
for the HTTP API and the CLI: addresses as ``agr1...``, bytes as ``0x``-hex, integers as JSON
integers (never strings, never floats). Each field type converts both ways in this module and
nowhere else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from agora.protocol.address import Address, decode_address, encode_address
from agora.protocol.errors import AmountOutOfRange, InvalidAddress, MalformedTransaction

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Reader:
    """A cursor over bytes being decoded; every read checks that the bytes are there."""

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise MalformedTransaction(
                f"encoding ends early: needed {size} bytes at offset {self.offset}"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def validate_finished(self) -> None:
        if self.offset != len(self.data):
            raise MalformedTransaction(
                f"{len(self.data) - self.offset} unexpected bytes after the encoded value"
            )


class FieldType(Protocol[T]):
    """How one kind of value is written, read, and shown as JSON."""

    def write(self, out: bytearray, value: T) -> None: ...

    def read(self, reader: Reader) -> T: ...

    def to_json(self, value: T) -> Any: ...

    def from_json(self, value: Any, path: str) -> T: ...


@dataclass(frozen=True, slots=True)
class UInt:
    bits: int

    def _check(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedTransaction(f"{path}: expected an integer, got {type(value).__name__}")
        if value < 0 or value >= 1 << self.bits:
            raise AmountOutOfRange(
                f"{path}: {value} is outside the range 0..2^{self.bits}-1 of this field"
            )
        return value

    def write(self, out: bytearray, value: int) -> None:
        out += self._check(value, "value").to_bytes(self.bits // 8, "big")

    def read(self, reader: Reader) -> int:
        return int.from_bytes(reader.take(self.bits // 8), "big")

    def to_json(self, value: int) -> Any:
        return value

    def from_json(self, value: Any, path: str) -> int:
        return self._check(value, path)


@dataclass(frozen=True, slots=True)
class Bool:
    def write(self, out: bytearray, value: bool) -> None:
        out.append(1 if value else 0)

    def read(self, reader: Reader) -> bool:
        byte = reader.take(1)[0]
        if byte > 1:
            raise MalformedTransaction(f"a boolean is encoded as 0 or 1, got {byte}")
        return byte == 1

    def to_json(self, value: bool) -> Any:
        return value

    def from_json(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise MalformedTransaction(f"{path}: expected true or false")
        return value


def _parse_hex(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedTransaction(f"{path}: expected a 0x-prefixed hex string")
    text = value[2:] if value.startswith("0x") else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise MalformedTransaction(f"{path}: not valid hex") from None


@dataclass(frozen=True, slots=True)
class FixedBytes:
    size: int

    def write(self, out: bytearray, value: bytes) -> None:
        if len(value) != self.size:
            raise MalformedTransaction(f"expected {self.size} bytes, got {len(value)}")
        out += value

    def read(self, reader: Reader) -> bytes:
        return reader.take(self.size)

    def to_json(self, value: bytes) -> Any:
        return "0x" + value.hex()

    def from_json(self, value: Any, path: str) -> bytes:
        raw = _parse_hex(value, path)
        if len(raw) != self.size:
            raise MalformedTransaction(f"{path}: expected {self.size} bytes, got {len(raw)}")
        return raw


@dataclass(frozen=True, slots=True)
class AddressField:
    """A 32-byte public key; ``agr1...`` in JSON so that typos are caught by the checksum."""

    def write(self, out: bytearray, value: Address) -> None:
        if len(value) != 32:
            raise MalformedTransaction(f"an address is 32 bytes, got {len(value)}")
        out += value

    def read(self, reader: Reader) -> Address:
        return Address(reader.take(32))

    def to_json(self, value: Address) -> Any:
        return encode_address(value)

    def from_json(self, value: Any, path: str) -> Address:
        try:
            return decode_address(value)
        except InvalidAddress as error:
            raise InvalidAddress(f"{path}: {error.message}") from None


_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class VarBytes:
    max_size: int

    def write(self, out: bytearray, value: bytes) -> None:
        if len(value) > self.max_size:
            raise MalformedTransaction(f"at most {self.max_size} bytes, got {len(value)}")
        out += _U32.pack(len(value))
        out += value

    def read(self, reader: Reader) -> bytes:
        (size,) = _U32.unpack(reader.take(4))
        if size > self.max_size:
            raise MalformedTransaction(f"field of {size} bytes exceeds its limit {self.max_size}")
        return reader.take(size)

    def to_json(self, value: bytes) -> Any:
        return "0x" + value.hex()

    def from_json(self, value: Any, path: str) -> bytes:
        raw = _parse_hex(value, path)
        if len(raw) > self.max_size:
            raise MalformedTransaction(f"{path}: at most {self.max_size} bytes, got {len(raw)}")
        return raw


@dataclass(frozen=True, slots=True)
class Text:
    max_size: int

    def write(self, out: bytearray, value: str) -> None:
        VarBytes(self.max_size).write(out, value.encode())

    def read(self, reader: Reader) -> str:
        raw = VarBytes(self.max_size).read(reader)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise MalformedTransaction("text field is not valid UTF-8") from None

    def to_json(self, value: str) -> Any:
        return value

    def from_json(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise MalformedTransaction(f"{path}: expected a string")
        try:
            encoded = value.encode()
        except UnicodeEncodeError:
            # JSON can carry lone surrogates ("\ud800"), which have no UTF-8 encoding.
            raise MalformedTransaction(f"{path}: not valid Unicode text") from None
        if len(encoded) > self.max_size:
            raise MalformedTransaction(f"{path}: at most {self.max_size} bytes of UTF-8")
        return value


@dataclass(frozen=True, slots=True)
class ListOf(Generic[T]):
    item: FieldType[T]
    max_items: int

    def write(self, out: bytearray, value: tuple[T, ...]) -> None:
        if len(value) > self.max_items:
            raise MalformedTransaction(f"at most {self.max_items} items, got {len(value)}")
        out += _U32.pack(len(value))
        for element in value:
            self.item.write(out, element)

    def read(self, reader: Reader) -> tuple[T, ...]:
        (count,) = _U32.unpack(reader.take(4))
        if count > self.max_items:
            raise MalformedTransaction(f"list of {count} items exceeds its limit {self.max_items}")
        return tuple(self.item.read(reader) for _ in range(count))

    def to_json(self, value: tuple[T, ...]) -> Any:
        return [self.item.to_json(element) for element in value]

    def from_json(self, value: Any, path: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise MalformedTransaction(f"{path}: expected a list")
        if len(value) > self.max_items:
            raise MalformedTransaction(f"{path}: at most {self.max_items} items")
        return tuple(self.item.from_json(v, f"{path}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True, slots=True)
class TupleOf:
    """A fixed-length tuple of fields, e.g. ``(uid, weight)``; a JSON array in JSON."""

    items: tuple[FieldType[Any], ...]

    def write(self, out: bytearray, value: tuple[Any, ...]) -> None:
        if len(value) != len(self.items):
            raise MalformedTransaction(f"expected {len(self.items)} elements, got {len(value)}")
        for item, element in zip(self.items, value, strict=True):
            item.write(out, element)

    def read(self, reader: Reader) -> tuple[Any, ...]:
        return tuple(item.read(reader) for item in self.items)

    def to_json(self, value: tuple[Any, ...]) -> Any:
        return [item.to_json(element) for item, element in zip(self.items, value, strict=True)]

    def from_json(self, value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list) or len(value) != len(self.items):
            raise MalformedTransaction(f"{path}: expected an array of {len(self.items)}")
        return tuple(
            item.from_json(element, f"{path}[{i}]")
            for i, (item, element) in enumerate(zip(self.items, value, strict=True))
        )


class Record(Generic[T]):
    """A frozen dataclass encoded as its fields in order; ``fields`` names each field's type."""

    __slots__ = ("cls", "fields")

    def __init__(self, cls: type[T], fields: tuple[tuple[str, FieldType[Any]], ...]) -> None:
        self.cls = cls
        self.fields = fields

    def write(self, out: bytearray, value: T) -> None:
        for name, field_type in self.fields:
            field_type.write(out, getattr(value, name))

    def read(self, reader: Reader) -> T:
        return self.cls(**{name: field_type.read(reader) for name, field_type in self.fields})

    def to_json(self, value: T) -> Any:
        return {name: ft.to_json(getattr(value, name)) for name, ft in self.fields}

    def from_json(self, value: Any, path: str) -> T:
        if not isinstance(value, dict):
            raise MalformedTransaction(f"{path}: expected an object")
        expected = {name for name, _ in self.fields}
        unknown = sorted(set(value) - expected)
        if unknown:
            raise MalformedTransaction(f"{path}: unknown field {unknown[0]!r}")
        missing = [name for name, _ in self.fields if name not in value]
        if missing:
            raise MalformedTransaction(f"{path}: missing field {missing[0]!r}")
        return self.cls(
            **{name: ft.from_json(value[name], f"{path}.{name}") for name, ft in self.fields}
        )

    def encode(self, value: T) -> bytes:
        return encode_field(self, value)

    def decode(self, data: bytes) -> T:
        return decode_field(self, data)


def encode_field(field_type: FieldType[T], value: T) -> bytes:
    """The canonical bytes of one value of any field type."""
    out = bytearray()
    field_type.write(out, value)
    return bytes(out)


def decode_field(field_type: FieldType[T], data: bytes) -> T:
    """Decode exactly one value; trailing bytes are malformed."""
    reader = Reader(data)
    value = field_type.read(reader)
    reader.validate_finished()
    return value


U8 = UInt(8)
U16 = UInt(16)
U32 = UInt(32)
U64 = UInt(64)
U128 = UInt(128)
BOOL = Bool()
HASH = FixedBytes(32)
SIGNATURE = FixedBytes(64)
ADDRESS = AddressField()

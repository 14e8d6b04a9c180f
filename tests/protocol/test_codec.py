"""The canonical encoding: one byte string per value, and every other byte string refused."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_helpers import CHAIN_ID, make_key, make_transfer

from agora.node.wire import transaction_from_json, transaction_to_json
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, decode_address, encode_address
from agora.protocol.blocks import (
    BLOCK_MAGIC,
    BlockHeader,
    compute_merkle_root,
    decode_header,
    encode_header,
)
from agora.protocol.codec import BOOL, U8, Record, Text, VarBytes
from agora.protocol.errors import (
    AmountOutOfRange,
    InvalidAddress,
    InvalidBlock,
    MalformedTransaction,
    ProtocolError,
    UnknownTransactionKind,
)
from agora.protocol.transactions import (
    MAGIC,
    SIGNATURE_SIZE,
    Transaction,
    decode_transaction,
    encode_transaction,
    encode_unsigned,
)

FUZZ = settings(max_examples=300, derandomize=True, deadline=None)
FAST = settings(max_examples=60, derandomize=True, deadline=None)

U64_MAX = (1 << 64) - 1
_CHAIN_CHARACTERS = st.characters(exclude_categories=("Cs",))
chain_ids = st.text(_CHAIN_CHARACTERS, max_size=64).filter(lambda s: len(s.encode()) <= 64)
u64s = st.integers(min_value=0, max_value=U64_MAX)
hashes = st.binary(min_size=32, max_size=32)
addresses = hashes.map(Address)

transactions = st.builds(
    Transaction,
    chain_id=chain_ids,
    sender=addresses,
    nonce=u64s,
    fee=u64s,
    body=st.builds(Transfer, recipient=addresses, amount=u64s),
    signature=st.binary(min_size=SIGNATURE_SIZE, max_size=SIGNATURE_SIZE),
)

headers = st.builds(
    BlockHeader,
    height=u64s,
    parent_hash=hashes,
    timestamp=u64s,
    transactions_root=hashes,
    state_root=hashes,
)


def _sample_transfer() -> bytes:
    sender, recipient = make_key(7, 0), make_key(7, 1)
    return make_transfer(sender, recipient.address, 12_345, nonce=3)


def _code_of_decoding(raw: bytes) -> int:
    with pytest.raises(ProtocolError) as caught:
        decode_transaction(raw)
    return caught.value.code


# --- transactions ----------------------------------------------------------------------


@FUZZ
@given(transactions)
def test_transaction_bytes_round_trip(tx: Transaction) -> None:
    raw = encode_transaction(tx)
    assert raw.startswith(MAGIC)
    assert decode_transaction(raw) == tx
    assert encode_transaction(decode_transaction(raw)) == raw


@FUZZ
@given(transactions)
def test_transaction_json_round_trip(tx: Transaction) -> None:
    as_json = transaction_to_json(tx)
    assert transaction_from_json(as_json) == tx
    through_text = json.loads(json.dumps(as_json))
    assert transaction_from_json(through_text) == tx
    assert as_json["sender"].startswith("agr1")
    assert isinstance(as_json["nonce"], int) and isinstance(as_json["fee"], int)


@FUZZ
@given(transactions, st.data())
def test_any_decodable_mutation_reencodes_to_the_same_bytes(
    tx: Transaction, data: st.DataObject
) -> None:
    raw = bytearray(encode_transaction(tx))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="position")
    raw[position] = data.draw(st.integers(min_value=0, max_value=255), label="byte")
    try:
        decoded = decode_transaction(bytes(raw))
    except ProtocolError as error:
        assert error.code in (MalformedTransaction.code, UnknownTransactionKind.code)
        return
    assert encode_transaction(decoded) == bytes(raw)


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_a_protocol_error(raw: bytes) -> None:
    candidate = MAGIC + raw
    try:
        decoded = decode_transaction(candidate)
    except ProtocolError as error:
        assert error.code in (MalformedTransaction.code, UnknownTransactionKind.code)
        return
    assert encode_transaction(decoded) == candidate


def test_every_truncation_is_malformed() -> None:
    raw = _sample_transfer()
    codes = {_code_of_decoding(raw[:cut]) for cut in range(len(raw))}
    assert codes == {MalformedTransaction.code}


@pytest.mark.parametrize("extra", [b"\x00", b"\xff" * 7, bytes(SIGNATURE_SIZE)])
def test_trailing_bytes_are_malformed(extra: bytes) -> None:
    assert _code_of_decoding(_sample_transfer() + extra) == MalformedTransaction.code


@pytest.mark.parametrize("magic", [b"AGT2", b"agt1", b"AGB1", b"\x00\x00\x00\x00"])
def test_bad_magic_is_malformed(magic: bytes) -> None:
    assert _code_of_decoding(magic + _sample_transfer()[len(MAGIC) :]) == 1001


def test_overlong_chain_id_is_malformed() -> None:
    raw = _sample_transfer()
    declared = int.from_bytes(raw[4:8], "big")
    assert declared == len(CHAIN_ID)
    stretched = raw[:4] + (65).to_bytes(4, "big") + raw[8:]
    assert _code_of_decoding(stretched) == MalformedTransaction.code
    huge = raw[:4] + (0xFFFFFFFF).to_bytes(4, "big") + raw[8:]
    assert _code_of_decoding(huge) == MalformedTransaction.code


def test_chain_id_that_is_not_utf8_is_malformed() -> None:
    raw = _sample_transfer()
    broken = raw[:8] + b"\xff" + raw[9:]
    assert _code_of_decoding(broken) == MalformedTransaction.code


def test_unknown_kind_is_refused_with_its_own_code() -> None:
    raw = _sample_transfer()
    kind_offset = len(MAGIC) + 4 + len(CHAIN_ID) + 32 + 8 + 8
    assert raw[kind_offset : kind_offset + 2] == (1).to_bytes(2, "big")
    unknown = raw[:kind_offset] + (999).to_bytes(2, "big") + raw[kind_offset + 2 :]
    assert _code_of_decoding(unknown) == UnknownTransactionKind.code


def test_signed_bytes_are_everything_but_the_signature() -> None:
    raw = _sample_transfer()
    assert encode_unsigned(decode_transaction(raw)) == raw[:-SIGNATURE_SIZE]


def test_unsigned_transaction_cannot_be_encoded() -> None:
    tx = decode_transaction(_sample_transfer())
    unsigned = Transaction(
        chain_id=tx.chain_id, sender=tx.sender, nonce=tx.nonce, fee=tx.fee, body=tx.body
    )
    with pytest.raises(MalformedTransaction):
        encode_transaction(unsigned)


# --- JSON form -------------------------------------------------------------------------


def _sample_json() -> dict[str, object]:
    return transaction_to_json(decode_transaction(_sample_transfer()))


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("nonce", -1, AmountOutOfRange.code),
        ("nonce", 1 << 64, AmountOutOfRange.code),
        ("fee", 1.5, MalformedTransaction.code),
        ("fee", "1000", MalformedTransaction.code),
        ("fee", True, MalformedTransaction.code),
        ("kind", "mint", UnknownTransactionKind.code),
        ("kind", 1, UnknownTransactionKind.code),
        ("signature", "0x1234", MalformedTransaction.code),
        ("signature", "0xzz", MalformedTransaction.code),
        ("chain_id", "x" * 65, MalformedTransaction.code),
        ("sender", "agr1notanaddress", InvalidAddress.code),
    ],
)
def test_json_field_errors(field: str, value: object, code: int) -> None:
    as_json = _sample_json()
    as_json[field] = value
    with pytest.raises(ProtocolError) as caught:
        transaction_from_json(as_json)
    assert caught.value.code == code
    assert field in caught.value.message


_TEXT_WITH_SURROGATES = st.text(
    st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010) | st.characters(), max_size=8
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False)
    | _TEXT_WITH_SURROGATES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(_TEXT_WITH_SURROGATES, children, max_size=3)
    ),
    max_leaves=6,
)
_JSON_PATHS = (
    "chain_id",
    "sender",
    "nonce",
    "fee",
    "kind",
    "body",
    "signature",
    "body.recipient",
    "body.amount",
)


@FUZZ
@given(st.sampled_from(_JSON_PATHS), _json_values)
def test_json_with_any_field_value_parses_or_raises_a_protocol_error(
    path: str, value: object
) -> None:
    as_json = _sample_json()
    if path.startswith("body."):
        as_json["body"] = {**as_json["body"], path.removeprefix("body."): value}  # type: ignore[dict-item]
    else:
        as_json[path] = value
    try:
        tx = transaction_from_json(as_json)
    except ProtocolError as error:
        assert error.code in (1001, 1002, 1003, 1005)
        return
    assert transaction_from_json(transaction_to_json(tx)) == tx


def test_json_text_with_a_lone_surrogate_is_malformed() -> None:
    as_json = _sample_json()
    as_json["chain_id"] = json.loads('"\\ud800"')
    with pytest.raises(MalformedTransaction, match="chain_id"):
        transaction_from_json(as_json)


def test_json_amount_beyond_64_bits_is_out_of_range() -> None:
    as_json = _sample_json()
    as_json["body"] = {**as_json["body"], "amount": 1 << 64}  # type: ignore[dict-item]
    with pytest.raises(AmountOutOfRange):
        transaction_from_json(as_json)


def test_json_unknown_and_missing_fields() -> None:
    extra = {**_sample_json(), "memo": "hi"}
    with pytest.raises(MalformedTransaction, match="memo"):
        transaction_from_json(extra)
    missing = _sample_json()
    del missing["fee"]
    with pytest.raises(MalformedTransaction, match="fee"):
        transaction_from_json(missing)


# --- codec field types -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Flagged:
    flag: bool
    data: bytes
    label: str


_FLAGGED = Record(_Flagged, (("flag", BOOL), ("data", VarBytes(8)), ("label", Text(4))))


@FAST
@given(st.booleans(), st.binary(max_size=8), st.text(_CHAIN_CHARACTERS, max_size=1))
def test_record_round_trip(flag: bool, data: bytes, label: str) -> None:
    value = _Flagged(flag=flag, data=data, label=label)
    raw = _FLAGGED.encode(value)
    assert _FLAGGED.decode(raw) == value
    assert _FLAGGED.encode(_FLAGGED.decode(raw)) == raw
    assert _FLAGGED.from_json(json.loads(json.dumps(_FLAGGED.to_json(value))), "v") == value


@pytest.mark.parametrize("byte", [2, 3, 0x80, 0xFF])
def test_bool_other_than_zero_or_one_is_malformed(byte: int) -> None:
    raw = _FLAGGED.encode(_Flagged(flag=True, data=b"", label=""))
    with pytest.raises(MalformedTransaction) as caught:
        _FLAGGED.decode(bytes((byte,)) + raw[1:])
    assert caught.value.code == 1001


def test_overlong_variable_bytes_are_malformed() -> None:
    overlong = b"\x01" + (9).to_bytes(4, "big") + bytes(9) + (0).to_bytes(4, "big")
    with pytest.raises(MalformedTransaction):
        _FLAGGED.decode(overlong)
    with pytest.raises(MalformedTransaction):
        _FLAGGED.encode(_Flagged(flag=False, data=bytes(9), label=""))
    with pytest.raises(MalformedTransaction):
        _FLAGGED.encode(_Flagged(flag=False, data=b"", label="abcde"))


def test_integer_out_of_its_width_is_refused() -> None:
    out = bytearray()
    with pytest.raises(AmountOutOfRange):
        U8.write(out, 256)
    with pytest.raises(AmountOutOfRange):
        U8.write(out, -1)
    with pytest.raises(MalformedTransaction):
        U8.write(out, True)


# --- block headers ---------------------------------------------------------------------


@FUZZ
@given(headers)
def test_header_round_trip(header: BlockHeader) -> None:
    raw = encode_header(header)
    assert raw.startswith(BLOCK_MAGIC)
    assert decode_header(raw) == header


@FAST
@given(st.binary(min_size=8 + 32 + 8 + 32 + 32, max_size=8 + 32 + 8 + 32 + 32))
def test_header_bytes_round_trip(body: bytes) -> None:
    raw = BLOCK_MAGIC + body
    assert encode_header(decode_header(raw)) == raw


def test_header_truncated_extended_or_bad_magic_is_refused() -> None:
    raw = encode_header(
        BlockHeader(
            height=1,
            parent_hash=bytes(32),
            timestamp=2,
            transactions_root=bytes(32),
            state_root=bytes(32),
        )
    )
    for bad in (raw[:-1], raw[:4], raw + b"\x00", b"AGT1" + raw[4:], b""):
        with pytest.raises(InvalidBlock):
            decode_header(bad)


def test_merkle_root_commits_to_order_and_count() -> None:
    leaves = [bytes([i]) * 32 for i in range(5)]
    roots = {
        compute_merkle_root(leaves),
        compute_merkle_root(leaves[::-1]),
        compute_merkle_root(leaves[:4]),
        compute_merkle_root(leaves + leaves[-1:]),
        compute_merkle_root(leaves[:1]),
        compute_merkle_root([]),
    }
    assert len(roots) == 6


# --- addresses -------------------------------------------------------------------------

_BECH32_CHARACTERS = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_SAMPLE_ADDRESS = encode_address(make_key(7, 0).address)


@FAST
@given(hashes)
def test_address_round_trip(public_key: bytes) -> None:
    text = encode_address(public_key)
    assert text.startswith("agr1")
    assert decode_address(text) == public_key
    assert decode_address(text.upper()) == public_key


def test_every_single_character_substitution_is_rejected() -> None:
    text = _SAMPLE_ADDRESS
    alphabet = set(_BECH32_CHARACTERS + "1bio" + "AGR")
    typos = 0
    for position, original in enumerate(text):
        for replacement in alphabet - {original}:
            typo = text[:position] + replacement + text[position + 1 :]
            with pytest.raises(InvalidAddress) as caught:
                decode_address(typo)
            assert caught.value.code == 1005
            typos += 1
    assert typos > len(text) * 30


def test_every_deletion_insertion_and_swap_is_rejected() -> None:
    text = _SAMPLE_ADDRESS
    variants = {text[:i] + text[i + 1 :] for i in range(len(text))}
    variants |= {text[:i] + c + text[i:] for i in range(len(text) + 1) for c in "qp7l"}
    variants |= {
        text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        for i in range(len(text) - 1)
        if text[i] != text[i + 1]
    }
    variants.discard(text)
    for variant in variants:
        with pytest.raises(InvalidAddress):
            decode_address(variant)


def test_mixed_case_address_is_rejected() -> None:
    text = _SAMPLE_ADDRESS
    assert decode_address(text.upper()) == decode_address(text)
    for position in range(len(text)):
        if text[position].isalpha():
            mixed = text[:position] + text[position].upper() + text[position + 1 :]
            with pytest.raises(InvalidAddress, match="mixes"):
                decode_address(mixed)


@pytest.mark.parametrize(
    "text",
    ["", "agr1", "bc1" + _SAMPLE_ADDRESS[4:], _SAMPLE_ADDRESS[:-6], 42],
)
def test_malformed_addresses_are_rejected(text: object) -> None:
    with pytest.raises(InvalidAddress):
        decode_address(text)  # type: ignore[arg-type]


def test_wrong_length_public_key_has_no_address() -> None:
    with pytest.raises(InvalidAddress):
        encode_address(bytes(31))

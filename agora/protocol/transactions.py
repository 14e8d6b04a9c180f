"""Transactions: the envelope every kind shares, its canonical encoding, signing and checks.

Canonical encoding (see codec.py for the field rules), the bytes that are signed, hashed,
stored and posted to an ordering layer::

    magic      4 bytes   b"AGT1": format version 1, and the signing domain of transactions
    chain_id   text      at most 64 bytes; a signature is only valid on its own chain
    sender     32 bytes  ed25519 public key
    nonce      u64       the sender's next nonce: each nonce is usable once, in order
    fee        u64       base units, at least the chain's min_fee, paid to the treasury
    kind       u16       which body follows (each domain module registers its kinds)
    body       record    the kind's fields, in declaration order
    signature  64 bytes  ed25519 over every byte before it

The transaction hash is BLAKE2b-256 of the whole encoding. ``validate_basic`` is the
stateless check (format, bounds, chain, fee floor, signature) a node runs before it forwards
a transaction; the stateful checks run in ``state_transition``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from agora.protocol.address import Address
from agora.protocol.codec import ADDRESS, U16, U64, Reader, Record, Text
from agora.protocol.errors import (
    FeeTooLow,
    InvalidSignature,
    MalformedTransaction,
    TransactionTooLarge,
    UnknownTransactionKind,
    WrongChain,
)
from agora.protocol.params import Params

if TYPE_CHECKING:
    from agora.protocol.state import State

MAGIC = b"AGT1"
SIGNATURE_SIZE = 64
CHAIN_ID_FIELD = Text(64)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockContext:
    """What a handler may know about the block it runs in: time and seeds arrive here."""

    height: int
    timestamp: int
    parent_hash: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    chain_id: str
    sender: Address
    nonce: int
    fee: int
    body: Any
    signature: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionKind:
    """One kind of transaction: its number, name, body encoding, and its two checks."""

    kind: int
    name: str
    body: Record[Any]
    # Stateless checks of the body (bounds, self-reference); raises a ProtocolError.
    validate: Callable[[Transaction], None]
    # Stateful handler; raises a ProtocolError to fail (its writes are then rolled back).
    process: Callable[[State, Transaction, BlockContext], None]


def _registry() -> tuple[dict[int, TransactionKind], dict[str, TransactionKind]]:
    from agora.protocol import domains

    by_id: dict[int, TransactionKind] = {}
    for domain in domains.DOMAINS:
        for kind in domain.KINDS:
            if kind.kind in by_id:
                raise ValueError(f"transaction kind {kind.kind} registered twice")
            by_id[kind.kind] = kind
    return by_id, {kind.name: kind for kind in by_id.values()}


_KINDS: tuple[dict[int, TransactionKind], dict[str, TransactionKind]] | None = None


def get_kinds() -> tuple[dict[int, TransactionKind], dict[str, TransactionKind]]:
    """Kinds by number and by name, built once from the domain modules."""
    global _KINDS
    if _KINDS is None:
        _KINDS = _registry()
    return _KINDS


def get_kind_of(body: Any) -> TransactionKind:
    for kind in get_kinds()[0].values():
        if type(body) is kind.body.cls:
            return kind
    raise UnknownTransactionKind(f"{type(body).__name__} is not a transaction body")


def encode_unsigned(tx: Transaction) -> bytes:
    """The bytes the sender signs: everything but the signature."""
    kind = get_kind_of(tx.body)
    out = bytearray(MAGIC)
    CHAIN_ID_FIELD.write(out, tx.chain_id)
    ADDRESS.write(out, tx.sender)
    U64.write(out, tx.nonce)
    U64.write(out, tx.fee)
    U16.write(out, kind.kind)
    kind.body.write(out, tx.body)
    return bytes(out)


def encode_transaction(tx: Transaction) -> bytes:
    if len(tx.signature) != SIGNATURE_SIZE:
        raise MalformedTransaction("the transaction is not signed")
    return encode_unsigned(tx) + tx.signature


def decode_transaction(raw: bytes) -> Transaction:
    """Parse canonical bytes; raises MalformedTransaction or UnknownTransactionKind."""
    if len(raw) < len(MAGIC) + SIGNATURE_SIZE or raw[: len(MAGIC)] != MAGIC:
        raise MalformedTransaction("not an Agora transaction (bad magic or too short)")
    reader = Reader(raw[:-SIGNATURE_SIZE])
    reader.take(len(MAGIC))
    chain_id = CHAIN_ID_FIELD.read(reader)
    sender = ADDRESS.read(reader)
    nonce = U64.read(reader)
    fee = U64.read(reader)
    kind_id = U16.read(reader)
    kind = get_kinds()[0].get(kind_id)
    if kind is None:
        raise UnknownTransactionKind(f"transaction kind {kind_id} does not exist")
    body = kind.body.read(reader)
    reader.validate_finished()
    return Transaction(
        chain_id=chain_id,
        sender=sender,
        nonce=nonce,
        fee=fee,
        body=body,
        signature=raw[-SIGNATURE_SIZE:],
    )


def compute_transaction_hash(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=32).digest()


def sign_transaction(tx: Transaction, sign: Callable[[bytes], bytes]) -> Transaction:
    """Return ``tx`` with its signature; ``sign`` is the sender key's detached signer."""
    signature = sign(encode_unsigned(tx))
    return Transaction(
        chain_id=tx.chain_id,
        sender=tx.sender,
        nonce=tx.nonce,
        fee=tx.fee,
        body=tx.body,
        signature=signature,
    )


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


def validate_basic(
    raw: bytes, chain_id: str, params: Params, *, signature_verified: bool = False
) -> Transaction:
    """Every check that needs no state. Returns the decoded transaction, or raises.

    ``signature_verified`` skips only the signature check, for a caller that verified these
    exact bytes itself (the sequencing node, at admission): verification is deterministic, so
    the outcome is the same and every other node still verifies.
    """
    if len(raw) > params.max_transaction_bytes:
        raise TransactionTooLarge(
            f"transaction is {len(raw)} bytes; the limit is {params.max_transaction_bytes}"
        )
    tx = decode_transaction(raw)
    if tx.chain_id != chain_id:
        raise WrongChain(f"signed for chain {tx.chain_id!r}, but this chain is {chain_id!r}")
    if tx.fee < params.min_fee:
        raise FeeTooLow(f"fee {tx.fee} is below the minimum fee {params.min_fee}")
    get_kind_of(tx.body).validate(tx)
    if not signature_verified and not is_valid_signature(
        tx.sender, raw[:-SIGNATURE_SIZE], tx.signature
    ):
        raise InvalidSignature("signature does not match the sender; sign with the sender's key")
    return tx


# --- JSON form (HTTP API, CLI) ---------------------------------------------------------


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    kind = get_kind_of(tx.body)
    return {
        "chain_id": tx.chain_id,
        "sender": ADDRESS.to_json(tx.sender),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "kind": kind.name,
        "body": kind.body.to_json(tx.body),
        "signature": "0x" + tx.signature.hex(),
    }


def transaction_from_json(value: Any) -> Transaction:
    """Parse the JSON form; every error names the field at fault."""
    if not isinstance(value, dict):
        raise MalformedTransaction("a transaction is a JSON object")
    expected = {"chain_id", "sender", "nonce", "fee", "kind", "body", "signature"}
    missing = sorted(expected - set(value))
    if missing:
        raise MalformedTransaction(f"transaction.{missing[0]}: missing")
    unknown = sorted(set(value) - expected)
    if unknown:
        raise MalformedTransaction(f"transaction.{unknown[0]}: unknown field")
    kind = get_kinds()[1].get(value["kind"]) if isinstance(value["kind"], str) else None
    if kind is None:
        raise UnknownTransactionKind(f"transaction.kind: {value['kind']!r} is not a known kind")
    signature = value["signature"]
    if not isinstance(signature, str):
        raise MalformedTransaction("transaction.signature: expected 0x-hex")
    try:
        signature_bytes = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        raise MalformedTransaction("transaction.signature: not valid hex") from None
    if len(signature_bytes) != SIGNATURE_SIZE:
        raise MalformedTransaction("transaction.signature: expected 64 bytes")
    return Transaction(
        chain_id=CHAIN_ID_FIELD.from_json(value["chain_id"], "transaction.chain_id"),
        sender=ADDRESS.from_json(value["sender"], "transaction.sender"),
        nonce=U64.from_json(value["nonce"], "transaction.nonce"),
        fee=U64.from_json(value["fee"], "transaction.fee"),
        body=kind.body.from_json(value["body"], "transaction.body"),
        signature=signature_bytes,
    )

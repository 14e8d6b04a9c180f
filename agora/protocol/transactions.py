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

The types every kind shares (``Transaction``, ``BlockContext``, ``TransactionKind``) are
defined in ``kinds.py``, below the domain modules; this module sits above them, since it
decodes every domain's kinds, and re-exports those types for callers outside the protocol.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from agora.protocol.codec import ADDRESS, U16, U64, Reader
from agora.protocol.domains import KINDS_BY_NAME, KINDS_BY_NUMBER
from agora.protocol.errors import (
    FeeTooLow,
    InvalidSignature,
    MalformedTransaction,
    TransactionTooLarge,
    UnknownTransactionKind,
    WrongChain,
)
from agora.protocol.kinds import (
    CHAIN_ID_FIELD,
    SIGNATURE_SIZE,
    BlockContext,
    Transaction,
    TransactionKind,
    is_valid_signature,
)
from agora.protocol.params import Params

__all__ = [
    "CHAIN_ID_FIELD",
    "MAGIC",
    "SIGNATURE_SIZE",
    "BlockContext",
    "Transaction",
    "TransactionKind",
    "compute_transaction_hash",
    "decode_transaction",
    "encode_transaction",
    "encode_unsigned",
    "get_kind_of",
    "get_kinds",
    "is_valid_signature",
    "sign_transaction",
    "validate_basic",
]

MAGIC = b"AGT1"


def get_kinds() -> tuple[dict[int, TransactionKind], dict[str, TransactionKind]]:
    """Kinds by number and by name, from every domain module's ``KINDS``."""
    return KINDS_BY_NUMBER, KINDS_BY_NAME


def get_kind_of(body: Any) -> TransactionKind:
    for kind in KINDS_BY_NUMBER.values():
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
    kind = KINDS_BY_NUMBER.get(kind_id)
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

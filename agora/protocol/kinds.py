"""What every transaction kind shares: the transaction its handlers receive, the block it runs
in, and ``TransactionKind``, the record a domain module lists in its ``KINDS``.

This module sits below the domain modules, so that they and ``transactions.py`` (which
encodes, decodes and checks transactions against every domain's kinds, and so sits above
them) import one way: domain modules import their types from here, never from
``transactions.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from agora.protocol.address import Address
from agora.protocol.codec import Record, Text
from agora.protocol.state import State

SIGNATURE_SIZE = 64
# A chain id is part of every signed message (transactions, vouchers): a signature is only
# valid on its own chain.
CHAIN_ID_FIELD = Text(64)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockContext:
    """What a handler may know about the block it runs in.

    ``parent_state_root`` is the state the block starts from (a seed no sender can choose
    alone). No handler reads ``timestamp``, nor any block hash, which holds it: the state
    never depends on when a block was sealed, so the same transactions give the same state
    roots whoever ordered them (a local node, Ethereum)."""

    height: int
    timestamp: int
    parent_state_root: bytes


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


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the ed25519 signature of ``message`` by ``public_key``."""
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True

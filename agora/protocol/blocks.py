"""Blocks: a header that commits to its parent, its transactions and the state after it.

Header encoding (canonical, hashed to the block hash)::

    magic b"AGB1" | height u64 | parent_hash 32 | timestamp u64 (unix seconds, from the
    sequencer) | transactions_root 32 | state_root 32

The transactions root is a binary Merkle root over the transaction hashes (BLAKE2b-256,
leaves and nodes domain-separated, an odd node carried up), so a block's contents cannot be
altered without changing its hash. Transactions stay raw bytes; a block holds only
transactions that paid their fee (``build_block`` leaves the others out, and
``apply_block`` refuses a block that holds one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agora.protocol.codec import HASH, U64, ListOf, Record, VarBytes
from agora.protocol.errors import InvalidBlock, MalformedTransaction

BLOCK_MAGIC = b"AGB1"
ZERO_HASH = bytes(32)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockHeader:
    height: int
    parent_hash: bytes
    timestamp: int
    transactions_root: bytes
    state_root: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    header: BlockHeader
    transactions: tuple[bytes, ...]


HEADER_RECORD: Record[BlockHeader] = Record(
    BlockHeader,
    (
        ("height", U64),
        ("parent_hash", HASH),
        ("timestamp", U64),
        ("transactions_root", HASH),
        ("state_root", HASH),
    ),
)
# Transactions inside a stored block; the per-transaction bound is the protocol's hard cap.
TRANSACTIONS_FIELD = ListOf(VarBytes(1 << 20), 1 << 20)


def encode_header(header: BlockHeader) -> bytes:
    return BLOCK_MAGIC + HEADER_RECORD.encode(header)


def decode_header(data: bytes) -> BlockHeader:
    if data[:4] != BLOCK_MAGIC:
        raise InvalidBlock("not an Agora block header (bad magic)")
    try:
        return HEADER_RECORD.decode(data[4:])
    except MalformedTransaction as error:
        raise InvalidBlock(f"block header: {error.message}") from None


def compute_block_hash(header: BlockHeader) -> bytes:
    return hashlib.blake2b(encode_header(header), digest_size=32).digest()


def compute_merkle_root(leaves: list[bytes]) -> bytes:
    """Binary Merkle root of 32-byte leaf hashes; the empty list has the zero root."""
    if not leaves:
        return ZERO_HASH
    level = [hashlib.blake2b(b"\x00" + leaf, digest_size=32).digest() for leaf in leaves]
    while len(level) > 1:
        paired = [
            hashlib.blake2b(b"\x01" + level[i] + level[i + 1], digest_size=32).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]

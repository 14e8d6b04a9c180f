"""Derivation: from the Inbox's logs of one EVM block to the Agora batch of one height.

Everything here is pure (no I/O, no clock), so that every node that reads the same EVM chain
derives the same batches, and so that the rules can be tested without a network.

Agora height ``h`` is EVM block ``genesis_block + h``. Its timestamp is that EVM block's
timestamp; its transactions are the items of every ``Batch`` log the Inbox emitted in that
block, log after log in ``logIndex`` order, item after item within a log. A block with no
Batch log gives an empty batch: Agora heights advance with the EVM chain, so epochs follow
its clock.

Payload format (the ``data`` of one ``Batch`` event, the argument of ``Inbox.post``)::

    version  1 byte    0x01
    items    repeated  length (u32, big-endian), then that many bytes of one transaction

A payload is all or nothing. It parses only if its version is 1, it holds at least one
item, every length is at least 1 and fits in the bytes that remain, and nothing is left
after the last item. Any other payload contributes no transaction at all, and the other
payloads of the block are unaffected. Skipping a damaged payload whole, rather than keeping
its well-formed prefix, keeps the rule simple to state and to re-implement, and gives
nobody a use for half-broken payloads. Garbage therefore costs its poster gas and nothing
else.

Items are not decoded here. Bytes that are not a valid Agora transaction (wrong format,
over ``max_transaction_bytes``, bad signature, replayed) still enter the batch and are
refused by ``build_block``, which applies the chain's current parameters and leaves out of
the block every item that cannot pay its fee; derivation stays independent of Agora's
state. The same bytes twice (a copy of a pending transaction, a node's own re-post) are
two items: the second is refused as a replay. Likewise a batch with more items than
``max_block_transactions`` is cut by ``build_block``; the poster of the items cut re-posts
them (see sequencer.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agora.sequencer.base import OrderedBatch, SequencerError

PAYLOAD_VERSION = 1
LENGTH_PREFIX_BYTES = 4
PAYLOAD_HEADER_BYTES = 1
# Inbox.vy's MAX_BATCH_BYTES: the contract refuses a longer post.
MAX_PAYLOAD_BYTES = 98_304
# keccak256("Batch(address,bytes)"), topic 0 of every log the Inbox emits.
BATCH_EVENT_TOPIC = "0xad3d13bfa021eaefe287e99116b3037e48f22d1141647ca6d84daaf93e6bd3ae"


class MalformedPayload(SequencerError):
    """A batch payload does not follow the format (derivation then skips it whole)."""

    code = 3201


class InvalidRpcLog(SequencerError):
    """The EVM node answered a log that is not shaped like a JSON-RPC log: ask again."""

    code = 3202


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxLog:
    """One ``Batch`` event, decoded from its JSON-RPC form."""

    block_number: int
    block_hash: str
    log_index: int
    sender: str
    payload: bytes


def derive_batch(height: int, evm_block_timestamp: int, logs: Sequence[InboxLog]) -> OrderedBatch:
    """The Agora batch of ``height`` from the Inbox logs of its EVM block."""
    ordered = sorted(logs, key=lambda log: log.log_index)
    validate_same_block(ordered)
    transactions: list[bytes] = []
    for log in ordered:
        try:
            transactions.extend(parse_payload(log.payload))
        except MalformedPayload:
            continue
    return OrderedBatch(
        height=height, timestamp=evm_block_timestamp, transactions=tuple(transactions)
    )


def validate_same_block(ordered: Sequence[InboxLog]) -> None:
    """Raise if sorted logs repeat a log index or span blocks: the node's answer is wrong."""
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.log_index == after.log_index:
            raise InvalidRpcLog(f"log index {after.log_index} appears twice in one block")
        if before.block_hash != after.block_hash:
            raise InvalidRpcLog("logs of different blocks were given as one block's logs")


def parse_payload(payload: bytes) -> tuple[bytes, ...]:
    """The items of a payload; raises MalformedPayload unless the whole payload is valid."""
    if len(payload) < PAYLOAD_HEADER_BYTES + LENGTH_PREFIX_BYTES:
        raise MalformedPayload(f"a payload of {len(payload)} bytes holds no item")
    if payload[0] != PAYLOAD_VERSION:
        raise MalformedPayload(f"payload version {payload[0]} is unknown (expected 1)")
    items: list[bytes] = []
    view = memoryview(payload)
    position = PAYLOAD_HEADER_BYTES
    end = len(payload)
    while position < end:
        if end - position < LENGTH_PREFIX_BYTES:
            raise MalformedPayload(f"a length prefix is cut short at byte {position}")
        length = int.from_bytes(view[position : position + LENGTH_PREFIX_BYTES], "big")
        position += LENGTH_PREFIX_BYTES
        if length == 0:
            raise MalformedPayload(f"an item of length 0 at byte {position}")
        if length > end - position:
            raise MalformedPayload(
                f"an item claims {length} bytes at byte {position}; {end - position} remain"
            )
        items.append(bytes(view[position : position + length]))
        position += length
    return tuple(items)


def encode_payload(transactions: Sequence[bytes]) -> bytes:
    """The payload that ``parse_payload`` reads back as ``transactions``."""
    if not transactions:
        raise MalformedPayload("a payload needs at least one transaction")
    out = bytearray([PAYLOAD_VERSION])
    for raw in transactions:
        if not raw:
            raise MalformedPayload("an empty transaction cannot be posted")
        out += len(raw).to_bytes(LENGTH_PREFIX_BYTES, "big")
        out += raw
    return bytes(out)


def compute_item_bytes(raw: bytes) -> int:
    """Bytes a transaction takes in a payload."""
    return LENGTH_PREFIX_BYTES + len(raw)


def decode_log(raw: Mapping[str, Any]) -> InboxLog | None:
    """Decode one JSON-RPC log of the Inbox address.

    Returns None for a log that is not a well-formed ``Batch`` event (impossible from the
    Inbox itself; such a log contributes nothing). Raises InvalidRpcLog when the answer
    lacks the fields every JSON-RPC log has, which is the EVM node's fault, not the chain's.
    """
    try:
        topics = raw["topics"]
        data = _from_hex(raw["data"])
        block_number = int(raw["blockNumber"], 16)
        log_index = int(raw["logIndex"], 16)
        block_hash = str(raw["blockHash"]).lower()
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidRpcLog(f"the EVM node answered a malformed log: {error!r}") from None
    if raw.get("removed"):
        raise InvalidRpcLog(f"log {log_index} of block {block_number} was removed by a reorg")
    if not isinstance(topics, list):
        raise InvalidRpcLog(f"the EVM node answered a log whose topics are {type(topics).__name__}")
    if len(topics) != 2 or str(topics[0]).lower() != BATCH_EVENT_TOPIC:
        return None
    payload = _decode_abi_bytes(data)
    if payload is None:
        return None
    return InboxLog(
        block_number=block_number,
        block_hash=block_hash,
        log_index=log_index,
        sender="0x" + str(topics[1])[-40:].lower(),
        payload=payload,
    )


def _decode_abi_bytes(data: bytes) -> bytes | None:
    """The one ``bytes`` value of ABI-encoded event data, or None if it is not one."""
    if len(data) < 64 or int.from_bytes(data[:32], "big") != 32:
        return None
    length = int.from_bytes(data[32:64], "big")
    if length > len(data) - 64:
        return None
    return data[64 : 64 + length]


def _from_hex(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"expected 0x-hex, got {value!r}")
    return bytes.fromhex(value[2:])

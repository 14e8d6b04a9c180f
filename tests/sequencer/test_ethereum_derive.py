"""Derivation from Inbox logs to Agora batches: pure rules, tested without a network."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, encode_address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.transactions import Transaction, encode_transaction, sign_transaction
from agora.protocol.transition import build_block
from agora.sequencer.base import OrderedBatch
from agora.sequencer.ethereum.derive import (
    BATCH_EVENT_TOPIC,
    InboxLog,
    InvalidRpcLog,
    MalformedPayload,
    decode_log,
    derive_batch,
    encode_payload,
    parse_payload,
)

BLOCK_HASH = "0x" + "ab" * 32
SENDER = "0x" + "11" * 20


def make_log(payload: bytes, log_index: int, block_hash: str = BLOCK_HASH) -> InboxLog:
    return InboxLog(
        block_number=100, block_hash=block_hash, log_index=log_index, sender=SENDER, payload=payload
    )


def make_rpc_log(payload: bytes, log_index: int = 0, **changes: object) -> dict[str, object]:
    """A log as eth_getLogs returns it: the payload ABI-encoded as one ``bytes`` value."""
    data = (32).to_bytes(32, "big") + len(payload).to_bytes(32, "big") + payload
    data += bytes(-len(payload) % 32)
    log: dict[str, object] = {
        "address": "0x" + "22" * 20,
        "topics": [BATCH_EVENT_TOPIC, "0x" + "00" * 12 + "11" * 20],
        "data": "0x" + data.hex(),
        "blockNumber": hex(100),
        "blockHash": BLOCK_HASH,
        "transactionHash": "0x" + "cd" * 32,
        "transactionIndex": "0x0",
        "logIndex": hex(log_index),
        "removed": False,
    }
    log.update(changes)
    return log


# --- payload format ---------------------------------------------------------------------


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20))
def test_payload_round_trip(transactions: list[bytes]) -> None:
    assert parse_payload(encode_payload(transactions)) == tuple(transactions)


def test_payload_layout_is_version_then_length_prefixed_items() -> None:
    assert (
        encode_payload([b"abc", b"\x00"])
        == b"\x01" + b"\x00\x00\x00\x03abc" + b"\x00\x00\x00\x01\x00"
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "no item"),
        (b"\x01", "no item"),
        (b"\x02\x00\x00\x00\x01a", "version 2"),
        (b"\x00\x00\x00\x00\x01a", "version 0"),
        (b"\x01\x00\x00\x00\x00", "length 0"),
        (b"\x01\x00\x00\x00\x05abc", "claims 5 bytes"),
        (b"\x01\xff\xff\xff\xffabc", "claims 4294967295 bytes"),
        (b"\x01\x00\x00\x00\x01a\x00\x00", "cut short"),
    ],
)
def test_malformed_payload_is_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        parse_payload(payload)


def test_encode_refuses_empty_payload_and_empty_transaction() -> None:
    with pytest.raises(MalformedPayload):
        encode_payload([])
    with pytest.raises(MalformedPayload):
        encode_payload([b"ok", b""])


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_parser(payload: bytes) -> None:
    try:
        items = parse_payload(payload)
    except MalformedPayload:
        return
    assert encode_payload(list(items)) == payload


# --- derive_batch ------------------------------------------------------------------------


def test_empty_block_gives_empty_batch_with_the_block_timestamp() -> None:
    assert derive_batch(7, 1_700_000_123, []) == OrderedBatch(
        height=7, timestamp=1_700_000_123, transactions=()
    )


def test_transactions_follow_log_order_then_item_order() -> None:
    logs = [
        make_log(encode_payload([b"c1", b"c2"]), log_index=9),
        make_log(encode_payload([b"a1"]), log_index=2),
        make_log(encode_payload([b"b1", b"b2"]), log_index=5),
    ]
    batch = derive_batch(3, 10, logs)
    assert batch.transactions == (b"a1", b"b1", b"b2", b"c1", b"c2")
    assert derive_batch(3, 10, list(reversed(logs))) == batch


def test_malformed_payload_is_skipped_whole_and_others_kept() -> None:
    good = encode_payload([b"tx-1", b"tx-2"])
    truncated = encode_payload([b"lost-1", b"lost-2"])[:-1]
    logs = [
        make_log(good, 0),
        make_log(truncated, 1),
        make_log(b"\x07garbage", 2),
        make_log(encode_payload([b"tx-3"]), 3),
    ]
    assert derive_batch(1, 10, logs).transactions == (b"tx-1", b"tx-2", b"tx-3")


def test_oversized_and_undecodable_items_pass_through_to_execution() -> None:
    # Derivation does not apply protocol limits: build_block fails such items with receipts.
    huge = b"\x00" * 20_000
    batch = derive_batch(1, 10, [make_log(encode_payload([huge, b"not a transaction"]), 0)])
    assert batch.transactions == (huge, b"not a transaction")


def test_duplicate_log_index_or_mixed_blocks_are_the_nodes_fault() -> None:
    payload = encode_payload([b"x"])
    with pytest.raises(InvalidRpcLog, match="twice"):
        derive_batch(1, 10, [make_log(payload, 4), make_log(payload, 4)])
    with pytest.raises(InvalidRpcLog, match="different blocks"):
        derive_batch(1, 10, [make_log(payload, 1), make_log(payload, 2, "0x" + "cc" * 32)])


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=64), max_size=8), st.randoms(use_true_random=False))
def test_derivation_is_deterministic_and_never_crashes_on_garbage(
    payloads: list[bytes], shuffle: random.Random
) -> None:
    logs = [make_log(payload, index) for index, payload in enumerate(payloads)]
    expected = derive_batch(5, 99, logs)
    shuffle.shuffle(logs)
    assert derive_batch(5, 99, logs) == expected


def test_garbage_items_are_refused_when_the_batch_is_executed() -> None:
    key = SigningKey(bytes(range(32)))
    sender = Address(bytes(key.verify_key))
    recipient = Address(bytes(SigningKey(bytes(32)).verify_key))
    state = create_genesis_state(
        {"chain_id": "agora-test", "timestamp": 5, "balances": {encode_address(sender): 10**12}}
    )
    unsigned = Transaction(
        chain_id="agora-test",
        sender=sender,
        nonce=0,
        fee=1_000,
        body=Transfer(recipient=recipient, amount=500),
    )
    good = encode_transaction(sign_transaction(unsigned, lambda m: key.sign(m).signature))
    logs = [make_log(encode_payload([b"junk", good, b"\x00" * 20_000]), 0)]
    batch = derive_batch(1, 10, logs)
    applied = build_block(state, batch.timestamp, list(batch.transactions))
    assert [receipt.success for receipt in applied.outcomes] == [False, True, False]
    # The items that could not pay a fee are left out of the block.
    assert applied.block.transactions == (good,)
    assert applied.block.header.height == 1


# --- decode_log --------------------------------------------------------------------------


def test_decode_log_reads_the_json_rpc_form() -> None:
    payload = encode_payload([b"hello"])
    assert decode_log(make_rpc_log(payload, log_index=3)) == InboxLog(
        block_number=100, block_hash=BLOCK_HASH, log_index=3, sender=SENDER, payload=payload
    )


def test_decode_log_ignores_logs_that_are_not_batch_events() -> None:
    other_topic = make_rpc_log(b"x", topics=["0x" + "00" * 32, "0x" + "00" * 32])
    assert decode_log(other_topic) is None
    assert decode_log(make_rpc_log(b"x", data="0x" + "00" * 31)) is None
    bad_offset = "0x" + (64).to_bytes(32, "big").hex() + (1).to_bytes(32, "big").hex()
    assert decode_log(make_rpc_log(b"x", data=bad_offset)) is None
    too_long = "0x" + (32).to_bytes(32, "big").hex() + (99).to_bytes(32, "big").hex()
    assert decode_log(make_rpc_log(b"x", data=too_long)) is None


@pytest.mark.parametrize(
    "changes",
    [{"data": "zz"}, {"blockNumber": None}, {"logIndex": "not hex"}, {"removed": True}],
)
def test_decode_log_rejects_malformed_node_answers(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRpcLog):
        decode_log(make_rpc_log(b"x", **changes))

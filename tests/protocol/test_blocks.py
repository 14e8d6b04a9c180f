"""Blocks: a replica applies what the sequencer sealed, and refuses every tampered block.

After each refusal the replica's state root, head and rows are exactly as before, and the
correct block still applies on top of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from protocol_helpers import (
    GENESIS_TIMESTAMP,
    KeyPair,
    make_genesis_state,
    make_keys,
    make_transfer,
    snapshot_rows,
)

from agora.protocol.blocks import Block, compute_block_hash, compute_merkle_root
from agora.protocol.errors import InvalidBlock, ProtocolError, StateRootMismatch
from agora.protocol.genesis import create_genesis_header
from agora.protocol.invariants import check_invariants
from agora.protocol.state import State
from agora.protocol.transactions import compute_transaction_hash
from agora.protocol.transition import apply_block, build_block, state_transition


def _make_chain(keys: list[KeyPair], count: int) -> tuple[State, list[Block]]:
    sequencer = make_genesis_state(keys)
    blocks = []
    for height in range(1, count + 1):
        raws = [
            make_transfer(keys[i], keys[(i + height) % len(keys)].address, 100 + i, height - 1)
            for i in range(len(keys))
        ]
        blocks.append(build_block(sequencer, GENESIS_TIMESTAMP + 12 * height, raws).block)
    return sequencer, blocks


def _with_header(block: Block, **changes: object) -> Block:
    return Block(
        header=dataclasses.replace(block.header, **changes),  # type: ignore[arg-type]
        transactions=block.transactions,
    )


def test_replica_follows_the_sequencer(keys: list[KeyPair]) -> None:
    sequencer, blocks = _make_chain(keys, 3)
    replica = make_genesis_state(keys)
    for block in blocks:
        receipts = state_transition(replica, block).receipts
        assert all(r.success for r in receipts)
        assert replica.state_root == block.header.state_root
        assert replica.head.block_hash == compute_block_hash(block.header)
        check_invariants(replica)
    assert replica.state_root == sequencer.state_root
    assert replica.head == sequencer.head
    assert snapshot_rows(replica) == snapshot_rows(sequencer)


def test_genesis_header_commits_to_the_genesis_state(keys: list[KeyPair]) -> None:
    state = make_genesis_state(keys)
    header = create_genesis_header(GENESIS_TIMESTAMP, state.state_root)
    assert (state.head.height, state.head.timestamp) == (0, GENESIS_TIMESTAMP)
    assert state.head.block_hash == compute_block_hash(header)
    other = make_genesis_state(make_keys(4, seed=1))
    assert other.head.block_hash != state.head.block_hash


def _wrong_height(block: Block) -> Block:
    return _with_header(block, height=block.header.height + 1)


def _stale_height(block: Block) -> Block:
    return _with_header(block, height=block.header.height - 1)


def _wrong_parent(block: Block) -> Block:
    return _with_header(block, parent_hash=bytes(32))


def _timestamp_before_parent(block: Block) -> Block:
    return _with_header(block, timestamp=GENESIS_TIMESTAMP - 1)


def _dropped_transaction(block: Block) -> Block:
    return Block(header=block.header, transactions=block.transactions[:-1])


def _swapped_transactions(block: Block) -> Block:
    first, second, *rest = block.transactions
    return Block(header=block.header, transactions=(second, first, *rest))


def _added_transaction(block: Block) -> Block:
    return Block(header=block.header, transactions=(*block.transactions, b"extra"))


def _unpaid_transaction_with_a_matching_root(block: Block) -> Block:
    """A replay of the block's first transaction, committed to by a recomputed root: the
    state root is still right (it pays nothing, so changes nothing), but a transaction that
    pays no fee belongs in no block."""
    transactions = (*block.transactions, block.transactions[0])
    root = compute_merkle_root([compute_transaction_hash(raw) for raw in transactions])
    return Block(
        header=dataclasses.replace(block.header, transactions_root=root),
        transactions=transactions,
    )


def _flipped_transaction_byte(block: Block) -> Block:
    first = bytearray(block.transactions[0])
    first[-1] ^= 1
    return Block(header=block.header, transactions=(bytes(first), *block.transactions[1:]))


def _tampered_state_root(block: Block) -> Block:
    root = bytearray(block.header.state_root)
    root[0] ^= 1
    return _with_header(block, state_root=bytes(root))


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (_wrong_height, InvalidBlock),
        (_stale_height, InvalidBlock),
        (_wrong_parent, InvalidBlock),
        (_timestamp_before_parent, InvalidBlock),
        (_dropped_transaction, InvalidBlock),
        (_swapped_transactions, InvalidBlock),
        (_added_transaction, InvalidBlock),
        (_unpaid_transaction_with_a_matching_root, InvalidBlock),
        (_flipped_transaction_byte, InvalidBlock),
        (_tampered_state_root, StateRootMismatch),
    ],
)
def test_tampered_block_is_refused_and_changes_nothing(
    keys: list[KeyPair],
    tamper: Callable[[Block], Block],
    error: type[ProtocolError],
) -> None:
    sequencer, blocks = _make_chain(keys, 2)
    replica = make_genesis_state(keys)
    apply_block(replica, blocks[0])
    root, head, rows = replica.state_root, dataclasses.replace(replica.head), snapshot_rows(replica)

    with pytest.raises(error) as caught:
        apply_block(replica, tamper(blocks[1]))
    assert caught.value.code == error.code
    assert caught.value.message

    assert replica.state_root == root
    assert replica.head == head
    assert snapshot_rows(replica) == rows
    assert not replica.journal.block_originals
    apply_block(replica, blocks[1])
    assert replica.state_root == sequencer.state_root
    assert snapshot_rows(replica) == snapshot_rows(sequencer)


def test_state_root_mismatch_after_execution_rolls_every_write_back(keys: list[KeyPair]) -> None:
    sequencer, (block,) = _make_chain(keys, 1)
    replica = make_genesis_state(keys)
    rows = snapshot_rows(replica)
    bad = _with_header(block, state_root=bytes(32))
    for _ in range(3):
        with pytest.raises(StateRootMismatch):
            apply_block(replica, bad)
        assert snapshot_rows(replica) == rows
    apply_block(replica, block)
    assert replica.state_root == sequencer.state_root


def test_block_over_the_transaction_limit_is_refused(keys: list[KeyPair]) -> None:
    params = {"max_block_transactions": 2}
    sequencer = make_genesis_state(keys, params=params)
    raws = [make_transfer(keys[0], keys[1].address, 1, nonce) for nonce in range(3)]
    applied = build_block(sequencer, GENESIS_TIMESTAMP + 12, raws)
    assert len(applied.block.transactions) == 2

    replica = make_genesis_state(keys, params=params)
    root = replica.state_root
    forged_header = dataclasses.replace(
        applied.block.header,
        transactions_root=_merkle_of(raws),
    )
    with pytest.raises(InvalidBlock, match="limit"):
        apply_block(replica, Block(header=forged_header, transactions=tuple(raws)))
    assert replica.state_root == root
    apply_block(replica, applied.block)
    assert replica.state_root == sequencer.state_root


def _merkle_of(raws: list[bytes]) -> bytes:
    return compute_merkle_root([compute_transaction_hash(raw) for raw in raws])


def test_empty_blocks_and_clamped_timestamps(keys: list[KeyPair]) -> None:
    sequencer = make_genesis_state(keys)
    replica = make_genesis_state(keys)
    root = sequencer.state_root
    early = build_block(sequencer, GENESIS_TIMESTAMP - 100, [])
    assert early.block.header.timestamp == GENESIS_TIMESTAMP
    assert early.changes == [] and early.receipts == []
    assert sequencer.state_root == root
    same_time = build_block(sequencer, GENESIS_TIMESTAMP, [])
    for applied in (early, same_time):
        apply_block(replica, applied.block)
    assert replica.head == sequencer.head
    assert replica.head.height == 2


def test_changes_list_exactly_the_rows_a_block_changed(keys: list[KeyPair]) -> None:
    sequencer = make_genesis_state(keys)
    raw = make_transfer(keys[0], keys[1].address, 5, nonce=0)
    applied = build_block(sequencer, GENESIS_TIMESTAMP + 12, [raw])
    changed = {(change.tag, change.key) for change in applied.changes}
    accounts = sequencer.tables["accounts"]
    ledger = sequencer.tables["ledger"]
    assert changed == {
        (accounts.tag, keys[0].address),
        (accounts.tag, keys[1].address),
        (ledger.tag, b"treasury"),
    }
    for change in applied.changes:
        table = sequencer._table_by_tag(change.tag)
        assert change.value == table.encode_value(table.rows[table.decode_key(change.key)])


def test_block_that_only_fails_transactions_changes_no_row(keys: list[KeyPair]) -> None:
    sequencer = make_genesis_state(keys)
    root = sequencer.state_root
    applied = build_block(sequencer, GENESIS_TIMESTAMP + 12, [b"junk", b"more junk"])
    assert [r.success for r in applied.outcomes] == [False, False]
    # Bytes that pay no fee take no block space.
    assert applied.receipts == [] and applied.block.transactions == ()
    assert applied.changes == []
    assert sequencer.state_root == root
    assert applied.block.header.state_root == root
    assert applied.block.header.transactions_root == _merkle_of([])

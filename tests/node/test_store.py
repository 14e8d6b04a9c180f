"""The node's SQLite store, in-process: atomic blocks, a state rebuilt to the same root,
pending transactions that survive a reopen, and refusals of a database it does not expect.

Every test uses a real SQLite file under ``tmp_path`` and real blocks sealed by the
protocol's ``build_block`` from signed dev-key transfers.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from node_helpers import MIN_FEE, get_dev_keys, make_key, sign_transfer

from agora.node.devchain import create_dev_genesis
from agora.node.store import Store, StoreError, iterate_blocks
from agora.protocol.accounts import ACCOUNTS_TAG, get_account
from agora.protocol.address import decode_address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.invariants import check_invariants
from agora.protocol.state import RowChange, State
from agora.protocol.transactions import compute_transaction_hash
from agora.protocol.transition import AppliedBlock, apply_block, build_block

GENESIS_TIMESTAMP = 1_763_700_000
KEYS = get_dev_keys(4)
BOB = make_key("bob").address


def make_genesis(timestamp: int = GENESIS_TIMESTAMP) -> dict[str, Any]:
    return create_dev_genesis(len(KEYS), timestamp)


def make_transfers(first_nonce: int, count: int) -> list[bytes]:
    """``count`` transfers from every dev key, nonces from ``first_nonce``."""
    return [
        sign_transfer(key, BOB, 1_000 + nonce, nonce)
        for nonce in range(first_nonce, first_nonce + count)
        for key in KEYS
    ]


def seal_blocks(state: State, blocks: int, per_sender: int = 3) -> list[AppliedBlock]:
    sealed = []
    for height in range(1, blocks + 1):
        raws = make_transfers((height - 1) * per_sender, per_sender)
        sealed.append(build_block(state, GENESIS_TIMESTAMP + height, raws))
    return sealed


def open_store(path: Path) -> Store:
    return Store(path / "node.db")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = open_store(tmp_path)
    yield opened
    opened.close()


def test_a_new_store_records_genesis_and_reloads_the_same_state(store: Store) -> None:
    state = store.initialize(make_genesis())
    loaded = store.load_state()
    assert loaded.state_root == state.state_root
    assert (loaded.head.height, loaded.head.block_hash) == (0, state.head.block_hash)
    assert store.get_head_header().state_root == state.state_root
    genesis_block = store.get_block(0)
    assert genesis_block is not None and genesis_block.transactions == ()
    assert store.get_genesis() == make_genesis()


def test_committed_blocks_rebuild_the_same_root_after_reopening(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    state = store.initialize(make_genesis())
    for applied in seal_blocks(state, 5):
        store.commit_block(applied)
    store.close()

    reopened = open_store(tmp_path)
    loaded = reopened.load_state()
    assert loaded.state_root == state.state_root
    assert (loaded.head.height, loaded.head.block_hash) == (5, state.head.block_hash)
    assert loaded.head.timestamp == state.head.timestamp
    check_invariants(loaded)
    for key in KEYS:
        address = decode_address(key.address)
        assert get_account(loaded, address) == get_account(state, address)
    # Reinitializing with the same genesis is a restart, not a new chain.
    assert reopened.initialize(make_genesis()).state_root == state.state_root
    reopened.close()


def test_stored_blocks_replayed_on_a_fresh_genesis_give_every_stored_root(store: Store) -> None:
    state = store.initialize(make_genesis())
    for applied in seal_blocks(state, 4):
        store.commit_block(applied)
    replayed = create_genesis_state(store.get_genesis())
    blocks = list(iterate_blocks(store, 1))
    assert [b.header.height for b in blocks] == [1, 2, 3, 4]
    for block in blocks:
        apply_block(replayed, block)
        assert replayed.state_root == block.header.state_root
    assert replayed.state_root == store.load_state().state_root


def test_receipts_and_lookups_by_hash(store: Store) -> None:
    state = store.initialize(make_genesis())
    applied = seal_blocks(state, 2)
    for block in applied:
        store.commit_block(block)
    second = applied[1]
    receipts = store.get_receipts(2)
    assert receipts == second.receipts and all(r.success for r in receipts)
    stored = store.get_receipt(second.receipts[3].tx_hash)
    assert stored is not None and (stored.height, stored.position) == (2, 3)
    assert stored.receipt == second.receipts[3]
    assert store.get_receipt(bytes(32)) is None
    assert store.get_height_of(state.head.block_hash) == 2
    assert store.get_height_of(bytes(32)) is None
    assert store.get_block(3) is None


def test_a_failure_mid_commit_stores_nothing_of_the_block(store: Store) -> None:
    state = store.initialize(make_genesis())
    before = store.load_state().state_root
    raws = make_transfers(0, 2)
    store.add_pending(raws)
    (applied,) = seal_blocks(state, 1, per_sender=2)
    # The block row and the receipts are written first; a state row that the database
    # refuses (NOT NULL tag) fails the commit after them.
    broken = dataclasses.replace(
        applied,
        changes=[*applied.changes, RowChange(None, b"key", b"value")],  # type: ignore[arg-type]
    )
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_block(broken)

    assert store.get_block(1) is None
    assert store.get_receipts(1) == []
    assert store.get_head_header().height == 0
    assert store.load_state().state_root == before
    assert store.list_pending() == raws

    store.commit_block(applied)
    assert store.get_head_header().height == 1
    assert store.load_state().state_root == state.state_root
    assert store.list_pending() == []


def test_a_block_cannot_be_recorded_twice(store: Store) -> None:
    state = store.initialize(make_genesis())
    (applied,) = seal_blocks(state, 1)
    store.commit_block(applied)
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_block(applied)
    assert len(store.get_receipts(1)) == len(applied.receipts)
    assert store.load_state().state_root == state.state_root


def test_a_commit_on_a_closed_database_raises_and_the_reopened_store_is_intact(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    state = store.initialize(make_genesis())
    genesis_root = state.state_root
    (applied,) = seal_blocks(state, 1)
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.commit_block(applied)
    reopened = open_store(tmp_path)
    assert reopened.get_block(1) is None
    assert reopened.load_state().state_root == genesis_root
    reopened.close()


def test_pending_transactions_survive_a_reopen_in_order_until_a_block_includes_them(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    state = store.initialize(make_genesis())
    first, second = make_transfers(0, 1), make_transfers(1, 1)
    store.add_pending(first)
    store.add_pending(second)
    store.add_pending(first[:1])  # a duplicate is ignored
    store.close()

    store = open_store(tmp_path)
    assert store.list_pending() == first + second
    assert store.is_pending(compute_transaction_hash(second[0]))
    store.commit_block(build_block(state, GENESIS_TIMESTAMP + 1, first))
    assert store.list_pending() == second
    assert not store.is_pending(compute_transaction_hash(first[0]))
    store.add_pending(make_transfers(2, 1))
    assert store.list_pending()[: len(second)] == second
    store.remove_pending(second)
    assert store.list_pending() == make_transfers(2, 1)
    store.close()


def test_a_store_of_another_chain_is_refused(store: Store) -> None:
    state = store.initialize(make_genesis())
    with pytest.raises(StoreError, match="another chain's genesis") as raised:
        store.initialize(make_genesis(GENESIS_TIMESTAMP + 1))
    assert raised.value.code == 3030
    assert store.load_state().state_root == state.state_root


def test_an_empty_store_has_no_chain_to_load(store: Store) -> None:
    with pytest.raises(StoreError, match="no chain yet"):
        store.load_state()


def test_a_tampered_state_row_is_detected_at_load(store: Store) -> None:
    state = store.initialize(make_genesis())
    for applied in seal_blocks(state, 1):
        store.commit_block(applied)
    # An account's balance is its first u64: flip one bit of it.
    key, value = store.db.execute(
        "SELECT key, value FROM state WHERE tag = ? LIMIT 1", (ACCOUNTS_TAG,)
    ).fetchone()
    tampered = bytes([value[0] ^ 1]) + value[1:]
    store.db.execute(
        "UPDATE state SET value = ? WHERE tag = ? AND key = ?", (tampered, ACCOUNTS_TAG, key)
    )
    with pytest.raises(StoreError, match="does not match block 1's state root"):
        store.load_state()


def test_failed_transactions_are_stored_with_their_codes(store: Store) -> None:
    state = store.initialize(make_genesis())
    replayed = sign_transfer(KEYS[0], BOB, 5, 0)
    low_fee = sign_transfer(KEYS[1], BOB, 5, 0, fee=MIN_FEE - 1)
    too_much = sign_transfer(KEYS[0], BOB, 10**19, 1)  # more than any dev balance
    applied = build_block(state, GENESIS_TIMESTAMP + 1, [replayed, replayed, low_fee, too_much])
    store.commit_block(applied)
    receipts = store.get_receipts(1)
    # A failure that paid its fee is in the block; those that could not pay were left out.
    assert [(r.success, r.code) for r in receipts] == [(True, 0), (False, 1203)]
    assert store.get_block(1) == applied.block
    assert applied.block.transactions == (replayed, too_much)
    # Looking a hash up gives its first inclusion, the one that counted.
    first = store.get_receipt(compute_transaction_hash(replayed))
    assert first is not None and first.position == 0 and first.receipt.success
    refusal = store.get_refusal(compute_transaction_hash(low_fee))
    assert refusal is not None and (refusal.height, refusal.receipt.code) == (1, 1202)
    assert store.get_receipt(compute_transaction_hash(low_fee)) is None

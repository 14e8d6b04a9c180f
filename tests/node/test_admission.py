"""Admission: spam costs its sender. Real node processes, real HTTP on loopback.

- An account funded with exactly one minimum fee submits 300 transfers (nonces 0 to 299,
  one request each): one is admitted and included; every other is refused at once, with
  CannotPayFee (1204) when the fee it offers is already committed to a waiting one, or
  BadNonce (1201) when it is not the sender's next nonce.
- The pool is bounded per sender (SenderPoolFull, 3040) and in all (PoolFull, 3006), both
  429, and a refusal leaves what was admitted intact.
- Straight to the protocol (no admission): a block built from the same 300 transfers holds
  one; the others pay no fee and are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_helpers import (
    MIN_FEE,
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    get_metrics,
    hex_of,
    make_key,
    sign_transfer,
    wait_no_pending,
)

from agora.node.devchain import create_dev_genesis
from agora.protocol.accounts import Account, get_account
from agora.protocol.address import decode_address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.transition import build_block

KEYS = get_dev_keys()
SPAM = 300


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[NodeProcesses]:
    started = NodeProcesses(tmp_path / "logs")
    yield started
    started.stop_all()


def submit_one(node: NodeProcess, raw: bytes) -> tuple[int, int]:
    """(HTTP status, error code or 0) of submitting one transaction."""
    answer = node.post("/v1/transactions", {"transaction": {"raw": hex_of(raw)}})
    return answer.status, 0 if answer.status == 202 else answer.error_code


def test_one_fee_buys_one_transaction(processes: NodeProcesses, tmp_path: Path) -> None:
    node = processes.run(tmp_path / "node")
    spammer, sink = make_key("one-fee-spammer"), make_key("one-fee-sink").address
    funding = sign_transfer(KEYS[0], spammer.address, MIN_FEE, 0)
    node.wait_included(node.submit([funding])[0])
    assert node.account(spammer.address)["balance"] == MIN_FEE

    outcomes = Counter(
        submit_one(node, sign_transfer(spammer, sink, 1, nonce)) for nonce in range(SPAM)
    )
    # The first pays its fee (its amount of 1 then fails in the block). Nonce 1 is refused
    # for the fee the waiting one has committed (1204), and the later nonces for not being
    # the next one (1201): the pool holds a sender's nonces contiguously.
    assert outcomes[(202, 0)] == 1
    assert outcomes[(400, 1204)] >= 1
    assert outcomes[(400, 1204)] + outcomes[(400, 1201)] == SPAM - 1
    wait_no_pending(node)
    account = node.account(spammer.address)
    assert (account["balance"], account["nonce"]) == (0, 1)
    assert node.account(sink)["balance"] == 0
    head = node.get_json("/v1/head")["height"]
    spent = [
        raw
        for height in range(1, head + 1)
        for raw in node.get_json(f"/v1/blocks/{height}")["transactions"]
    ]
    assert len(spent) == 2  # the funding transfer and the one spam transfer that paid


def test_pool_bounds_per_sender_and_in_all(processes: NodeProcesses, tmp_path: Path) -> None:
    # A long block time: nothing is included while the pool fills.
    node = processes.run(
        tmp_path / "node",
        block_time_ms=600_000,
        extra=("--max-pending", "12", "--max-pending-per-sender", "5"),
    )
    sink = make_key("pool-bound-sink").address
    first = [sign_transfer(KEYS[0], sink, 1, nonce) for nonce in range(6)]
    assert [submit_one(node, raw)[0] for raw in first[:5]] == [202] * 5
    assert submit_one(node, first[5]) == (429, 3040)
    # Another sender still gets in, until the pool as a whole is full.
    second = [sign_transfer(KEYS[1], sink, 1, nonce) for nonce in range(5)]
    third = [sign_transfer(KEYS[2], sink, 1, nonce) for nonce in range(3)]
    assert [submit_one(node, raw)[0] for raw in second] == [202] * 5
    assert [submit_one(node, raw) for raw in third] == [(202, 0), (202, 0), (429, 3006)]
    assert get_metrics(node)["agora_pending_transactions"] == 12
    # The refused transaction was not kept: the same bytes are refused again, not "known".
    assert submit_one(node, first[5]) == (429, 3040)
    assert node.account(KEYS[0].address)["next_nonce"] == 5


def test_a_block_leaves_out_what_cannot_pay_its_fee() -> None:
    genesis = create_dev_genesis(len(KEYS), 0)
    spammer, sink = make_key("block-spammer"), make_key("block-sink").address
    genesis["balances"][spammer.address] = MIN_FEE
    state = create_genesis_state(genesis)
    spam = [sign_transfer(spammer, sink, 1, nonce) for nonce in range(SPAM)]
    applied = build_block(state, 1, spam)
    assert applied.block.transactions == (spam[0],)
    assert [r.fee_paid for r in applied.receipts] == [MIN_FEE]
    assert len(applied.refused) == SPAM - 1
    # Nonce 1 cannot pay (1204); nonce 1 unused, nonces 2 and up are ahead (1201).
    assert [r.code for r in applied.refused] == [1204] + [1201] * (SPAM - 2)
    assert get_account(state, decode_address(spammer.address)) == Account(balance=0, nonce=1)

"""Whatever anyone posts to the Inbox, a posting node neither crashes nor stalls.

A real anvil (interval mining) and a real ``agora node run --sequencer ethereum`` process
that posts with its own EVM account. While the node's own post of three acknowledged
transfers is on its way, an outsider posts straight to the Inbox: the same transaction twice
in one payload, a second copy of it in another post, the later nonces before the earlier one
(a reorder), random bytes and a truncated payload. Every copy lands in the same EVM blocks
as, or before, the node's own post. Afterwards the node is still running and healthy, each
acknowledged transfer is included exactly once, every copy was refused and left out of its
block, and a transfer submitted after all that is included too (the node did not stall).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from anvil import Anvil, find_anvil, rpc_call, start_anvil
from node_helpers import (
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    make_key,
    sign_transfer,
    wait_for,
    wait_no_pending,
)

from agora.protocol.transactions import compute_transaction_hash
from agora.sequencer.ethereum.derive import encode_payload
from agora.sequencer.ethereum.inbox import InboxDeployment, deploy_inbox, encode_post_call

pytestmark = pytest.mark.skipif(
    find_anvil() is None,
    reason="anvil is not installed: npm install --prefix . --no-save @foundry-rs/anvil-linux-amd64",
)

DEV = get_dev_keys()
SINK = make_key("hostile-inbox-sink").address
POSTER, OUTSIDER = 1, 5  # anvil's funded accounts
TIMEOUT_SECONDS = 60.0


@pytest.fixture
def chain() -> Iterator[Anvil]:
    with start_anvil(block_time=0.25) as anvil:
        yield anvil


@pytest.fixture
def node(chain: Anvil, tmp_path: Path) -> Iterator[tuple[NodeProcess, InboxDeployment]]:
    deployment = asyncio.run(deploy_inbox(chain.url, chain.private_keys[0]))
    processes = NodeProcesses(tmp_path / "logs")
    saved = os.environ.get("AGORA_EVM_KEY")
    os.environ["AGORA_EVM_KEY"] = chain.private_keys[POSTER]
    try:
        started = processes.run(
            tmp_path / "node",
            extra=(
                "--sequencer", "ethereum", "--rpc", chain.url,
                "--inbox", deployment.address,
                "--genesis-block", str(deployment.block_number),
                "--confirmations", "0",
            ),
        )  # fmt: skip
        yield started, deployment
    finally:
        os.environ.pop("AGORA_EVM_KEY", None)
        if saved is not None:
            os.environ["AGORA_EVM_KEY"] = saved
        processes.stop_all()


def post_from_outsider(anvil: Anvil, inbox: str, payload: bytes) -> object:
    """``Inbox.post(payload)`` from an account that is no node's: anyone can."""
    outsider = rpc_call(anvil.url, "eth_accounts", [])[OUTSIDER]  # type: ignore[index]
    call = {"from": outsider, "to": inbox, "data": "0x" + encode_post_call(payload).hex()}
    return rpc_call(anvil.url, "eth_sendTransaction", [call])


def included_status(node: NodeProcess, raw: bytes) -> dict[str, object]:
    tx_hash = "0x" + compute_transaction_hash(raw).hex()

    def included() -> dict[str, object] | None:
        status: dict[str, object] = node.get_json(f"/v1/transactions/{tx_hash}")
        return status if status["status"] == "included" else None

    found: dict[str, object] = wait_for(included, TIMEOUT_SECONDS, f"{tx_hash} included")
    return found


def test_duplicates_copies_reorders_and_garbage_never_crash_or_stall_the_node(
    chain: Anvil, node: tuple[NodeProcess, InboxDeployment]
) -> None:
    process, deployment = node
    sender = DEV[3]
    transfers = [sign_transfer(sender, SINK, 10 + nonce, nonce) for nonce in range(3)]
    first, second, third = transfers
    assert process.submit(transfers) == [
        "0x" + compute_transaction_hash(raw).hex() for raw in transfers
    ]
    rng = random.Random(20_261_202)
    hostile = [
        encode_payload([first, first]),  # a duplicate inside one payload
        encode_payload([first]),  # another copy of a pending transaction
        encode_payload([third, second]),  # later nonces first: a reorder
        b"\x01" + rng.randbytes(200),  # garbage
        encode_payload([second, third])[:-5],  # a truncated payload
        encode_payload([rng.randbytes(90), b"\x00"]),  # items that are no transaction
    ]
    sent = [post_from_outsider(chain, deployment.address, payload) for payload in hostile]
    assert all(isinstance(tx, str) for tx in sent)

    heights = [int(str(included_status(process, raw)["height"])) for raw in transfers]
    assert heights == sorted(heights)
    # Each transfer moved its amount once, whatever number of copies was posted.
    account = process.account(sender.address)
    assert account["nonce"] == 3
    assert process.account(SINK)["balance"] == 10 + 11 + 12
    wait_no_pending(process, timeout=TIMEOUT_SECONDS)
    # Every included copy is the one that counted; the blocks hold no transfer twice.
    head = process.get_json("/v1/head")["height"]
    seen: list[str] = []
    for height in range(1, head + 1):
        seen += process.get_json(f"/v1/blocks/{height}")["transactions"]
    assert sorted(seen) == sorted("0x" + raw.hex() for raw in transfers)

    # Not stalled: a later transfer goes through, and the node is healthy.
    later = sign_transfer(sender, SINK, 13, 3)
    process.submit([later])
    assert included_status(process, later)["receipt"]["success"]  # type: ignore[index]
    assert process.is_running()
    assert process.get("/health").status == 200

"""Many independent Agora nodes over one Inbox agree: a real anvil and real node processes.

Decentralised ordering means that nodes which never talk to each other compute the same
chain, because they all derive it from the same EVM blocks. Here, on one anvil that mines
a block every 0.25 s:

- the Inbox is deployed with ``agora inbox deploy --json``;
- three ``agora node run --dev --sequencer ethereum`` processes, each with its own data
  directory, read it: two post with their own anvil accounts (1 and 2 confirmations), one
  only reads. Transfers go in through the two posting nodes; the reader refuses them;
- garbage posted straight to the Inbox by an outside account (random bytes, a well-formed
  payload of broken transactions, a truncated payload) is skipped, or refused and left out of
  the block, the same way on every node;
- a posting node is SIGKILLed mid-stream and restarted on its data directory: every
  transaction it acknowledged (202) before the kill is still included, once;
- a fourth node started last catches up from genesis.

After each step every node's blocks, from height 1 to the lowest head among them, are
compared header by header (block hash, state root), and the blocks that hold transactions
in full, with their receipts. Every process is stopped by its pid in teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

from agora.node.store import Store
from agora.protocol.transactions import compute_transaction_hash
from agora.sequencer.ethereum.derive import MalformedPayload, encode_payload, parse_payload
from agora.sequencer.ethereum.inbox import encode_post_call, load_artifact

pytestmark = pytest.mark.skipif(
    find_anvil() is None,
    reason="anvil is not installed: npm install --prefix . --no-save @foundry-rs/anvil-linux-amd64",
)

ANVIL_BLOCK_SECONDS = 0.25
DEV = get_dev_keys()
SINK = make_key("eth-network-sink").address
INCLUDED_TIMEOUT_SECONDS = 60.0
# anvil's funded accounts, by role: 0 deploys, 1 and 2 post for nodes, 5 is an outsider.
DEPLOYER, ALPHA_POSTER, BETA_POSTER, STRANGER = 0, 1, 2, 5


# --- the network ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """How one Ethereum-sequenced node is (re)started: same data directory, same key."""

    data_dir: Path
    confirmations: int
    poster_key: str | None


@dataclass
class Network:
    anvil: Anvil
    deployment: dict[str, Any]
    processes: NodeProcesses
    root: Path
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    nodes: dict[str, NodeProcess] = field(default_factory=dict)

    def start(self, name: str, *, confirmations: int, poster_key: str | None) -> NodeProcess:
        spec = NodeSpec(
            data_dir=self.root / name, confirmations=confirmations, poster_key=poster_key
        )
        self.specs[name] = spec
        return self.restart(name)

    def restart(self, name: str) -> NodeProcess:
        spec = self.specs[name]
        arguments = (
            "--sequencer",
            "ethereum",
            "--rpc",
            self.anvil.url,
            "--inbox",
            self.deployment["address"],
            "--genesis-block",
            str(self.deployment["genesis_block"]),
            "--confirmations",
            str(spec.confirmations),
        )
        with evm_key(spec.poster_key):
            node = self.processes.run(spec.data_dir, extra=arguments)
        self.nodes[name] = node
        return node

    def live(self) -> list[NodeProcess]:
        return [node for node in self.nodes.values() if node.is_running()]


@contextlib.contextmanager
def evm_key(key: str | None) -> Iterator[None]:
    """$AGORA_EVM_KEY as the node process will inherit it (absent: a read-only node)."""
    saved = os.environ.pop("AGORA_EVM_KEY", None)
    if key is not None:
        os.environ["AGORA_EVM_KEY"] = key
    try:
        yield
    finally:
        os.environ.pop("AGORA_EVM_KEY", None)
        if saved is not None:
            os.environ["AGORA_EVM_KEY"] = saved


def deploy_with_cli(anvil: Anvil) -> dict[str, Any]:
    """``agora inbox deploy --json`` in its own process, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "agora", "inbox", "deploy", "--rpc", anvil.url]
        + ["--key", anvil.private_keys[DEPLOYER], "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"COLUMNS": "400"},
    )
    assert done.returncode == 0, done.stderr
    deployment: dict[str, Any] = json.loads(done.stdout)
    return deployment


@pytest.fixture(scope="module")
def chain() -> Iterator[Anvil]:
    with start_anvil(block_time=ANVIL_BLOCK_SECONDS) as anvil:
        yield anvil


@pytest.fixture(scope="module")
def deployment(chain: Anvil) -> dict[str, Any]:
    return deploy_with_cli(chain)


@pytest.fixture(scope="module")
def network(
    chain: Anvil, deployment: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Network]:
    """alpha and beta post (1 and 2 confirmations), gamma only reads (2 confirmations)."""
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    network = Network(chain, deployment, processes, tmp_path_factory.mktemp("nodes"))
    try:
        keys = chain.private_keys
        network.start("alpha", confirmations=1, poster_key=keys[ALPHA_POSTER])
        network.start("beta", confirmations=2, poster_key=keys[BETA_POSTER])
        network.start("gamma", confirmations=2, poster_key=None)
        yield network
    finally:
        processes.stop_all()


# --- agreement -------------------------------------------------------------------------------


def get_head(node: NodeProcess) -> int:
    height: int = node.get_json("/v1/head")["height"]
    return height


def list_blocks(node: NodeProcess, top: int) -> list[dict[str, Any]]:
    """Blocks 1..top as the node serves them to followers (headers and raw transactions)."""
    blocks: list[dict[str, Any]] = []
    while len(blocks) < top:
        limit = min(100, top - len(blocks))
        page = node.get_json(f"/v1/blocks?from={len(blocks) + 1}&limit={limit}")["blocks"]
        assert page, f"{node.url} has no block {len(blocks) + 1}"
        blocks.extend(page)
    return blocks


def assert_agree(nodes: list[NodeProcess], at_least: int = 1) -> int:
    """Every node reaches ``at_least``; then blocks 1..(lowest head) are identical on all.

    The chain keeps growing with anvil's blocks, so the nodes are compared up to the lowest
    head among them. Returns that height.
    """
    for node in nodes:
        node.wait_height(at_least, timeout=INCLUDED_TIMEOUT_SECONDS)
    top = min(get_head(node) for node in nodes)
    reference = list_blocks(nodes[0], top)
    for node in nodes[1:]:
        blocks = list_blocks(node, top)
        for mine, theirs in zip(reference, blocks, strict=True):
            assert mine["header"] == theirs["header"], (nodes[0].url, node.url)
            assert mine["transactions"] == theirs["transactions"]
    for block in reference:
        if block["transactions"]:
            height = block["header"]["height"]
            full = [node.get_json(f"/v1/blocks/{height}") for node in nodes]
            assert all(item == full[0] for item in full), f"block {height} differs"
    return top


def evm_receipt(anvil: Anvil, tx_hash: object) -> Callable[[], Any]:
    """A check for ``wait_for``: the EVM receipt, or None while unmined."""
    return lambda: rpc_call(anvil.url, "eth_getTransactionReceipt", [tx_hash])


def wait_included(node: NodeProcess, tx_hash: str) -> dict[str, Any]:
    """The transaction's status once it is in a block (a node that has not read it yet
    answers 404: it was posted through another node)."""

    def included() -> dict[str, Any] | None:
        answer = node.get(f"/v1/transactions/{tx_hash}")
        if answer.status == 404:
            return None
        assert answer.status == 200, answer.body
        status: dict[str, Any] = answer.json()
        return status if status["status"] == "included" else None

    found: dict[str, Any] = wait_for(
        included, INCLUDED_TIMEOUT_SECONDS, f"{tx_hash} included on {node.url}", poll=0.05
    )
    return found


def wait_included_everywhere(
    nodes: list[NodeProcess], tx_hashes: list[str]
) -> dict[str, dict[str, Any]]:
    """Every hash is in a block on every node, at the same place with the same receipt."""
    found: dict[str, dict[str, Any]] = {}
    for node in nodes:
        for tx_hash in tx_hashes:
            status = wait_included(node, tx_hash)
            assert found.setdefault(tx_hash, status) == status, (node.url, tx_hash)
    return found


def submit_transfers(
    node: NodeProcess, sender_index: int, first_nonce: int, count: int, recipient: str = SINK
) -> list[str]:
    raws = [
        sign_transfer(DEV[sender_index], recipient, 1 + nonce, nonce)
        for nonce in range(first_nonce, first_nonce + count)
    ]
    return node.submit(raws)


# --- the tests -----------------------------------------------------------------------------------


def test_inbox_deploy_cli_gives_the_address_and_genesis_block(
    chain: Anvil, deployment: dict[str, Any]
) -> None:
    receipt = rpc_call(chain.url, "eth_getTransactionReceipt", [deployment["tx_hash"]])
    assert isinstance(receipt, dict)
    assert int(receipt["blockNumber"], 16) == deployment["genesis_block"]
    assert receipt["contractAddress"].lower() == deployment["address"].lower()
    assert deployment["chain_id"] == 31337
    code = rpc_call(chain.url, "eth_getCode", [deployment["address"], "latest"])
    assert code == "0x" + load_artifact().runtime_bytecode.hex()


def test_three_nodes_agree_on_every_block(network: Network) -> None:
    alpha, beta, gamma = (network.nodes[name] for name in ("alpha", "beta", "gamma"))
    everyone = [alpha, beta, gamma]
    genesis = [node.get_json("/v1/blocks/0")["header"] for node in everyone]
    assert genesis[0] == genesis[1] == genesis[2]

    # The reader refuses, and keeps refusing: nothing it refused may look accepted later.
    refused = sign_transfer(DEV[2], SINK, 1, 0)
    for _ in range(2):
        answer = gamma.post("/v1/transactions", {"transactions": [{"raw": "0x" + refused.hex()}]})
        assert (answer.status, answer.error_code) == (400, 3208), answer.body
    assert gamma.account(DEV[2].address)["next_nonce"] == 0

    recipient = make_key("eth-network-agreement").address
    hashes: list[str] = []
    for round_number in range(3):  # spread over several posts of each node
        hashes += submit_transfers(alpha, 0, 10 * round_number, 10, recipient)
        hashes += submit_transfers(beta, 1, 10 * round_number, 10, recipient)
        time.sleep(0.4)
    # One sender through both posting nodes: the second waits until its node saw the first.
    [first] = alpha.submit([refused])
    wait_included(beta, first)
    hashes += [first, *beta.submit([sign_transfer(DEV[2], SINK, 2, 1)])]

    statuses = wait_included_everywhere(everyone, hashes)
    assert all(status["receipt"]["success"] for status in statuses.values())
    last = max(status["height"] for status in statuses.values())
    assert_agree(everyone, at_least=last)
    balances = {node.account(recipient)["balance"] for node in everyone}
    assert balances == {2 * sum(range(1, 31))}


def test_garbage_posted_to_the_inbox_is_skipped_alike(network: Network) -> None:
    everyone = network.live()
    # A quiet network: the EVM blocks that hold these posts hold nothing else.
    for name in ("alpha", "beta"):
        wait_no_pending(network.nodes[name], timeout=INCLUDED_TIMEOUT_SECONDS)
    rng = random.Random(20_251_122)
    stranger = rpc_call(network.anvil.url, "eth_accounts", [])[STRANGER]  # type: ignore[index]

    random_payload = b"\x01" + rng.randbytes(299)
    valid = sign_transfer(DEV[5], SINK, 7, 0)
    broken = [
        rng.randbytes(120),  # not a transaction at all
        b"\x00",
        rng.randbytes(20_000),  # over max_transaction_bytes
        sign_transfer(DEV[5], SINK, 7, 0, chain_id="agora-elsewhere"),
        valid[:-1] + bytes([valid[-1] ^ 1]),  # a flipped signature bit
        valid,  # the one good transaction
        valid,  # its replay: a nonce already used
    ]
    cut_short = [sign_transfer(DEV[6], SINK, 9, 0), sign_transfer(DEV[6], SINK, 9, 1)]
    truncated_payload = encode_payload(cut_short)[:-7]
    payloads = [random_payload, encode_payload(broken), truncated_payload]
    for payload in (random_payload, truncated_payload):
        with pytest.raises(MalformedPayload):
            parse_payload(payload)

    sent = [
        rpc_call(
            network.anvil.url,
            "eth_sendTransaction",
            [
                {
                    "from": stranger,
                    "to": network.deployment["address"],
                    "data": "0x" + encode_post_call(payload).hex(),
                }
            ],
        )
        for payload in payloads
    ]
    receipts = [wait_for(evm_receipt(network.anvil, tx), 30, f"the receipt of {tx}") for tx in sent]
    assert all(int(receipt["status"], 16) == 1 for receipt in receipts)

    # Per EVM block, in transaction order, only the well-formed payload contributes.
    expected: dict[int, list[str]] = {}
    for payload, receipt in sorted(
        zip(payloads, receipts, strict=True),
        key=lambda pair: (int(pair[1]["blockNumber"], 16), int(pair[1]["transactionIndex"], 16)),
    ):
        height = int(receipt["blockNumber"], 16) - network.deployment["genesis_block"]
        # Of the broken payload's items only the valid transfer pays a fee; the others
        # (and the replay) are left out of the block.
        items = [] if payload is not payloads[1] else [valid]
        expected.setdefault(height, []).extend("0x" + raw.hex() for raw in items)

    assert_agree(everyone, at_least=max(expected))
    for height, transactions in expected.items():
        block = everyone[0].get_json(f"/v1/blocks/{height}")
        assert block["transactions"] == transactions, height
        if transactions:
            outcomes = [receipt["success"] for receipt in block["receipts"]]
            assert outcomes == [True]
    flipped = compute_transaction_hash(broken[4])
    for node in everyone:
        answer = node.get_json(f"/v1/transactions/0x{flipped.hex()}")
        assert answer["status"] == "refused" and answer["receipt"]["code"] == 1101, answer
        assert answer["receipt"]["fee_paid"] == 0
    for node in everyone:
        assert node.account(DEV[5].address)["nonce"] == 1
        assert node.account(DEV[6].address)["nonce"] == 0
        for raw in cut_short:
            answer = node.get(f"/v1/transactions/0x{compute_transaction_hash(raw).hex()}")
            assert answer.status == 404, answer.body


def test_a_node_killed_mid_stream_restarts_and_loses_nothing(network: Network) -> None:
    beta = network.nodes["beta"]
    acknowledged: list[str] = []
    for nonce in range(24):
        acknowledged += submit_transfers(beta, 3, nonce, 1)
        time.sleep(0.08)
    beta.kill()  # SIGKILL right after an acknowledgement: the last ones are not posted yet

    store = Store(network.specs["beta"].data_dir / "node.db")
    try:
        for tx_hash in acknowledged:
            raw_hash = bytes.fromhex(tx_hash[2:])
            assert store.get_receipt(raw_hash) or store.is_pending(raw_hash), tx_hash
        pending_at_kill = len(store.list_pending())
    finally:
        store.close()
    assert pending_at_kill > 0, "the kill came too late to test the pending pool"

    beta = network.restart("beta")
    everyone = network.live()
    statuses = wait_included_everywhere(everyone, acknowledged)
    assert all(status["receipt"]["success"] for status in statuses.values())
    assert beta.account(DEV[3].address)["next_nonce"] == 24
    more = submit_transfers(beta, 3, 24, 2)
    statuses |= wait_included_everywhere(everyone, more)
    assert_agree(everyone, at_least=max(status["height"] for status in statuses.values()))
    # Re-posted copies of transfers posted before the kill fail on their nonce: each
    # transfer changed the state once.
    assert {node.account(DEV[3].address)["nonce"] for node in everyone} == {26}


def test_a_node_started_later_catches_up(network: Network) -> None:
    before = network.live()
    target = max(get_head(node) for node in before)
    started = time.monotonic()
    delta = network.start("delta", confirmations=1, poster_key=None)
    delta.wait_height(target, timeout=INCLUDED_TIMEOUT_SECONDS)
    caught_up = time.monotonic() - started
    assert caught_up < 30, f"catching up {target} heights took {caught_up:.1f}s"
    # And it keeps following: a transfer posted through alpha reaches it too.
    [tx_hash] = submit_transfers(network.nodes["alpha"], 4, 0, 1)
    [status] = wait_included_everywhere([*before, delta], [tx_hash]).values()
    assert_agree([*before, delta], at_least=status["height"])

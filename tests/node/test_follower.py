"""Followers: separate processes that pull a leader's blocks and re-execute every one.

A follower agrees with its leader on every header (hash and state root), forwards what is
submitted to it, resumes from its own store after a restart, and stops with a coded error
naming the block when a leader serves a block whose contents or state root were tampered.
It refuses a leader of another genesis than the one it was given or recorded, halts on a
block that does not decode, and remembers a bounded number of forwarded transactions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from node_helpers import (
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    hex_of,
    make_key,
    sign_transfer,
    wait_for,
    wait_no_pending,
)

from agora.client.client import NodeClient
from agora.node.node import Node, NodeConfig
from agora.node.store import Store, decode_transactions, encode_transactions
from agora.protocol.blocks import compute_block_hash, decode_header, encode_header

KEYS = get_dev_keys()
TAMPERED_HEIGHT = 2


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcesses]:
    started = NodeProcesses(tmp_path_factory.mktemp("logs"))
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def leader(processes: NodeProcesses, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    node = processes.run(tmp_path_factory.mktemp("leader"))
    send_transfers(node, rounds=4)
    return node


def send_transfers(node: NodeProcess, rounds: int, senders: int = 4) -> None:
    """``rounds`` requests, each with two transfers from each of ``senders`` dev keys."""
    for _ in range(rounds):
        raws = []
        for key in KEYS[:senders]:
            nonce = node.account(key.address)["next_nonce"]
            recipient = make_key(f"follow-{nonce % 3}").address
            raws += [sign_transfer(key, recipient, 1_000 + nonce, nonce + i) for i in range(2)]
        hashes = node.submit(raws)
        node.wait_included(hashes[-1])
    wait_no_pending(node)


def wait_same_head(follower: NodeProcess, leader: NodeProcess) -> int:
    target = leader.get_json("/v1/head")
    follower.wait_height(target["height"])
    assert follower.get_json("/v1/head") == target
    height: int = target["height"]
    return height


def assert_same_chain(follower: NodeProcess, leader: NodeProcess, height: int) -> None:
    for h in range(height + 1):
        ours, theirs = follower.get_json(f"/v1/blocks/{h}"), leader.get_json(f"/v1/blocks/{h}")
        assert ours == theirs, f"block {h} differs"


def test_a_follower_agrees_with_its_leader_at_every_height(
    processes: NodeProcesses, leader: NodeProcess, tmp_path: Path
) -> None:
    follower = processes.follow(leader.url, tmp_path / "follower")
    height = wait_same_head(follower, leader)
    assert height >= 4

    # New blocks are followed live, not only the backlog.
    send_transfers(leader, rounds=2)
    height = wait_same_head(follower, leader)

    assert_same_chain(follower, leader, height)
    assert follower.get_json("/v1/genesis") == leader.get_json("/v1/genesis")
    for key in KEYS[:4]:
        assert follower.account(key.address) == leader.account(key.address)
    assert follower.get_json("/health")["status"] == "ok"
    follower.stop()


def test_a_transaction_submitted_to_a_follower_is_forwarded_and_included(
    processes: NodeProcesses, leader: NodeProcess, tmp_path: Path
) -> None:
    follower = processes.follow(leader.url, tmp_path / "follower")
    wait_same_head(follower, leader)
    sender, recipient = KEYS[5], make_key("forwarded").address
    raw = sign_transfer(sender, recipient, 777, follower.account(sender.address)["next_nonce"])

    (tx_hash,) = follower.submit([raw])

    assert follower.get_json(f"/v1/transactions/{tx_hash}")["status"] in ("pending", "included")
    on_leader = leader.wait_included(tx_hash)
    on_follower = follower.wait_included(tx_hash)
    assert on_follower == on_leader and on_leader["receipt"]["success"]
    wait_same_head(follower, leader)
    assert follower.account(recipient)["balance"] == 777

    # A refusal by the leader comes back through the follower with the leader's code.
    replay = follower.post("/v1/transactions", {"transaction": {"raw": hex_of(raw)}})
    assert replay.status == 400 and replay.error_code == 1201
    follower.stop()


def test_a_restarted_follower_resumes_from_its_store(
    processes: NodeProcesses, leader: NodeProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "follower"
    follower = processes.follow(leader.url, data_dir)
    first_height = wait_same_head(follower, leader)
    assert follower.stop() == 0

    send_transfers(leader, rounds=2)
    restarted = processes.follow(leader.url, data_dir)
    assert restarted.get_json("/v1/head")["height"] >= first_height
    height = wait_same_head(restarted, leader)
    assert height > first_height
    assert_same_chain(restarted, leader, height)
    restarted.stop()


def tamper_state_root(db: sqlite3.Connection, height: int) -> None:
    (raw_header,) = db.execute("SELECT header FROM blocks WHERE height = ?", (height,)).fetchone()
    header = dataclasses.replace(decode_header(raw_header), state_root=bytes(32))
    db.execute(
        "UPDATE blocks SET header = ?, hash = ? WHERE height = ?",
        (encode_header(header), compute_block_hash(header), height),
    )


def tamper_transaction(db: sqlite3.Connection, height: int) -> None:
    (blob,) = db.execute("SELECT transactions FROM blocks WHERE height = ?", (height,)).fetchone()
    transactions = list(decode_transactions(blob))
    first = transactions[0]
    # A transfer ends with its amount (u64) and the signature: flip the amount's low bit.
    transactions[0] = first[:-65] + bytes([first[-65] ^ 1]) + first[-64:]
    db.execute(
        "UPDATE blocks SET transactions = ? WHERE height = ?",
        (encode_transactions(tuple(transactions)), height),
    )


@pytest.mark.parametrize(
    ("tamper", "code", "reason"),
    [
        (tamper_state_root, 1302, "state root"),
        (tamper_transaction, 1301, "transactions root does not match"),
    ],
    ids=["state root", "transaction bytes"],
)
def test_a_follower_served_a_tampered_block_stops_with_a_coded_error(
    processes: NodeProcesses,
    leader: NodeProcess,
    tmp_path: Path,
    tamper: Callable[[sqlite3.Connection, int], None],
    code: int,
    reason: str,
) -> None:
    # A copy of the leader's chain (SQLite's online backup: consistent while it runs) with
    # one block altered, served by a standalone node that never checks its old blocks.
    copy_dir = tmp_path / "tampered"
    copy_dir.mkdir()
    source = sqlite3.connect(leader.data_dir / "node.db")
    copy = sqlite3.connect(copy_dir / "node.db")
    source.backup(copy)
    source.close()
    tamper(copy, TAMPERED_HEIGHT)
    copy.commit()
    copy.close()
    liar = processes.run(copy_dir, dev=False)

    follower = processes.follow(liar.url, tmp_path / "follower", wait_healthy=False)

    wait_for(lambda: not follower.is_running(), 30, "the follower to stop")
    assert follower.process.returncode != 0
    stderr = follower.stderr()
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error[")]
    assert len(error_lines) == 1, stderr
    assert error_lines[0].startswith(f"error[{code}]: block {TAMPERED_HEIGHT}")
    assert reason in error_lines[0]
    # Nothing from the tampered block on was applied; what came before it was kept.
    store = Store(tmp_path / "follower" / "node.db")
    assert store.get_head_header().height == TAMPERED_HEIGHT - 1
    assert store.load_state().state_root == store.get_head_header().state_root
    store.close()


# --- a leader of another chain, a malformed block, the forwarded set ---------------------------


def follow_pinned(
    processes: NodeProcesses, leader_url: str, data_dir: Path, genesis: Path | None
) -> NodeProcess:
    args = ["node", "follow", "--leader", leader_url, "--data-dir", str(data_dir)]
    if genesis is not None:
        args += ["--genesis", str(genesis)]
    return processes.start(args, data_dir, wait_healthy=False)


def assert_stops_with(follower: NodeProcess, code: int) -> str:
    wait_for(lambda: not follower.is_running(), 30, "the follower to stop")
    assert follower.process.returncode != 0
    stderr = follower.stderr()
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error[")]
    assert len(error_lines) == 1, stderr
    assert error_lines[0].startswith(f"error[{code}]: "), stderr
    return error_lines[0]


@pytest.fixture(scope="module")
def other_chain(
    processes: NodeProcesses, leader: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> NodeProcess:
    """A leader of another chain: the same genesis but for its chain id."""
    genesis = leader.get_json("/v1/genesis") | {"chain_id": "agora-other"}
    path = tmp_path_factory.mktemp("other") / "genesis.json"
    path.write_text(json.dumps(genesis))
    return processes.run(path.parent / "node", dev=False, genesis=path)


def test_a_follower_refuses_a_leader_of_another_genesis(
    processes: NodeProcesses, leader: NodeProcess, other_chain: NodeProcess, tmp_path: Path
) -> None:
    # Pinned with --genesis: the leader's genesis is checked before any block is read.
    pinned = tmp_path / "genesis.json"
    pinned.write_text(json.dumps(leader.get_json("/v1/genesis")))
    follower = follow_pinned(processes, other_chain.url, tmp_path / "pinned", pinned)
    line = assert_stops_with(follower, 3044)
    assert "agora-other" in line
    store = Store(tmp_path / "pinned" / "node.db")
    assert store.get_head_header().height == 0  # its genesis recorded, no block read
    store.close()

    # Pinned by its store: it followed the first leader, then is pointed at the other chain.
    recorded = tmp_path / "recorded"
    first = processes.follow(leader.url, recorded)
    height = wait_same_head(first, leader)
    assert first.stop() == 0
    follower = follow_pinned(processes, other_chain.url, recorded, None)
    assert_stops_with(follower, 3044)
    store = Store(recorded / "node.db")
    assert store.get_head_header().height == height  # nothing of the other chain applied
    assert store.get_genesis() == leader.get_json("/v1/genesis")
    store.close()

    # The right genesis pinned: it follows.
    follower = follow_pinned(processes, leader.url, tmp_path / "right", pinned)
    wait_for(lambda: _healthy(follower), 30, "/health")
    wait_same_head(follower, leader)
    follower.stop()


def _healthy(node: NodeProcess) -> bool:
    return node.is_running() and node.get("/health").status == 200


class FakeLeader(ThreadingHTTPServer):
    """A leader on loopback that answers its genesis, then a block that does not decode."""

    genesis: bytes = b"{}"
    blocks: bytes = b"{}"


class FakeLeaderHandler(BaseHTTPRequestHandler):
    server: FakeLeader

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = self.server.genesis if self.path == "/v1/genesis" else self.server.blocks
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize(
    "blocks",
    [
        {"blocks": [{"header": {"height": "one"}, "transactions": []}]},
        {"blocks": [{"header": {}, "transactions": ["0xzz"]}]},
        {"blocks": "none"},
        {"no blocks": []},
    ],
    ids=["bad header", "bad transaction", "not a list", "missing"],
)
def test_a_follower_served_a_malformed_block_halts_with_a_coded_error(
    processes: NodeProcesses, leader: NodeProcess, tmp_path: Path, blocks: dict[str, object]
) -> None:
    server = FakeLeader(("127.0.0.1", 0), FakeLeaderHandler)
    server.genesis = json.dumps(leader.get_json("/v1/genesis")).encode()
    server.blocks = json.dumps(blocks).encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        follower = follow_pinned(processes, url, tmp_path / "follower", None)
        line = assert_stops_with(follower, 3045)
        assert "from 1" in line
    finally:
        server.shutdown()
        server.server_close()


def test_a_followers_forwarded_set_is_bounded(leader: NodeProcess, tmp_path: Path) -> None:
    """Forwarded transactions that no pulled block includes (the follower here pulls none)
    are forgotten oldest first beyond ``max_forwarded``; the newest are still pending."""
    bound = 3

    async def forward_six() -> tuple[list[str], list[str]]:
        store = Store(tmp_path / "node.db")
        node = Node(
            NodeConfig(data_dir=tmp_path, max_forwarded=bound),
            store,
            store.initialize(leader.get_json("/v1/genesis")),
        )
        hashes = []
        try:
            async with NodeClient(leader.url) as client:
                node.set_forwarder(client.submit)
                sender = KEYS[6]
                first = leader.account(sender.address)["next_nonce"]
                recipient = make_key("bounded").address
                for nonce in range(first, first + 6):
                    raw = sign_transfer(sender, recipient, 5, nonce)
                    (tx_hash,) = await node.submit([raw])
                    hashes.append(hex_of(tx_hash))
            kept = [hex_of(tx_hash) for tx_hash in node.forwarded]
        finally:
            node.close()
            store.close()
        return hashes, kept

    hashes, kept = asyncio.run(forward_six())
    assert kept == hashes[-bound:]
    for tx_hash in hashes:
        assert leader.wait_included(tx_hash)["receipt"]["success"]

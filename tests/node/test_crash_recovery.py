"""Crash safety: a node SIGKILLed while it applies blocks restarts with nothing lost.

Several clients submit signed transfers continuously to a node that seals a block as soon
as anything waits; the node is killed (SIGKILL, no chance to clean up) at five different
moments, each the instant a submission is acknowledged (so that batch is being admitted or
applied), and restarted on the same data directory each time. Then:

- in the dead node's store, every acknowledged transaction is in a block or pending;
- it starts, at a head no lower than any head a client saw before the kill;
- replaying its stored blocks on a fresh genesis state in this process gives every stored
  state root, and the root the node serves;
- no height is missing, no transaction is in two blocks, every receipt succeeded (a block
  applied twice, or a lost one, would leave a nonce gap and failed receipts);
- every transaction whose submission was acknowledged (202) is in a block.

The same holds for single-transaction requests, which the node commits in groups (one disk
flush for many concurrent requests), killed at seeded random instants rather than at an
acknowledgement: a request is answered 202 only once its group is on disk.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from node_helpers import (
    DevKey,
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    hex_of,
    make_key,
    sign_transfer,
    wait_no_pending,
)

from agora.node.store import Store
from agora.protocol.genesis import create_genesis_state
from agora.protocol.invariants import check_invariants
from agora.protocol.transactions import compute_transaction_hash
from agora.protocol.transition import apply_block

SENDERS = get_dev_keys()[:6]
RECIPIENTS = [make_key(f"crash-{i}").address for i in range(5)]
BATCH = 20
# Seconds of load before each SIGKILL: early (the restarted node is still re-proposing its
# pending pool), and later, with many blocks behind it.
KILL_AFTER_SECONDS = (0.3, 0.6, 0.8, 1.1, 1.5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[NodeProcesses]:
    started = NodeProcesses(tmp_path / "logs")
    yield started
    started.stop_all()


@dataclass
class Killer:
    """SIGKILLs the node the instant a submission is acknowledged, once armed: the node is
    then admitting or applying that very batch, the moment a crash must not corrupt."""

    pid: int
    armed: bool = False
    killed: bool = False

    def on_acknowledged(self) -> None:
        if self.armed and not self.killed:
            os.kill(self.pid, signal.SIGKILL)
            self.killed = True


async def submit_continuously(
    session: aiohttp.ClientSession,
    url: str,
    sender: DevKey,
    acknowledged: set[str],
    killer: Killer,
    batch: int = BATCH,
) -> None:
    """Requests of ``batch`` transfers, each after the previous one's 202, until the node
    dies; a single transfer goes as ``{"transaction": ...}``."""
    async with session.get(f"{url}/v1/accounts/{sender.address}") as response:
        nonce = (await response.json())["next_nonce"]
    while True:
        raws = [
            sign_transfer(sender, RECIPIENTS[(nonce + i) % len(RECIPIENTS)], 1 + i, nonce + i)
            for i in range(batch)
        ]
        items = [{"raw": hex_of(raw)} for raw in raws]
        body = {"transaction": items[0]} if batch == 1 else {"transactions": items}
        try:
            async with session.post(f"{url}/v1/transactions", json=body) as response:
                if response.status == 202:
                    acknowledged.update(hex_of(compute_transaction_hash(raw)) for raw in raws)
                    killer.on_acknowledged()
                assert response.status == 202, await response.read()
        except (aiohttp.ClientError, TimeoutError):
            return
        nonce += batch


async def watch_head(session: aiohttp.ClientSession, url: str, heights: list[int]) -> None:
    while True:
        try:
            async with session.get(f"{url}/v1/head") as response:
                heights.append((await response.json())["height"])
        except (aiohttp.ClientError, TimeoutError):
            return
        await asyncio.sleep(0.02)


async def load_then_kill(
    node: NodeProcess,
    acknowledged: set[str],
    seconds: float,
    batches: tuple[int, ...] = (BATCH,) * len(SENDERS),
    at_acknowledgement: bool = True,
) -> list[int]:
    """Submit from every sender (``batches[i]`` transfers per request for sender i) for
    ``seconds``, then SIGKILL the node: at the next 202, or at once."""
    heights: list[int] = []
    killer = Killer(node.pid)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks = [
            asyncio.ensure_future(
                submit_continuously(session, node.url, key, acknowledged, killer, batch)
            )
            for key, batch in zip(SENDERS, batches, strict=True)
        ]
        tasks.append(asyncio.ensure_future(watch_head(session, node.url, heights)))
        await asyncio.sleep(seconds)
        killer.armed = True
        if not at_acknowledgement:
            killer.on_acknowledged()
        await asyncio.gather(*tasks)
    assert killer.killed
    node.kill()  # reaps the process
    return heights


def check_acknowledged_are_durable(data_dir: Path, acknowledged: set[str]) -> int:
    """In the dead node's store, every acknowledged transaction is in a block or pending.

    Returns how many were pending: those must then survive the restart.
    """
    store = Store(data_dir / "node.db")
    try:
        pending = {hex_of(compute_transaction_hash(raw)) for raw in store.list_pending()}
        for tx_hash in acknowledged - pending:
            assert store.get_receipt(bytes.fromhex(tx_hash[2:])) is not None, tx_hash
        return len(pending & acknowledged)
    finally:
        store.close()


@pytest.mark.slow
def test_a_node_killed_while_applying_blocks_loses_nothing_and_applies_nothing_twice(
    processes: NodeProcesses, tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    acknowledged: set[str] = set()
    waiting: list[int] = []
    node = processes.run(data_dir)
    for seconds in KILL_AFTER_SECONDS:
        heights = asyncio.run(load_then_kill(node, acknowledged, seconds))
        assert heights and heights[-1] > heights[0], "no block was applied under load"
        assert node.process.returncode == -signal.SIGKILL
        waiting.append(check_acknowledged_are_durable(data_dir, acknowledged))

        node = processes.run(data_dir)

        assert node.get_json("/health")["status"] == "ok"
        assert node.get_json("/v1/head")["height"] >= max(heights)
    assert sum(waiting) > 0, "no kill left an acknowledged transaction waiting"
    check_every_acknowledged_included_once(node, data_dir, acknowledged)


@pytest.mark.slow
def test_single_and_batched_submissions_survive_a_kill_at_random_instants(
    processes: NodeProcesses, tmp_path: Path
) -> None:
    """Four senders post one transfer per request, two post batches; three SIGKILLs at
    seeded random instants, whatever the node is doing then."""
    data_dir = tmp_path / "node"
    acknowledged: set[str] = set()
    rng = random.Random(20261202)
    batches = (1, 1, 1, 1, BATCH, BATCH)
    node = processes.run(data_dir)
    for _ in range(3):
        seconds = rng.uniform(0.2, 1.5)
        heights = asyncio.run(
            load_then_kill(node, acknowledged, seconds, batches, at_acknowledgement=False)
        )
        assert node.process.returncode == -signal.SIGKILL
        check_acknowledged_are_durable(data_dir, acknowledged)

        node = processes.run(data_dir)

        assert node.get_json("/v1/head")["height"] >= max(heights, default=0)
    check_every_acknowledged_included_once(node, data_dir, acknowledged)


def check_every_acknowledged_included_once(
    node: NodeProcess, data_dir: Path, acknowledged: set[str]
) -> None:
    """Drain the restarted node, stop it, and replay its store from genesis."""
    wait_no_pending(node, timeout=60)
    served_head = node.get_json("/v1/head")
    assert node.stop() == 0

    store = Store(data_dir / "node.db")
    try:
        head = store.get_head_header()
        assert hex_of(head.state_root) == served_head["state_root"]
        state = create_genesis_state(store.get_genesis())
        included: Counter[str] = Counter()
        for height in range(1, head.height + 1):
            block = store.get_block(height)
            assert block is not None, f"block {height} is missing"
            applied = apply_block(state, block)  # checks the parent hash and the state root
            assert applied.receipts == store.get_receipts(height)
            failed = [r for r in applied.receipts if not r.success]
            assert not failed, f"block {height}: {failed[0].message}"
            included.update(hex_of(compute_transaction_hash(raw)) for raw in block.transactions)
        assert store.get_block(head.height + 1) is None
        assert state.state_root == head.state_root
        assert store.load_state().state_root == state.state_root
        check_invariants(state)
        assert included and max(included.values()) == 1
        assert acknowledged <= set(included), f"{len(acknowledged - set(included))} lost"
        assert store.list_pending() == []
    finally:
        store.close()

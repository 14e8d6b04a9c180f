"""A validator's weights rate every miner it can reach before it commits them.

Weights count an epoch after they are committed, so a commit that leaves out a miner costs
that miner an epoch of pay. On a real dev node: a miner that serves (at an address where
nothing listens, so its challenge fails fast and scores 0) and one registered but still
loading its model (no endpoint, no stake).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from node_helpers import NodeProcess, NodeProcesses
from test_validator_without_node import (
    COLDKEY,
    NETUID,
    find_dead_url,
    make_validator,
    set_up_subnet,
    submit,
)

from agora.client.client import NodeClient
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import Register, Serve
from agora.validator.validator import FIRST_COMMIT_PATIENCE_S
from agora.wallet.keys import Keypair

LOADING = Keypair(hashlib.sha256(b"agora-first-commit-test:loading").digest())
LATE = Keypair(hashlib.sha256(b"agora-first-commit-test:late").digest())
VALIDATOR = Keypair(hashlib.sha256(b"agora-first-commit-test:validator").digest())


async def register_loading(node: NodeProcess, miner: Keypair) -> None:
    await submit(node, COLDKEY, Register(netuid=NETUID, hotkey=Address(miner.public_key)))
    funds = Transfer(recipient=Address(miner.public_key), amount=BASE_UNITS_PER_AGR)
    await submit(node, COLDKEY, funds)


async def scenario(node: NodeProcess, data_dir: Path) -> list[tuple[str, bool]]:
    seen: list[tuple[str, bool]] = []
    async with NodeClient(node.url) as client:
        validator = make_validator(client, VALIDATOR, data_dir)

        async def check(moment: str) -> None:
            graph = await client.get_metagraph(NETUID)
            seen.append((moment, validator.rates_every_miner(graph)))

        try:
            await validator.run_round()
            await check("a miner still loading")
            await submit(node, LOADING, Serve(netuid=NETUID, endpoint=find_dead_url()))
            await check("it serves, not yet challenged")
            await validator.run_round()
            await check("every miner challenged")
            await register_loading(node, LATE)
            await check("another one loading")
            validator.started -= FIRST_COMMIT_PATIENCE_S
            await check("after the patience")
            validator.started += FIRST_COMMIT_PATIENCE_S
            validator.memory.last_commit_epoch = 3
            await check("after a first commit")
        finally:
            await validator.close()
    return seen


def test_the_first_commit_waits_for_loading_miners_and_every_commit_for_unscored_ones(
    tmp_path: Path,
) -> None:
    processes = NodeProcesses(tmp_path / "logs")
    try:
        node = processes.run(tmp_path / "node")
        asyncio.run(set_up_subnet(node))
        asyncio.run(register_loading(node, LOADING))
        seen = asyncio.run(scenario(node, tmp_path / "validator"))
    finally:
        processes.stop_all()
    assert seen == [
        ("a miner still loading", False),
        ("it serves, not yet challenged", False),
        ("every miner challenged", True),
        ("another one loading", False),
        ("after the patience", True),
        ("after a first commit", True),
    ]

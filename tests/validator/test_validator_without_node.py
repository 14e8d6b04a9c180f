"""A validator's round while its node does not answer (killed, restarting): the round
challenges the miners of the last metagraph it read, and the validator goes on.

One dev node process on loopback with an embedding subnet and a miner serving at an address
where nothing listens (its challenges fail fast and score 0). The validator reads the
metagraph once, then the node is killed and the next round must still run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from node_helpers import DevKey, NodeProcess, NodeProcesses, get_dev_keys

from agora.client.client import NodeClient
from agora.client.transactions import send_transaction
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register, Serve
from agora.tasks.registry import get_task
from agora.validator.validator import Validator, ValidatorConfig
from agora.wallet.keys import Keypair

DEV = get_dev_keys()
OWNER, COLDKEY = DEV[0], DEV[1]
NETUID = 1
MINER = Keypair(hashlib.sha256(b"agora-validator-without-node-test:miner").digest())
VALIDATOR = Keypair(hashlib.sha256(b"agora-validator-without-node-test:validator").digest())


async def submit(node: NodeProcess, sender: DevKey | Keypair, body: Any) -> None:
    async with NodeClient(node.url) as client:
        tx_hash = await send_transaction(
            client, public_key=sender.public_key, sign=sender.sign, body=body
        )
        status = await client.wait_for_transaction(tx_hash)
    assert status["receipt"]["success"], status


def find_dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def set_up_subnet(node: NodeProcess) -> None:
    """Subnet 1 with the miner registered, funded and serving at a dead address."""
    create = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    await submit(node, OWNER, create)
    await submit(node, COLDKEY, Register(netuid=NETUID, hotkey=Address(MINER.public_key)))
    funds = Transfer(recipient=Address(MINER.public_key), amount=BASE_UNITS_PER_AGR)
    await submit(node, COLDKEY, funds)
    await submit(node, MINER, Serve(netuid=NETUID, endpoint=find_dead_url()))


def make_validator(client: NodeClient, hotkey: Keypair, data_dir: Path) -> Validator:
    """A validator of the embedding subnet on ``client``'s node, ready for rounds (its task
    set, no reference model loaded: every challenge here fails before scoring)."""
    config = ValidatorConfig(
        node_url=client.base_url,
        netuid=NETUID,
        hotkey=hotkey,
        load_coldkey=lambda: hotkey,
        confirm=lambda price: False,
        data_dir=data_dir,
    )
    validator = Validator(config, client)
    validator.task = get_task("embedding")
    return validator


def test_a_round_goes_on_with_the_last_metagraph_when_the_node_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processes = NodeProcesses(tmp_path / "logs")
    try:
        node = processes.run(tmp_path / "node")
        asyncio.run(set_up_subnet(node))

        async def rounds() -> tuple[list[int], list[int]]:
            async with NodeClient(node.url) as client:
                validator = make_validator(client, VALIDATOR, tmp_path / "validator")
                try:
                    before = [o.uid for o in await validator.run_round()]
                    node.kill()
                    after = [o.uid for o in await validator.run_round()]
                finally:
                    await validator.close()
            return before, after

        with caplog.at_level(logging.WARNING, logger="agora.validator"):
            before, after = asyncio.run(rounds())
    finally:
        processes.stop_all()
    assert before == after == [0]
    assert "metagraph not refreshed" in caplog.text and "error[3091]" in caplog.text

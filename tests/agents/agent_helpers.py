"""Helpers for the agents tests: a dev node with a subnet, funded keys, and services served
in the test's own event loop.

The node runs in its own process (a block as soon as a transaction waits). Services and
buyers run in the test's event loop against it, over real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agora.agents.decorator import ServiceDefinition
from agora.agents.server import ServeConfig, ServiceServer
from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.node.devchain import compute_dev_seed
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet
from agora.wallet.keys import Keypair

AGR = BASE_UNITS_PER_AGR
OWNER = Keypair(compute_dev_seed("dev0"))
BUYER = Keypair(compute_dev_seed("dev1"))
FILLER = Keypair(compute_dev_seed("dev7"))


def make_keypair(name: str) -> Keypair:
    return Keypair(hashlib.sha256(f"agora-agents-test:{name}".encode()).digest())


SINK = make_keypair("sink")


async def send(client: NodeClient, key: Keypair, body: Any) -> dict[str, Any]:
    return await submit_and_wait(client, key, body, type(body).__name__)


async def create_subnet(client: NodeClient) -> int:
    body = CreateSubnet(task_kind="custom", task_config="{}", owner_hotkey=NO_HOTKEY)
    await send(client, OWNER, body)
    return max(s["netuid"] for s in (await client.request("GET", "/v1/subnets"))["subnets"])


async def fund(client: NodeClient, key: Keypair, amount: int = 20 * AGR) -> None:
    await send(client, OWNER, Transfer(recipient=Address(key.public_key), amount=amount))


async def advance(client: NodeClient, blocks: int) -> None:
    """Seal ``blocks`` blocks (the dev node seals one per waiting transaction)."""
    for _ in range(blocks):
        await send(client, FILLER, Transfer(recipient=Address(SINK.public_key), amount=1))


async def get_balance(client: NodeClient, key: Keypair) -> int:
    return int((await client.get_account(key.address))["balance"])


async def get_nonce(client: NodeClient, key: Keypair) -> int:
    return int((await client.get_account(key.address))["next_nonce"])


@asynccontextmanager
async def serving(
    definition: ServiceDefinition,
    hotkey: Keypair,
    node_url: str,
    netuid: int,
    **settings: Any,
) -> AsyncIterator[ServiceServer]:
    """A service registered and served until the block ends; then stopped (claims sent)."""
    client = NodeClient(node_url)
    config = ServeConfig(node_url=node_url, netuid=netuid, **settings)
    server = ServiceServer(definition, hotkey, config, client)
    stop = asyncio.Event()
    try:
        await server.start()
        task = asyncio.create_task(server.run(stop))
        try:
            yield server
        finally:
            stop.set()
            await task
    finally:
        await server.stop()
        await client.close()

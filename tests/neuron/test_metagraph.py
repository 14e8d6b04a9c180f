"""Who may call: a neuron server checks callers against the metagraph of a real node.

One dev node process on loopback (blocks sealed as soon as a transaction waits). A subnet is
created and hotkeys registered through real transactions; the server's ``MetagraphView``
reads the node's metagraph. A registered caller is served with its stake and uid, an
unregistered one is refused (3406) except on a public route, and a hotkey that registers
while the server runs is served once the view has refreshed. A view whose node goes away
keeps its last good state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from node_helpers import DevKey, NodeProcess, NodeProcesses, get_dev_keys

from agora.client.client import NodeClient
from agora.client.transactions import send_transaction
from agora.neuron.client import NeuronClient
from agora.neuron.errors import RemoteError
from agora.neuron.metagraph import MetagraphView
from agora.neuron.server import Caller, NeuronServer
from agora.protocol.address import Address
from agora.protocol.staking import AddStake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register
from agora.wallet.keys import Keypair

DEV = get_dev_keys()
OWNER, COLDKEY = DEV[0], DEV[1]
STAKE = 5_000
NETUID = 1


def make_keypair(name: str) -> Keypair:
    return Keypair(hashlib.sha256(f"agora-neuron-metagraph-test:{name}".encode()).digest())


MINER = make_keypair("miner")
VALIDATOR = make_keypair("validator")
NEWCOMER = make_keypair("newcomer")


async def submit(node: NodeProcess, sender: DevKey, body: Any) -> None:
    async with NodeClient(node.url) as client:
        tx_hash = await send_transaction(
            client, public_key=sender.public_key, sign=sender.sign, body=body
        )
        status = await client.wait_for_transaction(tx_hash)
    assert status["receipt"]["success"], status


async def register(node: NodeProcess, hotkey: Keypair) -> None:
    await submit(node, COLDKEY, Register(netuid=NETUID, hotkey=Address(hotkey.public_key)))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Subnet 1 with the miner and the validator registered, the validator staked."""
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        node = processes.run(tmp_path_factory.mktemp("node"))

        async def set_up() -> None:
            create = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
            await submit(node, OWNER, create)
            await register(node, MINER)
            await register(node, VALIDATOR)
            await submit(
                node, COLDKEY, AddStake(hotkey=Address(VALIDATOR.public_key), amount=STAKE)
            )

        asyncio.run(set_up())
        yield node
    finally:
        processes.stop_all()


async def wait_until(condition: Callable[[], bool], bound_s: float = 30.0) -> None:
    """Poll until ``condition`` holds; the bound only stops a broken test from hanging."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.01)


def test_the_view_reads_the_subnet_from_the_node(node: NodeProcess) -> None:
    async def scenario() -> MetagraphView:
        async with NodeClient(node.url) as client:
            view = MetagraphView(node.url, NETUID, client=client)
            await view.refresh()
        return view

    view = asyncio.run(scenario())
    assert view.block >= 4 and view.subnet["task_kind"] == "embedding"
    assert [(n.uid, n.hotkey) for n in view.neurons[:2]] == [
        (0, MINER.public_key),
        (1, VALIDATOR.public_key),
    ]
    validator = view.lookup(VALIDATOR.public_key)
    assert validator is not None and validator.stake == STAKE
    assert validator.coldkey == COLDKEY.public_key and validator.endpoint == ""
    assert view.lookup(make_keypair("stranger").public_key) is None


def test_only_registered_callers_are_served_except_on_public_routes(node: NodeProcess) -> None:
    async def scenario() -> list[Caller]:
        served: list[Caller] = []

        async def work(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            served.append(caller)
            return {"ok": True}

        view = MetagraphView(node.url, NETUID)
        await view.refresh()
        server = NeuronServer(MINER, view)
        server.add_route("/work", work)
        server.add_route("/open", work, public=True)
        url = await server.start()
        try:
            async with NeuronClient(VALIDATOR) as validator, NeuronClient(NEWCOMER) as newcomer:
                await validator.call(url, MINER.public_key, "/work", {})
                with pytest.raises(RemoteError) as refused:
                    await newcomer.call(url, MINER.public_key, "/work", {})
                assert (refused.value.code, refused.value.status) == (3406, 403)
                await newcomer.call(url, MINER.public_key, "/open", {})

                # The newcomer registers while the server runs; the view catches up.
                syncing = asyncio.create_task(view.run(0.05))
                await register(node, NEWCOMER)
                await wait_until(lambda: view.lookup(NEWCOMER.public_key) is not None)
                await newcomer.call(url, MINER.public_key, "/work", {})
                syncing.cancel()
        finally:
            await server.stop()
        return served

    served = asyncio.run(scenario())
    staked, public, registered = served
    assert (staked.hotkey, staked.stake) == (VALIDATOR.public_key, STAKE)
    assert staked.neuron is not None and staked.neuron.uid == 1
    assert (public.hotkey, public.stake, public.neuron) == (NEWCOMER.public_key, 0, None)
    assert registered.neuron is not None and registered.neuron.uid == 2


def test_a_view_keeps_its_last_state_when_the_node_goes_away(
    node: NodeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    async def scenario() -> MetagraphView:
        view = MetagraphView(node.url, NETUID)
        await view.refresh()
        view.node_url = dead_url
        syncing = asyncio.create_task(view.run(0.01))
        await asyncio.sleep(0.1)  # several failed refreshes
        assert not syncing.done()
        syncing.cancel()
        return view

    with caplog.at_level(logging.WARNING, logger="agora.neuron"):
        view = asyncio.run(scenario())
    assert len(view.neurons) >= 2 and view.lookup(VALIDATOR.public_key) is not None
    assert "error[3091]" in caplog.text  # NodeUnreachable, logged, not raised

"""``NodeClient`` against a real node process: a method for every route, answers equal to the
API's own JSON, and blocks as protocol values.

The last test runs its own node and reads its request counters: every route the node serves
was reached through a client method. A route added to the node without a client
method (or without a call here) fails it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from node_helpers import (
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    make_key,
    parse_metrics,
    sign_transfer,
)

from agora.client.client import NodeApiError, NodeClient
from agora.client.participant import submit_and_wait
from agora.node.api import create_app
from agora.node.devchain import create_dev_genesis
from agora.node.node import Node, NodeConfig
from agora.node.store import Store
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.blocks import Block
from agora.protocol.channels import OpenChannel
from agora.protocol.errors import SubnetNotFound
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register
from agora.wallet.keys import Keypair

T = TypeVar("T")
OWNER = Keypair(bytes.fromhex(get_dev_keys(1)[0].seed_hex))
MINER = Keypair(b"\x07" * 32)
MINER_ADDRESS = Address(MINER.public_key)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        yield processes.run(tmp_path_factory.mktemp("dev"))
    finally:
        processes.stop_all()


def call(node: NodeProcess, work: Callable[[NodeClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with NodeClient(node.url) as client:
            return await work(client)

    return asyncio.run(run())


async def build_chain(client: NodeClient) -> dict[str, Any]:
    """A subnet with one registered hotkey and a channel paying it."""
    body = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    await submit_and_wait(client, OWNER, body, "creating a subnet")
    (subnet,) = await client.list_subnets()
    netuid = subnet["netuid"]
    register = Register(netuid=netuid, hotkey=Address(MINER.public_key))
    await submit_and_wait(client, OWNER, register, "registering")
    head = (await client.get_head())["height"]
    channel = OpenChannel(
        payee=Address(MINER.public_key), netuid=netuid, deposit=1_000, expiry=head + 100
    )
    status = await submit_and_wait(client, OWNER, channel, "opening a channel")
    return {"netuid": netuid, "height": status["height"]}


@pytest.fixture(scope="module")
def chain(node: NodeProcess) -> dict[str, Any]:
    return call(node, build_chain)


def test_subnet_metagraph_and_hotkey_answers_equal_the_api(
    node: NodeProcess, chain: dict[str, Any]
) -> None:
    netuid = chain["netuid"]

    async def read(client: NodeClient) -> tuple[Any, ...]:
        return (
            await client.list_subnets(),
            await client.get_subnet(netuid),
            await client.get_metagraph(netuid),
            await client.get_metagraph(netuid, matrices=True),
            await client.get_hotkey(MINER.address),
        )

    subnets, subnet, metagraph, matrices, hotkey = call(node, read)
    assert subnets == node.get_json("/v1/subnets")["subnets"]
    assert subnet == node.get_json(f"/v1/subnets/{netuid}")
    assert subnet["task_kind"] == "embedding"
    assert [n["hotkey"] for n in metagraph["neurons"]] == [MINER.address]
    assert "weights" not in metagraph["neurons"][0]
    assert matrices["neurons"][0]["weights"] == [] and matrices["neurons"][0]["bonds"] == []
    assert hotkey == node.get_json(f"/v1/hotkeys/{MINER.address}")
    assert hotkey["owner"] == OWNER.address and hotkey["subnets"] == [{"netuid": netuid, "uid": 0}]


def test_blocks_come_back_as_protocol_values(node: NodeProcess, chain: dict[str, Any]) -> None:
    async def read(client: NodeClient) -> tuple[list[Block], dict[str, Any], dict[str, Any]]:
        return (
            await client.list_blocks(0, 100),
            await client.get_block(chain["height"]),
            await client.get_genesis(),
        )

    blocks, block, genesis = call(node, read)
    assert [b.header.height for b in blocks] == list(range(len(blocks)))
    assert blocks[0].header.timestamp == genesis["timestamp"]
    included = blocks[chain["height"]]
    assert ["0x" + raw.hex() for raw in included.transactions] == block["transactions"]


def test_channels_by_id_and_by_party(node: NodeProcess, chain: dict[str, Any]) -> None:
    async def read(client: NodeClient) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        by_payer = await client.list_channels(payer=OWNER.address)
        return by_payer, await client.get_channel(by_payer[0]["id"])

    by_payer, channel = call(node, read)
    assert len(by_payer) == 1 and channel == by_payer[0]
    assert channel["payee"] == MINER.address and channel["deposit"] == 1_000


def test_unknown_subnet_is_a_coded_error(node: NodeProcess, chain: dict[str, Any]) -> None:
    with pytest.raises(NodeApiError) as raised:
        call(node, lambda client: client.get_subnet(999))
    assert raised.value.code == SubnetNotFound.code and raised.value.status >= 400


def test_the_block_stream_delivers_the_next_block(node: NodeProcess, chain: dict[str, Any]) -> None:
    sender = get_dev_keys(2)[1]
    payer = Keypair(bytes.fromhex(sender.seed_hex))

    async def watch(client: NodeClient) -> tuple[dict[str, Any], dict[str, Any]]:
        stream = client.stream_blocks()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)  # the stream is open before the transaction goes in
        body = Transfer(recipient=Address(make_key("stream").public_key), amount=5)
        status = await submit_and_wait(client, payer, body, "a transfer")
        event = await asyncio.wait_for(first, 30)
        await stream.aclose()
        return event, status

    event, status = call(node, watch)
    assert event["header"]["height"] == status["height"]
    assert [r["hash"] for r in event["receipts"]] == [status["receipt"]["hash"]]


def test_health_metrics_and_openapi(node: NodeProcess) -> None:
    async def read(client: NodeClient) -> tuple[dict[str, Any], str, dict[str, Any]]:
        return await client.get_health(), await client.get_metrics(), await client.get_openapi()

    health, metrics, openapi = call(node, read)
    assert health["status"] == "ok" and health["height"] >= 0
    assert parse_metrics(metrics)["agora_head_height"] >= 0
    assert openapi == node.get_json("/v1/openapi.json")


async def exercise_every_method(client: NodeClient) -> None:
    """One call of each NodeClient method, on a chain with a subnet and a channel."""
    await build_chain(client)
    (subnet,) = await client.list_subnets()
    netuid = subnet["netuid"]
    await client.get_subnet(netuid)
    await client.get_metagraph(netuid, matrices=True)
    await client.get_hotkey(MINER.address)
    (channel,) = await client.list_channels(payee=MINER.address)
    await client.get_channel(channel["id"])
    await client.list_blocks(0)
    await client.get_block((await client.get_head())["height"])
    await client.get_genesis()
    await client.get_openapi()
    await client.get_health()
    assert await client.list_services() == []
    with pytest.raises(NodeApiError):
        await client.get_service(b"\x01" * 32)
    assert await client.list_proposals(status="voting") == []
    with pytest.raises(NodeApiError):
        await client.get_proposal(0)
    assert "min_fee" in (await client.get_governance_params())["params"]
    assert (await client.get_treasury())["streams"] == []
    assert isinstance(await client.get_lineage(), dict)
    with pytest.raises(NodeApiError):
        await client.get_federated_model(b"\x02" * 32)
    with pytest.raises(NodeApiError):
        await client.get_federation(netuid)  # an embedding subnet federates nothing
    stream = client.stream_blocks()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)
    await client.wait_for_transaction(await client.faucet(make_key("faucet").address, 7))
    await asyncio.wait_for(first, 30)
    await stream.aclose()
    # The node counts a stream when it ends, which it sees at its next write: one more block.
    await client.wait_for_transaction(await client.faucet(make_key("faucet").address, 7))
    for _ in range(100):
        if "/v1/stream/blocks" in await client.get_metrics():
            break
        await asyncio.sleep(0.1)


def test_every_route_is_served_through_a_client_method(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.db")
    genesis = create_dev_genesis(1, 0)
    app = create_app(Node(NodeConfig(data_dir=tmp_path), store, store.initialize(genesis)))
    served = {
        route.resource.canonical
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    store.close()

    processes = NodeProcesses(tmp_path / "logs")
    try:
        # Not polled for /health by the helper: every request it counts comes from here.
        node = processes.start(
            ["node", "run", "--dev", "--data-dir", str(tmp_path / "dev"), "--block-time-ms", "0"],
            tmp_path / "dev",
            wait_healthy=False,
        )
        call(node, exercise_every_method)
        metrics = parse_metrics(call(node, lambda client: client.get_metrics()))
    finally:
        processes.stop_all()
    reached = set()
    for name, count in metrics.items():
        if name.startswith("agora_http_requests_total{") and count > 0:
            labels = dict(item.split("=", 1) for item in name[name.index("{") + 1 : -1].split(","))
            reached.add(labels["route"].strip('"'))
    assert served - reached == set(), "routes NodeClient does not reach"


def test_a_submission_right_after_the_node_restarted_is_acknowledged(tmp_path: Path) -> None:
    """The client's pooled connection still points at the killed node: the transaction is
    sent once more on a new connection instead of failing as unreachable. (aiohttp repeats
    reads by itself; a POST it leaves to the caller.)"""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = NodeProcesses(tmp_path / "logs")
    extra = ("--port", str(port))
    sender = get_dev_keys(2)[1]
    transfers = [sign_transfer(sender, MINER_ADDRESS, 1, nonce) for nonce in range(2)]

    async def scenario() -> list[bytes]:
        first = processes.run(tmp_path / "node", extra=extra)
        async with NodeClient(first.url) as client:
            hashes = await client.submit(transfers[:1])
            # Killed and started again while this loop is busy: the closed connection stays
            # in the pool, as when an operator restarts the node between two requests.
            first.kill()
            processes.run(tmp_path / "node", extra=extra)
            return hashes + await client.submit(transfers[1:])

    try:
        assert len(asyncio.run(scenario())) == 2
    finally:
        processes.stop_all()

"""`agora mcp` driven by the official MCP SDK's own client, over stdio and streamable HTTP.

A dev node runs in its own process, a service in the test's event loop, and `agora mcp` in a
subprocess paying from a wallet's hotkey. Shown: the service is listed as a tool with its
schema; arguments that break the schema are a tool error with code 3702 and pay nothing; 100
paid calls over stdio cost one channel open, the seller claims once, and the receipts the
bridge wrote add up to the claim, to the base unit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from agent_helpers import AGR, fund, get_balance, get_nonce, make_keypair, serving
from agent_helpers import create_subnet as create_test_subnet
from mcp.client.client import Client as McpClient
from mcp.client.stdio import StdioServerParameters
from node_helpers import NodeProcesses

from agora.agents import service
from agora.agents.decorator import get_definition
from agora.agents.errors import ArgumentsInvalid
from agora.client.client import NodeClient
from agora.protocol.channels import compute_claim_split
from agora.protocol.params import Params
from agora.wallet.keystore import KDF_PRESETS, Keystore

PRICE = 2_000_000
RUNS: list[str] = []


@service(name="reverse", price=PRICE, tags=("mcp-test",))
def reverse(text: str) -> str:
    """Reverse a text."""
    RUNS.append(text)
    return text[::-1]


@dataclass
class Setup:
    url: str
    netuid: int
    wallet_dir: Path


BUYER = make_keypair("mcp-buyer")
SELLER = make_keypair("mcp-seller")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    wallet_dir = tmp_path_factory.mktemp("wallets")
    keystore = Keystore(wallet_dir)
    keystore.create_wallet("buyer", "not used", kdf=KDF_PRESETS["minimum"])
    keystore.import_hotkey("buyer", "pay", BUYER.seed)
    try:
        node = processes.run(tmp_path_factory.mktemp("node"))

        async def prepare() -> Setup:
            async with NodeClient(node.url) as client:
                netuid = await create_test_subnet(client)
                await fund(client, SELLER)
                await fund(client, BUYER, 5 * AGR)
                return Setup(url=node.url, netuid=netuid, wallet_dir=wallet_dir)

        yield asyncio.run(prepare())
    finally:
        processes.stop_all()


def mcp_arguments(setup: Setup, *extra: str) -> list[str]:
    return [
        "-m",
        "agora",
        "mcp",
        "--wallet",
        "buyer",
        "--hotkey",
        "pay",
        "--wallet-dir",
        str(setup.wallet_dir),
        "--node",
        setup.url,
        "--tag",
        "mcp-test",
        *extra,
    ]


def test_a_hundred_paid_tool_calls_over_stdio(setup: Setup, tmp_path: Path) -> None:
    receipts_path = tmp_path / "receipts.jsonl"
    params = Params()

    async def scenario() -> None:
        async with NodeClient(setup.url) as node:
            buyer_before = await get_balance(node, BUYER)
            async with serving(get_definition(reverse), SELLER, setup.url, setup.netuid) as seller:
                seller_before = await get_balance(node, SELLER)
                nonce = await get_nonce(node, SELLER)
                server = StdioServerParameters(
                    command=sys.executable,
                    args=mcp_arguments(setup, "--receipts", str(receipts_path)),
                    env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
                )
                async with McpClient(server) as client:
                    tools = (await client.list_tools()).tools
                    (tool,) = [t for t in tools if t.name == "reverse"]
                    assert tool.input_schema == get_definition(reverse).input_schema
                    assert "0.002 AGR per call" in (tool.description or "")
                    RUNS.clear()
                    refused = await client.call_tool("reverse", {"text": 42})
                    assert refused.is_error
                    assert f"error[{ArgumentsInvalid.code}]" in refused.content[0].text
                    assert RUNS == []
                    for index in range(100):
                        result = await client.call_tool("reverse", {"text": f"call {index}"})
                        assert not result.is_error, result.content
                        assert result.structured_content == {"result": f"call {index}"[::-1]}
                assert len(RUNS) == 100
            assert await get_nonce(node, SELLER) == nonce + 1  # one claim
            receipts = [orjson.loads(line) for line in receipts_path.read_bytes().splitlines()]
            assert len(receipts) == 100
            (channel,) = await node.list_channels(payer=BUYER.address)
            assert channel["claimed"] == sum(r["cost"] for r in receipts) == 100 * PRICE
            assert {r["channel_id"] for r in receipts} == {channel["id"]}
            buyer_spent = buyer_before - await get_balance(node, BUYER)
            assert buyer_spent == channel["deposit"] + params.min_fee
            payee, _, _ = compute_claim_split(
                channel["claimed"], params.channel_fee_u16, params.channel_fee_validators_u16
            )
            assert await get_balance(node, SELLER) - seller_before == payee - params.min_fee
            assert seller.service_id.hex() in receipts[0]["service_id"]

    asyncio.run(scenario())


def test_tools_are_listed_over_streamable_http(setup: Setup) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        async with serving(get_definition(reverse), SELLER, setup.url, setup.netuid):
            process = subprocess.Popen(
                [sys.executable, *mcp_arguments(setup, "--http", str(port))],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                for _ in range(300):
                    try:
                        async with McpClient(f"http://127.0.0.1:{port}/mcp") as client:
                            tools = (await client.list_tools()).tools
                        break
                    except Exception:  # not listening yet
                        await asyncio.sleep(0.1)
                else:
                    pytest.fail("agora mcp --http never answered")
                assert [t.name for t in tools] == ["reverse"]
            finally:
                process.terminate()
                process.wait(timeout=10)

    asyncio.run(scenario())

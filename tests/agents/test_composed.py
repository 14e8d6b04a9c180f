"""An agent that composes: developer -> search agent -> embedding miner, paid and receipted at
every hop, with a real miner serving the real model.

A dev node and an `agora miner run` process (all-MiniLM-L6-v2, selling at 0.001/request)
run in their own processes; the search agent (``agora.agents.search``) and the developer's
``Client`` run in the test's event loop. One developer call pays the agent through the
developer's channel (the agent's signed answer is the receipt); the agent pays the miner
through its own channel (the miner's signed answer is the receipt, carried in the agent's
answer). When each seller stops it claims: both channels hold exactly what the receipts say.
The same miner also answers an MCP tool call through `agora mcp --gateway`: the gateway's
model listed as a tool, its answer carrying the gateway's receipt.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import AGR, OWNER, fund, make_keypair, send, serving
from mcp.client.client import Client as McpClient
from mcp.client.stdio import StdioServerParameters
from node_helpers import NodeProcesses, wait_for

from agora.agents import Client
from agora.agents.search import CORPUS, MinerBuyer, create_search_service
from agora.client.client import NodeClient
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet
from agora.wallet.keystore import KDF_PRESETS, Keystore

PASSWORD = "agora-composed-test"
MINER_HOTKEY: list[str] = []
MINER_PRICE = 1_000_000  # 0.001 AGR per request
AGENT_PRICE = 2_000_000  # the search agent's price


@pytest.mark.slow
def test_developer_agent_miner_every_hop_paid_and_receipted(tmp_path: Path) -> None:
    agent, developer = make_keypair("composed-agent"), make_keypair("composed-developer")
    keystore = Keystore(tmp_path / "wallets")
    miner_coldkey = keystore.create_wallet("miner", PASSWORD, kdf=KDF_PRESETS["minimum"])
    miner_hotkey = keystore.create_hotkey("miner", "default")
    processes = NodeProcesses(tmp_path / "logs")
    miner: subprocess.Popen[bytes] | None = None
    try:
        node = processes.run(tmp_path / "node")

        async def prepare() -> int:
            async with NodeClient(node.url) as client:
                body = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
                await send(client, OWNER, body)
                netuid = max(s["netuid"] for s in await client.list_subnets())
                for key in (agent, developer):
                    await fund(client, key, 20 * AGR)
                await send(
                    client,
                    OWNER,
                    Transfer(recipient=Address(miner_coldkey.public_key), amount=100 * AGR),
                )
                return netuid

        netuid = asyncio.run(prepare())
        log = (tmp_path / "miner.log").open("wb")
        miner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agora",
                "miner",
                "run",
                "--node",
                node.url,
                "--netuid",
                str(netuid),
                "--wallet",
                "miner",
                "--hotkey",
                "default",
                "--wallet-dir",
                str(tmp_path / "wallets"),
                "--price",
                "0.001/request",
                "--data-dir",
                str(tmp_path / "miner-data"),
                "--yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | {"AGORA_WALLET_PASSWORD": PASSWORD, "OMP_NUM_THREADS": "1"},
        )

        def miner_serving() -> bool:
            assert miner is not None and miner.poll() is None, (tmp_path / "miner.log").read_text()
            graph = node.get_json(f"/v1/subnets/{netuid}/metagraph")
            return any(n["endpoint"] for n in graph["neurons"])

        wait_for(miner_serving, 600, "the miner to publish its endpoint", poll=1.0)

        async def scenario() -> None:
            async with NodeClient(node.url) as client:
                buyer = MinerBuyer(client, agent, netuid, deposit_calls=100)
                definition = create_search_service(buyer, price="0.002")
                try:
                    async with serving(definition, agent, node.url, netuid) as server:
                        async with Client(
                            node_url=node.url, payer=developer, deposit_calls=10
                        ) as developer_client:
                            found = await developer_client.find(tag="search")
                            answer = await developer_client.call(
                                found, {"query": "how are miners paid for requests?", "top_k": 2}
                            )
                            (developer_channel,) = developer_client.get_channel_ids()
                            receipt = developer_client.receipts[-1]
                        assert server.get_earned()["served"] == AGENT_PRICE
                finally:
                    await buyer.close()
                # developer -> agent: the agent claimed what its signed answer acknowledged
                assert receipt.cost == AGENT_PRICE
                on_chain = await client.get_channel(developer_channel)
                assert on_chain["payee"] == agent.address
                assert on_chain["claimed"] == receipt.cumulative == AGENT_PRICE
                # agent -> miner: two paid calls (the corpus once, then the query)
                assert answer["hits"][0]["text"] == CORPUS[0]
                assert len(answer["hits"]) == 2
                upstream = answer["upstream"]
                assert upstream == buyer.receipts[-1].to_json()
                assert upstream["miner"] == miner_hotkey.address
                assert [r.cost for r in buyer.receipts] == [MINER_PRICE, MINER_PRICE]
                (miner_channel,) = await client.list_channels(payer=agent.address)
                assert miner_channel["id"] == upstream["channel_id"]
                assert miner_channel["payee"] == miner_hotkey.address
                MINER_HOTKEY.append(miner_hotkey.address)

        asyncio.run(scenario())
        check_gateway_models_over_mcp(tmp_path, node.url)
        miner.send_signal(signal.SIGTERM)  # the miner claims what it earned on its way out
        assert miner.wait(timeout=60) == 0

        async def settled() -> None:
            async with NodeClient(node.url) as client:
                (channel,) = await client.list_channels(payer=agent.address)
                assert channel["claimed"] == 2 * MINER_PRICE
                gateway = Keystore(tmp_path / "wallets").get_coldkey_address("gateway")
                (paid,) = await client.list_channels(payer=gateway)
                assert paid["claimed"] == MINER_PRICE  # the one MCP tool call

        asyncio.run(settled())
    finally:
        if miner is not None and miner.poll() is None:
            miner.kill()
            miner.wait()
        processes.stop_all()


def check_gateway_models_over_mcp(tmp_path: Path, node_url: str) -> None:
    """`agora gateway` from a wallet, and `agora mcp --gateway` listing its model as a tool."""
    keystore = Keystore(tmp_path / "wallets")
    coldkey = keystore.create_wallet("gateway", PASSWORD, kdf=KDF_PRESETS["minimum"])

    async def fund_gateway() -> None:
        async with NodeClient(node_url) as client:
            await send(client, OWNER, Transfer(recipient=Address(coldkey.public_key), amount=AGR))

    asyncio.run(fund_gateway())
    env = os.environ | {"AGORA_WALLET_PASSWORD": PASSWORD}
    wallets = ["--wallet", "gateway", "--wallet-dir", str(tmp_path / "wallets")]
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agora",
                "gateway",
                *wallets,
                "--node",
                node_url,
                "--port",
                "0",
                "--data-dir",
                str(tmp_path / "gateway"),
                "--deposit",
                "0.01",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def gateway_url() -> str | None:
            assert gateway.poll() is None, log_path.read_text()
            found = re.search(r"OpenAI API at (http://127\.0\.0\.1:\d+/v1)", log_path.read_text())
            return None if found is None else found.group(1)

        url = wait_for(gateway_url, 120, "the gateway to serve", poll=0.1)
        server = StdioServerParameters(
            command=sys.executable,
            args=["-m", "agora", "mcp", *wallets, "--node", node_url, "--gateway", url],
            env={"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "AGORA_WALLET_PASSWORD": PASSWORD},
        )

        async def call_tool() -> None:
            async with McpClient(server) as client:
                tools = {tool.name: tool for tool in (await client.list_tools()).tools}
                assert "embed-all-MiniLM-L6-v2" in tools, list(tools)
                refused = await client.call_tool("embed-all-MiniLM-L6-v2", {"text": "x"})
                assert refused.is_error and "error[3702]" in refused.content[0].text
                result = await client.call_tool("embed-all-MiniLM-L6-v2", {"input": "hello"})
                assert not result.is_error, result.content
                answer = result.structured_content["result"]
                assert [len(v) for v in answer["embeddings"]] == [384]
                assert answer["receipt"]["cost"] == MINER_PRICE
                assert answer["receipt"]["calls"][0]["miner"] == MINER_HOTKEY[0]

        asyncio.run(call_tool())
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=30)

"""An agent that composes: developer -> search agent -> embedding miner, paid and receipted at
every hop, with a real miner serving the real model.

A dev node and an `agora miner run` process (all-MiniLM-L6-v2, selling at 0.001/request)
run in their own processes; the search agent (``agora.agents.search``) and the developer's
``Client`` run in the test's event loop. One developer call pays the agent through the
developer's channel (the agent's signed answer is the receipt); the agent pays the miner
through its own channel (the miner's signed answer is the receipt, carried in the agent's
answer). When each seller stops it claims: both channels hold exactly what the receipts say.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import AGR, OWNER, fund, make_keypair, send, serving
from node_helpers import NodeProcesses, wait_for

from agora.agents import Client
from agora.agents.search import CORPUS, MinerBuyer, create_search_service
from agora.client.client import NodeClient
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet
from agora.wallet.keystore import KDF_PRESETS, Keystore

PASSWORD = "agora-composed-test"
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

        asyncio.run(scenario())
        miner.send_signal(signal.SIGTERM)  # the miner claims what it earned on its way out
        assert miner.wait(timeout=60) == 0

        async def settled() -> None:
            async with NodeClient(node.url) as client:
                (channel,) = await client.list_channels(payer=agent.address)
                assert channel["claimed"] == 2 * MINER_PRICE

        asyncio.run(settled())
    finally:
        if miner is not None and miner.poll() is None:
            miner.kill()
            miner.wait()
        processes.stop_all()

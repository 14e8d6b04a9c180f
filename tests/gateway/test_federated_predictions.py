"""A trained federated model in use: a miner serves it (its hash on chain with its endpoint),
the gateway sells its predictions as an Agora extension documented in its OpenAPI, receipts
name the model's hash, and a developer's paid requests pay the model's data contributors
their royalty, exactly, split by credit.

The chain is a real federated subnet trained round by round (``FederatedChain``), loaded into
a real node process that keeps sealing blocks; the miner and the gateway are the real ones,
on loopback HTTP, run in this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import numpy as np
from federated_helpers import CONTRIBUTOR_COLD, CONTRIBUTORS, KEYS, PAYER, SERVER, FederatedChain
from node_helpers import NodeProcess, NodeProcesses
from protocol_helpers import make_genesis

from agora.client.client import NodeClient
from agora.gateway.config import GatewayConfig
from agora.gateway.errors import BadRequest
from agora.gateway.server import run_gateway
from agora.miner.miner import MinerConfig, run_miner
from agora.node.store import Store
from agora.protocol.address import encode_address
from agora.protocol.data import compute_royalty_split, get_federation, get_model_lineage
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.transition import apply_block
from agora.tasks import federated
from agora.wallet.keys import Keypair

ROUNDS = 2
REQUESTS = 5
PRICE = "0.001/request"
TIMEOUT_S = 120.0


def start_node(network: FederatedChain, processes: NodeProcesses, root: Path) -> NodeProcess:
    """A node holding the trained chain, sealing every new transaction at once."""
    genesis = make_genesis(KEYS)
    genesis_path = root / "genesis.json"
    genesis_path.write_text(json.dumps(genesis))
    data_dir = root / "node"
    data_dir.mkdir()
    store = Store(data_dir / "node.db")
    state = store.initialize(genesis)
    for block in network.chain.blocks:
        store.commit_block(apply_block(state, block))
    store.close()
    return processes.run(data_dir, dev=False, genesis=genesis_path)


async def until(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def test_a_paid_prediction_names_the_model_and_pays_its_contributors(tmp_path: Path) -> None:
    network = FederatedChain()
    network.commit_data()
    network.start()
    network.run_rounds(ROUNDS)
    model_hash = get_federation(network.chain.state, network.netuid).model_hash
    credits = get_model_lineage(network.chain.state, model_hash).credits
    processes = NodeProcesses(tmp_path / "node-logs")
    try:
        node = start_node(network, processes, tmp_path)
        asyncio.run(exercise(network, node.url, tmp_path, model_hash, credits))
    finally:
        processes.stop_all()


async def exercise(
    network: FederatedChain,
    node_url: str,
    root: Path,
    model_hash: bytes,
    credits: tuple[tuple[bytes, int], ...],
) -> None:
    netuid = network.netuid
    server = Keypair(bytes(SERVER.signing_key))
    miner_stop, gateway_stop = asyncio.Event(), asyncio.Event()
    miner = asyncio.create_task(
        run_miner(
            MinerConfig(
                node_url=node_url,
                netuid=netuid,
                hotkey=server,
                load_coldkey=lambda: Keypair(bytes(CONTRIBUTOR_COLD.signing_key)),
                confirm=lambda cost: True,
                serve_model=True,
                price=PRICE,
                data_dir=root / "miner",
                claim_interval_s=3_600.0,  # one claim, when it stops
            ),
            miner_stop,
        )
    )
    gateway_task: asyncio.Task[None] | None = None
    async with NodeClient(node_url) as client, aiohttp.ClientSession() as http:
        try:

            async def served() -> bool:
                lineage = await client.get_lineage()
                graph = await client.get_metagraph(netuid)
                endpoints = [
                    n["endpoint"] for n in graph["neurons"] if n["hotkey"] == server.address
                ]
                listed = {(s["hotkey"], s["model_hash"]) for s in lineage["served"]}
                return (server.address, "0x" + model_hash.hex()) in listed and any(
                    "#price=" in e for e in endpoints
                )

            await until(served, "the miner to declare its model and publish its price")
            ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            config = GatewayConfig(
                node_url=node_url,
                data_dir=root / "gateway",
                port=0,
                deposit=BASE_UNITS_PER_AGR,
                channel_blocks=1_000,
            )
            gateway_task = asyncio.create_task(
                run_gateway(
                    config, Keypair(bytes(PAYER.signing_key)), gateway_stop, ready.set_result
                )
            )
            base = await asyncio.wait_for(ready, TIMEOUT_S)
            before = {
                key.address: (await client.get_account(encode_address(key.address)))["balance"]
                for key in CONTRIBUTORS
            }
            await check_the_extension(network, http, base, model_hash)
            costs = await check_receipts(http, base, model_hash)
            await check_lineage_from_a_receipt(http, base, node_url, model_hash, server)
        finally:
            miner_stop.set()
            await miner  # it claims what it earned before it stops
        amount = sum(costs)
        params = (await client.get_chain())["params"]
        fee = amount * params["channel_fee_u16"] // 65_535
        _, shares = compute_royalty_split(amount - fee, params["data_royalty_u16"], credits)
        expected = dict(shares)
        assert sum(expected.values()) > 0

        async def paid() -> dict[bytes, int] | None:
            gained = {
                key.address: (await client.get_account(encode_address(key.address)))["balance"]
                - before[key.address]
                for key in CONTRIBUTORS
            }
            return gained if any(gained.values()) else None

        gained = await until(paid, "the miner's claim")
        for key in CONTRIBUTORS:
            assert gained[key.address] == expected.get(key.address, 0)
        gateway_stop.set()
        if gateway_task is not None:
            await gateway_task


async def check_the_extension(
    network: FederatedChain, http: aiohttp.ClientSession, base: str, model_hash: bytes
) -> None:
    """Predictions through ``/v1/agora/predictions``, as the OpenAPI document says."""
    async with http.get(f"{base}/agora/openapi.json") as answer:
        openapi = await answer.json()
    operation = openapi["paths"]["/v1/agora/predictions"]["post"]
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    response_schema = {
        **operation["responses"]["200"]["content"]["application/json"]["schema"],
        "components": openapi["components"],
    }
    test = federated.load_pools().test
    pixels = np.rint(test.features * federated.MAX_PIXEL).astype(int)
    model = federated.ServedModel(model_hash=model_hash, parameters=network.model)
    for request in range(REQUESTS):
        rows = [[int(v) for v in row] for row in pixels[3 * request : 3 * request + 3]]
        body = {"model": federated.MODEL_NAME, "input": rows}
        jsonschema.validate(body, request_schema)
        async with http.post(f"{base}/agora/predictions", json=body) as answer:
            assert answer.status == 200, await answer.text()
            result = await answer.json()
        jsonschema.validate(result, response_schema)
        assert result["model_hash"] == "0x" + model_hash.hex()
        local = await federated.handle_predict(model, {"input": rows})
        assert [p["label"] for p in result["data"]] == [p["label"] for p in local["predictions"]]
        assert result["agora"]["calls"][0]["model_hash"] == model_hash.hex()
    # Bad input costs nothing and reaches no miner: each a coded error.
    bad = [
        {"model": federated.MODEL_NAME, "input": [[1] * 63]},
        {"model": federated.MODEL_NAME, "input": [[17] * 64]},
        {"model": federated.MODEL_NAME, "input": []},
    ]
    for body in bad:
        async with http.post(f"{base}/agora/predictions", json=body) as answer:
            assert answer.status == 400
            error = (await answer.json())["error"]
        assert error["agora_code"] == BadRequest.code and error["param"] in (None, "input")
    async with http.post(
        f"{base}/agora/predictions", json={"model": "no-such-model", "input": [[0] * 64]}
    ) as answer:
        assert answer.status == 404


async def agora(*args: str) -> tuple[int, str, str]:
    """The CLI in a process of its own (the gateway it reads runs in this event loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agora",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    return process.returncode or 0, out.decode(), err.decode()


async def check_lineage_from_a_receipt(
    http: aiohttp.ClientSession, base: str, node_url: str, model_hash: bytes, server: Keypair
) -> None:
    """``agora lineage show RECEIPT`` walks from a paid request to the model that answered
    it, the data that trained it and who serves it."""
    async with http.get(f"{base}/agora/receipts?limit=1") as answer:
        receipt = (await answer.json())["data"][0]
    code, out, err = await agora(
        "lineage", "show", receipt["request_id"], "--gateway", base, "--node", node_url, "--json"
    )
    assert code == 0, err
    walked = json.loads(out)
    assert walked["request_id"] == receipt["request_id"]
    assert [m["model_hash"] for m in walked["models"]] == ["0x" + model_hash.hex()]
    assert walked["models"][0]["served_by"] == [server.address]
    assert len(walked["models"][0]["rounds"]) == ROUNDS
    code, _, err = await agora(
        "lineage", "show", "req_unknown", "--gateway", base, "--node", node_url
    )
    assert code != 0 and "error[3672]" in err


async def check_receipts(http: aiohttp.ClientSession, base: str, model_hash: bytes) -> list[int]:
    """Every paid call's receipt names the model that answered; the costs it paid."""
    async with http.get(f"{base}/agora/receipts?limit=100") as answer:
        receipts = (await answer.json())["data"]
    assert len(receipts) == REQUESTS
    costs = []
    for receipt in receipts:
        assert receipt["status"] == "ok" and receipt["model"] == federated.MODEL_NAME
        for call in receipt["calls"]:
            assert call["model_hash"] == model_hash.hex()
            costs.append(call["cost"])
    assert all(cost == BASE_UNITS_PER_AGR // 1_000 for cost in costs)
    return costs

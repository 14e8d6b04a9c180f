"""A data contributor as a real miner on a real node: its data file checked before anything is
sent, its data committed, a round's update committed and revealed on chain, the same update
served to a validator over the neuron protocol, and no row of its data in anything it sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_helpers import NodeProcess, NodeProcesses

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.miner.miner import MinerConfig, run_miner
from agora.neuron.client import NeuronClient
from agora.node.devchain import compute_dev_seed
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, decode_address
from agora.protocol.data import CommitData, CommitUpdate, RevealUpdate, StartFederation
from agora.protocol.federation import (
    compute_model_hash,
    compute_update_hash,
    decode_vector,
    encode_vector,
)
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register, Serve
from agora.protocol.transactions import decode_transaction
from agora.tasks import federated
from agora.tasks.federated import MalformedDataFile, WrongFeatureCount
from agora.wallet.keys import Keypair

OWNER = Keypair(compute_dev_seed("dev0"))
MINER_COLD = Keypair(compute_dev_seed("dev3"))
VALIDATOR_COLD = Keypair(compute_dev_seed("dev4"))
FILLER = Keypair(compute_dev_seed("dev7"))
MINER = Keypair(hashlib.sha256(b"agora-federated-miner-test:miner").digest())
VALIDATOR = Keypair(hashlib.sha256(b"agora-federated-miner-test:validator").digest())
SINK = Keypair(hashlib.sha256(b"agora-federated-miner-test:sink").digest())
COMMIT_BLOCKS = 4
REVEAL_BLOCKS = 4


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        yield processes.run(tmp_path_factory.mktemp("node"))
    finally:
        processes.stop_all()


async def send(client: NodeClient, key: Keypair, body: Any) -> None:
    await submit_and_wait(client, key, body, type(body).__name__)


async def create_subnet(client: NodeClient) -> int:
    await send(
        client, OWNER, CreateSubnet(task_kind="federated", task_config="{}", owner_hotkey=NO_HOTKEY)
    )
    subnets = (await client.request("GET", "/v1/subnets"))["subnets"]
    return max(s["netuid"] for s in subnets if s["task_kind"] == "federated")


async def wait_for(check: Any, what: str, timeout_s: float = 60.0) -> Any:
    for _ in range(int(timeout_s / 0.1)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def config(node: NodeProcess, netuid: int, data_file: Path) -> MinerConfig:
    return MinerConfig(
        node_url=node.url,
        netuid=netuid,
        hotkey=MINER,
        load_coldkey=lambda: MINER_COLD,
        confirm=lambda price: True,
        data_file=data_file,
        metagraph_interval_s=0.2,
    )


def shard() -> federated.Dataset:
    return federated.split_dirichlet(federated.load_pools().contributors, 6, 0.5, 3)[2]


def test_a_bad_data_file_is_refused_before_anything_is_sent(
    node: NodeProcess, tmp_path: Path
) -> None:
    async def main() -> None:
        async with NodeClient(node.url) as client:
            netuid = await create_subnet(client)
            for name, content, error in (
                ("rows.csv", "1,2,3\n", WrongFeatureCount),
                ("rows.npz", "garbage", MalformedDataFile),
            ):
                path = tmp_path / name
                path.write_text(content)
                with pytest.raises(error):
                    await run_miner(config(node, netuid, path), asyncio.Event())
            account = await client.get_account(MINER.address)
            assert account["next_nonce"] == 0
            metagraph = await client.get_metagraph(netuid)
            assert all(
                decode_address(n["hotkey"]) != MINER.public_key for n in metagraph["neurons"]
            )

    asyncio.run(main())


def contains_run(haystack: list[int], needle: list[int]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def test_a_contributor_commits_reveals_and_serves_its_update_and_never_its_rows(
    node: NodeProcess, tmp_path: Path
) -> None:
    data = shard()
    data_file = tmp_path / "rows.npz"
    federated.save_data_file(data_file, data)

    async def main() -> tuple[list[Any], dict[str, Any], int]:
        async with NodeClient(node.url) as client:
            netuid = await create_subnet(client)
            await send(
                client,
                VALIDATOR_COLD,
                Register(netuid=netuid, hotkey=Address(VALIDATOR.public_key)),
            )
            await send(
                client,
                VALIDATOR_COLD,
                AddStake(hotkey=Address(VALIDATOR.public_key), amount=10 * BASE_UNITS_PER_AGR),
            )
            stop = asyncio.Event()
            miner = asyncio.create_task(run_miner(config(node, netuid, data_file), stop))
            try:

                async def committed() -> bool:
                    lineage = await client.get_lineage()
                    return any(c["netuid"] == netuid for c in lineage["data_commitments"])

                await wait_for(committed, "the data commitment")
                first = 1
                model = federated.make_initial_model()
                start = StartFederation(
                    netuid=netuid,
                    model=encode_vector(model),
                    commit_blocks=COMMIT_BLOCKS,
                    reveal_blocks=REVEAL_BLOCKS,
                )
                await send(client, OWNER, start)
                round_start = (await client.get_head())["height"]
                nonce = (await client.get_account(MINER.address))["next_nonce"]

                async def nonce_moved() -> bool:
                    return (await client.get_account(MINER.address))["next_nonce"] > nonce

                await wait_for(nonce_moved, "the update commitment")
                while (await client.get_head())["height"] < round_start + COMMIT_BLOCKS - 1:
                    await send(
                        client, FILLER, Transfer(recipient=Address(SINK.public_key), amount=1)
                    )
                nonce += 1
                await wait_for(nonce_moved, "the reveal")
                metagraph = await client.get_metagraph(netuid)
                endpoint = next(
                    n["endpoint"]
                    for n in metagraph["neurons"]
                    if decode_address(n["hotkey"]) == MINER.public_key
                )
                request = {
                    "round": 0,
                    "seed": "00" * 32,
                    "model_hash": compute_model_hash(model).hex(),
                    "model": list(model),
                }
                async with NeuronClient(VALIDATOR) as peer:
                    response = await peer.call(endpoint, MINER.public_key, federated.ROUTE, request)
                last = (await client.get_head())["height"]
                blocks = await client.list_blocks(first, last - first + 1)
            finally:
                stop.set()
                await miner
            return blocks, response.body, netuid

    blocks, answer, netuid = asyncio.run(main())
    sent = [
        (raw, decode_transaction(raw))
        for block in blocks
        for raw in block.transactions
        if decode_transaction(raw).sender == MINER.public_key
    ]
    kinds = [type(tx.body) for _, tx in sent]
    assert (
        CommitData in kinds and CommitUpdate in kinds and RevealUpdate in kinds and Serve in kinds
    )
    commitment = next(tx.body for _, tx in sent if isinstance(tx.body, CommitData))
    assert commitment.merkle_root == federated.compute_data_root(data)
    assert commitment.rows == len(data)
    reveal = next(tx.body for _, tx in sent if isinstance(tx.body, RevealUpdate))
    served = federated.parse_response(answer, 0, compute_model_hash(federated.make_initial_model()))
    assert decode_vector(reveal.update) == served  # the validator got what the chain holds
    assert answer["update_hash"] == compute_update_hash(served).hex()
    # Every message the contributor sent: its transactions, whole, and its answer.
    pixels = np.rint(data.features * federated.MAX_PIXEL).astype(int)
    answer_text = json.dumps(answer)
    for row in pixels:
        as_bytes = bytes(row.astype(np.uint8).tolist())
        assert json.dumps(row.tolist()) not in answer_text
        assert not contains_run(answer["update"], row.tolist())
        for raw, _ in sent:
            assert as_bytes not in raw
            assert row.astype(">i4").tobytes() not in raw
    assert netuid > 0

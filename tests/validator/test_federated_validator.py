"""A federated subnet end to end on a real node: contributor miners with their own data files
(one of them flipping its labels), two validators scoring revealed updates on their own
held-out rows and posting round records, the ledger recomputing every record."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_helpers import NodeProcess, NodeProcesses

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.miner.miner import MinerConfig, run_miner
from agora.node.devchain import compute_dev_seed
from agora.protocol.address import encode_address
from agora.protocol.data import StartFederation
from agora.protocol.federation import encode_vector
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, SetHyperparameter
from agora.tasks import federated
from agora.validator.validator import ValidatorConfig, run_validator
from agora.wallet.keys import Keypair

OWNER = Keypair(compute_dev_seed("dev0"))
COLDKEYS = [Keypair(compute_dev_seed(f"dev{i}")) for i in (1, 2, 3, 4, 5, 6)]
TEMPO = 6
WINDOW_BLOCKS = 6
ROUNDS = 3


def key(name: str) -> Keypair:
    return Keypair(hashlib.sha256(f"agora-federated-validator-test:{name}".encode()).digest())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        yield processes.run(tmp_path_factory.mktemp("node"), block_time_ms=400)
    finally:
        processes.stop_all()


async def create_federated_subnet(client: NodeClient) -> int:
    body = CreateSubnet(task_kind="federated", task_config="{}", owner_hotkey=NO_HOTKEY)
    await submit_and_wait(client, OWNER, body, "subnet")
    subnets = (await client.request("GET", "/v1/subnets"))["subnets"]
    netuid = max(s["netuid"] for s in subnets if s["task_kind"] == "federated")
    for name, value in (("tempo", TEMPO), ("commit_reveal", 0), ("weights_rate_limit", 0)):
        setting = SetHyperparameter(netuid=netuid, name=name, value=value)
        await submit_and_wait(client, OWNER, setting, name)
    return netuid


@pytest.mark.slow
def test_rounds_run_on_a_real_node_and_the_poisoner_earns_nothing(
    node: NodeProcess, tmp_path: Path
) -> None:
    shards = federated.split_dirichlet(federated.load_pools().contributors, 4, 1.0, 5)
    files = []
    for i, shard in enumerate(shards):
        if i == 3:  # the poisoner: its own rows, every label flipped
            shard = federated.Dataset(shard.features, federated.CLASSES - 1 - shard.labels)
        path = tmp_path / f"contributor-{i}.csv"
        federated.save_data_file(path, shard)
        files.append(path)
    contributors = [key(f"contributor-{i}") for i in range(4)]
    validators = [key(f"validator-{i}") for i in range(2)]

    async def main() -> dict[str, Any]:
        async with NodeClient(node.url) as client:
            netuid = await create_federated_subnet(client)
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(
                    run_validator(
                        ValidatorConfig(
                            node_url=node.url,
                            netuid=netuid,
                            hotkey=hotkey,
                            load_coldkey=lambda i=i: COLDKEYS[i],
                            confirm=lambda price: True,
                            data_dir=tmp_path / f"validator-{i}",
                            stake=100 * BASE_UNITS_PER_AGR,
                            chain_poll_s=0.3,
                        ),
                        stop,
                    )
                )
                for i, hotkey in enumerate(validators)
            ]
            tasks += [
                asyncio.create_task(
                    run_miner(
                        MinerConfig(
                            node_url=node.url,
                            netuid=netuid,
                            hotkey=hotkey,
                            load_coldkey=lambda i=i: COLDKEYS[2 + i],
                            confirm=lambda price: True,
                            data_file=files[i],
                            metagraph_interval_s=0.5,
                        ),
                        stop,
                    )
                )
                for i, hotkey in enumerate(contributors)
            ]
            try:
                for _ in range(600):
                    lineage = await client.get_lineage()
                    ready = sum(1 for c in lineage["data_commitments"] if c["netuid"] == netuid)
                    if ready == len(contributors):
                        break
                    await asyncio.sleep(0.2)
                start = StartFederation(
                    netuid=netuid,
                    model=encode_vector(federated.make_initial_model()),
                    commit_blocks=WINDOW_BLOCKS,
                    reveal_blocks=WINDOW_BLOCKS,
                )
                await submit_and_wait(client, OWNER, start, "start")
                for _ in range(1_500):
                    federation = await client.get_federation(netuid)
                    if federation["round"] >= ROUNDS:
                        break
                    failed = [t for t in tasks if t.done()]
                    if failed:
                        failed[0].result()
                    await asyncio.sleep(0.2)
                lineage = await client.get_lineage()
                federation = await client.get_federation(netuid)
                model = await client.get_federated_model(federation["model_hash"])
                return {**lineage, "parameters": model["parameters"]}
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)

    lineage = asyncio.run(main())
    rounds = [r for r in lineage["rounds"]]
    assert len(rounds) >= ROUNDS
    latest = rounds[-1]["model_hash"]
    credits = {
        c["hotkey"]: c["credit"]
        for m in lineage["models"]
        if m["model_hash"] == latest
        for c in m["credits"]
    }
    honest = [credits.get(encode_address(k.public_key), 0) for k in contributors[:3]]
    assert max(honest) > 0
    assert credits.get(encode_address(contributors[3].public_key), 0) <= min(honest)
    accuracy = federated.compute_accuracy(lineage["parameters"], federated.load_pools().test)
    print(f"credits {credits}, accuracy {accuracy:.3f}")
    assert accuracy > 0.5

"""The devnet's subnets: one per task, created in one request and configured in another
(two blocks, not one per transaction), each with the devnet's hyperparameters."""

from __future__ import annotations

import asyncio
from pathlib import Path

from node_helpers import NodeProcesses

from agora.client.client import NodeClient
from agora.devnet import Devnet, DevnetConfig, Processes, create_subnets


def test_every_task_gets_its_subnet_and_settings_in_two_requests(tmp_path: Path) -> None:
    processes = NodeProcesses(tmp_path / "logs")
    try:
        node = processes.run(tmp_path / "node", block_time_ms=100)
        tasks = ("embedding", "classification", "generation", "federated")
        config = DevnetConfig(data_dir=tmp_path, tasks=tasks, tempo=12, say=lambda _: None)
        devnet = Devnet(config=config, processes=Processes(tmp_path))
        devnet.node_url = node.url

        async def create() -> tuple[int, list[dict]]:
            async with NodeClient(node.url) as client:
                before = (await client.get_chain())["height"]
                await create_subnets(devnet, client)
                after = (await client.get_chain())["height"]
                return after - before, await client.list_subnets()

        blocks, subnets = asyncio.run(create())
    finally:
        processes.stop_all()
    by_netuid = {s["netuid"]: s for s in subnets}
    assert sorted(devnet.subnets) == sorted(tasks)
    assert blocks <= 4  # two requests, each in the next block (and a poll's slack)
    for task, netuid in devnet.subnets.items():
        subnet = by_netuid[netuid]
        assert subnet["task_kind"] == task
        hyper = subnet["hyperparameters"]
        assert hyper["tempo"] == 12
        assert hyper["reveal_period_epochs"] == 1
        expected = (0, 0) if task == "federated" else (1, 3)
        assert (hyper["commit_reveal"], hyper["weights_rate_limit"]) == expected, hyper

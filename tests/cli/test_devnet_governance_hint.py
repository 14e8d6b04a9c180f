"""The devnet's governance hint, run as printed against a dev node with devnet wallets.

The wallets are made and funded by the devnet's own functions; the validator's wallet
registers its hotkey and stakes as a validator process does. Then every line of the hint is
run: the proposal file is written, proposed, voted on and shown. A miner's wallet votes with
what its work earned: on a chain where no epoch has paid it yet, it has no power (2407).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_helpers import NodeProcess, NodeProcesses
from typer.testing import CliRunner

from agora.cli.main import app
from agora.client.client import NodeClient
from agora.devnet import (
    VALIDATOR_STAKE,
    WALLET_PASSWORD,
    Devnet,
    DevnetConfig,
    Processes,
    create_subnets,
    fund_wallets,
    governance_hint,
)
from agora.protocol.errors import NoVotingPower
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.wallet.keystore import Keystore

VALIDATOR, MINER = "embedding-validator-0", "embedding-miner-0"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    yield processes.run(tmp_path_factory.mktemp("node"), block_time_ms=100)
    processes.stop_all()


def run(*args: str) -> tuple[int, str, str]:
    env = {"AGORA_WALLET_PASSWORD": WALLET_PASSWORD, "AGORA_HOME": None, "AGORA_NODE": None}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_every_line_of_the_hint_works(node: NodeProcess, tmp_path: Path) -> None:
    config = DevnetConfig(data_dir=tmp_path, tasks=("embedding",), say=lambda _: None)
    devnet = Devnet(config=config, processes=Processes(tmp_path / "logs"))
    devnet.node_url = node.url

    async def prepare() -> None:
        async with NodeClient(node.url) as client:
            await create_subnets(devnet, client)
            await fund_wallets(devnet, client, [VALIDATOR, MINER])

    asyncio.run(prepare())
    wallets = ["--wallet-dir", str(tmp_path / "wallets"), "--node", node.url]
    netuid = str(devnet.subnets["embedding"])
    hotkey = Keystore(tmp_path / "wallets").get_hotkey(VALIDATOR, "default").address
    stake = str(VALIDATOR_STAKE // BASE_UNITS_PER_AGR)
    for args in (
        ["neuron", "register", "--netuid", netuid, "--wallet", VALIDATOR, "--hotkey", "default",
         "--yes"],
        ["stake", "add", "--hotkey-address", hotkey, "--amount", stake, "--wallet", VALIDATOR],
    ):  # fmt: skip
        code, _, stderr = run(*args, *wallets)
        assert code == 0, stderr

    lines = governance_hint(tmp_path, node.url, [VALIDATOR], [MINER])
    commands = [line.strip() for line in lines if line.startswith("  ")]
    echo, *agora = commands
    text, _, path = echo.removeprefix("echo ").rpartition(" > ")
    Path(path).write_text(shlex.split(text)[0])
    outcomes = {}
    for command in agora:
        words = shlex.split(command)
        assert words[0] == "agora"
        outcomes[command] = run(*words[1:])
    assert len(outcomes) == 5
    for command, (code, _, stderr) in outcomes.items():
        if f"--wallet {MINER}" in command:
            assert code != 0 and stderr.startswith(f"error[{NoVotingPower.code}]:"), stderr
        else:
            assert code == 0, (command, stderr)
    (shown,) = [stdout for command, (_, stdout, _) in outcomes.items() if "gov show" in command]
    assert "param_change on the parameters track" in shown and "yes" in shown

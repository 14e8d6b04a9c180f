"""`agora balance|transfer|tx|block|faucet` against a real dev node on loopback.

The commands run through the real `agora` typer root; the wallet is a dev key imported into
a wallet directory under ``tmp_path`` (password from ``AGORA_WALLET_PASSWORD``, cheapest
argon2id cost). User errors print one ``error[CODE]: message`` line on stderr, exit
non-zero, and never show a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_helpers import (
    MIN_FEE,
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    make_key,
)
from typer.testing import CliRunner, Result

from agora.cli.main import app
from agora.node.devchain import DEV_ACCOUNT_BALANCE, FAUCET_GRANT
from agora.protocol.params import BASE_UNITS_PER_AGR

PASSWORD = "correct horse battery staple"
ALICE = get_dev_keys()[0]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    yield processes.run(tmp_path_factory.mktemp("node"))
    processes.stop_all()


class Cli:
    def __init__(self, node_url: str, wallet_dir: Path) -> None:
        self.runner = CliRunner()
        self.node_url = node_url
        self.wallet_dir = wallet_dir

    def run(self, *args: str, node: bool = True, wallet: bool = False) -> Result:
        arguments = list(args)
        if node:
            arguments += ["--node", self.node_url]
        if wallet:
            arguments += ["--wallet-dir", str(self.wallet_dir)]
        env = {"AGORA_WALLET_PASSWORD": PASSWORD, "AGORA_HOME": None, "AGORA_NODE": None}
        return self.runner.invoke(app, arguments, env=env)

    def json(self, *args: str, node: bool = True, wallet: bool = False) -> Any:
        result = self.run(*args, "--json", node=node, wallet=wallet)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    cli = Cli(node.url, tmp_path_factory.mktemp("wallets"))
    seed = tmp_path_factory.mktemp("seeds") / "alice"
    seed.write_text(ALICE.seed_hex)
    imported = cli.json(
        "wallet", "import", "alice", "--seed-file", str(seed), "--kdf", "minimum",
        node=False, wallet=True,
    )  # fmt: skip
    assert imported["coldkey_address"] == ALICE.address
    return cli


def assert_user_error(result: Result, code: int) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error[{code}]: "), lines[0]
    return lines[0]


def test_balance_of_a_dev_account(cli: Cli) -> None:
    account = cli.json("balance", ALICE.address)
    assert account["address"] == ALICE.address
    assert account["balance"] <= DEV_ACCOUNT_BALANCE
    human = cli.run("balance", make_key("empty").address)
    assert human.exit_code == 0
    assert "balance 0 AGR" in human.stdout and "nonce 0" in human.stdout


def test_transfer_waits_for_inclusion_and_moves_funds(cli: Cli, node: NodeProcess) -> None:
    recipient = make_key("cli-recipient").address
    before = cli.json("balance", ALICE.address)

    status = cli.json(
        "transfer", "--to", recipient, "--amount", "1.5", "--wallet", "alice", wallet=True
    )

    assert status["status"] == "included"
    assert status["receipt"]["success"] and status["receipt"]["sender"] == ALICE.address
    assert cli.json("balance", recipient)["balance"] == 1_500_000_000
    after = cli.json("balance", ALICE.address)
    assert after["balance"] == before["balance"] - 1_500_000_000 - MIN_FEE
    assert after["nonce"] == before["nonce"] + 1

    shown = cli.json("tx", status["receipt"]["hash"])
    assert shown == node.get_json(f"/v1/transactions/{status['receipt']['hash']}")
    human = cli.run("tx", status["receipt"]["hash"])
    assert human.exit_code == 0 and "ok" in human.stdout


def test_transfer_without_waiting_returns_the_pending_hash(cli: Cli, node: NodeProcess) -> None:
    recipient = make_key("no-wait").address
    result = cli.json(
        "transfer", "--to", recipient, "--amount", "0.000000001", "--wallet", "alice",
        "--no-wait", wallet=True,
    )  # fmt: skip
    assert result["status"] == "pending" and result["hash"].startswith("0x")
    assert node.wait_included(result["hash"])["receipt"]["success"]
    assert cli.json("balance", recipient)["balance"] == 1


def test_block_by_head_height_and_hash(cli: Cli, node: NodeProcess) -> None:
    head = cli.json("block")
    assert head["header"] == node.get_json("/v1/head")
    height = head["header"]["height"]
    assert cli.json("block", str(height)) == head
    assert cli.json("block", head["header"]["hash"]) == head
    human = cli.run("block", "0")
    assert human.exit_code == 0 and "block 0" in human.stdout


def test_faucet_funds_an_address(cli: Cli) -> None:
    recipient = make_key("cli-faucet").address
    status = cli.json("faucet", recipient)
    assert status["status"] == "included" and status["receipt"]["success"]
    assert cli.json("balance", recipient)["balance"] == FAUCET_GRANT
    human = cli.run("balance", recipient)
    assert f"{FAUCET_GRANT // BASE_UNITS_PER_AGR} AGR" in human.stdout


def test_a_transfer_that_fails_in_its_block_exits_non_zero(cli: Cli) -> None:
    result = cli.run(
        "transfer", "--to", make_key("too-much").address, "--amount", "2000000",
        "--wallet", "alice", "--json", wallet=True,
    )  # fmt: skip
    line = assert_user_error(result, 1203)
    assert "failed in block" in line
    status = json.loads(result.stdout)
    assert status["status"] == "included" and not status["receipt"]["success"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("balance", "agr1notanaddress"), 1005),
        (("balance", "0xabc"), 1005),
        (("transfer", "--to", "agr1bad", "--amount", "1", "--wallet", "alice"), 1005),
        (("transfer", "--to", make_key("x").address, "--amount", "abc", "--wallet", "alice"), 2),
        (("transfer", "--to", make_key("x").address, "--amount", "-1", "--wallet", "alice"), 2),
        (("transfer", "--to", make_key("x").address, "--amount", "1", "--wallet", "nobody"), 3102),
        (("tx", "0xnothex"), 3001),
        (("tx", "0x" + "00" * 32), 3004),
        (("block", "999999999"), 3004),
        (("block", "tip"), 3001),
        (("faucet", "agr1nope"), 1005),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else str(value),
)
def test_user_errors_are_one_line_and_non_zero(cli: Cli, args: tuple[str, ...], code: int) -> None:
    assert_user_error(cli.run(*args, wallet=args[0] == "transfer"), code)


def test_a_node_that_is_not_running_is_a_one_line_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = run_agora("balance", ALICE.address, "--node", f"http://127.0.0.1:{closed_port}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[3091]: cannot reach the node"), lines
    assert result.stdout == ""


def run_agora(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGORA_")}
    return subprocess.run(
        [sys.executable, "-m", "agora", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_node_run_without_a_chain_or_genesis_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_agora("node", "run", "--data-dir", str(tmp_path / "empty"), "--port", "0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error[2]: {tmp_path / 'empty'} holds no chain: pass --genesis FILE, or --dev"
    ]


def test_node_run_on_another_chains_data_is_a_one_line_error(
    node: NodeProcess, tmp_path: Path
) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(node.get_json("/v1/genesis") | {"timestamp": 1}))
    result = run_agora(
        "node", "run", "--data-dir", str(node.data_dir), "--genesis", str(genesis), "--port", "0"
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[3030]: "), lines
    assert "another chain's genesis" in lines[0]

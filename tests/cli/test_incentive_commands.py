"""The incentive layer as a person drives it: the `agora` CLI against a real dev node.

One node process on loopback (blocks sealed as soon as a transaction waits) and real
wallets, imported from the dev seeds with the cheapest key derivation. The commands run
in-process through the real `agora` command tree, the node in its own process. The flow:
a subnet is created, listed, shown and tuned; a validator and a miner register, the miner
serves; stake is added, delegated, shown and removed; weights are set, then committed and
revealed; the metagraph shows the epoch's results. Bad input gives one `error[CODE]` line
and a non-zero exit, never a traceback; the HTTP routes answer coded JSON errors too.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_helpers import (
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    make_key,
    sign_transfer,
)
from typer.testing import CliRunner, Result

from agora.cli.main import app
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import is_epoch_block
from agora.simulate import ScenarioError, load_scenario, run_scenario

AGR = BASE_UNITS_PER_AGR
PASSWORD = "correct horse battery staple"
DEV = get_dev_keys()
WALLETS = {"owner": DEV[0], "alice": DEV[1], "bob": DEV[2], "carol": DEV[3]}
FILLER = DEV[7]  # sends the transfers that move the chain forward between commands
TEMPO = 3


class Cli:
    """`agora ...` with the node's URL, a wallet home and the password in the environment.

    Commands are written as a person types them (``"stake add --amount 1 ..."``), split with
    shell rules.
    """

    def __init__(self, node: NodeProcess, home: Path) -> None:
        self.node = node
        self.runner = CliRunner()
        self.env = {
            "AGORA_NODE": node.url,
            "AGORA_HOME": str(home),
            "AGORA_WALLET_PASSWORD": PASSWORD,
            "COLUMNS": "250",
        }

    def run(self, command: str) -> Result:
        return self.runner.invoke(app, shlex.split(command), env=self.env)

    def json(self, command: str) -> Any:
        result = self.run(command + " --json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def ok(self, command: str) -> dict[str, Any]:
        """A command that sends a transaction: it waits for a successful receipt."""
        status: dict[str, Any] = self.json(command)
        assert status["status"] == "included" and status["receipt"]["success"], status
        return status

    def fails(self, command: str, code: int) -> str:
        result = self.run(command)
        assert_user_error(result.exit_code, result.stderr, code)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result.stderr


def assert_user_error(exit_code: int, stderr: str, code: int) -> None:
    assert exit_code != 0
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error[{code}]: "), stderr


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        yield processes.run(tmp_path_factory.mktemp("node"))
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def cli(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    cli = Cli(node, tmp_path_factory.mktemp("home"))
    seeds = tmp_path_factory.mktemp("seeds")
    for name, key in WALLETS.items():
        (seeds / name).write_text(key.seed_hex)
        cli.json(f"wallet import {name} --seed-file {seeds / name} --kdf minimum")
    return cli


@pytest.fixture(scope="module")
def hotkeys(cli: Cli) -> dict[str, str]:
    """alice's validator and bob's miner hotkeys, funded by the faucet to pay their fees."""
    made = {
        "validator": cli.json("wallet new-hotkey alice validator")["address"],
        "miner": cli.json("wallet new-hotkey bob miner")["address"],
    }
    for address in made.values():
        cli.ok(f"faucet {address}")
    return made


@pytest.fixture(scope="module")
def subnet(cli: Cli, node: NodeProcess, hotkeys: dict[str, str]) -> int:
    """Subnet 1, created by the owner, with alice's validator and bob's miner registered."""
    cli.ok("""subnet create --task embedding --config '{"model": "m"}' --wallet owner""")
    price = node.get_json("/v1/subnets/1")["burn"]
    before = node.account(WALLETS["alice"].address)["balance"]
    registered = cli.ok("neuron register --netuid 1 --wallet alice --hotkey validator --yes")
    fee = registered["receipt"]["fee_paid"]
    assert node.account(WALLETS["alice"].address)["balance"] == before - price - fee
    cli.ok("neuron register --netuid 1 --wallet bob --hotkey miner --yes")
    return 1


def head(node: NodeProcess) -> int:
    height: int = node.get_json("/v1/head")["height"]
    return height


def advance(node: NodeProcess, blocks: int) -> None:
    """Seal ``blocks`` blocks, one transfer each."""
    for _ in range(blocks):
        nonce = node.account(FILLER.address)["next_nonce"]
        [tx_hash] = node.submit([sign_transfer(FILLER, make_key("sink").address, 1, nonce)])
        node.wait_included(tx_hash)


def advance_past_epoch(node: NodeProcess, netuid: int) -> None:
    """Seal blocks until the last one ran the subnet's epoch."""
    advance(node, 1)
    while not is_epoch_block(netuid, TEMPO, head(node)):
        advance(node, 1)


def metagraph(node: NodeProcess, netuid: int = 1) -> list[dict[str, Any]]:
    graph: dict[str, Any] = node.get_json(f"/v1/subnets/{netuid}/metagraph?matrices=1")
    neurons: list[dict[str, Any]] = graph["neurons"]
    return neurons


def test_the_whole_incentive_flow_through_the_cli(
    cli: Cli, node: NodeProcess, hotkeys: dict[str, str], subnet: int
) -> None:
    owner = WALLETS["owner"].address
    validator, miner = hotkeys["validator"], hotkeys["miner"]
    as_validator = "--wallet alice --hotkey validator"

    # --- the subnet (created and joined by the fixture): listed, tuned ------------------------
    [listed] = cli.json("subnet list")["subnets"]
    assert (listed["netuid"], listed["owner"], listed["task_kind"]) == (subnet, owner, "embedding")
    assert (listed["task_config"], listed["n"]) == ('{"model": "m"}', 2)
    assert listed["hyperparameters"]["commit_reveal"] is True
    human = cli.run("subnet list")
    assert human.exit_code == 0 and "embedding" in human.stdout
    for name, value in [("tempo", TEMPO), ("commit_reveal", 0), ("weights_rate_limit", 0)]:
        cli.ok(f"subnet set --netuid 1 {name} {value} --wallet owner")
    hyperparameters = node.get_json("/v1/subnets/1")["hyperparameters"]
    assert (hyperparameters["tempo"], hyperparameters["commit_reveal"]) == (TEMPO, False)

    # --- the miner serves ------------------------------------------------------------------
    cli.ok("neuron serve --netuid 1 --endpoint http://127.0.0.1:8091 --wallet bob --hotkey miner")
    neurons = metagraph(node)
    assert [(n["uid"], n["hotkey"]) for n in neurons] == [(0, validator), (1, miner)]
    assert neurons[1]["coldkey"] == WALLETS["bob"].address
    assert neurons[1]["endpoint"] == "http://127.0.0.1:8091"

    # --- stake: own, delegated, shown, removed ---------------------------------------------------
    cli.ok(f"stake add --hotkey-address {validator} --amount 100 --wallet alice")
    cli.ok(f"stake add --hotkey-address {validator} --amount 50.5 --wallet carol")
    cli.ok(f"stake remove --hotkey-address {validator} --amount 0.5 --wallet carol")
    shown = cli.json(f"stake show {validator}")
    assert (shown["owner"], shown["total_stake"]) == (WALLETS["alice"].address, 150 * AGR)
    assert {s["coldkey"]: s["stake"] for s in shown["stakers"]} == {
        WALLETS["alice"].address: 100 * AGR,
        WALLETS["carol"].address: 50 * AGR,
    }
    assert shown["subnets"] == [{"netuid": 1, "uid": 0}]

    # --- weights, set directly; the next epoch pays the miner and the validator ---------------
    advance_past_epoch(node, 1)  # the validator's stake earns it a permit
    assert metagraph(node)[0]["validator_permit"] is True
    cli.ok(f"weights set --netuid 1 --uids 1 --values 65535 {as_validator}")
    assert metagraph(node)[0]["weights"] == [[1, 65_535]]
    advance_past_epoch(node, 1)
    neurons = metagraph(node)
    assert neurons[1]["incentive"] == 65_535 and neurons[1]["emission"] > 0
    assert neurons[0]["dividends"] == 65_535 and neurons[0]["emission"] > 0
    assert [uid for uid, _ in neurons[0]["bonds"]] == [1]

    # The human table shows every column, and the matrices on request.
    table = cli.run("subnet show 1 --matrices")
    assert table.exit_code == 0, table.output
    for header in ("hotkey", "coldkey", "stake", "permit", "active", "emission", "registered"):
        assert header in table.stdout
    assert "http://127.0.0.1:8091" in table.stdout and "1:65535" in table.stdout

    # --- commit-reveal: the commit waits one epoch ---------------------------------------------
    cli.ok("subnet set --netuid 1 commit_reveal 1 --wallet owner")
    cli.fails(f"weights set --netuid 1 --uids 1 --values 1 {as_validator}", code=2201)
    while not is_epoch_block(1, TEMPO, head(node)):  # commit just after an epoch
        advance(node, 1)
    cli.ok(f"weights commit --netuid 1 --uids 1 --values 100 {as_validator}")
    cli.fails(f"weights reveal --netuid 1 {as_validator}", code=2273)  # still the commit's epoch
    while not is_epoch_block(1, TEMPO, head(node) + 1):
        advance(node, 1)
    cli.ok(f"weights reveal --netuid 1 {as_validator}")
    assert metagraph(node)[0]["weights"] == [[1, 65_535]]
    cli.fails(f"weights reveal --netuid 1 {as_validator}", code=2)  # nothing left to reveal
    # A commit the chain refuses leaves no record behind for a later reveal to trip on.
    cli.ok("subnet set --netuid 1 commit_reveal 0 --wallet owner")
    cli.fails(f"weights commit --netuid 1 --uids 1 --values 7 {as_validator}", code=2202)
    cli.fails(f"weights reveal --netuid 1 {as_validator}", code=2)


def test_user_errors_are_one_coded_line(cli: Cli, hotkeys: dict[str, str], subnet: int) -> None:
    validator, nobody = hotkeys["validator"], make_key("nobody").address
    for command, code in [
        ("subnet set --netuid 1 tempo 5 --wallet bob", 2002),
        ("subnet set --netuid 1 rho 5 --wallet owner", 2004),
        ("subnet set --netuid 1 tempo 0 --wallet owner", 2005),
        ("subnet show 9", 2001),
        ("subnet create --task Mining! --wallet owner", 1006),
        ("subnet create --task embedding --config '{' --wallet owner", 2),
        ("neuron register --netuid 9 --wallet bob --hotkey miner --yes", 2001),
        ("neuron register --netuid 1 --wallet bob --hotkey miner --yes", 2006),
        ("neuron serve --netuid 1 --endpoint ftp://x --wallet bob --hotkey miner", 1006),
        (f"stake remove --hotkey-address {validator} --amount 100000 --wallet bob", 2103),
        (f"stake add --hotkey-address {nobody} --amount 1 --wallet bob", 2101),
        (f"stake set-take --hotkey-address {validator} --take 0 --wallet bob", 2102),
        ("stake show agr1notanaddress", 1005),
        ("weights set --netuid 1 --uids 1,x --values 1,1 --wallet alice --hotkey validator", 2),
    ]:
        cli.fails(command, code)


def test_a_user_error_in_a_real_process_has_no_traceback(node: NodeProcess) -> None:
    env = os.environ | {"AGORA_NODE": node.url}
    done = subprocess.run(
        [sys.executable, "-m", "agora", "subnet", "show", "42"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert_user_error(done.returncode, done.stderr, 2001)
    assert done.stdout == ""


def test_a_task_no_package_provides_runs_no_miner_or_validator(
    cli: Cli, node: NodeProcess, hotkeys: dict[str, str]
) -> None:
    """The ledger takes any well-formed kind; a miner or validator without the task's package
    stops with one coded line before it registers or pays anything."""
    cli.ok("""subnet create --task astrology --config '{"sign": "leo"}' --wallet carol""")
    subnets = cli.json("subnet list")["subnets"]
    netuid = next(s["netuid"] for s in subnets if s["task_kind"] == "astrology")
    env = os.environ | cli.env
    for role, wallet, hotkey in [("miner", "bob", "miner"), ("validator", "alice", "validator")]:
        balance = node.account(WALLETS[wallet].address)["balance"]
        command = [sys.executable, "-m", "agora", role, "run", "--netuid", str(netuid)]
        command += ["--wallet", wallet, "--hotkey", hotkey, "--yes"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert_user_error(done.returncode, done.stderr, 3480)
        assert "astrology" in done.stderr
        assert node.account(WALLETS[wallet].address)["balance"] == balance
    assert node.get_json(f"/v1/subnets/{netuid}")["n"] == 0


def test_the_http_routes_answer_coded_errors(node: NodeProcess) -> None:
    for path, code in [
        ("/v1/subnets/42", 2001),
        ("/v1/subnets/42/metagraph", 2001),
        ("/v1/subnets/x/metagraph", None),
        ("/v1/hotkeys/agr1notanaddress", 1005),
        (f"/v1/hotkeys/{make_key('nobody').address}", 2101),
    ]:
        response = node.get(path)
        assert 400 <= response.status < 500, (path, response.status)
        if code is not None:
            assert response.error_code == code, (path, response.body)


def test_simulate_epoch_prints_the_scenarios_epochs_as_json(cli: Cli, tmp_path: Path) -> None:
    scenario = {
        "params": {"tempo": 1, "max_validators": 2},
        "neurons": [{"stake": 3}, {"stake": 1}, {"stake": 0}, {"stake": 0}],
        "ops": [
            {"op": "epoch", "block": 1},
            {"op": "set_weights", "uid": 0, "uids": [2, 3], "values": [1, 3], "block": 2},
            {"op": "set_weights", "uid": 1, "uids": [2], "values": [9], "block": 2},
            {"op": "epoch", "block": 2, "emission": 1_000},
        ],
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    result = cli.run(f"simulate epoch {path}")
    assert result.exit_code == 0, result.output
    epochs = json.loads(result.stdout)
    assert epochs == run_scenario(load_scenario(path))  # the CLI is a shell over the module
    assert [e["block"] for e in epochs] == [1, 2]
    assert sum(epochs[1]["emission"]) <= 1_000 and epochs[1]["incentive"][3] > 0

    path.write_text('{"neurons": [{"stake": -1}], "ops": []}')
    assert "neurons[0].stake" in cli.fails(f"simulate epoch {path}", code=ScenarioError.code)
    cli.fails(f"simulate epoch {tmp_path / 'missing.json'}", code=ScenarioError.code)

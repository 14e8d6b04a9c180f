"""`agora gov propose|vote|show|list|params` and `agora treasury show` against a real node.

The node runs from a dev genesis whose tracks vote for 10 blocks; two dev accounts stake
through it and are imported as wallets. A proposal file with a mistake (an unknown
parameter, a value out of bounds, an unknown kind, not JSON) is refused with its code before
the wallet is even opened, so nothing is signed and the nonce does not move. A good file is
proposed, voted on, shown, listed and enacted; every command has ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from governance_helpers import stake_on_node, write_governed_genesis
from node_helpers import NodeProcess, NodeProcesses, get_dev_keys, wait_for
from typer.testing import CliRunner, Result

from agora.cli.main import app
from agora.protocol.errors import (
    InvalidVote,
    ParameterOutOfBounds,
    UnknownParameter,
)
from agora.protocol.params import BASE_UNITS_PER_AGR

PASSWORD = "correct horse battery staple"
KEYS = get_dev_keys(4)
OWNER, ALICE, BOB, _ = KEYS


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    directory = tmp_path_factory.mktemp("governance-cli")
    genesis = write_governed_genesis(directory / "genesis.json", len(KEYS))
    node = processes.run(directory / "data", dev=False, genesis=genesis, block_time_ms=100)
    stake_on_node(node, OWNER, [ALICE, BOB], 500 * BASE_UNITS_PER_AGR)
    yield node
    processes.stop_all()


class Cli:
    def __init__(self, node_url: str, wallet_dir: Path) -> None:
        self.runner = CliRunner()
        self.node_url = node_url
        self.wallet_dir = wallet_dir

    def run(self, *args: str, wallet: bool = False) -> Result:
        arguments = [*args, "--node", self.node_url]
        if wallet:
            arguments += ["--wallet-dir", str(self.wallet_dir)]
        env = {"AGORA_WALLET_PASSWORD": PASSWORD, "AGORA_HOME": None, "AGORA_NODE": None}
        return self.runner.invoke(app, arguments, env=env)

    def json(self, *args: str, wallet: bool = False) -> Any:
        result = self.run(*args, "--json", wallet=wallet)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    cli = Cli(node.url, tmp_path_factory.mktemp("wallets"))
    for name, key in (("alice", ALICE), ("bob", BOB)):
        result = cli.runner.invoke(
            app,
            ["wallet", "import", name, "--seed-file", "-", "--kdf", "minimum",
             "--wallet-dir", str(cli.wallet_dir)],
            env={"AGORA_WALLET_PASSWORD": PASSWORD, "AGORA_HOME": None},
            input=key.seed_hex,
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
    return cli


def write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def assert_user_error(result: Result, code: int) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error[{code}]: "), result.stderr


@pytest.mark.parametrize(
    ("proposal", "code"),
    [
        ({"kind": "param_change", "changes": {"max_fee": 1}}, UnknownParameter.code),
        ({"kind": "param_change", "changes": {"owner_cut_u16": 70_000}}, ParameterOutOfBounds.code),
        ({"kind": "param_change", "changes": {"min_fee": -1}}, 1003),
        ({"kind": "referendum", "description": "?"}, 1001),
        ({"kind": "treasury_spend", "recipient": "agr1nope", "amount": 1}, 1005),
        ({"kind": "emission_shares", "shares": {"one": 1}}, 1001),
        ("{not json", 2),
    ],
)
def test_a_bad_proposal_file_is_refused_before_anything_is_signed(
    cli: Cli, node: NodeProcess, tmp_path: Path, proposal: Any, code: int
) -> None:
    nonce = node.account(ALICE.address)["next_nonce"]
    path = write(tmp_path, "proposal.json", proposal)
    assert_user_error(cli.run("gov", "propose", path, "--wallet", "alice", wallet=True), code)
    assert_user_error(cli.run("gov", "propose", path, "--check"), code)
    assert node.account(ALICE.address)["next_nonce"] == nonce


def test_propose_vote_show_list_and_enactment(cli: Cli, node: NodeProcess, tmp_path: Path) -> None:
    good = write(
        tmp_path,
        "raise-fee.json",
        {"kind": "param_change", "changes": {"track.signal.deposit": 2 * BASE_UNITS_PER_AGR},
         "description": "dearer signals"},
    )  # fmt: skip
    checked = cli.json("gov", "propose", good, "--check")
    assert checked["ok"] and checked["kind"] == "param_change"
    sent = cli.json("gov", "propose", good, "--wallet", "alice", wallet=True)
    proposal = sent["proposal"]
    assert proposal["status"] == "voting" and proposal["proposer"] == ALICE.address

    voted = cli.json("gov", "vote", str(proposal["id"]), "yes", "--wallet", "bob", wallet=True)
    assert voted["vote"]["power"] == 500 * BASE_UNITS_PER_AGR and voted["tally"]["yes"] > 0
    again = cli.run("gov", "vote", str(proposal["id"]), "no", "--wallet", "bob", wallet=True)
    assert_user_error(again, 2406)
    assert_user_error(cli.run("gov", "vote", str(proposal["id"]), "maybe", "--wallet", "bob",
                              wallet=True), 2)  # fmt: skip
    assert InvalidVote.code == 2412

    shown = cli.json("gov", "show", str(proposal["id"]))
    assert shown == node.get_json(f"/v1/governance/proposals/{proposal['id']}")
    human = cli.run("gov", "show", str(proposal["id"]))
    assert human.exit_code == 0 and "param_change on the parameters track" in human.stdout
    listed = cli.json("gov", "list", "--track", "parameters")["proposals"]
    assert [p["id"] for p in listed] == [proposal["id"]]
    assert cli.json("gov", "list", "--status", "rejected")["proposals"] == []
    assert_user_error(cli.run("gov", "list", "--status", "sleeping"), 3001)

    def enacted() -> bool:
        return bool(cli.json("gov", "show", str(proposal["id"]))["status"] == "enacted")

    wait_for(enacted, 30, "the enactment")
    params = cli.json("gov", "params")
    assert params["tracks"]["signal"]["deposit"]["value"] == 2 * BASE_UNITS_PER_AGR
    assert "track signal" in cli.run("gov", "params").stdout


def test_a_spend_in_agr_is_checked_in_base_units(cli: Cli, tmp_path: Path) -> None:
    spend = {"kind": "treasury_spend", "recipient": BOB.address, "amount": "2.5", "payments": 3}
    checked = cli.json("gov", "propose", write(tmp_path, "spend.json", spend), "--check")
    assert checked["body"]["amount"] == 2_500_000_000 and checked["body"]["payments"] == 3
    bad = write(tmp_path, "bad.json", {**spend, "amount": "two"})
    assert_user_error(cli.run("gov", "propose", bad, "--check"), 2)


def test_treasury_show(cli: Cli, node: NodeProcess) -> None:
    treasury = cli.json("treasury", "show")
    assert treasury["balance"] > 0 and treasury["streams"] == []
    human = cli.run("treasury", "show")
    assert human.exit_code == 0 and "of each block's emission" in human.stdout

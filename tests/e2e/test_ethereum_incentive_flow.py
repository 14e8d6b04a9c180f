"""The whole incentive flow over the Ethereum sequencer gives exactly what it gives locally.

A subnet is created and tuned (tempo 2, commit-reveal off, no weights rate limit), a
validator and two miners register, stake is added and partly removed, the validator sets
weights twice, and several epochs pay emission. The same signed transactions, in the same
groups, run through three executions:

1. **Ethereum**: ``agora node run --dev --sequencer ethereum`` posting to an Inbox on a real
   anvil. anvil mines only when the test asks (``evm_mine``): each group is submitted to
   the node in one request, the test waits until the node's post is in anvil's mempool,
   then mines exactly one EVM block. So Agora height h holds exactly group h, which the
   test checks on the node's block h. (With interval mining, heights would also hold the
   empty blocks in between, which a local node cannot reproduce: it never seals an empty
   block when sealing on demand.) The node reads with 0 confirmations, so it has applied
   group h before group h + 1 is admitted (a hotkey's first fee comes from a transfer in an
   earlier group).
2. **In-process replay**: the Ethereum node's blocks (``/v1/blocks``: raw transactions and
   timestamps per height) are fed to ``build_block`` on a fresh dev genesis. Every header
   (block hash and state root) and every receipt must equal the node's: the node executes
   what it derives, nothing else.
3. **Local**: ``agora node run --dev --block-time-ms 0`` gets the same groups, one request
   each, waiting for each to be included; a local node seals whatever waits in one block, so
   its height h holds group h too. Its state root at every height must equal the Ethereum
   node's, and so must balances, stakes and the metagraph (incentive, dividends, emission).
   Only block hashes may differ: a header holds its timestamp (the EVM block's time there,
   the wall clock here), while the state transition reads no timestamp, so the state roots
   cannot differ unless execution does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from anvil import Anvil, find_anvil, rpc_call, start_anvil
from node_helpers import (
    DEV_ACCOUNTS,
    MIN_FEE,
    DevKey,
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    make_key,
    wait_for,
)

from agora.client.transactions import make_transaction
from agora.node.devchain import DEV_CHAIN_ID, create_dev_genesis
from agora.node.wire import header_to_json, receipt_to_json
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake, RemoveStake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register, SetHyperparameter
from agora.protocol.transition import build_block
from agora.protocol.weights import SetWeights

pytestmark = pytest.mark.skipif(
    find_anvil() is None,
    reason="anvil is not installed: npm install --prefix . --no-save @foundry-rs/anvil-linux-amd64",
)

AGR = BASE_UNITS_PER_AGR
DEV = get_dev_keys()
OWNER, ALICE, BOB, CAROL, FILLER = DEV[0], DEV[1], DEV[2], DEV[3], DEV[7]
VALIDATOR = make_key("eth-flow-validator")
MINERS = [make_key("eth-flow-miner-1"), make_key("eth-flow-miner-2")]
SINK = make_key("eth-flow-sink")
NETUID = 1
TEMPO = 2  # subnet 1 then runs its epoch at the end of heights 1, 4, 7, 10, 13
DEPLOYER, POSTER = 0, 1
TIMEOUT_SECONDS = 30.0


def address(key: DevKey) -> Address:
    return Address(key.public_key)


@dataclass
class Signer:
    """Signs bodies with each sender's next nonce, counted here (the groups are fixed)."""

    nonces: dict[bytes, int] = field(default_factory=dict)

    def sign(self, sender: DevKey, body: Any) -> bytes:
        nonce = self.nonces.get(sender.public_key, 0)
        self.nonces[sender.public_key] = nonce + 1
        return make_transaction(
            chain_id=DEV_CHAIN_ID,
            public_key=sender.public_key,
            sign=sender.sign,
            nonce=nonce,
            fee=MIN_FEE,
            body=body,
        )


def filler(signer: Signer) -> list[bytes]:
    return [signer.sign(FILLER, Transfer(recipient=address(SINK), amount=1))]


def make_groups() -> list[list[bytes]]:
    """The flow, one list of signed transactions per Agora height (heights 1, 2, ...)."""
    s = Signer()
    validator = address(VALIDATOR)

    def weights(values: tuple[int, int]) -> SetWeights:
        return SetWeights(netuid=NETUID, uids=(1, 2), values=values, version_key=0)

    tune = [("tempo", TEMPO), ("commit_reveal", 0), ("weights_rate_limit", 0)]
    return [
        [  # 1
            s.sign(
                OWNER, CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
            ),
            s.sign(ALICE, Transfer(recipient=validator, amount=5 * AGR)),
        ],
        [s.sign(OWNER, SetHyperparameter(netuid=NETUID, name=n, value=v)) for n, v in tune],
        [  # 3: uids 0 (validator), 1 and 2 (miners); stake from the owner and a delegator
            s.sign(ALICE, Register(netuid=NETUID, hotkey=validator)),
            s.sign(BOB, Register(netuid=NETUID, hotkey=address(MINERS[0]))),
            s.sign(BOB, Register(netuid=NETUID, hotkey=address(MINERS[1]))),
            s.sign(ALICE, AddStake(hotkey=validator, amount=100 * AGR)),
            s.sign(CAROL, AddStake(hotkey=validator, amount=50 * AGR)),
        ],
        filler(s),  # 4: the epoch gives the validator its permit
        [s.sign(VALIDATOR, weights((65_535, 20_000)))],
        filler(s),
        filler(s),  # 7: epoch
        [s.sign(CAROL, RemoveStake(hotkey=validator, amount=10 * AGR))],
        filler(s),
        filler(s),  # 10: epoch
        [s.sign(VALIDATOR, weights((30_000, 65_535)))],
        filler(s),
        filler(s),  # 13: epoch
    ]


# --- processes -------------------------------------------------------------------------------


def deploy_with_manual_mining(anvil: Anvil) -> dict[str, Any]:
    """``agora inbox deploy --json``; the deployment is the one transaction of one block."""
    deployer = get_accounts(anvil)[DEPLOYER]
    process = subprocess.Popen(
        [sys.executable, "-m", "agora", "inbox", "deploy", "--rpc", anvil.url]
        + ["--key", anvil.private_keys[DEPLOYER], "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ | {"COLUMNS": "400"},
    )
    try:
        wait_for(lambda: transaction_count(anvil, deployer, "pending") == 1, 30, "the deployment")
        rpc_call(anvil.url, "evm_mine", [])
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    deployment: dict[str, Any] = orjson.loads(stdout)
    return deployment


def get_accounts(anvil: Anvil) -> list[str]:
    accounts = rpc_call(anvil.url, "eth_accounts", [])
    assert isinstance(accounts, list)
    return [str(account) for account in accounts]


def transaction_count(anvil: Anvil, account: str, block: str) -> int:
    return int(str(rpc_call(anvil.url, "eth_getTransactionCount", [account, block])), 16)


@dataclass
class Runs:
    anvil: Anvil
    ethereum: NodeProcess
    local: NodeProcess
    poster: str  # the Ethereum node's EVM account


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    processes = NodeProcesses(tmp_path / "logs")
    with start_anvil(block_time=None) as anvil:
        try:
            deployment = deploy_with_manual_mining(anvil)
            arguments = (
                "--sequencer",
                "ethereum",
                "--rpc",
                anvil.url,
                "--inbox",
                deployment["address"],
                "--genesis-block",
                str(deployment["genesis_block"]),
                "--confirmations",
                "0",
            )
            saved = os.environ.get("AGORA_EVM_KEY")
            os.environ["AGORA_EVM_KEY"] = anvil.private_keys[POSTER]
            try:
                ethereum = processes.run(tmp_path / "ethereum", extra=arguments)
            finally:
                os.environ.pop("AGORA_EVM_KEY")
                if saved is not None:
                    os.environ["AGORA_EVM_KEY"] = saved
            local = processes.run(tmp_path / "local", block_time_ms=0)
            poster = get_accounts(anvil)[POSTER]
            yield Runs(anvil=anvil, ethereum=ethereum, local=local, poster=poster)
        finally:
            processes.stop_all()


def seal_on_ethereum(runs: Runs, height: int, group: list[bytes]) -> None:
    """One request to the node, its one post in anvil's mempool, one EVM block, applied."""
    mined = transaction_count(runs.anvil, runs.poster, "latest")
    runs.ethereum.submit(group)
    wait_for(
        lambda: transaction_count(runs.anvil, runs.poster, "pending") > mined,
        TIMEOUT_SECONDS,
        f"the post of group {height}",
    )
    rpc_call(runs.anvil.url, "evm_mine", [])
    runs.ethereum.wait_height(height, timeout=TIMEOUT_SECONDS)


def seal_locally(runs: Runs, group: list[bytes]) -> None:
    for tx_hash in runs.local.submit(group):
        runs.local.wait_included(tx_hash, timeout=TIMEOUT_SECONDS)


def list_blocks(node: NodeProcess, top: int) -> list[dict[str, Any]]:
    """Blocks 1..top, each with its receipts."""
    return [node.get_json(f"/v1/blocks/{height}") for height in range(1, top + 1)]


def view_of(node: NodeProcess) -> dict[str, Any]:
    """What a user reads of the flow's outcome: balances, stakes, the metagraph."""
    keys = [OWNER, ALICE, BOB, CAROL, FILLER, VALIDATOR, *MINERS, SINK]
    return {
        "accounts": [node.account(key.address)["balance"] for key in keys],
        "validator": node.get_json(f"/v1/hotkeys/{VALIDATOR.address}"),
        "subnet": node.get_json(f"/v1/subnets/{NETUID}"),
        "metagraph": node.get_json(f"/v1/subnets/{NETUID}/metagraph?matrices=1"),
    }


# --- the test ----------------------------------------------------------------------------------


def test_incentive_flow_over_ethereum_equals_the_local_run(runs: Runs) -> None:
    groups = make_groups()
    for height, group in enumerate(groups, start=1):
        seal_on_ethereum(runs, height, group)
        seal_locally(runs, group)
    top = len(groups)
    assert runs.ethereum.get_json("/v1/head")["height"] == top
    assert runs.local.get_json("/v1/head")["height"] == top
    ethereum_blocks = list_blocks(runs.ethereum, top)
    local_blocks = list_blocks(runs.local, top)

    # 1. Ethereum height h holds exactly group h, and every transaction succeeded.
    for block, group in zip(ethereum_blocks, groups, strict=True):
        assert block["transactions"] == ["0x" + raw.hex() for raw in group]
        assert all(receipt["success"] for receipt in block["receipts"]), block["receipts"]

    # 2. Replaying the Ethereum node's batches in this process gives its headers and receipts.
    state = create_genesis_state(create_dev_genesis(DEV_ACCOUNTS, 0))
    genesis = runs.ethereum.get_json("/v1/blocks/0")["header"]
    assert genesis["state_root"] == "0x" + state.state_root.hex()
    for block in ethereum_blocks:
        transactions = [bytes.fromhex(raw[2:]) for raw in block["transactions"]]
        applied = build_block(state, block["header"]["timestamp"], transactions)
        assert header_to_json(applied.block.header) == block["header"]
        assert [receipt_to_json(r) for r in applied.receipts] == block["receipts"]

    # 3. The local node: same groups at the same heights, same state roots and receipts.
    assert runs.local.get_json("/v1/blocks/0")["header"] == genesis
    for mine, theirs in zip(local_blocks, ethereum_blocks, strict=True):
        assert mine["transactions"] == theirs["transactions"]
        assert mine["receipts"] == theirs["receipts"]
        assert mine["header"]["state_root"] == theirs["header"]["state_root"]
    view = view_of(runs.ethereum)
    assert view_of(runs.local) == view

    # The flow did what it is for: stake moved, weights paid the miners and the validator.
    neurons = view["metagraph"]["neurons"]
    assert [n["hotkey"] for n in neurons] == [VALIDATOR.address, *(m.address for m in MINERS)]
    assert neurons[0]["validator_permit"] and neurons[0]["dividends"] > 0
    assert neurons[1]["incentive"] > 0 and neurons[2]["incentive"] > 0
    assert all(n["emission"] > 0 for n in neurons)
    assert neurons[0]["weights"] == [[1, 30_000], [2, 65_535]]
    stakers = {s["coldkey"]: s["stake"] for s in view["validator"]["stakers"]}
    assert stakers[CAROL.address] >= 40 * AGR and stakers[ALICE.address] >= 100 * AGR

"""A governance flow over the Ethereum sequencer gives the state a local run gives.

Two accounts stake, one proposes a higher minimum fee and another a signal, they vote (one
with conviction), the voting closes, the timelock runs and the change is enacted; the next
transactions pay the new fee. The same signed groups run two ways:

1. **Ethereum**: a node ordering through an Inbox on anvil, one EVM block per Agora height
   (as in test_ethereum_incentive_flow, whose anvil helpers this test shares), started from
   a genesis whose tracks vote for 10 blocks and enact 5 blocks later.
2. **In process**: the same groups sealed by ``build_block`` on the same genesis, at the
   timestamps of the Ethereum node's blocks (block hashes are part of the state: services
   prove endpoints against recent ones).

Every height's header, every receipt, and the final tallies must be equal: governance reads
no clock, so where the order is the same the state is the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anvil import find_anvil, start_anvil
from governance_helpers import NODE_TRACKS
from node_helpers import DEV_ACCOUNTS, DevKey, NodeProcesses, get_dev_keys, make_key
from test_ethereum_incentive_flow import (
    POSTER,
    Runs,
    deploy_with_manual_mining,
    get_accounts,
    seal_on_ethereum,
)

from agora.client.transactions import make_transaction
from agora.node.devchain import DEV_CHAIN_ID, create_dev_genesis
from agora.node.wire import header_to_json, proposal_to_json, receipt_to_json
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.governance import ProposeParamChange, ProposeText, Vote, get_proposals
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import AddStake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register
from agora.protocol.transition import build_block

pytestmark = pytest.mark.skipif(
    find_anvil() is None,
    reason="anvil is not installed: npm install --prefix . --no-save @foundry-rs/anvil-linux-amd64",
)

AGR = BASE_UNITS_PER_AGR
DEV = get_dev_keys()
OWNER, ALICE, BOB, CAROL, FILLER = DEV[0], DEV[1], DEV[2], DEV[3], DEV[7]
HOTKEYS = {ALICE.name: make_key("gov-flow-alice"), BOB.name: make_key("gov-flow-bob")}
SINK = make_key("gov-flow-sink")
NEW_MIN_FEE = 1_500
NETUID = 1


def genesis_document() -> dict[str, Any]:
    document = create_dev_genesis(DEV_ACCOUNTS, 0)
    document["governance"] = {"tracks": NODE_TRACKS}
    return document


class Signer:
    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}
        self.fee = Params().min_fee

    def sign(self, sender: DevKey, body: Any) -> bytes:
        nonce = self.nonces.get(sender.public_key, 0)
        self.nonces[sender.public_key] = nonce + 1
        return make_transaction(
            chain_id=DEV_CHAIN_ID,
            public_key=sender.public_key,
            sign=sender.sign,
            nonce=nonce,
            fee=self.fee,
            body=body,
        )


def make_groups() -> list[list[bytes]]:
    """One list of signed transactions per height; proposals at 4, enactment at 19."""
    s = Signer()
    hot = {name: Address(key.public_key) for name, key in HOTKEYS.items()}
    create = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    groups = [
        [s.sign(OWNER, create)],  # 1
        [s.sign(k, Register(netuid=NETUID, hotkey=hot[k.name])) for k in (ALICE, BOB)],
        [
            s.sign(ALICE, AddStake(hotkey=hot[ALICE.name], amount=300 * AGR)),
            s.sign(BOB, AddStake(hotkey=hot[BOB.name], amount=200 * AGR)),
        ],
        [  # 4: proposal 0 closes at the end of 14 and is enacted at the end of 19
            s.sign(ALICE, ProposeParamChange(changes=(("min_fee", NEW_MIN_FEE),), description="")),
            s.sign(CAROL, ProposeText(description="a signal")),
        ],
        [
            s.sign(ALICE, Vote(proposal_id=0, choice=1, conviction=1)),
            s.sign(BOB, Vote(proposal_id=0, choice=0, conviction=0)),
            s.sign(BOB, Vote(proposal_id=1, choice=1, conviction=0)),
        ],
    ]
    while len(groups) < 19:
        groups.append([s.sign(FILLER, Transfer(recipient=Address(SINK.public_key), amount=1))])
    s.fee = NEW_MIN_FEE  # from height 20 the old minimum is refused at admission
    groups.append([s.sign(FILLER, Transfer(recipient=Address(SINK.public_key), amount=2))])
    return groups


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    processes = NodeProcesses(tmp_path / "logs")
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(genesis_document()))
    with start_anvil(block_time=None) as anvil:
        try:
            deployment = deploy_with_manual_mining(anvil)
            arguments = (
                "--sequencer", "ethereum", "--rpc", anvil.url, "--inbox", deployment["address"],
                "--genesis-block", str(deployment["genesis_block"]), "--confirmations", "0",
            )  # fmt: skip
            saved = os.environ.get("AGORA_EVM_KEY")
            os.environ["AGORA_EVM_KEY"] = anvil.private_keys[POSTER]
            try:
                ethereum = processes.run(
                    tmp_path / "ethereum", dev=False, genesis=genesis, extra=arguments
                )
            finally:
                os.environ.pop("AGORA_EVM_KEY")
                if saved is not None:
                    os.environ["AGORA_EVM_KEY"] = saved
            poster = get_accounts(anvil)[POSTER]
            yield Runs(anvil=anvil, ethereum=ethereum, local=ethereum, poster=poster)
        finally:
            processes.stop_all()


@pytest.mark.slow
def test_governance_over_ethereum_equals_the_run_in_process(runs: Runs) -> None:
    groups = make_groups()
    for height, group in enumerate(groups, start=1):
        seal_on_ethereum(runs, height, group)
    node = runs.ethereum

    state = create_genesis_state(genesis_document())
    assert node.get_json("/v1/blocks/0")["header"]["state_root"] == "0x" + state.state_root.hex()
    for height, group in enumerate(groups, start=1):
        theirs = node.get_json(f"/v1/blocks/{height}")
        # The EVM block's time: block hashes enter the state (services' recent block hashes).
        applied = build_block(state, theirs["header"]["timestamp"], group)
        assert theirs["transactions"] == ["0x" + raw.hex() for raw in group]
        assert [receipt_to_json(r) for r in applied.receipts] == theirs["receipts"]
        assert all(r.success for r in applied.receipts), theirs["receipts"]
        assert header_to_json(applied.block.header) == theirs["header"]

    mine = [proposal_to_json(state, p, include_votes=True) for p in get_proposals(state)]
    assert mine == [node.get_json(f"/v1/governance/proposals/{p['id']}") for p in mine]
    assert [p["status"] for p in mine] == ["enacted", "enacted"]
    assert mine[0]["timeline"]["enacted_at"] == 19
    assert mine[0]["tally"]["yes"] == 2 * 300 * AGR and mine[0]["tally"]["no"] == 200 * AGR
    assert state.params.min_fee == NEW_MIN_FEE
    assert node.get_json("/v1/chain")["params"]["min_fee"] == NEW_MIN_FEE

"""Helpers for governance tests: a chain with short tracks, staked voters and a funded treasury.

Tracks are shortened in the genesis document (the same way a devnet does) so that a proposal
goes from submission to enactment in tens of blocks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node_helpers import make_key
from protocol_helpers import MIN_FEE, Chain, KeyPair, create_subnet, make_genesis, make_keys

from agora.client.transactions import make_transaction
from agora.node.devchain import DEV_CHAIN_ID, create_dev_genesis
from agora.protocol.address import Address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.governance import (
    Proposal,
    ProposeParamChange,
    ProposeText,
    Vote,
    get_proposal,
)
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register

AGR = BASE_UNITS_PER_AGR
TRACKS: dict[str, dict[str, int]] = {
    "parameters": {
        "deposit": 10 * AGR,
        "voting_period_blocks": 20,
        "timelock_blocks": 20,
        "extension_blocks": 6,
    },
    "small_spend": {
        "deposit": 1 * AGR,
        "voting_period_blocks": 20,
        "timelock_blocks": 5,
        "extension_blocks": 6,
        "max_spend": 10 * AGR,
    },
    "large_spend": {
        "deposit": 10 * AGR,
        "voting_period_blocks": 30,
        "timelock_blocks": 10,
        "extension_blocks": 6,
        "max_spend": 50 * AGR,
    },
    "emergency": {"deposit": 5 * AGR, "voting_period_blocks": 10, "extension_blocks": 3},
    "signal": {"deposit": 1 * AGR, "voting_period_blocks": 10, "extension_blocks": 3},
}
PARAMS: dict[str, int] = {
    "governance_epoch_blocks": 10,
    "conviction_lock_blocks": 20,
    "treasury_emission_u16": 16_383,
}
NO, YES, ABSTAIN, VETO = range(4)


def make_governance_genesis(
    keys: list[KeyPair], params: dict[str, int] | None = None, seed: int = 0
) -> dict[str, Any]:
    genesis = make_genesis(keys, params={**PARAMS, **(params or {})})
    genesis["governance"] = {"tracks": TRACKS}
    return genesis


class Governed:
    """A chain with one subnet (no epochs) on which each voter staked on its own hotkey."""

    def __init__(
        self,
        stakes: list[int],
        params: dict[str, int] | None = None,
        seed: int = 0,
        extra_accounts: int = 2,
    ) -> None:
        keys = make_keys(1 + 2 * len(stakes) + extra_accounts, seed=seed)
        self.owner = keys[0]
        self.voters = keys[1 : 1 + len(stakes)]
        self.hotkeys = keys[1 + len(stakes) : 1 + 2 * len(stakes)]
        self.others = keys[1 + 2 * len(stakes) :]
        self.genesis = make_governance_genesis(keys, params)
        self.chain = Chain(create_genesis_state(self.genesis))
        self.netuid = create_subnet(self.chain, self.owner, tempo=50_000)
        registrations = [
            (voter, Register(netuid=self.netuid, hotkey=hotkey.address))
            for voter, hotkey in zip(self.voters, self.hotkeys, strict=True)
        ]
        assert all(r.success for r in self.chain.block(*registrations))
        stakings = [
            (voter, AddStake(hotkey=hotkey.address, amount=amount))
            for voter, hotkey, amount in zip(self.voters, self.hotkeys, stakes, strict=True)
            if amount
        ]
        assert all(r.success for r in self.chain.block(*stakings))

    @property
    def state(self) -> Any:
        return self.chain.state

    def propose(self, sender: KeyPair, body: Any) -> Proposal:
        receipt = self.chain.send(sender, body)
        assert receipt.success, receipt.message
        return self.last_proposal()

    def last_proposal(self) -> Proposal:
        return get_proposal(self.state, self.state.get_ledger("proposals") - 1)

    def vote(self, voter: KeyPair, proposal_id: int, choice: int, conviction: int = 0) -> Any:
        return self.chain.send(
            voter, Vote(proposal_id=proposal_id, choice=choice, conviction=conviction)
        )

    def votes(self, proposal_id: int, *ballots: tuple[KeyPair, int]) -> None:
        receipts = self.chain.block(
            *(
                (voter, Vote(proposal_id=proposal_id, choice=choice, conviction=0))
                for voter, choice in ballots
            )
        )
        assert all(r.success for r in receipts), [r.message for r in receipts]

    def proposal(self, proposal_id: int) -> Proposal:
        return get_proposal(self.state, proposal_id)

    def close(self, proposal_id: int) -> Proposal:
        """Seal blocks until the proposal's voting has closed (the end of its last block)."""
        self.chain.advance_to(self.proposal(proposal_id).voting_ends_at + 1)
        return self.proposal(proposal_id)


def param_change(*changes: tuple[str, int], description: str = "") -> ProposeParamChange:
    return ProposeParamChange(changes=tuple(changes), description=description)


def text(description: str = "a signal") -> ProposeText:
    return ProposeText(description=description)


def address_of(key: KeyPair) -> Address:
    return key.address


# --- a governed dev node ------------------------------------------------------------------------

NODE_TRACKS = {
    name: {"voting_period_blocks": 10, "timelock_blocks": 5, "extension_blocks": 2}
    for name in ("parameters", "small_spend", "large_spend", "emergency", "signal")
}
NODE_TRACKS["emergency"]["timelock_blocks"] = 0
NODE_TRACKS["signal"]["timelock_blocks"] = 0


def write_governed_genesis(path: Path, accounts: int) -> Path:
    """A dev genesis whose tracks vote for 10 blocks and enact 5 blocks later."""
    document = create_dev_genesis(accounts, 1_763_700_000)
    document["governance"] = {"tracks": NODE_TRACKS}
    path.write_text(json.dumps(document))
    return path


def stake_on_node(node: Any, owner: Any, stakers: list[Any], amount: int) -> None:
    """``owner`` creates a subnet; each staker registers a hotkey of its own and stakes."""

    def signed(key: Any, body: Any, offset: int = 0) -> bytes:
        nonce = node.account(key.address)["next_nonce"] + offset
        return make_transaction(
            chain_id=DEV_CHAIN_ID,
            public_key=key.public_key,
            sign=key.sign,
            nonce=nonce,
            fee=MIN_FEE,
            body=body,
        )

    create = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    (tx_hash,) = node.submit([signed(owner, create)])
    assert node.wait_included(tx_hash)["receipt"]["success"]
    netuid = max(s["netuid"] for s in node.get_json("/v1/subnets")["subnets"])
    raws = []
    for staker in stakers:
        hotkey = Address(make_key(f"governance-hotkey-{staker.name}").public_key)
        raws.append(signed(staker, Register(netuid=netuid, hotkey=hotkey)))
        raws.append(signed(staker, AddStake(hotkey=hotkey, amount=amount), 1))
    hashes = node.submit(raws)
    for tx_hash in hashes:
        assert node.wait_included(tx_hash)["receipt"]["success"]

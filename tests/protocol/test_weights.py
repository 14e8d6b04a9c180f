"""Weights and commit-reveal on real ledger state (docs/yuma.md sections 8 and 9).

A subnet of two staked validators and three miners, past its first epoch so that the
validators hold permits. ``set_weights`` stores rows max-upscaled; commit-reveal stores a
hash and takes the weights one epoch later. Every refusal carries its stable code and leaves
the state as an empty block would, except the sender's nonce and fee.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from protocol_helpers import (
    Chain,
    KeyPair,
    assert_refused,
    create_subnet,
    make_genesis_state,
    make_keys,
)

from agora.protocol.consensus.weights import WeightCommit, compute_commit_hash
from agora.protocol.invariants import check_invariants
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake
from agora.protocol.subnets import (
    Register,
    SetHyperparameter,
    get_epoch_with_lookahead,
    get_neuron,
    get_subnet,
    is_epoch_block,
)
from agora.protocol.weights import CommitWeights, RevealWeights, SetWeights, get_commits

KEYS = make_keys(10, seed=303)
OWNER, ALICE, BOB, CAROL = KEYS[:4]
V0, V1, M0, M1, M2, STRANGER = KEYS[4:10]
AGR = BASE_UNITS_PER_AGR
TEMPO = 4
SALT = (11, 22, 33, 44)


@dataclass
class World:
    chain: Chain
    netuid: int

    def weights(self, hotkey: KeyPair) -> tuple[tuple[int, int], ...]:
        uid = (V0, V1, M0, M1, M2).index(hotkey)
        return get_neuron(self.chain.state, self.netuid, uid).weights

    def set_hyperparameter(self, name: str, value: int) -> None:
        body = SetHyperparameter(netuid=self.netuid, name=name, value=value)
        assert self.chain.send(OWNER, body).success

    def next_epoch(self) -> int:
        """The epoch (with lookahead) a transaction in the next block sees."""
        subnet = get_subnet(self.chain.state, self.netuid)
        return get_epoch_with_lookahead(subnet, self.chain.height + 1)

    def advance_past_epoch(self) -> None:
        """Seal blocks until one has just run the subnet's epoch."""
        self.chain.advance(1)
        while not is_epoch_block(self.netuid, TEMPO, self.chain.height):
            self.chain.advance(1)

    def advance_to_epoch(self, epoch: int) -> None:
        while self.next_epoch() < epoch:
            self.chain.advance(1)


def make_world(commit_reveal: bool) -> World:
    chain = Chain(make_genesis_state(KEYS))
    netuid = create_subnet(
        chain, OWNER, tempo=TEMPO, commit_reveal=int(commit_reveal), weights_rate_limit=0
    )
    receipts = chain.block(
        (ALICE, Register(netuid=netuid, hotkey=V0.address)),
        (BOB, Register(netuid=netuid, hotkey=V1.address)),
        *((CAROL, Register(netuid=netuid, hotkey=m.address)) for m in (M0, M1, M2)),
        (ALICE, AddStake(hotkey=V0.address, amount=300 * AGR)),
        (BOB, AddStake(hotkey=V1.address, amount=100 * AGR)),
    )
    assert all(r.success for r in receipts), [r.message for r in receipts]
    world = World(chain, netuid)
    world.advance_past_epoch()
    permits = [get_neuron(chain.state, netuid, uid).validator_permit for uid in range(5)]
    assert permits == [True, True, False, False, False]
    return world


@pytest.fixture
def direct() -> World:
    return make_world(commit_reveal=False)


@pytest.fixture
def hidden() -> World:
    return make_world(commit_reveal=True)


def set_weights(uids: tuple[int, ...], values: tuple[int, ...], netuid: int = 1) -> SetWeights:
    return SetWeights(netuid=netuid, uids=uids, values=values, version_key=0)


# --- set_weights ----------------------------------------------------------------------------


def test_a_validator_sets_weights_stored_max_upscaled(direct: World) -> None:
    receipt = direct.chain.send(V0, set_weights((2, 3, 4), (1, 2, 4)))
    assert receipt.success, receipt.message
    # 65535/4 per unit, rounded half away from zero: 16383.75 and 32767.5.
    assert direct.weights(V0) == ((2, 16_384), (3, 32_768), (4, 65_535))
    assert get_neuron(direct.chain.state, direct.netuid, 0).last_update == direct.chain.height
    check_invariants(direct.chain.state)


def test_a_miner_without_a_permit_may_set_a_single_self_weight(direct: World) -> None:
    assert direct.chain.send(M0, set_weights((2,), (7,))).success
    assert direct.weights(M0) == ((2, 65_535),)


def test_weights_are_used_by_the_next_epoch(direct: World) -> None:
    direct.chain.block(
        (V0, set_weights((2, 3), (65_535, 65_535))), (V1, set_weights((2, 3), (65_535, 65_535)))
    )
    direct.advance_past_epoch()
    state = direct.chain.state
    incentive = [get_neuron(state, direct.netuid, uid).incentive_u16 for uid in range(5)]
    assert incentive[2] == incentive[3] > 0 and incentive[4] == 0


@pytest.mark.parametrize(
    ("uids", "values", "code"),
    [
        ((2, 2), (1, 1), 2257),  # duplicate uid
        ((2, 9), (1, 1), 2258),  # no uid 9 on a subnet of 5
        ((2, 3), (1,), 2250),  # one value per uid
        ((0, 1, 2, 3, 4, 0), (1, 1, 1, 1, 1, 1), 2251),  # more weights than uids
    ],
)
def test_malformed_weights_are_refused(
    direct: World, uids: tuple[int, ...], values: tuple[int, ...], code: int
) -> None:
    assert_refused(direct.chain, V0, set_weights(uids, values), code)


def test_too_few_weights_are_refused(direct: World) -> None:
    direct.set_hyperparameter("min_allowed_weights", 3)
    assert_refused(direct.chain, V0, set_weights((2, 3), (1, 1)), 2259)
    assert direct.chain.send(V0, set_weights((2, 3, 4), (1, 1, 1))).success


def test_weights_without_a_validator_permit_are_refused(direct: World) -> None:
    assert_refused(direct.chain, M0, set_weights((3, 4), (1, 1)), 2256)


def test_weights_from_an_unregistered_hotkey_are_refused(direct: World) -> None:
    assert_refused(direct.chain, STRANGER, set_weights((2,), (1,)), 2252)


def test_weights_on_an_unknown_subnet_are_refused(direct: World) -> None:
    assert_refused(direct.chain, V0, set_weights((2,), (1,), netuid=7), 2001)


def test_weights_set_again_within_the_rate_limit_are_refused(direct: World) -> None:
    direct.set_hyperparameter("weights_rate_limit", 3)
    assert direct.chain.send(V0, set_weights((2,), (1,))).success
    set_at = direct.chain.height
    direct.chain.advance(1)
    assert_refused(direct.chain, V0, set_weights((3,), (1,)), 2255)
    direct.chain.advance_to(set_at + 3)
    assert direct.chain.send(V0, set_weights((3,), (1,))).success


def test_set_weights_on_a_commit_reveal_subnet_is_refused(hidden: World) -> None:
    assert_refused(hidden.chain, V0, set_weights((2,), (1,)), 2201)


def test_commit_and_reveal_on_a_direct_subnet_are_refused(direct: World) -> None:
    commit = CommitWeights(netuid=direct.netuid, commit_hash=bytes(32))
    assert_refused(direct.chain, V0, commit, 2202)
    reveal = RevealWeights(netuid=direct.netuid, uids=(2,), values=(1,), salt=SALT, version_key=0)
    assert_refused(direct.chain, V0, reveal, 2202)


# --- commit-reveal ------------------------------------------------------------------------


def commit(hotkey: KeyPair, uids: tuple[int, ...], values: tuple[int, ...]) -> CommitWeights:
    commit_hash = compute_commit_hash(
        hotkey=hotkey.address, netuid=1, uids=uids, values=values, salt=SALT, version_key=0
    )
    return CommitWeights(netuid=1, commit_hash=commit_hash)


def reveal(
    uids: tuple[int, ...], values: tuple[int, ...], salt: tuple[int, ...] = SALT
) -> RevealWeights:
    return RevealWeights(netuid=1, uids=uids, values=values, salt=salt, version_key=0)


def test_a_commit_revealed_in_the_next_epoch_sets_the_weights(hidden: World) -> None:
    chain, state = hidden.chain, hidden.chain.state
    epoch = hidden.next_epoch()
    assert chain.send(V0, commit(V0, (2, 3), (1, 3))).success
    committed_at = chain.height
    [pending] = get_commits(state, 1, V0.address)
    assert pending == WeightCommit(
        commit_hash=commit(V0, (2, 3), (1, 3)).commit_hash,
        commit_epoch=epoch,
        commit_block=committed_at,
    )
    assert get_neuron(state, 1, 0).last_update == committed_at
    assert hidden.weights(V0) == ()

    hidden.advance_to_epoch(epoch + 1)
    receipt = chain.send(V0, reveal((2, 3), (1, 3)))
    assert receipt.success, receipt.message
    assert hidden.weights(V0) == ((2, 21_845), (3, 65_535))
    assert get_commits(state, 1, V0.address) == ()
    # With commit-reveal, the commit is the update: the reveal does not move it.
    assert get_neuron(state, 1, 0).last_update == committed_at
    check_invariants(state)


def test_a_reveal_in_the_commit_epoch_is_too_early(hidden: World) -> None:
    hidden.advance_past_epoch()
    epoch = hidden.next_epoch()
    assert hidden.chain.send(V0, commit(V0, (2,), (1,))).success
    assert hidden.next_epoch() == epoch
    assert_refused(hidden.chain, V0, reveal((2,), (1,)), 2273)


def test_a_reveal_with_the_wrong_salt_does_not_match(hidden: World) -> None:
    epoch = hidden.next_epoch()
    assert hidden.chain.send(V0, commit(V0, (2,), (1,))).success
    hidden.advance_to_epoch(epoch + 1)
    assert_refused(hidden.chain, V0, reveal((2,), (1,), salt=(11, 22, 33, 45)), 2274)
    assert_refused(hidden.chain, V0, reveal((2,), (2,)), 2274)
    assert hidden.chain.send(V0, reveal((2,), (1,))).success


def test_a_reveal_without_a_commit_is_refused(hidden: World) -> None:
    assert_refused(hidden.chain, V0, reveal((2,), (1,)), 2271)


def test_a_reveal_after_its_epoch_has_expired(hidden: World) -> None:
    epoch = hidden.next_epoch()
    assert hidden.chain.send(V0, commit(V0, (2,), (1,))).success
    hidden.advance_to_epoch(epoch + 2)
    assert_refused(hidden.chain, V0, reveal((2,), (1,)), 2272)


def test_a_revealed_row_still_follows_the_weights_rules(hidden: World) -> None:
    epoch = hidden.next_epoch()
    assert hidden.chain.send(M0, commit(M0, (3, 4), (1, 1))).success
    hidden.advance_to_epoch(epoch + 1)
    assert_refused(hidden.chain, M0, reveal((3, 4), (1, 1)), 2256)
    assert len(get_commits(hidden.chain.state, 1, M0.address)) == 1


def test_more_than_ten_unrevealed_commits_are_refused(hidden: World) -> None:
    commits = [commit(V1, (2,), (value,)) for value in range(1, 11)]
    receipts = hidden.chain.block(*((V1, body) for body in commits))
    assert all(r.success for r in receipts)
    assert len(get_commits(hidden.chain.state, 1, V1.address)) == 10
    assert_refused(hidden.chain, V1, commit(V1, (2,), (11,)), 2270)


def test_commits_are_rate_limited(hidden: World) -> None:
    hidden.set_hyperparameter("weights_rate_limit", 50)
    hidden.chain.advance(50)
    assert hidden.chain.send(V0, commit(V0, (2,), (1,))).success
    assert_refused(hidden.chain, V0, commit(V0, (2,), (2,)), 2255)

"""Emission and epochs over many blocks of real ledger state, and their determinism.

A seeded run of a few hundred blocks on three subnets (one never gets a neuron), with random
registrations, stake moves and weights, checks after every block the supply invariants and
the minting schedule, and at every epoch that the payout, the owner cut and the treasury's
remainder add up to exactly what the subnet had pending. Honest validators' weights must
concentrate incentive on the miners they weight, and earn the validators dividends. Smaller
tests pin the halving, the supply cap and an empty subnet, and the whole run replays to the
same state roots on fresh states.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from protocol_helpers import (
    Chain,
    KeyPair,
    create_subnet,
    make_genesis,
    make_genesis_state,
    make_keys,
)

from agora.protocol.accounts import get_balance
from agora.protocol.genesis import create_genesis_state
from agora.protocol.invariants import check_invariants
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import AddStake, RemoveStake
from agora.protocol.subnets import (
    Register,
    get_neuron,
    get_neurons,
    get_subnet,
    get_subnets,
    get_uid,
    is_epoch_block,
)
from agora.protocol.transition import apply_block, build_block
from agora.protocol.weights import SetWeights

AGR = BASE_UNITS_PER_AGR
PARAMS = Params()
SEED = 20_251_121
HALVING_INTERVAL = 120
RANDOM_BLOCKS = 300
HONEST_STAKE = 400 * AGR

KEYS = make_keys(20, seed=404)
OWNERS = KEYS[0:3]  # one per subnet; they do nothing after setup but receive the owner cut
COLDKEYS = KEYS[3:7]
HONEST = KEYS[7:9]  # validators on subnet 1, weighting only the good miners
GOOD = KEYS[9:11]  # the miners the honest validators weight
OTHERS = KEYS[11:20]  # hotkeys that come and go, weight at random, or are weighted by no one
HOTKEY_OWNER = {
    **{h.address: COLDKEYS[i] for i, h in enumerate(HONEST)},
    **{h.address: COLDKEYS[2] for h in GOOD},
    **{h.address: COLDKEYS[i % 4] for i, h in enumerate(OTHERS)},
}
SUBNET_RULES = {
    1: {"tempo": 4, "max_uids": 16, "immunity_period": 20},
    2: {"tempo": 6, "max_uids": 4, "immunity_period": 8, "min_non_immune_uids": 0},
    3: {"tempo": 5},
}


@dataclass
class Run:
    """What the random run produced, for the tests to read."""

    chain: Chain
    genesis: dict[str, Any]
    epochs_checked: dict[int, int] = field(default_factory=dict)
    replacements: int = 0
    roots: list[bytes] = field(default_factory=list)


def weights_body(netuid: int, uids: list[int], values: list[int]) -> SetWeights:
    return SetWeights(netuid=netuid, uids=tuple(uids), values=tuple(values), version_key=0)


def setup(chain: Chain) -> None:
    for owner, (netuid, rules) in zip(OWNERS, SUBNET_RULES.items(), strict=True):
        common = {"commit_reveal": 0, "weights_rate_limit": 0}
        assert create_subnet(chain, owner, **common, **rules) == netuid
    receipts = chain.block(
        *((HOTKEY_OWNER[h.address], Register(netuid=1, hotkey=h.address)) for h in HONEST + GOOD),
        *(
            (COLDKEYS[i], AddStake(hotkey=h.address, amount=200 * AGR))
            for i, h in enumerate(HONEST)
        ),
    )
    assert all(r.success for r in receipts), [r.message for r in receipts]
    while not is_epoch_block(1, 4, chain.height):  # the first epoch hands out permits
        chain.advance(1)


def honest_weights(chain: Chain, rng: random.Random) -> SetWeights:
    uids = [get_uid(chain.state, 1, g.address) for g in GOOD]
    known = [uid for uid in uids if uid is not None]
    assert known == uids  # subnet 1 never fills up: the good miners are never pruned
    return weights_body(1, known, [rng.randrange(40_000, 65_536) for _ in known])


def random_transactions(chain: Chain, rng: random.Random) -> list[tuple[KeyPair, Any]]:
    state = chain.state
    items: list[tuple[KeyPair, Any]] = []
    for _ in range(rng.randrange(0, 4)):
        roll = rng.random()
        if roll < 0.3:
            hotkey = rng.choice(OTHERS)
            netuid = rng.choice((1, 2))
            items.append(
                (HOTKEY_OWNER[hotkey.address], Register(netuid=netuid, hotkey=hotkey.address))
            )
        elif roll < 0.55:
            known = [h for h in HONEST + GOOD + OTHERS if h.address in state.tables["hotkeys"]]
            hotkey = rng.choice(known)
            amount = rng.randrange(1, 3 * AGR)
            items.append((rng.choice(COLDKEYS), AddStake(hotkey=hotkey.address, amount=amount)))
        elif roll < 0.7:
            stakes = sorted(state.tables["stakes"].items())
            (hotkey_address, coldkey_address), staked = rng.choice(stakes)
            coldkey = next(k for k in COLDKEYS if k.address == coldkey_address)
            # Small moves, and now and then one base unit more than staked (refused).
            amount = staked + 1 if rng.random() < 0.1 else rng.randrange(1, min(staked, AGR) + 1)
            items.append((coldkey, RemoveStake(hotkey=hotkey_address, amount=amount)))
        elif roll < 0.8:
            items.append((rng.choice(HONEST), honest_weights(chain, rng)))
        else:
            netuid = rng.choice((1, 2))
            n = get_subnet(state, netuid).n
            uids = rng.sample(range(n), rng.randrange(1, n + 1))
            setter = rng.choice(OTHERS)
            items.append(
                (setter, weights_body(netuid, uids, [rng.randrange(65_536) for _ in uids]))
            )
    return items


def check_epoch_block(chain: Chain, firing: list[int], before: dict[str, Any]) -> None:
    """An epoch block holds no transaction: every base unit that moved is accounted for."""
    state = chain.state
    minted = state.get_ledger("minted") - before["minted"]
    subnet_count = len(before["pending"])
    share = minted // subnet_count
    owner_cuts = 0
    for netuid, pending in before["pending"].items():
        subnet = get_subnet(state, netuid)
        if netuid not in firing:
            assert subnet.pending_emission == pending + share
            continue
        assert subnet.pending_emission == 0
        owner = OWNERS[netuid - 1].address
        cut = get_balance(state, owner) - before["balances"][owner]
        expected_cut = (pending + share) * PARAMS.owner_cut_u16 // 65_535
        assert cut == (expected_cut if subnet.n > 0 else 0)
        owner_cuts += cut
    owners = {o.address for o in OWNERS}
    payout = sum(
        account.balance - before["balances"].get(address, 0)
        for address, account in state.tables["accounts"].items()
        if address not in owners
    )
    # Emission shared among subnets by floor division leaves its remainder to the treasury too.
    treasury = state.get_ledger("treasury") - before["treasury"] - (minted - share * subnet_count)
    pending_paid = sum(before["pending"][netuid] + share for netuid in firing)
    assert payout + owner_cuts + treasury == pending_paid
    assert payout >= 0 and treasury >= 0
    if 3 in firing:  # no neuron ever joined subnet 3: all of it went to the treasury
        assert get_subnet(state, 3).n == 0


def snapshot(chain: Chain) -> dict[str, Any]:
    state = chain.state
    return {
        "minted": state.get_ledger("minted"),
        "treasury": state.get_ledger("treasury"),
        "pending": {s.netuid: s.pending_emission for s in get_subnets(state)},
        "balances": {a: account.balance for a, account in state.tables["accounts"].items()},
    }


def run_random_blocks(seed: int) -> Run:
    rng = random.Random(seed)
    genesis = make_genesis(KEYS, params={"halving_interval_blocks": HALVING_INTERVAL})
    chain = Chain(create_genesis_state(genesis))
    setup(chain)
    run = Run(chain=chain, genesis=genesis, epochs_checked={1: 0, 2: 0, 3: 0})
    state = chain.state
    for _ in range(RANDOM_BLOCKS):
        height = chain.height + 1
        firing = [
            s.netuid
            for s in get_subnets(state)
            if is_epoch_block(s.netuid, s.hyperparameters.tempo, height)
        ]
        minted_before = state.get_ledger("minted")
        if firing:
            before = snapshot(chain)
            chain.advance(1)
            check_epoch_block(chain, firing, before)
            for netuid in firing:
                run.epochs_checked[netuid] += 1
        else:
            full = get_subnet(state, 2).n == SUBNET_RULES[2]["max_uids"]
            items = random_transactions(chain, rng)
            receipts = chain.block(*items)
            run.replacements += sum(
                1
                for (_, body), receipt in zip(items, receipts, strict=True)
                if full and receipt.success and isinstance(body, Register) and body.netuid == 2
            )
        check_invariants(state)
        # Minting follows the schedule: the initial amount halved every interval.
        expected = PARAMS.initial_block_emission >> (height // HALVING_INTERVAL)
        assert state.get_ledger("minted") - minted_before == expected
        run.roots.append(state.state_root)
    return run


@pytest.fixture(scope="module")
def run() -> Run:
    return run_random_blocks(SEED)


def test_the_random_run_checked_every_epoch_of_every_subnet(run: Run) -> None:
    # 300 blocks at tempos 4, 6 and 5: an epoch every 5, 7 and 6 blocks.
    assert run.epochs_checked[1] >= 59 and run.epochs_checked[2] >= 42
    assert run.epochs_checked[3] >= 49
    assert run.replacements > 0  # subnet 2 filled up and pruned
    assert get_subnet(run.chain.state, 3).n == 0


def test_minted_is_the_sum_of_every_blocks_emission(run: Run) -> None:
    state = run.chain.state
    # Emission starts with the block that creates the first subnet (block 1).
    schedule = sum(
        PARAMS.initial_block_emission >> (height // HALVING_INTERVAL)
        for height in range(1, run.chain.height + 1)
    )
    assert state.get_ledger("minted") == schedule
    supply = sum(account.balance for _, account in state.tables["accounts"].items())
    supply += sum(amount for _, amount in state.tables["stakes"].items())
    supply += sum(s.locked + s.pending_emission for s in get_subnets(state))
    supply += state.get_ledger("treasury")
    genesis_supply = sum(run.genesis["balances"].values())
    assert supply == genesis_supply + schedule - state.get_ledger("burned")


def test_honest_weights_concentrate_incentive_on_the_weighted_miners(run: Run) -> None:
    state = run.chain.state
    neurons = get_neurons(state, 1)
    good = {g.address for g in GOOD}
    # Random stake went everywhere, but the honest validators keep the majority kappa needs.
    stake = {n.hotkey: n.stake_u16 for n in neurons}
    assert sum(stake[h.address] for h in HONEST) > 65_535 // 2
    incentive = {n.hotkey: n.incentive_u16 for n in neurons}
    assert sum(incentive[g] for g in good) >= 65_535 * 95 // 100
    assert all(incentive[g] > 0 for g in good)
    assert len(neurons) > len(HONEST) + len(GOOD)  # others joined, and earned next to nothing
    consensus = {n.hotkey: n.consensus_u16 for n in neurons}
    assert all(consensus[g] > 0 for g in good)


def test_honest_validators_earn_dividends(run: Run) -> None:
    state = run.chain.state
    honest = [get_neuron(state, 1, get_uid(state, 1, h.address) or 0) for h in HONEST]
    assert [n.hotkey for n in honest] == [h.address for h in HONEST]
    assert all(n.validator_permit and n.dividends_u16 > 0 and n.emission > 0 for n in honest)
    assert sum(n.dividends_u16 for n in honest) >= 65_535 // 2


def test_the_same_blocks_give_the_same_state_roots_on_fresh_states(run: Run) -> None:
    """Replaying the sealed blocks checks each root; re-sealing their bytes rebuilds them."""
    follower = create_genesis_state(run.genesis)
    resealer = create_genesis_state(run.genesis)
    offset = len(run.chain.blocks) - len(run.roots)
    for index, block in enumerate(run.chain.blocks):
        apply_block(follower, block)  # raises StateRootMismatch on any difference
        rebuilt = build_block(resealer, block.header.timestamp, list(block.transactions)).block
        assert rebuilt == block
        assert follower.state_root == resealer.state_root == block.header.state_root
        if index >= offset:
            assert follower.state_root == run.roots[index - offset]
    assert follower.state_root == run.chain.state.state_root


def test_another_seed_gives_other_roots(run: Run) -> None:
    """The determinism above is not vacuous: the run does depend on its transactions."""
    other = run_random_blocks(SEED + 1)
    assert other.chain.state.state_root != run.chain.state.state_root


# --- schedule, cap, empty subnets ---------------------------------------------------------


def minted_per_block(chain: Chain, blocks: int) -> list[int]:
    minted = []
    for _ in range(blocks):
        before = chain.state.get_ledger("minted")
        chain.advance(1)
        check_invariants(chain.state)
        minted.append(chain.state.get_ledger("minted") - before)
    return minted


def test_no_emission_before_the_first_subnet() -> None:
    chain = Chain(make_genesis_state(KEYS[:2]))
    assert minted_per_block(chain, 3) == [0, 0, 0]


def test_emission_halves_at_each_interval() -> None:
    chain = Chain(make_genesis_state(KEYS[:2], params={"halving_interval_blocks": 10}))
    create_subnet(chain, KEYS[0])  # blocks 1 and 2
    assert chain.state.get_ledger("minted") == 2 * AGR
    minted = minted_per_block(chain, 30)  # blocks 3 to 32
    assert minted[:7] == [AGR] * 7  # blocks 3 to 9
    assert minted[7:17] == [AGR // 2] * 10  # blocks 10 to 19
    assert minted[17:27] == [AGR // 4] * 10
    assert minted[27:] == [AGR // 8] * 3


def test_the_supply_cap_stops_minting_and_burns_make_room_again() -> None:
    keys = KEYS[:3]
    genesis_supply = len(keys) * 1_000 * AGR
    params = {"supply_cap": genesis_supply + 5 * AGR // 2}
    chain = Chain(make_genesis_state(keys, params=params))
    netuid = create_subnet(chain, keys[0])  # blocks 1 and 2 mint 1 AGR each
    assert minted_per_block(chain, 3) == [AGR // 2, 0, 0]
    assert chain.state.get_ledger("minted") == 5 * AGR // 2
    # A registration burns its price: the supply falls below the cap, and minting refills it.
    price = get_subnet(chain.state, netuid).burn
    assert chain.send(keys[1], Register(netuid=netuid, hotkey=keys[2].address)).success
    assert chain.state.get_ledger("minted") == 5 * AGR // 2 + price
    assert minted_per_block(chain, 2) == [0, 0]
    check_invariants(chain.state)


def test_a_subnet_without_neurons_sends_its_emission_to_the_treasury() -> None:
    owner = KEYS[0]
    chain = Chain(make_genesis_state(KEYS[:2]))
    netuid = create_subnet(chain, owner, tempo=3)
    while not is_epoch_block(netuid, 3, chain.height + 1):
        chain.advance(1)
    treasury = chain.state.get_ledger("treasury")
    balance = get_balance(chain.state, owner.address)
    pending = get_subnet(chain.state, netuid).pending_emission + PARAMS.initial_block_emission
    chain.advance(1)
    assert chain.state.get_ledger("treasury") == treasury + pending
    assert get_balance(chain.state, owner.address) == balance  # no owner cut without neurons
    assert get_subnet(chain.state, netuid).pending_emission == 0
    assert get_subnet(chain.state, netuid).epoch_index >= 1

"""Subnets, registration and serving, on real ledger state through ``build_block``.

Every handler has its valid cases and its refusals: a refusal carries its stable code, and
the state after it is the state an empty block would have left, except the sender's nonce
and fee (``assert_refused`` compares every table with a twin of the state). Registration
follows docs/yuma.md section 10: the burned price, its rise and decay, and the uid that
pruning picks when the subnet is full, with what replacement clears.
"""

from __future__ import annotations

import pytest
from protocol_helpers import (
    GENESIS_BALANCE,
    MIN_FEE,
    Chain,
    KeyPair,
    assert_refused,
    create_subnet,
    make_genesis_state,
    make_keys,
    make_signed,
)

from agora.protocol.accounts import get_balance
from agora.protocol.consensus.registration import (
    BurnPriceRules,
    compute_burn_after_block,
    compute_burn_after_registration,
)
from agora.protocol.consensus.weights import compute_commit_hash
from agora.protocol.invariants import check_invariants
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import AddStake, RemoveStake, get_hotkey, get_total_stake
from agora.protocol.subnets import (
    NO_HOTKEY,
    CreateSubnet,
    Hyperparameters,
    Register,
    Serve,
    SetHyperparameter,
    Subnet,
    get_neuron,
    get_subnet,
    get_uid,
)
from agora.protocol.weights import CommitWeights, SetWeights, get_commits

KEYS = make_keys(12, seed=101)
OWNER, ALICE, BOB, CAROL = KEYS[:4]
HOTKEYS = KEYS[4:]
LOCK_COST = Params().subnet_lock_cost
AGR = BASE_UNITS_PER_AGR
FROZEN = 50_000  # a tempo so long that no epoch fires during a test


def new_chain(**params: int) -> Chain:
    return Chain(make_genesis_state(KEYS, params=params))


def register(chain: Chain, coldkey: KeyPair, hotkey: KeyPair, netuid: int = 1) -> int:
    receipt = chain.send(coldkey, Register(netuid=netuid, hotkey=hotkey.address))
    assert receipt.success, receipt.message
    uid = get_uid(chain.state, netuid, hotkey.address)
    assert uid is not None
    return uid


def price_rules(subnet: Subnet) -> BurnPriceRules:
    h = subnet.hyperparameters
    return BurnPriceRules(
        min_burn=h.min_burn,
        max_burn=h.max_burn,
        half_life=h.burn_half_life,
        increase_mult_u64f64=(1 << 64) + h.burn_increase_u64f64,
    )


# --- create_subnet -------------------------------------------------------------------------


def test_create_subnet_locks_the_cost_and_assigns_the_next_netuid() -> None:
    chain = new_chain()
    body = CreateSubnet(
        task_kind="generation", task_config='{"model": "m"}', owner_hotkey=HOTKEYS[0].address
    )
    receipt = chain.send(OWNER, body)
    assert receipt.success, receipt.message
    subnet = get_subnet(chain.state, 1)
    assert (subnet.netuid, subnet.owner, subnet.owner_hotkey) == (
        1,
        OWNER.address,
        HOTKEYS[0].address,
    )
    assert (subnet.task_kind, subnet.task_config) == ("generation", '{"model": "m"}')
    assert (subnet.locked, subnet.created_at, subnet.n) == (LOCK_COST, 1, 0)
    assert subnet.hyperparameters == Hyperparameters()
    assert subnet.burn == Hyperparameters().min_burn
    assert get_balance(chain.state, OWNER.address) == GENESIS_BALANCE - LOCK_COST - MIN_FEE

    chain.send(ALICE, CreateSubnet(task_kind="custom", task_config="{}", owner_hotkey=NO_HOTKEY))
    second = get_subnet(chain.state, 2)
    assert (second.owner, second.owner_hotkey, second.created_at) == (ALICE.address, NO_HOTKEY, 2)
    check_invariants(chain.state)


def test_create_subnet_is_refused_when_the_chain_holds_max_subnets() -> None:
    chain = new_chain(max_subnets=2)
    create_subnet(chain, OWNER)
    create_subnet(chain, ALICE)
    body = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    assert_refused(chain, BOB, body, 2003)


def test_create_subnet_is_refused_without_the_lock_cost() -> None:
    chain = new_chain(subnet_lock_cost=GENESIS_BALANCE)
    body = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    assert_refused(chain, OWNER, body, 1203)


@pytest.mark.parametrize(
    "task_kind", ["Mining", "9digits", "", "-sort", "sort digits", "sorté", "x/y"]
)
def test_create_subnet_with_a_malformed_task_kind_is_refused_before_any_fee(
    task_kind: str,
) -> None:
    chain = new_chain()
    body = CreateSubnet(task_kind=task_kind, task_config="{}", owner_hotkey=NO_HOTKEY)
    assert_refused(chain, OWNER, body, 1006, charged=False)


@pytest.mark.parametrize("task_config", ["", "[]", "7", '"text"', "{", '{"a": 1} x', "[" * 1500])
def test_create_subnet_with_a_task_config_not_a_json_object_is_refused_before_any_fee(
    task_config: str,
) -> None:
    chain = new_chain()
    body = CreateSubnet(task_kind="embedding", task_config=task_config, owner_hotkey=NO_HOTKEY)
    assert_refused(chain, OWNER, body, 1006, charged=False)


@pytest.mark.parametrize("task_kind", ["mining", "digit-sum", "acme.sort_v2", "a" * 32])
def test_create_subnet_accepts_any_well_formed_task_kind_unknown_to_agora(task_kind: str) -> None:
    chain = new_chain()
    config = '{"items": 16, "note": "read by the plug-in alone"}'
    chain.send(OWNER, CreateSubnet(task_kind=task_kind, task_config=config, owner_hotkey=NO_HOTKEY))
    subnet = get_subnet(chain.state, 1)
    assert (subnet.task_kind, subnet.task_config) == (task_kind, config)
    check_invariants(chain.state)


# --- set_hyperparameter --------------------------------------------------------------------


def test_the_owner_sets_hyperparameters_within_bounds() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    changes = [("tempo", 7), ("commit_reveal", 0), ("yuma3", 0), ("kappa_u16", 40_000)]
    receipts = chain.block(
        *((OWNER, SetHyperparameter(netuid=netuid, name=n, value=v)) for n, v in changes)
    )
    assert all(r.success for r in receipts)
    h = get_subnet(chain.state, netuid).hyperparameters
    assert (h.tempo, h.commit_reveal, h.yuma3, h.kappa_u16) == (7, False, False, 40_000)
    assert h.commit_reveal is False  # booleans are stored as booleans, not 0/1

    chain.send(OWNER, SetHyperparameter(netuid=netuid, name="commit_reveal", value=1))
    assert get_subnet(chain.state, netuid).hyperparameters.commit_reveal is True


def test_raising_min_burn_raises_the_current_price() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    chain.send(OWNER, SetHyperparameter(netuid=netuid, name="min_burn", value=5 * AGR))
    assert get_subnet(chain.state, netuid).burn == 5 * AGR


def test_set_hyperparameter_by_another_coldkey_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    assert_refused(chain, ALICE, SetHyperparameter(netuid=netuid, name="tempo", value=5), 2002)


def test_set_hyperparameter_with_an_unknown_name_is_refused_before_any_fee() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    body = SetHyperparameter(netuid=netuid, name="rho", value=10)
    assert_refused(chain, OWNER, body, 2004, charged=False)


def test_set_hyperparameter_out_of_bounds_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    for name, value in [("tempo", 0), ("kappa_u16", 65_536), ("reveal_period_epochs", 101)]:
        body = SetHyperparameter(netuid=netuid, name=name, value=value)
        assert_refused(chain, OWNER, body, 2005, charged=False)


def test_set_hyperparameter_inconsistent_with_the_subnet_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    register(chain, ALICE, HOTKEYS[0], netuid)
    register(chain, ALICE, HOTKEYS[1], netuid)
    max_burn = Hyperparameters().max_burn
    body = SetHyperparameter(netuid=netuid, name="min_burn", value=max_burn + 1)
    assert_refused(chain, OWNER, body, 2005)
    assert_refused(chain, OWNER, SetHyperparameter(netuid=netuid, name="max_uids", value=1), 2005)


def test_set_hyperparameter_on_an_unknown_subnet_is_refused() -> None:
    chain = new_chain()
    create_subnet(chain, OWNER)
    assert_refused(chain, OWNER, SetHyperparameter(netuid=9, name="tempo", value=5), 2001)


# --- register: price --------------------------------------------------------------------------


def test_registration_burns_the_price_and_assigns_uids_in_order() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    subnet = get_subnet(chain.state, netuid)
    rules = price_rules(subnet)
    prices = [subnet.burn]
    for _ in range(2):
        prices.append(compute_burn_after_registration(prices[-1], rules))
    receipts = chain.block(
        (ALICE, Register(netuid=netuid, hotkey=HOTKEYS[0].address)),
        (BOB, Register(netuid=netuid, hotkey=HOTKEYS[1].address)),
        (ALICE, Register(netuid=netuid, hotkey=HOTKEYS[2].address)),
    )
    assert all(r.success for r in receipts)
    state = chain.state
    assert state.get_ledger("burned") == sum(prices)
    assert (
        get_balance(state, ALICE.address) == GENESIS_BALANCE - prices[0] - prices[2] - 2 * MIN_FEE
    )
    assert get_balance(state, BOB.address) == GENESIS_BALANCE - prices[1] - MIN_FEE
    for uid, (hotkey, coldkey) in enumerate([(0, ALICE), (1, BOB), (2, ALICE)]):
        neuron = get_neuron(state, netuid, uid)
        assert get_uid(state, netuid, HOTKEYS[hotkey].address) == uid
        assert (neuron.hotkey, neuron.coldkey) == (HOTKEYS[hotkey].address, coldkey.address)
        assert (neuron.registered_at, neuron.last_update) == (chain.height, chain.height)
        assert (neuron.weights, neuron.bonds, neuron.endpoint) == ((), (), "")
        assert get_hotkey(state, HOTKEYS[hotkey].address).owner == coldkey.address
    raised = compute_burn_after_registration(prices[-1], rules)
    subnet = get_subnet(state, netuid)
    assert subnet.n == 3
    # The price rose with each registration, then took the block's step of decay.
    assert subnet.burn == compute_burn_after_block(raised, rules, chain.height)
    assert subnet.burn > prices[0]
    check_invariants(state)


def test_the_price_decays_every_block_toward_the_minimum() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER, burn_half_life=4)
    chain.block(*((ALICE, Register(netuid=netuid, hotkey=h.address)) for h in HOTKEYS[:8]))
    rules = price_rules(get_subnet(chain.state, netuid))
    start = get_subnet(chain.state, netuid).burn
    assert start > rules.min_burn * 3
    prices = [start]
    for _ in range(40):
        chain.advance(1)
        burn = get_subnet(chain.state, netuid).burn
        assert burn == compute_burn_after_block(prices[-1], rules, chain.height)
        assert burn < prices[-1] or burn == rules.min_burn
        prices.append(burn)
    # A half-life of 4 blocks: four blocks later the price is (just under) half.
    assert start // 2 - 8 <= prices[4] <= start // 2
    assert prices[-1] == rules.min_burn


def test_the_owner_sets_how_much_each_registration_raises_the_price() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER, burn_half_life=0, burn_increase_u64f64=1 << 63)
    start = get_subnet(chain.state, netuid).burn
    register(chain, ALICE, HOTKEYS[0], netuid)
    assert get_subnet(chain.state, netuid).burn == start * 3 // 2  # a rise of one half
    chain.send(OWNER, SetHyperparameter(netuid=netuid, name="burn_increase_u64f64", value=0))
    register(chain, ALICE, HOTKEYS[1], netuid)
    assert get_subnet(chain.state, netuid).burn == start * 3 // 2  # no rise at all


def test_registration_without_the_price_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER, max_burn=5_000 * AGR, min_burn=2_000 * AGR)
    assert get_subnet(chain.state, netuid).burn == 2_000 * AGR > GENESIS_BALANCE
    assert_refused(chain, ALICE, Register(netuid=netuid, hotkey=HOTKEYS[0].address), 1203)


def test_registering_a_hotkey_twice_on_a_subnet_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    register(chain, ALICE, HOTKEYS[0], netuid)
    assert_refused(chain, ALICE, Register(netuid=netuid, hotkey=HOTKEYS[0].address), 2006)


def test_a_hotkey_joins_other_subnets_only_for_its_own_coldkey() -> None:
    chain = new_chain()
    first = create_subnet(chain, OWNER)
    second = create_subnet(chain, OWNER)
    register(chain, ALICE, HOTKEYS[0], first)
    assert_refused(chain, BOB, Register(netuid=second, hotkey=HOTKEYS[0].address), 2007)
    assert register(chain, ALICE, HOTKEYS[0], second) == 0


def test_registration_on_an_unknown_subnet_or_with_the_zero_key_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    assert_refused(chain, ALICE, Register(netuid=netuid + 1, hotkey=HOTKEYS[0].address), 2001)
    body = Register(netuid=netuid, hotkey=NO_HOTKEY)
    assert_refused(chain, ALICE, body, 1006, charged=False)


# --- register: pruning (section 10) ----------------------------------------------------------


def test_a_full_subnet_replaces_the_oldest_then_the_lowest_uid() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER, max_uids=3, immunity_period=0, min_non_immune_uids=0)
    register(chain, ALICE, HOTKEYS[0], netuid)
    receipts = chain.block(
        (ALICE, Register(netuid=netuid, hotkey=HOTKEYS[1].address)),
        (ALICE, Register(netuid=netuid, hotkey=HOTKEYS[2].address)),
    )
    assert all(r.success for r in receipts)
    # Every emission is 0 (no epoch yet): the oldest goes, then the lower uid of a tie.
    assert register(chain, BOB, HOTKEYS[3], netuid) == 0
    assert register(chain, BOB, HOTKEYS[4], netuid) == 1
    assert register(chain, BOB, HOTKEYS[5], netuid) == 2
    assert get_subnet(chain.state, netuid).n == 3
    assert get_uid(chain.state, netuid, HOTKEYS[0].address) is None
    check_invariants(chain.state)


def test_pruning_takes_the_lowest_emission_and_spares_immune_uids() -> None:
    chain = new_chain()
    netuid = create_subnet(
        chain, OWNER, tempo=3, max_uids=3, immunity_period=5, min_non_immune_uids=0
    )
    old, low, immune, newcomer, last = HOTKEYS[:5]
    register(chain, ALICE, old, netuid)
    register(chain, BOB, low, netuid)
    chain.block(
        (ALICE, AddStake(hotkey=old.address, amount=30 * AGR)),
        (BOB, AddStake(hotkey=low.address, amount=10 * AGR)),
    )
    chain.advance(4)  # one epoch pays both by stake (tempo 3: every 4 blocks)
    chain.send(OWNER, SetHyperparameter(netuid=netuid, name="tempo", value=FROZEN))
    state = chain.state
    emission = [get_neuron(state, netuid, uid).emission for uid in (0, 1)]
    assert emission[0] > emission[1] > 0
    register(chain, CAROL, immune, netuid)
    assert get_neuron(state, netuid, 2).emission == 0

    # uid 2 has the lowest emission but is immune; of the others uid 1 earned less.
    assert register(chain, CAROL, newcomer, netuid) == 1

    # With too few uids past immunity (1, not more than 1), the immune ones are candidates:
    # the new uid 1 and uid 2 both have 0 emission, and uid 2 is older.
    chain.send(OWNER, SetHyperparameter(netuid=netuid, name="min_non_immune_uids", value=1))
    assert register(chain, CAROL, last, netuid) == 2
    assert get_uid(state, netuid, old.address) == 0


def test_the_owner_hotkey_is_never_pruned() -> None:
    chain = new_chain()
    owner_hotkey = HOTKEYS[0]
    netuid = create_subnet(
        chain,
        OWNER,
        owner_hotkey=owner_hotkey.address,
        max_uids=2,
        immunity_period=0,
        min_non_immune_uids=0,
    )
    register(chain, OWNER, owner_hotkey, netuid)
    register(chain, ALICE, HOTKEYS[1], netuid)
    assert register(chain, BOB, HOTKEYS[2], netuid) == 1
    assert register(chain, BOB, HOTKEYS[3], netuid) == 1
    assert get_uid(chain.state, netuid, owner_hotkey.address) == 0


def test_without_an_owner_hotkey_the_owner_coldkeys_first_hotkey_is_never_pruned() -> None:
    """Spec section 10: the owner coldkey's hotkeys, earliest first, up to one, are immortal."""
    chain = new_chain()
    netuid = create_subnet(chain, OWNER, max_uids=2, immunity_period=0, min_non_immune_uids=0)
    register(chain, OWNER, HOTKEYS[0], netuid)
    register(chain, ALICE, HOTKEYS[1], netuid)
    assert register(chain, BOB, HOTKEYS[2], netuid) == 1
    assert get_uid(chain.state, netuid, HOTKEYS[0].address) == 0


def test_replacement_clears_everything_the_old_neuron_had() -> None:
    chain = new_chain()
    netuid = create_subnet(
        chain,
        OWNER,
        tempo=3,
        max_uids=3,
        immunity_period=0,
        min_non_immune_uids=0,
        commit_reveal=0,
        weights_rate_limit=0,
    )
    validator, pruned, miner, newcomer = HOTKEYS[:4]
    register(chain, ALICE, validator, netuid)
    register(chain, BOB, pruned, netuid)
    register(chain, CAROL, miner, netuid)
    chain.block(
        (ALICE, AddStake(hotkey=validator.address, amount=500 * AGR)),
        (BOB, AddStake(hotkey=pruned.address, amount=1 * AGR)),
    )
    chain.advance(4)  # an epoch gives both staked uids a validator permit
    state = chain.state
    assert get_neuron(state, netuid, 1).validator_permit
    chain.block(
        (validator, SetWeights(netuid=netuid, uids=(1, 2), values=(1, 65_535), version_key=0)),
        (pruned, SetWeights(netuid=netuid, uids=(0, 2), values=(100, 65_535), version_key=0)),
    )
    chain.advance(4)  # an epoch: bonds and emissions
    chain.block(
        (OWNER, SetHyperparameter(netuid=netuid, name="commit_reveal", value=1)),
        (OWNER, SetHyperparameter(netuid=netuid, name="tempo", value=FROZEN)),
    )
    commit_hash = compute_commit_hash(
        hotkey=pruned.address, netuid=netuid, uids=(2,), values=(1,), salt=(7,), version_key=0
    )
    assert chain.send(pruned, CommitWeights(netuid=netuid, commit_hash=commit_hash)).success
    old = get_neuron(state, netuid, 1)
    assert old.weights and old.bonds and get_commits(state, netuid, pruned.address)
    emissions = [get_neuron(state, netuid, uid).emission for uid in range(3)]
    assert emissions[1] == min(emissions) < max(emissions)
    assert dict(get_neuron(state, netuid, 0).weights)[1] > 0

    assert register(chain, CAROL, newcomer, netuid) == 1
    height = chain.height
    fresh = get_neuron(state, netuid, 1)
    assert (fresh.hotkey, fresh.coldkey) == (newcomer.address, CAROL.address)
    assert (fresh.registered_at, fresh.last_update) == (height, height)
    assert (fresh.weights, fresh.bonds, fresh.emission, fresh.validator_permit) == (
        (),
        (),
        0,
        False,
    )
    assert (fresh.incentive_u16, fresh.dividends_u16, fresh.consensus_u16) == (0, 0, 0)
    assert get_uid(state, netuid, pruned.address) is None
    assert get_commits(state, netuid, pruned.address) == ()
    # The weight every other validator gave the uid is zeroed (kept as an explicit 0).
    assert dict(get_neuron(state, netuid, 0).weights)[1] == 0
    assert dict(get_neuron(state, netuid, 0).weights)[2] == 65_535
    assert get_subnet(state, netuid).n == 3
    # The old hotkey keeps its stake, and its owner can take it back.
    assert get_total_stake(state, pruned.address) == 1 * AGR
    assert chain.send(BOB, RemoveStake(hotkey=pruned.address, amount=1 * AGR)).success
    check_invariants(state)


# --- serve -----------------------------------------------------------------------------------


def test_a_registered_hotkey_publishes_its_endpoint() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    hotkey = HOTKEYS[0]
    uid = register(chain, ALICE, hotkey, netuid)
    before = get_balance(chain.state, hotkey.address)
    assert chain.send(hotkey, Serve(netuid=netuid, endpoint="http://10.0.0.7:8091")).success
    assert get_neuron(chain.state, netuid, uid).endpoint == "http://10.0.0.7:8091"
    assert get_balance(chain.state, hotkey.address) == before - MIN_FEE  # the hotkey pays
    assert chain.send(hotkey, Serve(netuid=netuid, endpoint="https://miner.example")).success
    assert get_neuron(chain.state, netuid, uid).endpoint == "https://miner.example"
    assert chain.send(hotkey, Serve(netuid=netuid, endpoint="")).success
    assert get_neuron(chain.state, netuid, uid).endpoint == ""


def test_serve_from_an_unregistered_hotkey_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    register(chain, ALICE, HOTKEYS[0], netuid)
    body = Serve(netuid=netuid, endpoint="http://10.0.0.7:8091")
    assert_refused(chain, HOTKEYS[1], body, 2008)
    assert_refused(chain, HOTKEYS[0], Serve(netuid=netuid + 1, endpoint="http://h:1"), 2001)


def test_serve_with_a_bad_url_is_refused_before_any_fee() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    register(chain, ALICE, HOTKEYS[0], netuid)
    for endpoint in ("ftp://10.0.0.7", "10.0.0.7:8091", "javascript:alert(1)"):
        body = Serve(netuid=netuid, endpoint=endpoint)
        assert_refused(chain, HOTKEYS[0], body, 1006, charged=False)


def test_a_replayed_registration_is_refused() -> None:
    chain = new_chain()
    netuid = create_subnet(chain, OWNER)
    raw = make_signed(ALICE, Register(netuid=netuid, hotkey=HOTKEYS[0].address), nonce=0)
    assert chain.seal([raw])[0].success
    burned = chain.state.get_ledger("burned")
    receipt = chain.seal([raw])[0]
    assert (receipt.success, receipt.code) == (False, 1201)
    assert chain.state.get_ledger("burned") == burned

"""Staking and delegation on real ledger state: stake moves, takes, and how dividends split.

Any coldkey may stake on any registered hotkey; the hotkey's total is what Yuma weighs; a
validator's dividends pay its owner's take first and then every staker pro rata, floored,
with what the floors leave going to the owner. Refusals carry their stable code and change
nothing but the sender's nonce and fee.
"""

from __future__ import annotations

from protocol_helpers import (
    GENESIS_BALANCE,
    MIN_FEE,
    Chain,
    KeyPair,
    assert_refused,
    create_subnet,
    make_genesis_state,
    make_keys,
)

from agora.protocol.accounts import get_balance
from agora.protocol.invariants import check_invariants
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import (
    AddStake,
    RemoveStake,
    SetTake,
    get_hotkey,
    get_stake,
    get_stakers,
    get_total_stake,
)
from agora.protocol.subnets import Register, get_neuron, get_subnet, is_epoch_block

KEYS = make_keys(8, seed=202)
OWNER, ALICE, BOB, CAROL = KEYS[:4]
VALIDATOR, OTHER_VALIDATOR, UNKNOWN = KEYS[4:7]
AGR = BASE_UNITS_PER_AGR
PARAMS = Params()


def new_chain(tempo: int = 50_000) -> tuple[Chain, int]:
    """A subnet whose one neuron, VALIDATOR, is owned by ALICE."""
    chain = Chain(make_genesis_state(KEYS))
    netuid = create_subnet(chain, OWNER, tempo=tempo)
    assert chain.send(ALICE, Register(netuid=netuid, hotkey=VALIDATOR.address)).success
    return chain, netuid


def stake(chain: Chain, coldkey: KeyPair, amount: int, hotkey: KeyPair = VALIDATOR) -> None:
    receipt = chain.send(coldkey, AddStake(hotkey=hotkey.address, amount=amount))
    assert receipt.success, receipt.message


# --- add_stake / remove_stake ----------------------------------------------------------------


def test_the_owner_stakes_and_unstakes_on_its_hotkey() -> None:
    chain, _ = new_chain()
    state = chain.state
    balance = get_balance(state, ALICE.address)
    stake(chain, ALICE, 40 * AGR)
    assert get_balance(state, ALICE.address) == balance - 40 * AGR - MIN_FEE
    assert get_stake(state, VALIDATOR.address, ALICE.address) == 40 * AGR
    assert get_total_stake(state, VALIDATOR.address) == 40 * AGR
    check_invariants(state)

    assert chain.send(ALICE, RemoveStake(hotkey=VALIDATOR.address, amount=15 * AGR)).success
    assert get_stake(state, VALIDATOR.address, ALICE.address) == 25 * AGR
    assert chain.send(ALICE, RemoveStake(hotkey=VALIDATOR.address, amount=25 * AGR)).success
    assert (VALIDATOR.address, ALICE.address) not in state.tables["stakes"]
    assert get_total_stake(state, VALIDATOR.address) == 0
    assert get_balance(state, ALICE.address) == balance - 3 * MIN_FEE
    check_invariants(state)


def test_other_coldkeys_delegate_to_a_hotkey_they_do_not_own() -> None:
    chain, _ = new_chain()
    state = chain.state
    stake(chain, ALICE, 10 * AGR)
    stake(chain, BOB, 30 * AGR)
    stake(chain, CAROL, 5)
    stake(chain, BOB, 2 * AGR)
    assert get_total_stake(state, VALIDATOR.address) == 42 * AGR + 5
    assert dict(get_stakers(state, VALIDATOR.address)) == {
        ALICE.address: 10 * AGR,
        BOB.address: 32 * AGR,
        CAROL.address: 5,
    }
    assert get_hotkey(state, VALIDATOR.address).owner == ALICE.address
    assert chain.send(BOB, RemoveStake(hotkey=VALIDATOR.address, amount=32 * AGR)).success
    assert get_total_stake(state, VALIDATOR.address) == 10 * AGR + 5
    check_invariants(state)


def test_unstaking_more_than_staked_is_refused() -> None:
    chain, _ = new_chain()
    stake(chain, ALICE, 10 * AGR)
    stake(chain, BOB, 1 * AGR)
    assert_refused(chain, BOB, RemoveStake(hotkey=VALIDATOR.address, amount=1 * AGR + 1), 2103)
    assert_refused(chain, CAROL, RemoveStake(hotkey=VALIDATOR.address, amount=1), 2103)


def test_staking_on_an_unknown_hotkey_is_refused() -> None:
    chain, _ = new_chain()
    assert_refused(chain, BOB, AddStake(hotkey=UNKNOWN.address, amount=AGR), 2101)
    assert_refused(chain, BOB, RemoveStake(hotkey=UNKNOWN.address, amount=AGR), 2101)


def test_staking_more_than_the_balance_is_refused() -> None:
    chain, _ = new_chain()
    assert_refused(chain, BOB, AddStake(hotkey=VALIDATOR.address, amount=GENESIS_BALANCE), 1203)


def test_a_zero_amount_is_refused_before_any_fee() -> None:
    chain, _ = new_chain()
    stake(chain, BOB, AGR)
    assert_refused(chain, BOB, AddStake(hotkey=VALIDATOR.address, amount=0), 1003, charged=False)
    body = RemoveStake(hotkey=VALIDATOR.address, amount=0)
    assert_refused(chain, BOB, body, 1003, charged=False)


def test_yuma_weighs_the_hotkeys_total_stake() -> None:
    chain, netuid = new_chain(tempo=3)
    assert chain.send(BOB, Register(netuid=netuid, hotkey=OTHER_VALIDATOR.address)).success
    stake(chain, ALICE, 10 * AGR)
    stake(chain, BOB, 10 * AGR, OTHER_VALIDATOR)
    stake(chain, CAROL, 30 * AGR, OTHER_VALIDATOR)
    while not is_epoch_block(netuid, 3, chain.height):
        chain.advance(1)
    # 10 against 40 AGR: a fifth and four fifths of the subnet's stake (I32F32 floors a
    # fifth to just under it, so the u16 may be one below the exact share).
    shares = [get_neuron(chain.state, netuid, uid).stake_u16 for uid in (0, 1)]
    assert 0 <= 13_107 - shares[0] <= 1 and 0 <= 52_428 - shares[1] <= 1


# --- set_take ---------------------------------------------------------------------------------


def test_a_new_hotkey_has_the_default_take_and_its_owner_changes_it() -> None:
    chain, _ = new_chain()
    assert get_hotkey(chain.state, VALIDATOR.address).take_u16 == PARAMS.default_take_u16
    for take in (0, PARAMS.max_take_u16, 1_000):
        assert chain.send(ALICE, SetTake(hotkey=VALIDATOR.address, take_u16=take)).success
        assert get_hotkey(chain.state, VALIDATOR.address).take_u16 == take


def test_set_take_by_another_coldkey_is_refused() -> None:
    chain, _ = new_chain()
    stake(chain, BOB, AGR)  # a delegator is not the owner
    assert_refused(chain, BOB, SetTake(hotkey=VALIDATOR.address, take_u16=0), 2102)


def test_set_take_above_the_maximum_is_refused() -> None:
    chain, _ = new_chain()
    body = SetTake(hotkey=VALIDATOR.address, take_u16=PARAMS.max_take_u16 + 1)
    assert_refused(chain, ALICE, body, 2104)


def test_set_take_on_an_unknown_hotkey_is_refused() -> None:
    chain, _ = new_chain()
    assert_refused(chain, ALICE, SetTake(hotkey=UNKNOWN.address, take_u16=0), 2101)


# --- dividends ------------------------------------------------------------------------------


def test_dividends_pay_the_take_then_stakers_pro_rata_and_the_remainder_to_the_owner() -> None:
    """The only neuron gets the whole epoch as dividends; every base unit is accounted for."""
    chain, netuid = new_chain(tempo=5)
    stakes = {ALICE: 3 * AGR + 7, BOB: 5 * AGR + 3, CAROL: 11 * AGR + 1}
    chain.block(
        (ALICE, SetTake(hotkey=VALIDATOR.address, take_u16=1_000)),
        *((key, AddStake(hotkey=VALIDATOR.address, amount=a)) for key, a in stakes.items()),
    )
    while not is_epoch_block(netuid, 5, chain.height + 1):
        chain.advance(1)
    state = chain.state
    keys = [OWNER, ALICE, BOB, CAROL]
    before = {key: get_balance(state, key.address) for key in keys}
    treasury = state.get_ledger("treasury")
    pending = get_subnet(state, netuid).pending_emission + PARAMS.initial_block_emission

    chain.advance(1)  # the epoch block, with no transaction in it

    owner_cut = pending * PARAMS.owner_cut_u16 // 65_535
    dividends = pending - owner_cut
    take = dividends * 1_000 // 65_535
    rest = dividends - take
    total = sum(stakes.values())
    shares = {key: rest * amount // total for key, amount in stakes.items()}
    remainder = rest - sum(shares.values())
    assert remainder > 0  # the amounts were chosen so that the floors leave something
    gained = {key: get_balance(state, key.address) - before[key] for key in keys}
    assert gained == {
        OWNER: owner_cut,
        ALICE: take + shares[ALICE] + remainder,
        BOB: shares[BOB],
        CAROL: shares[CAROL],
    }
    assert state.get_ledger("treasury") == treasury
    assert get_subnet(state, netuid).pending_emission == 0
    assert get_neuron(state, netuid, 0).emission == dividends
    check_invariants(state)


def test_with_no_take_dividends_are_purely_pro_rata() -> None:
    chain, netuid = new_chain(tempo=5)
    chain.block(
        (ALICE, SetTake(hotkey=VALIDATOR.address, take_u16=0)),
        (ALICE, AddStake(hotkey=VALIDATOR.address, amount=1 * AGR)),
        (BOB, AddStake(hotkey=VALIDATOR.address, amount=3 * AGR)),
    )
    while not is_epoch_block(netuid, 5, chain.height + 1):
        chain.advance(1)
    state = chain.state
    alice, bob = get_balance(state, ALICE.address), get_balance(state, BOB.address)
    chain.advance(1)
    dividends = get_neuron(state, netuid, 0).emission
    assert get_balance(state, BOB.address) - bob == dividends * 3 // 4
    assert get_balance(state, ALICE.address) - alice == dividends - dividends * 3 // 4

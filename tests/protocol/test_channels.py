"""Payment channels on real ledger state: open, top up, claim vouchers, close, and the fees.

A payer opens a channel to a miner hotkey of a subnet, signs vouchers of cumulative amounts,
and the miner claims the latest; each claim pays the protocol fee share, split between the
subnet's validators (at its next epoch, in proportion to their dividends) and the treasury.
After expiry the payer takes back what was not claimed. Every attack is refused with its
stable code and changes nothing but the sender's nonce and fee; random sequences keep the
supply invariant, match a plain model of the rules, and replay to the same state roots.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import (
    CHAIN_ID,
    MIN_FEE,
    Chain,
    KeyPair,
    assert_refused,
    clone_state,
    create_subnet,
    make_genesis_state,
    make_keys,
    make_signed,
    rebuild_from_rows,
)

from agora.node.wire import transaction_from_json, transaction_to_json
from agora.payments.vouchers import voucher_from_json, voucher_to_json
from agora.protocol.accounts import get_account, get_balance
from agora.protocol.channels import (
    Channel,
    ClaimChannel,
    CloseChannel,
    OpenChannel,
    TopUpChannel,
    Voucher,
    compute_channel_id,
    compute_claim_split,
    get_channel,
    get_channels,
    get_fee_pool,
    sign_voucher,
    verify_voucher,
    voucher_message,
)
from agora.protocol.errors import (
    AmountOutOfRange,
    ChannelClosed,
    ChannelNotExpired,
    ChannelNotFound,
    InvalidChannelExpiry,
    InvalidGenesis,
    InvalidVoucherSignature,
    InvariantViolated,
    NotChannelPayee,
    NotChannelPayer,
    PayeeNotRegistered,
    VoucherExceedsDeposit,
    VoucherNotNewer,
)
from agora.protocol.genesis import create_genesis_state
from agora.protocol.invariants import check_invariants
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import AddStake, SetTake
from agora.protocol.subnets import Register, get_neurons, is_epoch_block
from agora.protocol.transactions import MAGIC, decode_transaction, encode_unsigned
from agora.protocol.transition import apply_block, build_block
from agora.protocol.weights import SetWeights

AGR = BASE_UNITS_PER_AGR
PARAMS = Params()
KEYS = make_keys(12, seed=4_040)
OWNER, PAYER, STRANGER, MINER_COLD, VALIDATOR_COLD, OTHER_COLD = KEYS[:6]
MINER, OTHER_MINER, VALIDATOR, OTHER_VALIDATOR, UNREGISTERED, OTHER_PAYER = KEYS[6:12]
NO_EPOCH_TEMPO = 50_000  # no epoch fires during these short tests


def new_chain(tempo: int = NO_EPOCH_TEMPO) -> tuple[Chain, int]:
    """A subnet with two miners and two validators registered (no weights yet)."""
    chain = Chain(make_genesis_state(KEYS))
    netuid = create_subnet(chain, OWNER, tempo=tempo, commit_reveal=0, weights_rate_limit=0)
    receipts = chain.block(
        (MINER_COLD, Register(netuid=netuid, hotkey=MINER.address)),
        (MINER_COLD, Register(netuid=netuid, hotkey=OTHER_MINER.address)),
        (VALIDATOR_COLD, Register(netuid=netuid, hotkey=VALIDATOR.address)),
        (OTHER_COLD, Register(netuid=netuid, hotkey=OTHER_VALIDATOR.address)),
    )
    assert all(r.success for r in receipts), [r.message for r in receipts]
    return chain, netuid


def open_channel(
    chain: Chain,
    netuid: int,
    deposit: int,
    *,
    payer: KeyPair = PAYER,
    payee: KeyPair = MINER,
    blocks: int = 20,
) -> bytes:
    """Open a channel expiring ``blocks`` after the block that opens it; returns its id."""
    nonce = get_account(chain.state, payer.address).nonce
    body = OpenChannel(
        payee=payee.address, netuid=netuid, deposit=deposit, expiry=chain.height + 1 + blocks
    )
    receipt = chain.send(payer, body)
    assert receipt.success, receipt.message
    return compute_channel_id(payer.address, nonce)


def voucher(channel_id: bytes, cumulative: int, signer: KeyPair = PAYER) -> Voucher:
    return sign_voucher(CHAIN_ID, channel_id, cumulative, signer.sign)


def claim(
    chain: Chain,
    channel_id: bytes,
    cumulative: int,
    payee: KeyPair = MINER,
    payer: KeyPair = PAYER,
) -> None:
    receipt = chain.send(payee, ClaimChannel(voucher=voucher(channel_id, cumulative, payer)))
    assert receipt.success, receipt.message


# --- vouchers --------------------------------------------------------------------------------


def test_a_voucher_verifies_only_for_its_payer_chain_channel_and_amount() -> None:
    channel_id = compute_channel_id(PAYER.address, 0)
    signed = voucher(channel_id, 7 * AGR)
    verify_voucher(CHAIN_ID, PAYER.address, signed)
    altered = [
        ("another payer", CHAIN_ID, STRANGER.address, signed),
        ("another chain", "agora-elsewhere", PAYER.address, signed),
        (
            "another amount",
            CHAIN_ID,
            PAYER.address,
            Voucher(channel_id=channel_id, cumulative=8 * AGR, signature=signed.signature),
        ),
        (
            "another channel",
            CHAIN_ID,
            PAYER.address,
            Voucher(
                channel_id=compute_channel_id(PAYER.address, 1),
                cumulative=7 * AGR,
                signature=signed.signature,
            ),
        ),
    ]
    for what, chain_id, payer, candidate in altered:
        with pytest.raises(InvalidVoucherSignature, match="not signed by its payer"):
            verify_voucher(chain_id, payer, candidate)
            pytest.fail(f"a voucher with {what} verified")


def test_a_voucher_signature_can_never_pass_for_a_transaction_signature() -> None:
    message = voucher_message(CHAIN_ID, compute_channel_id(PAYER.address, 0), 1)
    raw = make_signed(PAYER, CloseChannel(channel_id=bytes(32)), 0)
    assert message[:4] == b"AGV1" and encode_unsigned(decode_transaction(raw))[:4] == MAGIC
    assert MAGIC != b"AGV1"


def test_a_voucher_round_trips_through_json() -> None:
    signed = voucher(compute_channel_id(PAYER.address, 3), 123)
    as_json = voucher_to_json(signed)
    assert set(as_json) == {"channel_id", "cumulative", "signature"}
    assert voucher_from_json(as_json) == signed
    # A claim is the voucher verbatim: its transaction's JSON form round-trips as well.
    tx = decode_transaction(make_signed(MINER, ClaimChannel(voucher=signed), 0))
    assert transaction_from_json(transaction_to_json(tx)) == tx


def test_channel_ids_are_distinct_per_payer_and_nonce() -> None:
    ids = {compute_channel_id(key.address, nonce) for key in KEYS for nonce in range(20)}
    assert len(ids) == len(KEYS) * 20
    assert compute_channel_id(PAYER.address, 5) == compute_channel_id(PAYER.address, 5)


def test_claim_split_adds_up_and_floors_toward_the_payee_and_the_treasury() -> None:
    for amount in (1, 19, 20, 65_535, 4 * AGR + 7, (1 << 64) - 1):
        payee, validators, treasury = compute_claim_split(amount, 3_277, 32_767)
        assert payee + validators + treasury == amount
        fee = amount * 3_277 // 65_535
        assert (payee, validators) == (amount - fee, fee * 32_767 // 65_535)
    assert compute_claim_split(10, 0, 32_767) == (10, 0, 0)
    assert compute_claim_split(10, 65_535, 65_535) == (0, 10, 0)


# --- the happy path ----------------------------------------------------------------------------


def test_open_top_up_claim_and_close_move_exact_amounts() -> None:
    chain, netuid = new_chain()
    state = chain.state
    payer_start = get_balance(state, PAYER.address)
    miner_start = get_balance(state, MINER.address)
    treasury_start = state.get_ledger("treasury")

    channel_id = open_channel(chain, netuid, 10 * AGR, blocks=6)
    expiry = chain.height + 6
    assert get_channel(state, channel_id) == Channel(
        payer=PAYER.address,
        payee=MINER.address,
        netuid=netuid,
        deposit=10 * AGR,
        claimed=0,
        expiry=expiry,
        closed=False,
    )
    assert get_balance(state, PAYER.address) == payer_start - 10 * AGR - MIN_FEE
    check_invariants(state)

    receipt = chain.send(
        PAYER, TopUpChannel(channel_id=channel_id, amount=5 * AGR + 3, expiry=expiry + 4)
    )
    assert receipt.success, receipt.message
    channel = get_channel(state, channel_id)
    assert (channel.deposit, channel.expiry) == (15 * AGR + 3, expiry + 4)
    # Only the expiry (the same one: never shortened), then only the deposit would do too.
    assert chain.send(
        PAYER, TopUpChannel(channel_id=channel_id, amount=0, expiry=expiry + 4)
    ).success
    assert get_balance(state, PAYER.address) == payer_start - 15 * AGR - 3 - 3 * MIN_FEE

    first, second = 4 * AGR + 7, 9 * AGR + 11
    claim(chain, channel_id, first)
    claim(chain, channel_id, second)
    splits = [
        compute_claim_split(amount, PARAMS.channel_fee_u16, PARAMS.channel_fee_validators_u16)
        for amount in (first, second - first)
    ]
    assert get_balance(state, MINER.address) == miner_start + sum(s[0] for s in splits) - (
        2 * MIN_FEE
    )
    assert get_fee_pool(state, netuid) == sum(s[1] for s in splits) > 0
    assert state.get_ledger("treasury") == treasury_start + sum(s[2] for s in splits) + 5 * (
        MIN_FEE
    )
    assert get_channel(state, channel_id).claimed == second
    check_invariants(state)

    chain.advance_to(expiry + 4)
    assert chain.send(PAYER, CloseChannel(channel_id=channel_id)).success
    refund = 15 * AGR + 3 - second
    assert get_balance(state, PAYER.address) == payer_start - second - 4 * MIN_FEE
    assert get_balance(state, PAYER.address) == (payer_start - 15 * AGR - 3 - 4 * MIN_FEE + refund)
    assert get_channel(state, channel_id).closed
    assert get_channels(state, payer=PAYER.address) == [
        (channel_id, get_channel(state, channel_id))
    ]
    check_invariants(state)


def test_the_whole_deposit_can_be_claimed_and_the_refund_is_then_zero() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 3 * AGR, blocks=2)
    claim(chain, channel_id, 3 * AGR)
    chain.advance(2)
    before = get_balance(chain.state, PAYER.address)
    assert chain.send(PAYER, CloseChannel(channel_id=channel_id)).success
    assert get_balance(chain.state, PAYER.address) == before - MIN_FEE
    check_invariants(chain.state)


def test_a_claim_after_expiry_is_paid_until_the_payer_closes() -> None:
    """The documented choice: expiry only allows the close; it does not void vouchers."""
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 3 * AGR, blocks=2)
    chain.advance(5)
    assert chain.height >= get_channel(chain.state, channel_id).expiry
    claim(chain, channel_id, 2 * AGR)
    assert get_channel(chain.state, channel_id).claimed == 2 * AGR
    # In one block, a claim ordered before the close is paid; the refund is what remains.
    before = get_balance(chain.state, PAYER.address)
    receipts = chain.block(
        (MINER, ClaimChannel(voucher=voucher(channel_id, 3 * AGR - 1))),
        (PAYER, CloseChannel(channel_id=channel_id)),
    )
    assert [r.success for r in receipts] == [True, True]
    assert get_balance(chain.state, PAYER.address) == before + 1 - MIN_FEE


def test_a_payee_may_hold_channels_from_many_payers() -> None:
    chain, netuid = new_chain()
    first = open_channel(chain, netuid, AGR)
    second = open_channel(chain, netuid, 2 * AGR, payer=OTHER_PAYER)
    third = open_channel(chain, netuid, AGR, payee=OTHER_MINER)
    assert first != second != third
    state = chain.state
    assert [c for c, _ in get_channels(state, payee=MINER.address)] == sorted([first, second])
    assert [c for c, _ in get_channels(state, payer=PAYER.address)] == sorted([first, third])
    assert [c for c, _ in get_channels(state, payer=PAYER.address, payee=MINER.address)] == [first]
    claim(chain, second, AGR, payer=OTHER_PAYER)
    receipt = chain.send(OTHER_MINER, ClaimChannel(voucher=voucher(third, AGR // 2)))
    assert receipt.success, receipt.message
    check_invariants(state)


# --- the validators' fee share at the next epoch --------------------------------------------


def run_until_dividends(tempo: int) -> tuple[Chain, int]:
    """Two staked validators weighting the miner, after an epoch that paid them dividends."""
    chain, netuid = new_chain(tempo)
    receipts = chain.block(
        (VALIDATOR_COLD, AddStake(hotkey=VALIDATOR.address, amount=300 * AGR)),
        (OTHER_COLD, AddStake(hotkey=OTHER_VALIDATOR.address, amount=100 * AGR)),
        (STRANGER, AddStake(hotkey=VALIDATOR.address, amount=100 * AGR)),
        (VALIDATOR_COLD, SetTake(hotkey=VALIDATOR.address, take_u16=6_000)),
    )
    assert all(r.success for r in receipts), [r.message for r in receipts]
    while not is_epoch_block(netuid, tempo, chain.height):  # permits
        chain.advance(1)
    weights = SetWeights(netuid=netuid, uids=(0,), values=(65_535,), version_key=0)
    receipts = chain.block((VALIDATOR, weights), (OTHER_VALIDATOR, weights))
    assert all(r.success for r in receipts), [r.message for r in receipts]
    chain.advance(1)
    while not is_epoch_block(netuid, tempo, chain.height):  # bonds and dividends
        chain.advance(1)
    return chain, netuid


def test_the_validators_share_is_paid_at_the_next_epoch_in_proportion_to_dividends() -> None:
    tempo = 5
    chain, netuid = run_until_dividends(tempo)
    channel_id = open_channel(chain, netuid, 50 * AGR)
    # A twin seals empty blocks where the claim is: any difference is the claim's doing.
    twin = Chain(clone_state(chain.state))
    amount = 37 * AGR + 5
    claim(chain, channel_id, amount)
    twin.advance(1)
    _, validators_share, treasury_share = compute_claim_split(
        amount, PARAMS.channel_fee_u16, PARAMS.channel_fee_validators_u16
    )
    assert get_fee_pool(chain.state, netuid) == validators_share
    assert chain.state.get_ledger("treasury") - twin.state.get_ledger("treasury") == (
        treasury_share + MIN_FEE
    )
    while not is_epoch_block(netuid, tempo, chain.height + 1):
        chain.advance(1)
        twin.advance(1)
        assert get_fee_pool(chain.state, netuid) == validators_share  # waits for the epoch
    chain.advance(1)
    twin.advance(1)
    assert get_fee_pool(chain.state, netuid) == 0
    check_invariants(chain.state)

    dividends = {n.hotkey: n.dividends_u16 for n in get_neurons(chain.state, netuid)}
    assert dividends == {n.hotkey: n.dividends_u16 for n in get_neurons(twin.state, netuid)}
    total = sum(dividends.values())
    shares = {hotkey: validators_share * d // total for hotkey, d in dividends.items() if d}
    assert set(shares) == {VALIDATOR.address, OTHER_VALIDATOR.address}

    def gained(key: KeyPair) -> int:
        return get_balance(chain.state, key.address) - get_balance(twin.state, key.address)

    # VALIDATOR pays its owner's take first, then its stakers pro rata (dividends' rules).
    main_share = shares[VALIDATOR.address]
    take = main_share * 6_000 // 65_535
    stranger = (main_share - take) * 100 // 400
    assert gained(STRANGER) == stranger
    assert gained(VALIDATOR_COLD) == main_share - stranger
    assert gained(OTHER_COLD) == shares[OTHER_VALIDATOR.address]
    remainder = validators_share - sum(shares.values())
    treasury_gap = chain.state.get_ledger("treasury") - twin.state.get_ledger("treasury")
    assert treasury_gap == treasury_share + MIN_FEE + remainder


def test_with_no_dividends_the_validators_share_goes_to_the_treasury() -> None:
    tempo = 4
    chain, netuid = new_chain(tempo)  # nobody set weights: no dividends at the epoch
    channel_id = open_channel(chain, netuid, 5 * AGR)
    claim(chain, channel_id, 5 * AGR)
    pool = get_fee_pool(chain.state, netuid)
    assert pool > 0
    while not is_epoch_block(netuid, tempo, chain.height + 1):
        chain.advance(1)
    twin = Chain(clone_state(chain.state))
    chain.advance(1)
    # The twin pays the same epoch without the pool: the difference is the pool, whole.
    from agora.protocol.channels import set_fee_pool

    set_fee_pool(twin.state, netuid, 0)
    twin.advance(1)
    assert all(n.dividends_u16 == 0 for n in get_neurons(chain.state, netuid))
    gap = chain.state.get_ledger("treasury") - twin.state.get_ledger("treasury")
    assert gap == pool and get_fee_pool(chain.state, netuid) == 0
    check_invariants(chain.state)


# --- attacks and mistakes: refused with their code, nothing but nonce and fee changes -------


def test_a_replayed_or_older_voucher_is_refused() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 10 * AGR)
    claim(chain, channel_id, 4 * AGR)
    replay = ClaimChannel(voucher=voucher(channel_id, 4 * AGR))
    assert_refused(chain, MINER, replay, VoucherNotNewer.code)
    claim(chain, channel_id, 6 * AGR)
    older = ClaimChannel(voucher=voucher(channel_id, 5 * AGR))
    assert_refused(chain, MINER, older, 2307)


def test_a_voucher_of_another_channel_is_refused() -> None:
    chain, netuid = new_chain()
    mine = open_channel(chain, netuid, 10 * AGR)
    theirs = open_channel(chain, netuid, 10 * AGR, payee=OTHER_MINER)
    other = voucher(theirs, 2 * AGR)
    # Relabelled onto the miner's own channel: the channel id is part of what was signed.
    relabelled = Voucher(channel_id=mine, cumulative=other.cumulative, signature=other.signature)
    assert_refused(chain, MINER, ClaimChannel(voucher=relabelled), InvalidVoucherSignature.code)
    # Claimed on its own channel by the wrong payee.
    assert_refused(chain, MINER, ClaimChannel(voucher=other), NotChannelPayee.code)


def test_a_claim_above_the_deposit_is_refused() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 10 * AGR)
    body = ClaimChannel(voucher=voucher(channel_id, 10 * AGR + 1))
    assert_refused(chain, MINER, body, VoucherExceedsDeposit.code)
    claim(chain, channel_id, 10 * AGR)  # the deposit itself is fine


def test_a_claim_after_close_is_refused() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 10 * AGR, blocks=1)
    chain.advance(1)
    assert chain.send(PAYER, CloseChannel(channel_id=channel_id)).success
    body = ClaimChannel(voucher=voucher(channel_id, AGR))
    assert_refused(chain, MINER, body, ChannelClosed.code)
    # The tombstone also refuses a second close and a top-up.
    assert_refused(chain, PAYER, CloseChannel(channel_id=channel_id), 2305)
    top_up = TopUpChannel(channel_id=channel_id, amount=AGR, expiry=0)
    assert_refused(chain, PAYER, top_up, 2305)


def test_a_forged_voucher_is_refused() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 10 * AGR)
    forged = ClaimChannel(voucher=voucher(channel_id, 5 * AGR, signer=STRANGER))
    assert_refused(chain, MINER, forged, 2306)
    self_signed = ClaimChannel(voucher=voucher(channel_id, 5 * AGR, signer=MINER))
    assert_refused(chain, MINER, self_signed, 2306)
    other_chain = sign_voucher("agora-elsewhere", channel_id, 5 * AGR, PAYER.sign)
    assert_refused(chain, MINER, ClaimChannel(voucher=other_chain), 2306)


def test_a_claim_by_someone_other_than_the_payee_is_refused() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 10 * AGR)
    body = ClaimChannel(voucher=voucher(channel_id, 5 * AGR))
    for sender in (STRANGER, PAYER, MINER_COLD, OTHER_MINER):
        assert_refused(chain, sender, body, 2304)


def test_closing_before_expiry_is_refused() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 10 * AGR, blocks=3)
    expiry = get_channel(chain.state, channel_id).expiry
    while chain.height + 1 < expiry:
        assert_refused(chain, PAYER, CloseChannel(channel_id=channel_id), ChannelNotExpired.code)
    assert chain.send(PAYER, CloseChannel(channel_id=channel_id)).success  # at expiry


def test_a_stranger_cannot_top_up_or_close() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 10 * AGR, blocks=1)
    top_up = TopUpChannel(channel_id=channel_id, amount=AGR, expiry=0)
    assert_refused(chain, STRANGER, top_up, NotChannelPayer.code)
    assert_refused(chain, MINER, top_up, 2303)
    chain.advance(2)
    assert_refused(chain, STRANGER, CloseChannel(channel_id=channel_id), 2303)
    assert_refused(chain, MINER, CloseChannel(channel_id=channel_id), 2303)


def test_an_unknown_channel_is_refused() -> None:
    chain, netuid = new_chain()
    unknown = compute_channel_id(PAYER.address, 999)
    assert_refused(chain, MINER, ClaimChannel(voucher=voucher(unknown, 1)), ChannelNotFound.code)
    assert_refused(chain, PAYER, CloseChannel(channel_id=unknown), 2301)
    assert_refused(chain, PAYER, TopUpChannel(channel_id=unknown, amount=1, expiry=0), 2301)


def test_opening_to_a_hotkey_off_the_subnet_is_refused() -> None:
    chain, netuid = new_chain()
    expiry = chain.height + 10
    body = OpenChannel(payee=UNREGISTERED.address, netuid=netuid, deposit=AGR, expiry=expiry)
    assert_refused(chain, PAYER, body, PayeeNotRegistered.code)
    body = OpenChannel(payee=MINER.address, netuid=netuid + 1, deposit=AGR, expiry=expiry)
    assert_refused(chain, PAYER, body, 2001)  # no such subnet


def test_an_expiry_in_the_past_or_shortened_is_refused() -> None:
    chain, netuid = new_chain()
    now = chain.height + 1
    body = OpenChannel(payee=MINER.address, netuid=netuid, deposit=AGR, expiry=now)
    assert_refused(chain, PAYER, body, InvalidChannelExpiry.code)
    channel_id = open_channel(chain, netuid, AGR, blocks=10)
    expiry = get_channel(chain.state, channel_id).expiry
    shorter = TopUpChannel(channel_id=channel_id, amount=AGR, expiry=expiry - 1)
    assert_refused(chain, PAYER, shorter, 2310)


def test_a_deposit_or_top_up_beyond_the_balance_is_refused() -> None:
    chain, netuid = new_chain()
    balance = get_balance(chain.state, PAYER.address)
    body = OpenChannel(payee=MINER.address, netuid=netuid, deposit=balance, expiry=10**6)
    assert_refused(chain, PAYER, body, 1203)
    channel_id = open_channel(chain, netuid, AGR)
    top_up = TopUpChannel(channel_id=channel_id, amount=balance, expiry=0)
    assert_refused(chain, PAYER, top_up, 1203)


def test_empty_amounts_are_refused_before_any_fee() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, AGR)
    body: Any = OpenChannel(payee=MINER.address, netuid=netuid, deposit=0, expiry=10**6)
    assert_refused(chain, PAYER, body, AmountOutOfRange.code, charged=False)
    body = TopUpChannel(channel_id=channel_id, amount=0, expiry=0)
    assert_refused(chain, PAYER, body, 1003, charged=False)
    body = ClaimChannel(voucher=voucher(channel_id, 0))
    assert_refused(chain, MINER, body, 1003, charged=False)


# --- parameters and invariants -----------------------------------------------------------


def test_genesis_refuses_a_u16_proportion_above_one() -> None:
    from protocol_helpers import make_genesis

    for name in ("channel_fee_u16", "channel_fee_validators_u16", "owner_cut_u16"):
        with pytest.raises(InvalidGenesis, match=name):
            create_genesis_state(make_genesis(KEYS, params={name: 65_536}))
    state = create_genesis_state(make_genesis(KEYS, params={"channel_fee_u16": 0}))
    assert state.params.channel_fee_u16 == 0


def test_a_fee_free_chain_pays_the_payee_everything() -> None:
    chain = Chain(make_genesis_state(KEYS, params={"channel_fee_u16": 0}))
    netuid = create_subnet(chain, OWNER, tempo=NO_EPOCH_TEMPO)
    assert chain.send(MINER_COLD, Register(netuid=netuid, hotkey=MINER.address)).success
    channel_id = open_channel(chain, netuid, 7 * AGR)
    before = get_balance(chain.state, MINER.address)
    claim(chain, channel_id, 7 * AGR)
    assert get_balance(chain.state, MINER.address) == before + 7 * AGR - MIN_FEE
    assert get_fee_pool(chain.state, netuid) == 0


def test_the_invariants_catch_a_channel_claimed_beyond_its_deposit() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 4 * AGR)
    from dataclasses import replace

    from agora.protocol.channels import set_channel

    # Closed (so it holds nothing) with the supply made whole elsewhere: only the per-channel
    # check can see it.
    broken = replace(get_channel(chain.state, channel_id), claimed=5 * AGR, closed=True)
    set_channel(chain.state, channel_id, broken)
    chain.state.set_ledger("treasury", chain.state.get_ledger("treasury") + 4 * AGR)
    with pytest.raises(InvariantViolated, match="claimed"):
        check_invariants(chain.state)


def test_the_invariants_count_deposits_and_fee_pools() -> None:
    chain, netuid = new_chain()
    channel_id = open_channel(chain, netuid, 4 * AGR)
    claim(chain, channel_id, AGR)
    check_invariants(chain.state)
    from agora.protocol.channels import set_fee_pool

    set_fee_pool(chain.state, netuid, get_fee_pool(chain.state, netuid) + 1)
    with pytest.raises(InvariantViolated):
        check_invariants(chain.state)


# --- determinism -------------------------------------------------------------------------------


def test_the_same_channel_blocks_give_the_same_roots_on_two_states() -> None:
    chain, netuid = run_until_dividends(tempo=3)
    genesis = make_genesis_state(KEYS)
    first = open_channel(chain, netuid, 20 * AGR, blocks=4)
    second = open_channel(chain, netuid, 5 * AGR, payer=OTHER_PAYER, payee=OTHER_MINER)
    chain.block(
        (MINER, ClaimChannel(voucher=voucher(first, 3 * AGR))),
        (OTHER_MINER, ClaimChannel(voucher=voucher(second, AGR, signer=OTHER_PAYER))),
        (PAYER, TopUpChannel(channel_id=first, amount=AGR, expiry=0)),
        (MINER, ClaimChannel(voucher=voucher(first, 2 * AGR))),  # refused: older
    )
    chain.advance(4)
    chain.block(
        (MINER, ClaimChannel(voucher=voucher(first, 21 * AGR))),
        (PAYER, CloseChannel(channel_id=first)),
    )
    chain.advance(3)
    replica = genesis
    for block in chain.blocks:
        apply_block(replica, block)
        check_invariants(replica)
        assert replica.state_root == block.header.state_root
    assert replica.state_root == chain.state.state_root
    assert rebuild_from_rows(chain.state).state_root == chain.state.state_root
    assert get_channel(replica, first).closed and get_channel(replica, first).claimed == 21 * AGR


# --- random sequences ------------------------------------------------------------------------

RANDOM_TEMPO = 3
PAYERS = (PAYER, OTHER_PAYER)
PAYEES = (MINER, OTHER_MINER, UNREGISTERED)


@functools.cache
def _base_state() -> tuple[Any, int]:
    chain, netuid = run_until_dividends(RANDOM_TEMPO)
    return chain.state, netuid


@dataclass
class _Model:
    """The rules of channels in a few plain lines, to compare the ledger with."""

    height: int
    nonces: dict[bytes, int]
    balances: dict[bytes, int]
    channels: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    order: list[bytes] = field(default_factory=list)

    def pay_fee(self, sender: KeyPair) -> int:
        nonce = self.nonces[sender.address]
        self.nonces[sender.address] = nonce + 1
        self.balances[sender.address] -= MIN_FEE
        return nonce

    def open(self, payer: KeyPair, payee: KeyPair, deposit: int, offset: int) -> tuple[Any, int]:
        nonce = self.pay_fee(payer)
        body = OpenChannel(
            payee=payee.address, netuid=1, deposit=deposit, expiry=self.height + offset
        )
        if payee is UNREGISTERED:
            return body, 2302
        if offset <= 0:
            return body, 2310
        self.balances[payer.address] -= deposit
        channel_id = compute_channel_id(payer.address, nonce)
        self.channels[channel_id] = {
            "payer": payer,
            "payee": payee,
            "deposit": deposit,
            "claimed": 0,
            "expiry": body.expiry,
            "closed": False,
        }
        self.order.append(channel_id)
        return body, 0

    def top_up(
        self, sender: KeyPair, channel_id: bytes, amount: int, extend: int
    ) -> tuple[Any, int]:
        self.pay_fee(sender)
        channel = self.channels[channel_id]
        expiry = 0 if extend == 0 else channel["expiry"] + extend
        body = TopUpChannel(channel_id=channel_id, amount=amount, expiry=max(expiry, 0))
        if sender is not channel["payer"]:
            return body, 2303
        if channel["closed"]:
            return body, 2305
        if expiry and expiry < channel["expiry"]:
            return body, 2310
        self.balances[sender.address] -= amount
        channel["deposit"] += amount
        channel["expiry"] = expiry or channel["expiry"]
        return body, 0

    def claim(
        self, sender: KeyPair, channel_id: bytes, cumulative: int, signer: KeyPair
    ) -> tuple[Any, int]:
        self.pay_fee(sender)
        channel = self.channels[channel_id]
        body = ClaimChannel(voucher=voucher(channel_id, cumulative, signer))
        if sender is not channel["payee"]:
            return body, 2304
        if channel["closed"]:
            return body, 2305
        if cumulative <= channel["claimed"]:
            return body, 2307
        if cumulative > channel["deposit"]:
            return body, 2308
        if signer is not channel["payer"]:
            return body, 2306
        payee_share, _, _ = compute_claim_split(
            cumulative - channel["claimed"],
            PARAMS.channel_fee_u16,
            PARAMS.channel_fee_validators_u16,
        )
        self.balances[sender.address] += payee_share
        channel["claimed"] = cumulative
        return body, 0

    def close(self, sender: KeyPair, channel_id: bytes) -> tuple[Any, int]:
        self.pay_fee(sender)
        channel = self.channels[channel_id]
        body = CloseChannel(channel_id=channel_id)
        if sender is not channel["payer"]:
            return body, 2303
        if channel["closed"]:
            return body, 2305
        if self.height < channel["expiry"]:
            return body, 2309
        self.balances[sender.address] += channel["deposit"] - channel["claimed"]
        channel["closed"] = True
        return body, 0


_operation = st.tuples(
    st.sampled_from(["open", "top_up", "claim", "close"]),
    st.integers(0, 7),  # which channel, or which payer and payee for an open
    st.integers(1, 6 * AGR),  # an amount
    st.integers(-2, 6),  # an expiry offset or extension
    st.integers(0, 5),  # who sends or signs: 0 the right key, 1 a wrong one, else the right
)


def _make_operation(
    model: _Model, operation: tuple[str, int, int, int, int]
) -> tuple[KeyPair, Any, int]:
    kind, index, amount, offset, who = operation
    if kind == "open" or not model.order:
        payer, payee = PAYERS[index % 2], PAYEES[index % 3 if who == 1 else index % 2]
        return (payer, *model.open(payer, payee, amount, offset))
    channel_id = model.order[index % len(model.order)]
    channel = model.channels[channel_id]
    if kind == "top_up":
        sender = STRANGER if who == 1 else channel["payer"]
        return (sender, *model.top_up(sender, channel_id, amount // 3 + 1, offset))
    if kind == "claim":
        sender = OTHER_MINER if who == 1 and channel["payee"] is MINER else channel["payee"]
        signer = STRANGER if who == 2 else channel["payer"]
        # Mostly a step above what was claimed, sometimes at or beyond the deposit.
        cumulative = channel["claimed"] + (amount // 4 if who != 3 else 0) + (offset > 4) * AGR
        return (sender, *model.claim(sender, channel_id, max(cumulative, 1), signer))
    sender = MINER if who == 1 else channel["payer"]
    return (sender, *model.close(sender, channel_id))


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(st.lists(_operation, max_size=8), min_size=1, max_size=6))
def test_random_channel_sequences_keep_the_invariants_and_follow_the_model(
    blocks: list[list[tuple[str, int, int, int, int]]],
) -> None:
    base, _ = _base_state()
    state, replica = clone_state(base), clone_state(base)
    watched = [*PAYERS, MINER, OTHER_MINER, STRANGER]
    model = _Model(
        height=state.head.height,
        nonces={k.address: get_account(state, k.address).nonce for k in watched},
        balances={k.address: get_balance(state, k.address) for k in watched},
    )
    for operations in blocks:
        model.height += 1
        made = [_make_operation(model, operation) for operation in operations]
        raws = [
            make_signed(sender, body, nonce)
            for (sender, body, _), nonce in zip(made, _nonces_of(state, made), strict=True)
        ]
        applied = build_block(state, state.head.timestamp + 12, raws)
        assert [r.code for r in applied.outcomes] == [code for _, _, code in made]
        check_invariants(state)
        for key in (*PAYERS, MINER, OTHER_MINER):
            assert get_balance(state, key.address) == model.balances[key.address]
        for channel_id, expected in model.channels.items():
            channel = get_channel(state, channel_id)
            assert (channel.deposit, channel.claimed, channel.closed) == (
                expected["deposit"],
                expected["claimed"],
                expected["closed"],
            )
        apply_block(replica, applied.block)
        assert replica.state_root == state.state_root
    assert rebuild_from_rows(state).state_root == state.state_root


def _nonces_of(state: Any, made: list[tuple[KeyPair, Any, int]]) -> list[int]:
    counts: dict[bytes, int] = {}
    nonces = []
    for sender, _, _ in made:
        offset = counts.get(sender.address, 0)
        nonces.append(get_account(state, sender.address).nonce + offset)
        counts[sender.address] = offset + 1
    return nonces


# --- the node API and the CLI, against a real node process ------------------------------------


@dataclass
class _Devnet:
    node: Any
    netuid: int
    channel_id: str


def _dev_send(node: Any, key: Any, body: Any) -> dict[str, Any]:
    """Sign ``body`` with the key's next nonce, submit it, wait for its receipt."""
    from agora.client.transactions import make_transaction
    from agora.node.devchain import DEV_CHAIN_ID

    nonce = node.account(key.address)["next_nonce"]
    raw = make_transaction(
        chain_id=DEV_CHAIN_ID,
        public_key=key.public_key,
        sign=key.sign,
        nonce=nonce,
        fee=MIN_FEE,
        body=body,
    )
    [tx_hash] = node.submit([raw])
    receipt: dict[str, Any] = node.wait_included(tx_hash)["receipt"]
    return receipt


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A dev node with subnet 1; DEV[2]'s key is a miner hotkey (owned by DEV[1]) and DEV[3]
    has opened a channel to it."""
    from node_helpers import NodeProcesses, get_dev_keys

    from agora.protocol.address import Address
    from agora.protocol.subnets import NO_HOTKEY, CreateSubnet

    dev = get_dev_keys()
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        node = processes.run(tmp_path_factory.mktemp("node"))
        create = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
        for key, body in [
            (dev[0], create),
            (dev[1], Register(netuid=1, hotkey=Address(dev[2].public_key))),
        ]:
            receipt = _dev_send(node, key, body)
            assert receipt["success"], receipt
        nonce = node.account(dev[3].address)["next_nonce"]
        height = node.get_json("/v1/head")["height"]
        body = OpenChannel(
            payee=Address(dev[2].public_key), netuid=1, deposit=10 * AGR, expiry=height + 12
        )
        assert _dev_send(node, dev[3], body)["success"]
        channel_id = "0x" + compute_channel_id(Address(dev[3].public_key), nonce).hex()
        yield _Devnet(node=node, netuid=1, channel_id=channel_id)
    finally:
        processes.stop_all()


def test_the_api_serves_a_channel_and_lists_by_payer_and_payee(devnet: _Devnet) -> None:
    import asyncio

    from node_helpers import get_dev_keys

    from agora.client.client import NodeApiError, NodeClient

    dev = get_dev_keys()
    node = devnet.node
    shown = node.get_json(f"/v1/channels/{devnet.channel_id}")
    assert shown == {
        "id": devnet.channel_id,
        "payer": dev[3].address,
        "payee": dev[2].address,
        "netuid": 1,
        "deposit": 10 * AGR,
        "claimed": 0,
        "expiry": shown["expiry"],
        "closed": False,
    }
    assert node.get_json(f"/v1/channels/{devnet.channel_id[2:]}") == shown  # 0x is optional
    assert node.get_json(f"/v1/channels?payer={dev[3].address}")["channels"] == [shown]
    assert node.get_json(f"/v1/channels?payee={dev[2].address}")["channels"] == [shown]
    both = f"/v1/channels?payer={dev[3].address}&payee={dev[2].address}"
    assert node.get_json(both)["channels"] == [shown]
    assert node.get_json(f"/v1/channels?payer={dev[2].address}")["channels"] == []

    unknown = "0x" + bytes(32).hex()
    for path, status, code in [
        (f"/v1/channels/{unknown}", 404, 3004),
        ("/v1/channels/0x1234", 400, 3001),
        ("/v1/channels/not-hex", 400, 3001),
        ("/v1/channels", 400, 3001),
        ("/v1/channels?payer=agr1notanaddress", 400, 1005),
    ]:
        response = node.get(path)
        assert (response.status, response.error_code) == (status, code), (path, response.body)
        assert set(response.json()["error"]) == {"code", "name", "message"}

    async def through_the_client() -> tuple[Any, Any, Any]:
        async with NodeClient(node.url) as client:
            by_text = await client.get_channel(devnet.channel_id)
            by_bytes = await client.get_channel(bytes.fromhex(devnet.channel_id[2:]))
            listed = await client.list_channels(payee=dev[2].address)
            with pytest.raises(NodeApiError) as missing:
                await client.get_channel(bytes(32))
            assert (missing.value.code, missing.value.status) == (3004, 404)
            return by_text, by_bytes, listed

    by_text, by_bytes, listed = asyncio.run(through_the_client())
    assert by_text == by_bytes == shown and listed == [shown]

    paths = node.get_json("/v1/openapi.json")["paths"]
    assert {"/v1/channels", "/v1/channels/{id}"} <= set(paths)
    assert "404" in paths["/v1/channels/{id}"]["get"]["responses"]


def test_the_cli_signs_claims_shows_and_closes_a_channel(
    devnet: _Devnet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import json
    import shlex

    from node_helpers import get_dev_keys, make_key, sign_transfer
    from typer.testing import CliRunner

    from agora.cli.main import app

    dev = get_dev_keys()
    node = devnet.node
    env = {
        "AGORA_NODE": node.url,
        "AGORA_HOME": str(tmp_path_factory.mktemp("home")),
        "AGORA_WALLET_PASSWORD": "correct horse battery staple",
        "COLUMNS": "250",
    }
    runner = CliRunner()

    def run(command: str) -> Any:
        return runner.invoke(app, shlex.split(command), env=env)

    def ok(command: str) -> Any:
        result = run(command + " --json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def fails(command: str, code: int) -> None:
        result = run(command)
        assert result.exit_code != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip().startswith(f"error[{code}]: "), result.stderr

    seeds = tmp_path_factory.mktemp("seeds")
    for index in (1, 2, 3):
        (seeds / f"dev{index}").write_text(dev[index].seed_hex)
    ok(f"wallet import payer --seed-file {seeds / 'dev3'} --kdf minimum")
    ok(f"wallet import miner --seed-file {seeds / 'dev1'} --kdf minimum")
    ok(f"wallet import miner --hotkey hot --seed-file {seeds / 'dev2'}")
    channel = devnet.channel_id
    miner = "--wallet miner --hotkey hot"

    # A second channel, opened through the CLI: its id is printed.
    opened = ok(
        f"channel open --payee {dev[2].address} --netuid 1 --deposit 2 --blocks 3 --wallet payer"
    )
    assert opened["receipt"]["success"]
    second = opened["channel_id"]
    assert ok(f"channel show {second}")["deposit"] == 2 * AGR

    voucher_path = Path(env["AGORA_HOME"]) / "voucher.json"
    result = run(f"channel voucher {channel} --amount 1.5 --wallet payer --out {voucher_path}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(voucher_path.read_text())
    ok(f"channel claim --voucher {voucher_path} {miner}")
    assert ok(f"channel show {channel}")["claimed"] == 3 * AGR // 2
    fails(f"channel claim --voucher {voucher_path} {miner}", 2307)  # a replay

    # The same voucher, typed as arguments; and one of another channel relabelled.
    signed = json.loads(run(f"channel voucher {channel} --amount 2 --wallet payer").stdout)
    ok(f"channel claim {channel} --amount 2 --signature {signed['signature']} {miner}")
    other = json.loads(run(f"channel voucher {second} --amount 1 --wallet payer").stdout)
    fails(f"channel claim {channel} --amount 3 --signature {other['signature']} {miner}", 2306)
    fails(f"channel voucher {channel} --amount 11 --wallet payer", 2)  # above the deposit

    ok(f"channel top-up {channel} --amount 1 --wallet payer")
    assert ok(f"channel show {channel}")["deposit"] == 11 * AGR
    fails(f"channel close {channel} --wallet payer", 2309)
    fails(f"channel top-up {channel} --wallet payer", 2)
    human = run(f"channel show {channel}")
    assert human.exit_code == 0 and "claimed 2 AGR" in human.stdout
    listed = ok(f"channel list --payer {dev[3].address}")["channels"]
    assert sorted(c["id"] for c in listed) == sorted([channel, second])

    expiry = ok(f"channel show {channel}")["expiry"]
    filler = dev[7]
    while node.get_json("/v1/head")["height"] + 1 < expiry:
        nonce = node.account(filler.address)["next_nonce"]
        [tx_hash] = node.submit([sign_transfer(filler, make_key("sink").address, 1, nonce)])
        node.wait_included(tx_hash)
    before = node.account(dev[3].address)["balance"]
    closed = ok(f"channel close {channel} --wallet payer")
    refund = 11 * AGR - 2 * AGR
    assert (
        node.account(dev[3].address)["balance"] == before + refund - closed["receipt"]["fee_paid"]
    )
    assert ok(f"channel show {channel}")["closed"] is True
    fails(f"channel claim {channel} --amount 3 --signature {signed['signature']} {miner}", 2305)
    fails(f"channel show 0x{bytes(32).hex()}", 3004)

"""Governance on real ledger state: proposals from submission to enactment, and every refusal.

A chain with short tracks (see governance_helpers) and five staked voters: each proposal
kind goes through its lifecycle, every transaction kind is refused with each of its codes and
the refusal changes nothing but the sender's nonce and fee, and the safety rules (late
quorum, closed proposals stay closed, timelocks, invariant-breaking changes) each have a
scenario. The supply invariant is checked after every block of every scenario.
"""

from __future__ import annotations

import pytest
from governance_helpers import (
    ABSTAIN,
    AGR,
    NO,
    TRACKS,
    VETO,
    YES,
    Governed,
    make_governance_genesis,
    param_change,
    text,
)
from protocol_helpers import (
    MIN_FEE,
    Chain,
    assert_refused,
    create_subnet,
    make_genesis_state,
    make_keys,
    make_signed,
    rebuild_from_rows,
)

from agora.protocol.accounts import Transfer, get_account, get_balance
from agora.protocol.address import Address
from agora.protocol.errors import (
    AlreadyVoted,
    CannotCancel,
    FeeTooLow,
    HyperparameterOutOfBounds,
    InvalidGenesis,
    InvalidVote,
    LiveProposalExists,
    MalformedProposal,
    NoVotingPower,
    ParameterChangeBreaksInvariant,
    ParameterOutOfBounds,
    ProposalNotFound,
    ProposalNotVoting,
    SpendAboveTrackLimit,
    StakeLockedByVote,
    TreasuryInsufficient,
    UnknownParameter,
)
from agora.protocol.genesis import create_genesis_state
from agora.protocol.governance import (
    CANCELLED,
    COMPLETED,
    DEFAULT_TRACKS,
    ENACTED,
    EXPIRED,
    FAILED,
    PARAMETERS_TRACK,
    QUEUED,
    REJECTED,
    SIGNAL_TRACK,
    SMALL_SPEND_TRACK,
    STREAMING,
    VETOED,
    VOTING,
    ProposeCancel,
    ProposeEmissionShares,
    ProposeTreasurySpend,
    Vote,
    get_ballots,
    get_track,
    resolve_parameter,
)
from agora.protocol.invariants import check_invariants
from agora.protocol.params import PARAM_BOUNDS, Params
from agora.protocol.staking import AddStake, RemoveStake
from agora.protocol.subnets import (
    NO_HOTKEY,
    CreateSubnet,
    Register,
    SetHyperparameter,
    SubnetNotFound,
    get_hyperparameter_bounds,
    get_subnet,
)
from agora.protocol.transition import apply_block
from agora.protocol.voting_power import get_contribution, get_locked_stake
from agora.protocol.weights import SetWeights

STAKES = [400 * AGR, 300 * AGR, 200 * AGR, 100 * AGR]


def governed(**params: int) -> Governed:
    return Governed(STAKES, params=params)


def seal_checked(gov: Governed, blocks: int) -> None:
    for _ in range(blocks):
        gov.chain.advance(1)
        check_invariants(gov.state)


# --- a parameter change, from submission to the next block's behaviour -----------------------


def test_a_param_change_is_enacted_when_its_timelock_ends_and_binds_the_next_block() -> None:
    gov = governed()
    alice, bob, carol, _ = gov.voters
    balance = get_balance(gov.state, alice.address)
    proposal = gov.propose(alice, param_change(("min_fee", 5 * MIN_FEE)))
    assert proposal.status == VOTING and proposal.track == PARAMETERS_TRACK
    assert get_balance(gov.state, alice.address) == balance - MIN_FEE - 10 * AGR
    gov.votes(proposal.id, (alice, YES), (bob, YES), (carol, NO))
    closed = gov.close(proposal.id)
    assert closed.status == QUEUED
    assert closed.enact_at == closed.closed_at + TRACKS["parameters"]["timelock_blocks"]
    assert get_balance(gov.state, alice.address) == balance - 2 * MIN_FEE  # deposit back
    while gov.chain.height < closed.enact_at - 1:  # nothing is enacted before its timelock
        seal_checked(gov, 1)
        assert gov.state.params.min_fee == MIN_FEE
    gov.chain.advance(1)
    enacted = gov.proposal(proposal.id)
    assert (enacted.status, enacted.enacted_at) == (ENACTED, closed.enact_at)
    assert gov.state.params.min_fee == 5 * MIN_FEE

    # The very next block refuses a fee the old minimum allowed, and takes the new one.
    nonce = get_account(gov.state, bob.address).nonce
    old_fee = make_signed(bob, Transfer(recipient=carol.address, amount=1), nonce)
    (receipt,) = gov.chain.seal([old_fee])
    assert (receipt.success, receipt.code) == (False, FeeTooLow.code)
    new_fee = make_signed(bob, Transfer(recipient=carol.address, amount=1), nonce, 5 * MIN_FEE)
    (receipt,) = gov.chain.seal([new_fee])
    assert receipt.success, receipt.message
    check_invariants(gov.state)


def test_track_numbers_and_hyperparameter_bounds_are_governed_too() -> None:
    gov = governed()
    alice, bob, carol, _ = gov.voters
    proposal = gov.propose(
        alice,
        param_change(
            ("track.signal.deposit", 3 * AGR),
            ("hyperparameter.tempo.max", 500),
            ("treasury_emission_u16", 1_000),
        ),
    )
    gov.votes(proposal.id, (alice, YES), (bob, YES), (carol, YES))
    gov.chain.advance_to(gov.close(proposal.id).enact_at + 1)
    assert gov.proposal(proposal.id).status == ENACTED
    assert get_track(gov.state, SIGNAL_TRACK).deposit == 3 * AGR
    assert get_hyperparameter_bounds(gov.state, "tempo") == (1, 500)
    assert gov.state.params.treasury_emission_u16 == 1_000

    # The owner now stays within governance's bounds, inside the hard ones.
    owner, netuid = gov.owner, gov.netuid
    assert_refused(
        gov.chain,
        owner,
        SetHyperparameter(netuid=netuid, name="tempo", value=501),
        HyperparameterOutOfBounds.code,
    )
    assert gov.chain.send(owner, SetHyperparameter(netuid=netuid, name="tempo", value=500)).success
    assert get_subnet(gov.state, netuid).hyperparameters.tempo == 500

    # The treasury's share of emission is taken every block before the subnets' split.
    treasury = gov.state.get_ledger("treasury")
    gov.chain.advance(1)
    share = Params().initial_block_emission * 1_000 // 65_535
    assert gov.state.get_ledger("treasury") == treasury + share


def test_every_global_parameter_has_hard_bounds_that_contain_its_default() -> None:
    defaults = Params()
    assert set(PARAM_BOUNDS) == set(Params.__dataclass_fields__)
    for name, (low, high) in PARAM_BOUNDS.items():
        assert low <= getattr(defaults, name) <= high, name
        assert resolve_parameter(name)[3] == (low, high)


# --- outcomes and deposits -------------------------------------------------------------------


def test_rejected_expired_and_vetoed_proposals_and_their_deposits() -> None:
    gov = governed()
    alice, bob, carol, dave = gov.voters
    start = {k.address: get_balance(gov.state, k.address) for k in gov.voters}

    rejected = gov.propose(alice, text("rejected"))
    gov.votes(rejected.id, (alice, YES), (bob, NO), (carol, NO), (dave, ABSTAIN))
    expired = gov.propose(bob, text("expired"))  # 5% quorum: 100 AGR of 1000 is enough
    vetoed = gov.propose(carol, text("vetoed"))
    gov.votes(vetoed.id, (alice, VETO), (bob, YES))
    gov.chain.advance_to(max(p.voting_ends_at for p in (rejected, expired, vetoed)) + 1)
    check_invariants(gov.state)

    assert gov.proposal(rejected.id).status == REJECTED
    assert gov.proposal(expired.id).status == EXPIRED
    assert gov.proposal(vetoed.id).status == VETOED
    tally = gov.proposal(rejected.id).tally
    assert (tally.yes, tally.no, tally.abstain, tally.veto) == (400 * AGR, 500 * AGR, 100 * AGR, 0)
    assert tally.turnout == 1_000 * AGR
    # Deposits back for rejected and expired; a vetoed proposal's deposit went to the treasury.
    fees = {alice.address: 3, bob.address: 3, carol.address: 2, dave.address: 1}
    for key in (alice, bob, carol, dave):
        lost = 1 * AGR if key is carol else 0
        assert get_balance(gov.state, key.address) == (
            start[key.address] - fees[key.address] * MIN_FEE - lost
        )


def test_one_live_proposal_per_proposer_and_track() -> None:
    gov = governed()
    alice = gov.voters[0]
    first = gov.propose(alice, text("first"))
    assert_refused(gov.chain, alice, text("second"), LiveProposalExists.code)
    gov.propose(alice, param_change(("min_fee", 2_000)))  # another track is fine
    gov.close(first.id)
    assert gov.proposal(first.id).status == EXPIRED
    gov.propose(alice, text("again, once the first is closed"))


# --- the treasury ----------------------------------------------------------------------------


def test_a_spend_at_once_and_a_stream_cancelled_halfway() -> None:
    gov = governed()
    alice, bob, carol, dave = gov.voters
    recipient = gov.others[0].address
    gov.chain.advance(130)  # a quarter of each block's emission fills the treasury
    assert gov.state.get_ledger("treasury") > 30 * AGR

    at_once = gov.propose(
        alice, ProposeTreasurySpend(recipient=recipient, amount=3 * AGR, payments=1, description="")
    )
    stream = gov.propose(
        bob, ProposeTreasurySpend(recipient=recipient, amount=4 * AGR, payments=5, description="")
    )
    assert at_once.track == SMALL_SPEND_TRACK and stream.track != SMALL_SPEND_TRACK
    gov.votes(at_once.id, (alice, YES), (bob, YES))
    gov.votes(stream.id, (alice, YES), (bob, YES), (carol, YES))
    before = get_balance(gov.state, recipient)
    gov.chain.advance_to(gov.close(at_once.id).enact_at + 1)
    assert gov.proposal(at_once.id).status == ENACTED
    assert get_balance(gov.state, recipient) == before + 3 * AGR

    gov.chain.advance_to(gov.close(stream.id).enact_at + 1)
    streaming = gov.proposal(stream.id)
    assert (streaming.status, streaming.payments_made, streaming.escrow) == (
        STREAMING,
        1,
        16 * AGR,
    )
    gov.chain.advance_to(streaming.next_payment_at + 1)
    assert gov.proposal(stream.id).payments_made == 2
    check_invariants(gov.state)

    cancel = gov.propose(dave, ProposeCancel(target=stream.id, description="enough"))
    gov.votes(cancel.id, (alice, YES), (bob, YES), (carol, YES), (dave, YES))
    treasury = gov.state.get_ledger("treasury")
    gov.close(cancel.id)
    assert gov.proposal(cancel.id).status == ENACTED  # emergency track: no timelock
    cancelled = gov.proposal(stream.id)
    assert (cancelled.status, cancelled.escrow) == (CANCELLED, 0)
    paid = cancelled.payments_made
    assert 2 <= paid < 5  # one more may have come due while the cancel was voted on
    assert get_balance(gov.state, recipient) == before + 3 * AGR + paid * 4 * AGR
    # What the stream had yet to pay went back to the treasury.
    assert gov.state.get_ledger("treasury") >= treasury + (5 - paid - 1) * 4 * AGR
    gov.chain.advance(25)
    assert get_balance(gov.state, recipient) == before + 3 * AGR + paid * 4 * AGR
    check_invariants(gov.state)


def test_a_stream_pays_every_governance_epoch_until_complete() -> None:
    gov = governed()
    alice, bob, *_ = gov.voters
    recipient = gov.others[1].address
    gov.chain.advance(40)
    before = get_balance(gov.state, recipient)
    stream = gov.propose(
        alice, ProposeTreasurySpend(recipient=recipient, amount=1 * AGR, payments=3, description="")
    )
    gov.votes(stream.id, (alice, YES), (bob, YES))
    enact_at = gov.close(stream.id).enact_at
    seal_checked(gov, enact_at + 2 * 10 + 1 - gov.chain.height)
    done = gov.proposal(stream.id)
    assert (done.status, done.payments_made, done.escrow) == (COMPLETED, 3, 0)
    assert get_balance(gov.state, recipient) == before + 3 * AGR


def test_emission_shares_are_enacted() -> None:
    gov = governed()
    alice, bob, carol, _ = gov.voters
    proposal = gov.propose(alice, ProposeEmissionShares(shares=((gov.netuid, 7),), description=""))
    gov.votes(proposal.id, (alice, YES), (bob, YES), (carol, YES))
    gov.chain.advance_to(gov.close(proposal.id).enact_at + 1)
    assert get_subnet(gov.state, gov.netuid).emission_share == 7


# --- refusals: each code, nothing changed ----------------------------------------------------


def test_stateless_refusals_cost_nothing() -> None:
    gov = governed()
    alice = gov.voters[0]
    for body, code in [
        (param_change(("max_fee", 1)), UnknownParameter.code),
        (param_change(("track.nowhere.deposit", 1)), UnknownParameter.code),
        (param_change(("hyperparameter.tempo.middle", 1)), UnknownParameter.code),
        (param_change(("min_fee", PARAM_BOUNDS["min_fee"][1] + 1)), ParameterOutOfBounds.code),
        (param_change(("track.parameters.quorum_u16", 1)), ParameterOutOfBounds.code),
        (param_change(("track.parameters.quorum_u16", 65_535)), ParameterOutOfBounds.code),
        (param_change(("track.emergency.threshold_u16", 65_535)), ParameterOutOfBounds.code),
        (param_change(("hyperparameter.tempo.max", 50_001)), ParameterOutOfBounds.code),
        (param_change(), MalformedProposal.code),
        (param_change(("min_fee", 1), ("min_fee", 2)), MalformedProposal.code),
        (
            ProposeTreasurySpend(recipient=alice.address, amount=0, payments=1, description=""),
            MalformedProposal.code,
        ),
        (ProposeEmissionShares(shares=(), description=""), MalformedProposal.code),
        (
            ProposeEmissionShares(shares=((1, 1_000_001),), description=""),
            ParameterOutOfBounds.code,
        ),
        (Vote(proposal_id=0, choice=4, conviction=0), InvalidVote.code),
        (Vote(proposal_id=0, choice=YES, conviction=7), InvalidVote.code),
    ]:
        assert_refused(gov.chain, alice, body, code, charged=False)


def test_stateful_refusals_change_nothing_but_nonce_and_fee() -> None:
    gov = governed()
    alice, bob, carol, _ = gov.voters
    stranger = gov.others[0]
    chain = gov.chain
    # A default take above the maximum, fewer subnets allowed than exist, a cap below the
    # supply, a hyperparameter minimum above its maximum: each would break a rule.
    assert chain.send(
        gov.owner, CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    ).success
    for change in [
        ("default_take_u16", 20_000),
        ("max_subnets", 1),
        ("max_transaction_bytes", 300),
    ]:
        assert_refused(chain, alice, param_change(change), ParameterChangeBreaksInvariant.code)
    assert_refused(
        chain, alice, param_change(("supply_cap", 1)), ParameterChangeBreaksInvariant.code
    )
    assert_refused(
        chain,
        alice,
        param_change(("hyperparameter.tempo.min", 100), ("hyperparameter.tempo.max", 50)),
        ParameterChangeBreaksInvariant.code,
    )
    assert_refused(
        chain,
        alice,
        ProposeEmissionShares(shares=((gov.netuid, 0), (2, 0)), description=""),
        ParameterChangeBreaksInvariant.code,
    )
    assert_refused(
        chain,
        alice,
        ProposeEmissionShares(shares=((99, 1),), description=""),
        SubnetNotFound.code,
    )
    assert_refused(chain, alice, Vote(proposal_id=9, choice=YES, conviction=0), 2404)
    assert_refused(chain, alice, ProposeCancel(target=9, description=""), ProposalNotFound.code)
    # The fee of the spend itself reaches the treasury first.
    treasury = gov.state.get_ledger("treasury") + MIN_FEE
    assert_refused(
        chain,
        alice,
        ProposeTreasurySpend(
            recipient=bob.address, amount=treasury + 1, payments=1, description=""
        ),
        TreasuryInsufficient.code,
    )
    assert_refused(
        chain,
        alice,
        ProposeTreasurySpend(recipient=bob.address, amount=51 * AGR, payments=1, description=""),
        SpendAboveTrackLimit.code,
    )

    proposal = gov.propose(alice, text())
    assert_refused(chain, alice, ProposeCancel(target=proposal.id, description=""), 2411)
    assert gov.vote(alice, proposal.id, YES).success
    assert_refused(chain, alice, Vote(proposal_id=proposal.id, choice=NO, conviction=0), 2406)
    assert_refused(chain, stranger, Vote(proposal_id=proposal.id, choice=YES, conviction=0), 2407)
    gov.close(proposal.id)
    assert_refused(chain, bob, Vote(proposal_id=proposal.id, choice=YES, conviction=0), 2405)
    assert_refused(chain, carol, ProposeCancel(target=proposal.id, description=""), 2411)
    assert {AlreadyVoted.code, NoVotingPower.code, ProposalNotVoting.code} == {2406, 2407, 2405}
    assert CannotCancel.code == 2411
    check_invariants(gov.state)


# --- votes: power, locks, no double counting -------------------------------------------------


def test_stake_that_voted_cannot_move_to_another_account_and_vote_again() -> None:
    gov = governed()
    alice, bob, *_ = gov.voters
    stranger = gov.others[0]
    proposal = gov.propose(bob, text())
    assert gov.vote(alice, proposal.id, YES).success
    assert get_locked_stake(gov.state, alice.address, gov.chain.height + 1) == 400 * AGR
    # Alice's stake cannot leave her hotkey while the vote counts it...
    hotkey = gov.hotkeys[0].address
    assert_refused(gov.chain, alice, RemoveStake(hotkey=hotkey, amount=1), StakeLockedByVote.code)
    # ...so it cannot reach the stranger, who has no power of its own to vote with.
    assert gov.chain.send(alice, Transfer(recipient=stranger.address, amount=100 * AGR)).success
    assert_refused(
        gov.chain, stranger, Vote(proposal_id=proposal.id, choice=YES, conviction=0), 2407
    )
    ballots = dict(get_ballots(gov.state, proposal.id))
    assert set(ballots) == {alice.address}
    assert gov.proposal(proposal.id).tally.yes == 400 * AGR

    # Once the voting is over (and the extension it might have had), the stake is free.
    closed = gov.close(proposal.id)
    gov.chain.advance_to(closed.voting_ends_at + closed.rules.extension_blocks + 2)
    assert gov.chain.send(alice, RemoveStake(hotkey=hotkey, amount=400 * AGR)).success
    check_invariants(gov.state)


def test_conviction_multiplies_the_vote_and_lengthens_the_lock() -> None:
    gov = governed()
    alice, bob, *_ = gov.voters
    proposal = gov.propose(alice, text())
    assert gov.vote(bob, proposal.id, YES, conviction=3).success
    tally = gov.proposal(proposal.id).tally
    assert (tally.yes, tally.turnout) == (4 * 300 * AGR, 300 * AGR)  # quorum counts stake once
    closed = gov.close(proposal.id)
    unlock = closed.voting_ends_at + closed.rules.extension_blocks + 1 + 3 * 20
    hotkey = gov.hotkeys[1].address
    gov.chain.advance_to(unlock - 1)
    assert_refused(gov.chain, bob, RemoveStake(hotkey=hotkey, amount=1), 2413)
    gov.chain.advance_to(unlock)
    assert gov.chain.send(bob, RemoveStake(hotkey=hotkey, amount=1)).success


# --- safety rules ----------------------------------------------------------------------------


def test_late_quorum_extends_the_voting_once() -> None:
    gov = governed()
    alice, bob, carol, dave = gov.voters
    proposal = gov.propose(dave, param_change(("min_fee", 2_000)))
    extension = TRACKS["parameters"]["extension_blocks"]
    # Quorum is 20% of 1000 AGR: Dave's 100 AGR is not enough, and comes early.
    gov.votes(proposal.id, (dave, YES))
    assert gov.proposal(proposal.id).voting_ends_at == proposal.voting_ends_at
    # Alice reaches quorum in the voting's very last block: the others get time to answer.
    gov.chain.advance_to(proposal.voting_ends_at)
    gov.votes(proposal.id, (alice, YES))
    extended = gov.proposal(proposal.id)
    assert extended.extended and extended.voting_ends_at == proposal.voting_ends_at + extension
    assert extended.status == VOTING
    gov.votes(proposal.id, (bob, NO), (carol, NO))
    assert gov.close(proposal.id).status == REJECTED


def test_quorum_reached_early_does_not_extend() -> None:
    gov = governed()
    alice, bob, *_ = gov.voters
    proposal = gov.propose(alice, text())
    gov.votes(proposal.id, (alice, YES), (bob, YES))
    assert not gov.proposal(proposal.id).extended
    closed = gov.close(proposal.id)
    assert (closed.status, closed.closed_at) == (ENACTED, proposal.voting_ends_at)


def test_lowering_the_quorum_never_revives_a_closed_proposal() -> None:
    """CVE-2022-31198: Governor recomputed past outcomes with the current quorum."""
    gov = governed()
    alice, bob, carol, dave = gov.voters
    # Dave's 10% of the power votes yes: below the parameters track's 20% quorum.
    starved = gov.propose(dave, param_change(("min_fee", 3_000)))
    gov.votes(starved.id, (dave, YES))
    assert gov.close(starved.id).status == EXPIRED
    before = gov.proposal(starved.id)

    # A pending proposal copies its track's rules when submitted, before the change lands.
    pending = gov.propose(carol, text("submitted under the old quorum"))
    lower = gov.propose(alice, param_change(("track.parameters.quorum_u16", 655)))
    gov.votes(lower.id, (alice, YES), (bob, YES))
    gov.chain.advance_to(gov.close(lower.id).enact_at + 1)
    assert get_track(gov.state, PARAMETERS_TRACK).quorum_u16 == 655

    after = gov.proposal(starved.id)
    assert after == before and after.status == EXPIRED and after.rules.quorum_u16 == 13_107
    assert gov.proposal(pending.id).rules == get_track(gov.state, SIGNAL_TRACK)
    assert_refused(gov.chain, bob, Vote(proposal_id=starved.id, choice=YES, conviction=0), 2405)
    # The same proposal submitted again, under the new quorum, now passes.
    again = gov.propose(dave, param_change(("min_fee", 3_000)))
    gov.votes(again.id, (dave, YES))
    assert gov.close(again.id).status == QUEUED


def test_a_change_that_became_invalid_during_its_timelock_fails_at_enactment() -> None:
    gov = governed()
    alice, bob, carol, _ = gov.voters
    first = gov.propose(alice, param_change(("max_take_u16", 20_000)))
    gov.votes(first.id, (alice, YES), (bob, YES))
    gov.chain.advance_to(gov.close(first.id).enact_at + 1)
    # Each is valid when submitted; enacted in order, the second would put the maximum take
    # below the default the first set, so it fails and changes nothing.
    raise_default = gov.propose(bob, param_change(("default_take_u16", 15_000)))
    lower_max = gov.propose(carol, param_change(("max_take_u16", 12_000)))
    gov.votes(raise_default.id, (alice, YES), (bob, YES), (carol, YES))
    gov.votes(lower_max.id, (alice, YES), (bob, YES), (carol, YES))
    gov.chain.advance_to(gov.close(lower_max.id).enact_at + 1)
    assert gov.proposal(raise_default.id).status == ENACTED
    assert gov.proposal(lower_max.id).status == FAILED
    assert (gov.state.params.default_take_u16, gov.state.params.max_take_u16) == (15_000, 20_000)
    check_invariants(gov.state)


def test_a_cancelled_queued_proposal_is_never_enacted() -> None:
    gov = governed()
    alice, bob, carol, dave = gov.voters
    proposal = gov.propose(alice, param_change(("min_fee", 9_000)))
    gov.votes(proposal.id, (alice, YES), (bob, YES))
    gov.close(proposal.id)
    cancel = gov.propose(carol, ProposeCancel(target=proposal.id, description="a mistake"))
    gov.votes(cancel.id, (alice, YES), (bob, YES), (carol, YES), (dave, YES))
    gov.chain.advance_to(gov.proposal(proposal.id).enact_at + 1)
    assert gov.proposal(proposal.id).status == CANCELLED
    assert gov.proposal(cancel.id).status == ENACTED
    assert gov.state.params.min_fee == MIN_FEE
    # Live again: the proposer may propose on the track.
    gov.propose(alice, param_change(("min_fee", 9_000)))


# --- the whale: stake against verified work --------------------------------------------------


def whale_outcome(weight_per_mille: int | None) -> int:
    """40% of the stake and no contribution votes yes; 30% with most contribution votes no."""
    params = {} if weight_per_mille is None else {"contribution_weight_per_mille": weight_per_mille}
    gov = Governed([400 * AGR, 150 * AGR, 150 * AGR, 300 * AGR], params=params)
    whale, worker_a, worker_b, _ = gov.voters
    from agora.protocol.voting_power import record_contribution

    # What the epochs paid the two workers for measured work, recorded as the epoch step does.
    height = gov.chain.height
    record_contribution(gov.state, worker_a.address, 12 * AGR, height)
    record_contribution(gov.state, worker_b.address, 8 * AGR, height)
    record_contribution(gov.state, whale.address, 1 * AGR // 2, height)
    proposal = gov.propose(whale, text("the whale's proposal"))
    gov.votes(proposal.id, (whale, YES), (worker_a, NO), (worker_b, NO))
    return gov.close(proposal.id).status


def test_a_whale_without_contribution_is_outvoted_by_the_workers() -> None:
    assert whale_outcome(0) == ENACTED  # tokens only: 400 against 300
    assert whale_outcome(None) == REJECTED  # λ = 10: 405 against 300 + 200


# --- determinism and genesis -----------------------------------------------------------------


def test_replaying_the_blocks_gives_every_tally_and_root() -> None:
    gov = governed()
    alice, bob, carol, _ = gov.voters
    first = gov.propose(alice, param_change(("min_fee", 1_500)))
    gov.votes(first.id, (alice, YES), (bob, NO), (carol, YES))
    second = gov.propose(bob, text())
    gov.votes(second.id, (carol, VETO), (bob, YES))
    roots = []
    while gov.chain.height < gov.close(first.id).enact_at + 1:
        gov.chain.advance(1)
    roots = [block.header.state_root for block in gov.chain.blocks]

    replica = create_genesis_state(gov.genesis)
    for block in gov.chain.blocks:
        apply_block(replica, block)
    assert [b.header.state_root for b in gov.chain.blocks] == roots
    assert replica.state_root == gov.state.state_root
    for proposal_id in (first.id, second.id):
        assert replica.tables["proposals"][proposal_id] == gov.proposal(proposal_id)
    assert rebuild_from_rows(gov.state).state_root == gov.state.state_root


def test_genesis_tracks_are_defaults_unless_given_and_checked() -> None:
    keys = make_keys(2)
    state = make_genesis_state(keys)
    assert [get_track(state, t) for t in range(len(DEFAULT_TRACKS))] == list(DEFAULT_TRACKS)
    genesis = make_governance_genesis(keys)
    state = create_genesis_state(genesis)
    assert get_track(state, PARAMETERS_TRACK).voting_period_blocks == 20
    for governance, field in [
        ([], "governance"),
        ({"tracks": {"nowhere": {}}}, "nowhere"),
        ({"tracks": {"signal": {"speed": 1}}}, "speed"),
        ({"tracks": {"signal": {"deposit": -1}}}, "deposit"),
        ({"tracks": {"signal": {"threshold_u16": 1}}}, "threshold_u16"),
        ({"tracks": {"signal": []}}, "signal"),
    ]:
        with pytest.raises(InvalidGenesis, match=field):
            create_genesis_state({**genesis, "governance": governance})
    for params, field in [
        ({"treasury_emission_u16": 60_000}, "treasury_emission_u16"),
        ({"default_take_u16": 20_000}, "default_take_u16"),
        ({"max_block_transactions": 0}, "max_block_transactions"),
    ]:
        with pytest.raises(InvalidGenesis, match=field):
            create_genesis_state({**genesis, "params": params})


# --- verified contribution comes from real epochs -----------------------------------------------


def test_an_epoch_records_what_it_paid_as_contribution_within_a_window() -> None:
    keys = make_keys(6, seed=77)
    owner, miner_cold, validator_cold, miner, validator, _ = keys
    params = {"governance_epoch_blocks": 5, "contribution_window_epochs": 2}
    chain = Chain(create_genesis_state(make_governance_genesis(keys, params)))
    netuid = create_subnet(chain, owner, tempo=4, commit_reveal=0, weights_rate_limit=0)
    receipts = chain.block(
        (validator_cold, Register(netuid=netuid, hotkey=validator.address)),
        (miner_cold, Register(netuid=netuid, hotkey=miner.address)),
    )
    receipts += chain.block(
        (validator_cold, AddStake(hotkey=validator.address, amount=100 * AGR)),
    )
    chain.advance(5)  # an epoch gives the staked validator its permit
    weights = SetWeights(netuid=netuid, uids=(1,), values=(65_535,), version_key=0)
    receipts += chain.block((validator, weights))
    assert all(r.success for r in receipts), [r.message for r in receipts]

    earned: dict[Address, int] = {miner_cold.address: 0, validator_cold.address: 0}
    history: list[tuple[int, dict[Address, int]]] = []
    for _ in range(30):
        before = {a: get_balance(chain.state, a) for a in earned}
        chain.advance(1)
        gained = {a: get_balance(chain.state, a) - before[a] for a in earned}
        history.append((chain.height, gained))
        check_invariants(chain.state)
    # The window is the current governance epoch and the one before it (5 blocks each).
    height = chain.height
    oldest = (height // 5 - 1) * 5
    for account in earned:
        expected = sum(g[account] for h, g in history if h >= oldest)
        assert expected > 0
        assert get_contribution(chain.state, account, height) == expected
    # The miner's coldkey earned incentive, the validator's coldkey dividends (and its take).
    assert len(chain.state.tables["contributions"][miner_cold.address]) <= 2
    assert get_contribution(chain.state, owner.address, height) == 0  # the owner cut is not work

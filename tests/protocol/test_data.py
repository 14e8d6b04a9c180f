"""Federated rounds, data commitments, lineage and royalties on real ledger state.

Contributors commit to their data, then each round commit to an update, reveal it, and are
scored by two validators (leave-one-out on their own held-out rows) who set weights; after
the subnet's epoch anyone posts the round record, which the ledger recomputes. The tests run
real training on digits shards, real Yuma epochs and real payment-channel claims.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from federated_helpers import (
    AGR,
    CONTRIBUTORS,
    KEYS,
    OWNER,
    PAYER,
    SERVER,
    STRANGER,
    TEMPO,
    VALIDATORS,
    FederatedChain,
)
from protocol_helpers import (
    CHAIN_ID,
    Chain,
    assert_refused,
    clone_state,
    make_genesis_state,
    rebuild_from_rows,
)

from agora.protocol.accounts import get_balance
from agora.protocol.channels import ClaimChannel, OpenChannel, compute_channel_id, sign_voucher
from agora.protocol.data import (
    CommitData,
    CommitUpdate,
    RecordRound,
    RevealUpdate,
    ServeModel,
    StartFederation,
    compute_round_record,
    compute_royalty_split,
    get_federation,
    get_model_lineage,
    get_round_record,
)
from agora.protocol.errors import (
    DataError,
    DuplicateUpdate,
    FederationAlreadyStarted,
    InvalidField,
    InvalidGenesis,
    ModelUnknown,
    NoInferenceConsent,
    NotFederatedSubnet,
    NotFederationOwner,
    NoTrainingConsent,
    NotRegisteredOnSubnet,
    NoUpdateCommitment,
    OutsideWindow,
    RoundRecordMismatch,
    UpdateCommitmentMismatch,
    VectorShapeMismatch,
    WrongRound,
)
from agora.protocol.federation import (
    compute_aggregate,
    compute_commitment,
    compute_model_hash,
    compute_update_hash,
    decode_vector,
    encode_vector,
)
from agora.protocol.genesis import create_genesis_state
from agora.protocol.invariants import check_invariants
from agora.protocol.params import Params
from agora.protocol.transition import apply_block
from agora.protocol.voting_power import get_contribution
from agora.tasks import federated


@pytest.fixture(scope="module")
def trained() -> FederatedChain:
    network = FederatedChain()
    network.commit_data()
    network.start()
    for _ in range(4):
        network.run_round()
        check_invariants(network.chain.state)
    return network


def test_rounds_train_the_model_and_pay_honest_data_only(trained: FederatedChain) -> None:
    state, netuid = trained.chain.state, trained.netuid
    federation = get_federation(state, netuid)
    assert federation.round_number == 4
    accuracy = federated.compute_accuracy(trained.model, federated.load_pools().test)
    assert accuracy > 0.8
    lineage = get_model_lineage(state, federation.model_hash)
    credits = dict(lineage.credits)
    honest = [credits.get(key.address, 0) for key in CONTRIBUTORS[:4]]
    assert min(honest) > 0
    assert credits.get(CONTRIBUTORS[4].address, 0) == 0  # free rider
    assert credits.get(CONTRIBUTORS[5].address, 0) <= min(honest)  # label flipper
    # Walk the lineage back to the initial model: each round's record names its parent.
    model_hash, rounds = federation.model_hash, 0
    while get_model_lineage(state, model_hash).parent_hash != bytes(32):
        record = get_round_record(state, netuid, get_model_lineage(state, model_hash).round_number)
        assert record is not None and record.model_hash == model_hash
        model_hash, rounds = record.parent_hash, rounds + 1
    assert rounds == 4
    assert model_hash == compute_model_hash(federated.make_initial_model())


def test_any_node_recomputes_the_model_and_a_replay_gives_the_same_state(
    trained: FederatedChain,
) -> None:
    """Two validators (here: any two nodes) and a replay from genesis agree to the bit."""
    replay = make_genesis_state(KEYS)
    for block in trained.chain.blocks:
        apply_block(replay, block)
    assert replay.state_root == trained.chain.state.state_root
    assert get_federation(replay, trained.netuid) == get_federation(
        trained.chain.state, trained.netuid
    )
    assert rebuild_from_rows(replay).state_root == replay.state_root
    # A node that knows only the ledger rows recomputes the last round from its record.
    state = trained.chain.state
    last = get_round_record(state, trained.netuid, 3)
    assert last is not None
    assert last.model_hash == compute_model_hash(trained.model)


def test_two_validators_and_a_replay_derive_the_same_model_and_payouts() -> None:
    """Each validator's own node replays the ledger from genesis and derives the pending
    round's record alone: the same record, model hash and payouts as the chain, to the bit,
    although the two validators scored on different held-out rows."""
    network = FederatedChain()
    network.commit_data()
    network.start()
    network.run_round()
    network.score_and_set_weights(network.commit_and_reveal())
    network.wait_for_record()
    nodes = []
    for _ in VALIDATORS:
        replica = make_genesis_state(KEYS)
        for block in network.chain.blocks:
            apply_block(replica, block)
        nodes.append(Chain(replica))
    records = [compute_round_record(node.state, network.netuid) for node in nodes]
    assert records[0] == records[1] == compute_round_record(network.chain.state, network.netuid)
    recorded = network.record()
    assert recorded == records[0][0]
    for node in nodes:
        assert all(r.success for r in node.block((STRANGER, records[0][0])))
    # One more epoch pays the round's credit: emission and balances agree everywhere.
    for chain in (network.chain, *nodes):
        chain.advance(TEMPO + 1)
    roots = {chain.state.state_root for chain in (network.chain, *nodes)}
    assert len(roots) == 1
    models = {get_federation(c.state, network.netuid).model_hash for c in (network.chain, *nodes)}
    assert models == {recorded.model_hash}
    for key in CONTRIBUTORS:
        balances = {get_balance(c.state, key.address) for c in (network.chain, *nodes)}
        assert len(balances) == 1


def test_a_record_that_differs_from_the_recomputation_is_refused() -> None:
    network = FederatedChain()
    network.commit_data()
    network.start()
    updates = network.commit_and_reveal()
    network.score_and_set_weights(updates)
    federation = get_federation(network.chain.state, network.netuid)
    early, _ = compute_round_record(network.chain.state, network.netuid)
    assert_refused(network.chain, STRANGER, early, OutsideWindow.code)
    network.wait_for_record()
    expected, model = compute_round_record(network.chain.state, network.netuid)
    assert any(credit > 0 for _, _, credit in expected.contributions)
    tampered = [
        replace(expected, model_hash=compute_model_hash(federated.make_initial_model())),
        replace(expected, parent_hash=bytes(32)),
        replace(
            expected,
            contributions=tuple(
                (hotkey, update_hash, credit + 1)
                for hotkey, update_hash, credit in expected.contributions
            ),
        ),
        replace(expected, contributions=expected.contributions[1:]),
    ]
    for record in tampered:
        receipt = assert_refused(network.chain, STRANGER, record, RoundRecordMismatch.code)
        assert receipt.code == 2530
    wrong_round = replace(expected, round_number=1)
    assert_refused(network.chain, STRANGER, wrong_round, WrongRound.code)
    # The aggregate by hand: the updates the subnet paid, clipped and averaged.
    included = [
        update
        for update, (_, _, credit) in zip(updates, expected.contributions, strict=True)
        if credit > 0
    ]
    assert decode_vector(model) == compute_aggregate(decode_vector(federation.model), included)
    network.ok((STRANGER, expected))
    assert get_federation(network.chain.state, network.netuid).model_hash == expected.model_hash


def test_commitments_reveals_and_windows_are_enforced() -> None:
    network = FederatedChain()
    netuid = network.netuid
    contributor, other = CONTRIBUTORS[0], CONTRIBUTORS[1]
    model = encode_vector(federated.make_initial_model())
    start = StartFederation(netuid=netuid, model=model, commit_blocks=2, reveal_blocks=2)
    assert_refused(network.chain, STRANGER, start, NotFederationOwner.code)
    commitment = compute_commitment(contributor.address, netuid, 0, compute_update_hash((1,) * 650))
    commit = CommitUpdate(netuid=netuid, round_number=0, commitment=commitment)
    assert_refused(network.chain, contributor, commit, NotFederatedSubnet.code)
    network.start()
    assert_refused(network.chain, OWNER, start, FederationAlreadyStarted.code)
    assert_refused(network.chain, contributor, commit, NoTrainingConsent.code)
    network.commit_data()
    federation = get_federation(network.chain.state, netuid)
    network.chain.advance_to(federation.reveal_start)
    assert_refused(network.chain, contributor, commit, OutsideWindow.code)
    # The next round of a fresh subnet: commit in time, then reveal right and wrong.
    network = FederatedChain()
    network.commit_data()
    network.start(commit_blocks=4, reveal_blocks=10)
    netuid = network.netuid
    update = (1,) * federated.PARAMETERS
    commitment = compute_commitment(contributor.address, netuid, 0, compute_update_hash(update))
    network.ok(
        (contributor, CommitUpdate(netuid=netuid, round_number=0, commitment=commitment)),
        (
            other,
            CommitUpdate(
                netuid=netuid,
                round_number=0,
                commitment=compute_commitment(
                    other.address, netuid, 0, compute_update_hash(update)
                ),
            ),
        ),
    )
    assert_refused(
        network.chain,
        STRANGER,
        CommitUpdate(netuid=netuid, round_number=0, commitment=commitment),
        NotRegisteredOnSubnet.code,
    )
    reveal = RevealUpdate(netuid=netuid, round_number=0, update=encode_vector(update))
    assert_refused(network.chain, contributor, reveal, OutsideWindow.code)
    network.chain.advance_to(get_federation(network.chain.state, netuid).reveal_start)
    wrong = RevealUpdate(netuid=netuid, round_number=0, update=encode_vector((2,) * 650))
    assert_refused(network.chain, contributor, wrong, UpdateCommitmentMismatch.code)
    short = RevealUpdate(netuid=netuid, round_number=0, update=encode_vector((1,) * 649))
    assert_refused(network.chain, contributor, short, VectorShapeMismatch.code)
    assert_refused(network.chain, CONTRIBUTORS[2], reveal, NoUpdateCommitment.code)
    network.ok((contributor, reveal))
    assert_refused(network.chain, contributor, reveal, NoUpdateCommitment.code)
    # The same update from a second hotkey is a replay, even with its own commitment.
    copy = RevealUpdate(netuid=netuid, round_number=0, update=encode_vector(update))
    assert_refused(network.chain, other, copy, DuplicateUpdate.code)


def test_stateless_checks_refuse_malformed_bodies_without_charging() -> None:
    network = FederatedChain()
    netuid = network.netuid
    garbage = StartFederation(
        netuid=netuid, model=b"\x00\x00\x00\x05", commit_blocks=1, reveal_blocks=1
    )
    assert_refused(network.chain, OWNER, garbage, 2501, charged=False)
    no_window = StartFederation(
        netuid=netuid, model=encode_vector((0,) * 650), commit_blocks=0, reveal_blocks=1
    )
    assert_refused(network.chain, OWNER, no_window, InvalidField.code, charged=False)
    empty = CommitData(
        netuid=netuid,
        merkle_root=bytes(32),
        rows=0,
        schema="x",
        allow_training=True,
        allow_inference=True,
    )
    assert_refused(network.chain, CONTRIBUTORS[0], empty, InvalidField.code, charged=False)
    low, high = sorted(key.address for key in CONTRIBUTORS[:2])
    unsorted = RecordRound(
        netuid=netuid,
        round_number=0,
        parent_hash=bytes(32),
        model_hash=bytes(32),
        contributions=((high, bytes(32), 1), (low, bytes(32), 1)),
    )
    assert_refused(network.chain, STRANGER, unsorted, InvalidField.code, charged=False)
    assert issubclass(ModelUnknown, DataError) and DataError.code == 2520


# --- serving and royalties -------------------------------------------------------------------


def test_royalty_split_is_exact_and_the_remainder_goes_to_the_largest_credit() -> None:
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    kept, shares = compute_royalty_split(1_000_003, 6_553, ((a, 5), (b, 3), (c, 5)))
    royalty = 1_000_003 * 6_553 // 65_535
    assert kept == 1_000_003 - royalty
    assert sum(share for _, share in shares) == royalty
    floors = {a: royalty * 5 // 13, b: royalty * 3 // 13, c: royalty * 5 // 13}
    remainder = royalty - sum(floors.values())
    floors[a] += remainder  # a and c tie on credit: the lower address takes it
    assert dict(shares) == floors
    assert compute_royalty_split(10, 6_553, ()) == (10, [])


def test_params_bound_the_royalty_share() -> None:
    from protocol_helpers import make_genesis

    with pytest.raises(InvalidGenesis, match="data_royalty_u16"):
        create_genesis_state(make_genesis(KEYS[:1], params={"data_royalty_u16": 40_000}))


def test_paid_requests_to_a_served_model_pay_its_contributors_by_credit(
    trained: FederatedChain,
) -> None:
    network = FederatedChain.__new__(FederatedChain)
    network.chain = Chain(clone_state(trained.chain.state))
    network.netuid = trained.netuid
    netuid, state = network.netuid, network.chain.state
    unknown = ServeModel(netuid=netuid, model_hash=bytes(32))
    assert_refused(network.chain, SERVER, unknown, ModelUnknown.code)
    model_hash = get_federation(state, netuid).model_hash
    assert_refused(
        network.chain,
        STRANGER,
        ServeModel(netuid=netuid, model_hash=model_hash),
        NotRegisteredOnSubnet.code,
    )
    network.ok((SERVER, ServeModel(netuid=netuid, model_hash=model_hash)))
    credits = get_model_lineage(state, model_hash).credits
    nonce = state.tables["accounts"].get(PAYER.address, None).nonce
    network.ok(
        (PAYER, OpenChannel(payee=SERVER.address, netuid=netuid, deposit=100 * AGR, expiry=10_000))
    )
    channel_id = compute_channel_id(PAYER.address, nonce)
    before = {key.address: get_balance(state, key.address) for key in CONTRIBUTORS + [SERVER]}
    earned = {
        k.address: get_contribution(state, k.address, network.chain.height) for k in CONTRIBUTORS
    }
    params = Params()
    cumulative = 0
    for request in range(1, 8):  # seven paid requests, claimed after the third and the seventh
        cumulative += 1_000_003 * request
        if request in (3, 7):
            voucher = sign_voucher(CHAIN_ID, channel_id, cumulative, PAYER.sign)
            network.ok((SERVER, ClaimChannel(voucher=voucher)))
            check_invariants(state)
    # Recompute the expected transfers claim by claim, from the same rules.
    expected: dict[bytes, int] = {}
    server_expected = 0
    for amount in (1_000_003 * 6, 1_000_003 * (4 + 5 + 6 + 7)):
        fee = amount * params.channel_fee_u16 // 65_535
        kept, shares = compute_royalty_split(amount - fee, params.data_royalty_u16, credits)
        server_expected += kept
        for hotkey, share in shares:
            expected[hotkey] = expected.get(hotkey, 0) + share
    for key in CONTRIBUTORS:
        gained = get_balance(state, key.address) - before[key.address]
        assert gained == expected.get(key.address, 0)
    fees = 2 * params.min_fee  # the server's two claim transactions
    assert get_balance(state, SERVER.address) - before[SERVER.address] == server_expected - fees
    assert sum(expected.values()) > 0
    # Royalties are paid for measured work: they count as verified contribution in votes.
    for key in CONTRIBUTORS:
        now = get_contribution(state, key.address, network.chain.height)
        assert now - earned[key.address] == expected.get(key.address, 0)


def test_serving_needs_every_credited_contributor_to_allow_inference(
    trained: FederatedChain,
) -> None:
    chain = Chain(clone_state(trained.chain.state))
    netuid = trained.netuid
    model_hash = get_federation(chain.state, netuid).model_hash
    credited = [hotkey for hotkey, _ in get_model_lineage(chain.state, model_hash).credits]
    key = next(k for k in CONTRIBUTORS if k.address == credited[0])
    contributor = trained.contributors[CONTRIBUTORS.index(key)]
    withdraw = CommitData(
        netuid=netuid,
        merkle_root=federated.compute_data_root(contributor.data),
        rows=len(contributor.data),
        schema=federated.DATA_SCHEMA,
        allow_training=True,
        allow_inference=False,
    )
    assert chain.send(key, withdraw).success
    serve = ServeModel(netuid=netuid, model_hash=model_hash)
    assert_refused(chain, SERVER, serve, NoInferenceConsent.code)

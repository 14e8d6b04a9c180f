"""Data contributors and lineage: commitments to data, federated rounds, and royalties.

Lineage runs from data to payout, every link a ledger record:

- ``commit_data``: an owner commits to its rows on a federated subnet: the Merkle root of its
  row hashes (never the rows), the row count, a schema name and its consent flags (training
  allowed, inference allowed). Only an owner whose commitment allows training may take part
  in a round.
- ``start_federation``: the subnet owner sets the initial model (a fixed-point vector,
  ``federation.py``) and the round windows. Each round then runs in three windows of blocks:
  commits (``commit_blocks``), reveals (``reveal_blocks``), then its record.
- ``commit_update``: a contributor commits to its update for the current round by
  ``federation.compute_commitment`` (its key, the subnet, the round and the update hash),
  during the commit window. ``reveal_update`` then posts the update itself, during the reveal
  window; it must match the commitment, and an update already revealed this round by someone
  else is refused: a copycat cannot commit to an update it has not seen yet.
- ``record_round``: after the reveal window and after a subnet epoch at or past its end (the
  epoch that turns the validators' scores of these updates into incentive), anyone may post
  the round's record: parent model hash, new model hash, and each revealed contributor's
  update hash and credit (its ``incentive_u16``). The state transition recomputes it
  (``federation.compute_aggregate`` of the updates with credit above 0) and refuses a record
  that differs in any field. The new model, its record and its lineage (cumulative credits
  per contributor, across every round of its ancestry) are stored; the round's updates are
  dropped. Any node recomputes the same model bytes, so model files are content-addressed by
  ``federation.compute_model_hash`` and may be served by whoever holds them.
- ``serve_model``: a miner names the model hash it serves with its endpoint; the model must
  have lineage here, and every contributor credited in it must allow inference.

Royalties. When a channel of a subnet is claimed by a payee that serves a model with lineage,
``data_royalty_u16`` of the payee's part goes to the model's contributors
(``process_model_royalties``, called by ``channels.process_claim_channel``). The royalty is
floored (its remainder stays with the payee); it is split by cumulative credit, each share
floored, and the remainder of the split goes to the contributor with the largest credit (the
lowest address among equals). Only balances move, so the supply invariant holds unchanged.

Its errors are in errors.py (codes 2520-2549 of the data range).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from agora.protocol.accounts import increase_balance
from agora.protocol.address import Address
from agora.protocol.codec import (
    ADDRESS,
    BOOL,
    HASH,
    U16,
    U64,
    ListOf,
    Record,
    Text,
    TupleOf,
    VarBytes,
    decode_field,
    encode_field,
)
from agora.protocol.errors import (
    DuplicateUpdate,
    FederationAlreadyStarted,
    InvalidField,
    InvariantViolated,
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
    MAX_PARAMETERS,
    compute_aggregate,
    compute_commitment,
    compute_model_hash,
    compute_update_hash,
    decode_vector,
    encode_vector,
)
from agora.protocol.kinds import BlockContext, Transaction, TransactionKind
from agora.protocol.params import U16_ONE
from agora.protocol.state import State
from agora.protocol.subnets import MAX_UIDS_LIMIT, get_neuron, get_subnet, get_uid
from agora.protocol.voting_power import record_contribution

DATA_COMMITMENTS_TAG = 60
FEDERATIONS_TAG = 61
ROUND_UPDATES_TAG = 62
ROUND_RECORDS_TAG = 63
MODEL_LINEAGE_TAG = 64
SERVED_MODELS_TAG = 65
FEDERATED_TASK = "federated"
MAX_VECTOR_BYTES = 4 + 4 * MAX_PARAMETERS
MAX_WINDOW_BLOCKS = 100_000


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DataCommitment:
    owner: Address  # the contributor's hotkey
    netuid: int
    merkle_root: bytes  # over the owner's row hashes
    rows: int
    schema: str
    allow_training: bool
    allow_inference: bool
    committed_at: int


DATA_COMMITMENT_RECORD: Record[DataCommitment] = Record(
    DataCommitment,
    (
        ("owner", ADDRESS),
        ("netuid", U16),
        ("merkle_root", HASH),
        ("rows", U64),
        ("schema", Text(128)),
        ("allow_training", BOOL),
        ("allow_inference", BOOL),
        ("committed_at", U64),
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Federation:
    """A federated subnet's current model and round."""

    netuid: int
    round_number: int
    model: bytes  # the encoded vector (federation.encode_vector)
    model_hash: bytes
    round_start: int  # the block the current round opened
    commit_blocks: int
    reveal_blocks: int

    @property
    def reveal_start(self) -> int:
        return self.round_start + self.commit_blocks

    @property
    def reveal_end(self) -> int:
        return self.reveal_start + self.reveal_blocks


FEDERATION_RECORD: Record[Federation] = Record(
    Federation,
    (
        ("netuid", U16),
        ("round_number", U64),
        ("model", VarBytes(MAX_VECTOR_BYTES)),
        ("model_hash", HASH),
        ("round_start", U64),
        ("commit_blocks", U64),
        ("reveal_blocks", U64),
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundUpdate:
    """A contributor's commitment this round, and its update once revealed."""

    commitment: bytes
    update: bytes  # empty until revealed
    update_hash: bytes  # zeros until revealed


ROUND_UPDATE_RECORD: Record[RoundUpdate] = Record(
    RoundUpdate,
    (("commitment", HASH), ("update", VarBytes(MAX_VECTOR_BYTES)), ("update_hash", HASH)),
)

CONTRIBUTION = TupleOf((ADDRESS, HASH, U16))  # (hotkey, update hash, credit u16)
CREDIT = TupleOf((ADDRESS, U64))  # (hotkey, cumulative credit)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord:
    netuid: int
    round_number: int
    parent_hash: bytes
    model_hash: bytes
    contributions: tuple[tuple[Address, bytes, int], ...]  # in hotkey order
    recorded_at: int


ROUND_RECORD: Record[RoundRecord] = Record(
    RoundRecord,
    (
        ("netuid", U16),
        ("round_number", U64),
        ("parent_hash", HASH),
        ("model_hash", HASH),
        ("contributions", ListOf(CONTRIBUTION, MAX_UIDS_LIMIT)),
        ("recorded_at", U64),
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLineage:
    """Where a model came from, and whom it pays: credits summed over its whole ancestry."""

    netuid: int
    round_number: int  # the round that produced it
    parent_hash: bytes
    credits: tuple[tuple[Address, int], ...]  # in hotkey order, credit above 0 only


MODEL_LINEAGE_RECORD: Record[ModelLineage] = Record(
    ModelLineage,
    (
        ("netuid", U16),
        ("round_number", U64),
        ("parent_hash", HASH),
        ("credits", ListOf(CREDIT, MAX_UIDS_LIMIT)),
    ),
)


def _netuid_address_codec() -> tuple[Any, Any]:
    return (
        lambda key: key[0].to_bytes(2, "big") + bytes(key[1]),
        lambda raw: (int.from_bytes(raw[:2], "big"), Address(bytes(raw[2:]))),
    )


def _netuid_round_codec() -> tuple[Any, Any]:
    return (
        lambda key: key[0].to_bytes(2, "big") + key[1].to_bytes(8, "big"),
        lambda raw: (int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")),
    )


def _record_codec(record: Record[Any]) -> tuple[Any, Any]:
    return (record.encode, record.decode)


def register_tables(state: State) -> None:
    state.add_table(
        DATA_COMMITMENTS_TAG,
        "data_commitments",
        _netuid_address_codec(),
        _record_codec(DATA_COMMITMENT_RECORD),
    )
    state.add_table(
        FEDERATIONS_TAG,
        "federations",
        (lambda netuid: netuid.to_bytes(2, "big"), lambda raw: int.from_bytes(raw, "big")),
        _record_codec(FEDERATION_RECORD),
    )
    state.add_table(
        ROUND_UPDATES_TAG,
        "round_updates",
        _netuid_address_codec(),
        _record_codec(ROUND_UPDATE_RECORD),
    )
    state.add_table(
        ROUND_RECORDS_TAG, "round_records", _netuid_round_codec(), _record_codec(ROUND_RECORD)
    )
    state.add_table(
        MODEL_LINEAGE_TAG, "model_lineage", (bytes, bytes), _record_codec(MODEL_LINEAGE_RECORD)
    )
    state.add_table(
        SERVED_MODELS_TAG,
        "served_models",
        _netuid_address_codec(),
        (lambda value: encode_field(HASH, value), lambda raw: decode_field(HASH, raw)),
    )


def get_data_commitment(state: State, netuid: int, owner: Address) -> DataCommitment | None:
    commitment: DataCommitment | None = state.tables["data_commitments"].get((netuid, owner), None)
    return commitment


def get_federation(state: State, netuid: int) -> Federation:
    federation: Federation | None = state.tables["federations"].get(netuid, None)
    if federation is None:
        raise NotFederatedSubnet(f"subnet {netuid} has no federation; its owner starts one")
    return federation


def get_round_updates(state: State, netuid: int) -> list[tuple[Address, RoundUpdate]]:
    """This round's commitments and reveals, in hotkey order."""
    return sorted(
        (hotkey, update)
        for (key_netuid, hotkey), update in state.tables["round_updates"].items()
        if key_netuid == netuid
    )


def get_round_record(state: State, netuid: int, round_number: int) -> RoundRecord | None:
    record: RoundRecord | None = state.tables["round_records"].get((netuid, round_number), None)
    return record


def get_model_lineage(state: State, model_hash: bytes) -> ModelLineage:
    lineage: ModelLineage | None = state.tables["model_lineage"].get(model_hash, None)
    if lineage is None:
        raise ModelUnknown(f"no round produced model 0x{model_hash.hex()}")
    return lineage


def get_served_model(state: State, netuid: int, hotkey: Address) -> bytes | None:
    model_hash: bytes | None = state.tables["served_models"].get((netuid, hotkey), None)
    return model_hash


# --- commit_data -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitData:
    netuid: int
    merkle_root: bytes
    rows: int
    schema: str
    allow_training: bool
    allow_inference: bool


def validate_commit_data(tx: Transaction) -> None:
    body: CommitData = tx.body
    if body.rows == 0:
        raise InvalidField("a data commitment covers at least one row")


def process_commit_data(state: State, tx: Transaction, context: BlockContext) -> None:
    body: CommitData = tx.body
    _get_federated_subnet(state, body.netuid)
    commitment = DataCommitment(
        owner=tx.sender,
        netuid=body.netuid,
        merkle_root=body.merkle_root,
        rows=body.rows,
        schema=body.schema,
        allow_training=body.allow_training,
        allow_inference=body.allow_inference,
        committed_at=context.height,
    )
    state.tables["data_commitments"].set((body.netuid, tx.sender), commitment)


def _get_federated_subnet(state: State, netuid: int) -> None:
    subnet = get_subnet(state, netuid)
    if subnet.task_kind != FEDERATED_TASK:
        raise NotFederatedSubnet(f"subnet {netuid} runs {subnet.task_kind!r}, not federated")


# --- start_federation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartFederation:
    netuid: int
    model: bytes  # encoded initial vector
    commit_blocks: int
    reveal_blocks: int


def validate_start_federation(tx: Transaction) -> None:
    body: StartFederation = tx.body
    decode_vector(body.model)
    for name in ("commit_blocks", "reveal_blocks"):
        if not 1 <= getattr(body, name) <= MAX_WINDOW_BLOCKS:
            raise InvalidField(f"{name} must be 1..{MAX_WINDOW_BLOCKS} blocks")


def process_start_federation(state: State, tx: Transaction, context: BlockContext) -> None:
    body: StartFederation = tx.body
    _get_federated_subnet(state, body.netuid)
    if get_subnet(state, body.netuid).owner != tx.sender:
        raise NotFederationOwner("only the subnet owner's coldkey may start its federation")
    if body.netuid in state.tables["federations"]:
        raise FederationAlreadyStarted(f"subnet {body.netuid} already trains a model")
    model_hash = compute_model_hash(decode_vector(body.model))
    federation = Federation(
        netuid=body.netuid,
        round_number=0,
        model=body.model,
        model_hash=model_hash,
        round_start=context.height,
        commit_blocks=body.commit_blocks,
        reveal_blocks=body.reveal_blocks,
    )
    state.tables["federations"].set(body.netuid, federation)
    genesis = ModelLineage(netuid=body.netuid, round_number=0, parent_hash=bytes(32), credits=())
    state.tables["model_lineage"].set(model_hash, genesis)


# --- commit_update and reveal_update ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitUpdate:
    netuid: int
    round_number: int
    commitment: bytes


def validate_commit_update(tx: Transaction) -> None:
    """Every check needs the state: the round, the window, the contributor's consent."""


def _get_current_round(state: State, netuid: int, round_number: int) -> Federation:
    federation = get_federation(state, netuid)
    if round_number != federation.round_number:
        raise WrongRound(
            f"subnet {netuid} is in round {federation.round_number}, not {round_number}"
        )
    return federation


def process_commit_update(state: State, tx: Transaction, context: BlockContext) -> None:
    body: CommitUpdate = tx.body
    federation = _get_current_round(state, body.netuid, body.round_number)
    if get_uid(state, body.netuid, tx.sender) is None:
        raise NotRegisteredOnSubnet(f"the hotkey is not registered on subnet {body.netuid}")
    commitment = get_data_commitment(state, body.netuid, tx.sender)
    if commitment is None or not commitment.allow_training:
        raise NoTrainingConsent("commit your data with training allowed before taking part")
    if not federation.round_start <= context.height < federation.reveal_start:
        raise OutsideWindow(
            f"commits for round {body.round_number} are taken in blocks "
            f"{federation.round_start}..{federation.reveal_start - 1}"
        )
    pending = RoundUpdate(commitment=body.commitment, update=b"", update_hash=bytes(32))
    state.tables["round_updates"].set((body.netuid, tx.sender), pending)


@dataclass(frozen=True, slots=True, kw_only=True)
class RevealUpdate:
    netuid: int
    round_number: int
    update: bytes  # encoded vector


def validate_reveal_update(tx: Transaction) -> None:
    body: RevealUpdate = tx.body
    decode_vector(body.update)


def process_reveal_update(state: State, tx: Transaction, context: BlockContext) -> None:
    body: RevealUpdate = tx.body
    federation = _get_current_round(state, body.netuid, body.round_number)
    if not federation.reveal_start <= context.height < federation.reveal_end:
        raise OutsideWindow(
            f"reveals for round {body.round_number} are taken in blocks "
            f"{federation.reveal_start}..{federation.reveal_end - 1}"
        )
    pending: RoundUpdate | None = state.tables["round_updates"].get((body.netuid, tx.sender), None)
    if pending is None or pending.update:
        raise NoUpdateCommitment("commit to your update in the commit window, then reveal it once")
    update = decode_vector(body.update)
    parameters = (len(federation.model) - 4) // 4  # the encoding's count prefix, then i32s
    if len(update) != parameters:
        raise VectorShapeMismatch(
            f"the update has {len(update)} parameters; the model has {parameters}"
        )
    update_hash = compute_update_hash(update)
    expected = compute_commitment(tx.sender, body.netuid, body.round_number, update_hash)
    if expected != pending.commitment:
        raise UpdateCommitmentMismatch("the update does not match your commitment this round")
    if any(other.update_hash == update_hash for _, other in get_round_updates(state, body.netuid)):
        raise DuplicateUpdate("this update was already revealed this round by another hotkey")
    revealed = RoundUpdate(
        commitment=pending.commitment, update=body.update, update_hash=update_hash
    )
    state.tables["round_updates"].set((body.netuid, tx.sender), revealed)


# --- record_round ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRound:
    netuid: int
    round_number: int
    parent_hash: bytes
    model_hash: bytes
    contributions: tuple[tuple[Address, bytes, int], ...]  # (hotkey, update hash, credit u16)


def validate_record_round(tx: Transaction) -> None:
    body: RecordRound = tx.body
    hotkeys = [hotkey for hotkey, _, _ in body.contributions]
    if hotkeys != sorted(set(hotkeys)):
        raise InvalidField("contributions are listed once each, in hotkey order")


def compute_round_record(state: State, netuid: int) -> tuple[RecordRound, bytes]:
    """The record the ledger expects for the current round, and the new model's bytes.

    Credits are the contributors' ``incentive_u16`` from the subnet's last epoch; updates
    with credit above 0 are aggregated (the parent is kept when there are none).
    """
    federation = get_federation(state, netuid)
    contributions = []
    included = []
    for hotkey, pending in get_round_updates(state, netuid):
        if not pending.update:
            continue  # committed, never revealed: not part of the round
        uid = get_uid(state, netuid, hotkey)
        credit = 0 if uid is None else get_neuron(state, netuid, uid).incentive_u16
        contributions.append((hotkey, pending.update_hash, credit))
        if credit > 0:
            included.append(decode_vector(pending.update))
    parent = decode_vector(federation.model)
    model = compute_aggregate(parent, included) if included else parent
    record = RecordRound(
        netuid=netuid,
        round_number=federation.round_number,
        parent_hash=federation.model_hash,
        model_hash=compute_model_hash(model),
        contributions=tuple(contributions),
    )
    return record, encode_vector(model)


def process_record_round(state: State, tx: Transaction, context: BlockContext) -> None:
    body: RecordRound = tx.body
    federation = _get_current_round(state, body.netuid, body.round_number)
    subnet = get_subnet(state, body.netuid)
    if context.height < federation.reveal_end or subnet.last_epoch_block < federation.reveal_end:
        raise OutsideWindow(
            f"round {body.round_number} is recorded after block {federation.reveal_end} and "
            "after the subnet's first epoch from then on"
        )
    expected, model = compute_round_record(state, body.netuid)
    if body != expected:
        raise RoundRecordMismatch(
            f"the record does not match the recomputation: expected new model "
            f"0x{expected.model_hash.hex()} from parent 0x{expected.parent_hash.hex()} with "
            f"{len(expected.contributions)} revealed updates"
        )
    parent_lineage = get_model_lineage(state, federation.model_hash)
    state.tables["round_records"].set(
        (body.netuid, body.round_number),
        RoundRecord(
            netuid=body.netuid,
            round_number=body.round_number,
            parent_hash=body.parent_hash,
            model_hash=body.model_hash,
            contributions=body.contributions,
            recorded_at=context.height,
        ),
    )
    if body.model_hash not in state.tables["model_lineage"]:
        lineage = ModelLineage(
            netuid=body.netuid,
            round_number=body.round_number,
            parent_hash=body.parent_hash,
            credits=compute_cumulative_credits(parent_lineage.credits, body.contributions),
        )
        state.tables["model_lineage"].set(body.model_hash, lineage)
    for hotkey, _ in get_round_updates(state, body.netuid):
        state.tables["round_updates"].delete((body.netuid, hotkey))
    state.tables["federations"].set(
        body.netuid,
        replace(
            federation,
            round_number=federation.round_number + 1,
            model=model,
            model_hash=body.model_hash,
            round_start=context.height,
        ),
    )


def compute_cumulative_credits(
    parent: tuple[tuple[Address, int], ...], contributions: tuple[tuple[Address, bytes, int], ...]
) -> tuple[tuple[Address, int], ...]:
    totals = dict(parent)
    for hotkey, _, credit in contributions:
        if credit > 0:
            totals[hotkey] = totals.get(hotkey, 0) + credit
    return tuple(sorted(totals.items()))


# --- serve_model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeModel:
    netuid: int
    model_hash: bytes


def validate_serve_model(tx: Transaction) -> None:
    """Every check needs the state: the sender's uid and the model's lineage."""


def process_serve_model(state: State, tx: Transaction, context: BlockContext) -> None:
    body: ServeModel = tx.body
    get_subnet(state, body.netuid)
    if get_uid(state, body.netuid, tx.sender) is None:
        raise NotRegisteredOnSubnet(f"the hotkey is not registered on subnet {body.netuid}")
    lineage = get_model_lineage(state, body.model_hash)
    for hotkey, _ in lineage.credits:
        commitment = get_data_commitment(state, lineage.netuid, hotkey)
        if commitment is None or not commitment.allow_inference:
            raise NoInferenceConsent(
                f"contributor {hotkey.hex()} of this model does not allow inference"
            )
    state.tables["served_models"].set((body.netuid, tx.sender), body.model_hash)


# --- royalties -------------------------------------------------------------------------------


def compute_royalty_split(
    amount: int, royalty_u16: int, credits: tuple[tuple[Address, int], ...]
) -> tuple[int, list[tuple[Address, int]]]:
    """(what the payee keeps, each contributor's share), summing to ``amount`` exactly.

    The royalty is floored (its remainder stays with the payee); each share is floored and
    the remainder of the split goes to the largest credit (the lowest address among equals).
    """
    total = sum(credit for _, credit in credits)
    if total == 0 or royalty_u16 == 0:
        return amount, []
    royalty = amount * royalty_u16 // U16_ONE
    shares = [(hotkey, royalty * credit // total) for hotkey, credit in credits]
    remainder = royalty - sum(share for _, share in shares)
    largest = min(range(len(credits)), key=lambda i: (-credits[i][1], credits[i][0]))
    shares[largest] = (shares[largest][0], shares[largest][1] + remainder)
    return amount - royalty, [(hotkey, share) for hotkey, share in shares if share > 0]


def process_model_royalties(state: State, netuid: int, payee: Address, amount: int) -> int:
    """Pay the contributors of the model ``payee`` serves on ``netuid`` their share of
    ``amount``; return what the payee keeps (all of it when it serves no model with lineage)."""
    model_hash = get_served_model(state, netuid, payee)
    if model_hash is None:
        return amount
    lineage: ModelLineage | None = state.tables["model_lineage"].get(model_hash, None)
    if lineage is None:
        return amount
    kept, shares = compute_royalty_split(amount, state.params.data_royalty_u16, lineage.credits)
    for hotkey, share in shares:
        increase_balance(state, hotkey, share)
        # Paid for measured work (the credit its updates earned): it weighs in governance.
        # The block being applied is the one after the head.
        record_contribution(state, hotkey, share, state.head.height + 1)
    return kept


# --- kinds, supply, invariants ---------------------------------------------------------------

KINDS = (
    TransactionKind(
        kind=60,
        name="commit_data",
        body=Record(
            CommitData,
            (
                ("netuid", U16),
                ("merkle_root", HASH),
                ("rows", U64),
                ("schema", Text(128)),
                ("allow_training", BOOL),
                ("allow_inference", BOOL),
            ),
        ),
        validate=validate_commit_data,
        process=process_commit_data,
    ),
    TransactionKind(
        kind=61,
        name="start_federation",
        body=Record(
            StartFederation,
            (
                ("netuid", U16),
                ("model", VarBytes(MAX_VECTOR_BYTES)),
                ("commit_blocks", U64),
                ("reveal_blocks", U64),
            ),
        ),
        validate=validate_start_federation,
        process=process_start_federation,
    ),
    TransactionKind(
        kind=62,
        name="commit_update",
        body=Record(CommitUpdate, (("netuid", U16), ("round_number", U64), ("commitment", HASH))),
        validate=validate_commit_update,
        process=process_commit_update,
    ),
    TransactionKind(
        kind=63,
        name="reveal_update",
        body=Record(
            RevealUpdate,
            (("netuid", U16), ("round_number", U64), ("update", VarBytes(MAX_VECTOR_BYTES))),
        ),
        validate=validate_reveal_update,
        process=process_reveal_update,
    ),
    TransactionKind(
        kind=64,
        name="record_round",
        body=Record(
            RecordRound,
            (
                ("netuid", U16),
                ("round_number", U64),
                ("parent_hash", HASH),
                ("model_hash", HASH),
                ("contributions", ListOf(CONTRIBUTION, MAX_UIDS_LIMIT)),
            ),
        ),
        validate=validate_record_round,
        process=process_record_round,
    ),
    TransactionKind(
        kind=65,
        name="serve_model",
        body=Record(ServeModel, (("netuid", U16), ("model_hash", HASH))),
        validate=validate_serve_model,
        process=process_serve_model,
    ),
)


def compute_supply_held(state: State) -> int:
    """Nothing: data records hold no funds, and royalties move balances only."""
    return 0


def check_invariants(state: State) -> None:
    for netuid, federation in state.tables["federations"].items():
        if compute_model_hash(decode_vector(federation.model)) != federation.model_hash:
            raise InvariantViolated(f"subnet {netuid}: the stored model does not match its hash")
        if federation.model_hash not in state.tables["model_lineage"]:
            raise InvariantViolated(f"subnet {netuid}: the current model has no lineage")

"""Governance: proposals, votes weighed by stake and verified work, timelocked enactment.

The rules and their default numbers are written out for people in ``docs/governance.md``.

Proposal kinds, one transaction kind each (50-54): ``param_change`` (global parameters,
track numbers and subnet hyperparameter bounds, each within hard bounds written in code),
``treasury_spend`` (at once, or streamed once per governance epoch), ``emission_shares``
(the split of block emission among subnets), ``cancel`` (a queued proposal or a running
stream) and ``text`` (a signal, recorded). ``vote`` (55) casts a ballot.

Tracks. Each kind goes on one track (a spend on the small or the large spend track, by its
total), and each track has its deposit, voting period, quorum, approval threshold, timelock
and late-quorum extension. Their defaults are written at genesis; their numbers are
themselves parameters (``track.<name>.<field>``). A proposal copies its track's numbers
when it is submitted: changing a quorum or a threshold later never changes the outcome of a
proposal already submitted, and a closed proposal stays closed (the Governor bug
CVE-2022-31198 recomputed old outcomes with a new quorum).

Lifecycle::

    submitted (deposit paid) -> voting -> closed at the end of block ``voting_ends_at``:
      quorum missed                   -> expired   (deposit back)
      veto share above the threshold  -> vetoed    (deposit to the treasury)
      yes share above the threshold   -> queued    (deposit back) -> enacted at the end of
                                         block ``enact_at`` = close + timelock (streams:
                                         streaming, then completed; an enactment that
                                         would break an invariant then: failed)
      otherwise                       -> rejected  (deposit back)

A proposer has at most one live (voting or queued) proposal per track.

Voting power. ``stake × (1 + conviction) + λ × contribution``: the voter's stake on every
hotkey, multiplied by its conviction (0 to ``MAX_CONVICTION``; each step locks the stake
``conviction_lock_blocks`` longer), plus ``contribution_weight_per_mille`` thousandths of
what the ledger paid the voter for measured work over the recent window
(``voting_power``). Quorum counts turnout without the conviction multiplier, against the
total power when the proposal was submitted. A vote locks the stake it counted until the
voting is over (and any conviction period after), so no token votes twice on a proposal;
contribution cannot move between accounts.

A vote that brings a proposal to quorum within its last ``extension_blocks`` extends its
voting to ``extension_blocks`` after that vote, once: a last-block whale cannot decide
alone.

Supply: deposits of proposals in voting and the escrow of running streams are held here;
the treasury pays out only through enacted ``treasury_spend`` proposals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from agora.protocol.accounts import decrease_balance, increase_balance
from agora.protocol.address import Address
from agora.protocol.codec import (
    ADDRESS,
    BOOL,
    U8,
    U16,
    U64,
    U128,
    FieldType,
    ListOf,
    Record,
    Text,
    TupleOf,
    VarBytes,
    decode_field,
    encode_field,
)
from agora.protocol.errors import (
    AlreadyVoted,
    CannotCancel,
    InvalidGenesis,
    InvalidVote,
    InvariantViolated,
    LiveProposalExists,
    MalformedProposal,
    NoVotingPower,
    ParameterChangeBreaksInvariant,
    ParameterOutOfBounds,
    ProposalNotFound,
    ProposalNotVoting,
    SpendAboveTrackLimit,
    TreasuryInsufficient,
    UnknownParameter,
)
from agora.protocol.kinds import BlockContext, Transaction, TransactionKind
from agora.protocol.params import (
    BASE_UNITS_PER_AGR,
    PARAM_BOUNDS,
    U16_ONE,
    Params,
    validate_params_consistent,
)
from agora.protocol.staking import get_total_staked
from agora.protocol.state import State
from agora.protocol.subnets import (
    HYPERPARAMETER_BOUNDS,
    get_hyperparameter_bounds,
    get_subnet,
    get_subnets,
    set_hyperparameter_bounds,
    set_subnet,
)
from agora.protocol.voting_power import (
    get_coldkey_stake,
    get_contribution,
    get_total_contribution,
    increase_vote_lock,
)

PROPOSALS_TAG = 50
BALLOTS_TAG = 51
TRACKS_TAG = 52
SCHEDULE_TAG = 56
LIVE_PROPOSALS_TAG = 57

MAX_CONVICTION = 6
MIN_GOVERNED_TRANSACTION_BYTES = 4_096
MAX_CHANGES = 32
MAX_EMISSION_SHARE = 1_000_000
DESCRIPTION = Text(1024)
AGR = BASE_UNITS_PER_AGR


# --- tracks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Track:
    deposit: int
    voting_period_blocks: int
    quorum_u16: int  # turnout needed, a share of the total voting power
    threshold_u16: int  # yes share of decisive votes (yes, no, veto) that must be exceeded
    timelock_blocks: int
    extension_blocks: int  # late quorum: voting goes on at least this long after it
    max_spend: int  # treasury spends only: the largest total on this track


TRACK_RECORD: Record[Track] = Record(Track, tuple((f.name, U64) for f in fields(Track)))
TRACK_NAMES = ("parameters", "small_spend", "large_spend", "emergency", "signal")
PARAMETERS_TRACK, SMALL_SPEND_TRACK, LARGE_SPEND_TRACK, EMERGENCY_TRACK, SIGNAL_TRACK = range(5)
DEFAULT_TRACKS = (
    Track(
        deposit=100 * AGR,
        voting_period_blocks=7_200,
        quorum_u16=13_107,
        threshold_u16=32_768,
        timelock_blocks=3_600,
        extension_blocks=1_800,
        max_spend=0,
    ),
    Track(
        deposit=10 * AGR,
        voting_period_blocks=3_600,
        quorum_u16=6_553,
        threshold_u16=32_768,
        timelock_blocks=1_800,
        extension_blocks=900,
        max_spend=1_000 * AGR,
    ),
    Track(
        deposit=100 * AGR,
        voting_period_blocks=14_400,
        quorum_u16=16_384,
        threshold_u16=39_321,
        timelock_blocks=7_200,
        extension_blocks=3_600,
        max_spend=1_000_000 * AGR,
    ),
    Track(
        deposit=50 * AGR,
        voting_period_blocks=600,
        quorum_u16=21_627,
        threshold_u16=43_690,
        timelock_blocks=0,
        extension_blocks=300,
        max_spend=0,
    ),
    Track(
        deposit=1 * AGR,
        voting_period_blocks=7_200,
        quorum_u16=3_277,
        threshold_u16=32_768,
        timelock_blocks=0,
        extension_blocks=900,
        max_spend=0,
    ),
)
TRACK_BOUNDS: dict[str, tuple[int, int]] = {
    "deposit": (0, 1_000_000 * AGR),
    "voting_period_blocks": (10, 1_000_000),
    # At most 60% turnout and a 90% majority: a track that no vote can pass would be a track
    # no vote could ever repair.
    "quorum_u16": (U16_ONE // 100, 39_321),
    "threshold_u16": (U16_ONE // 2, 58_982),
    "timelock_blocks": (0, 1_000_000),
    "extension_blocks": (0, 100_000),
    "max_spend": (0, (1 << 64) - 1),
}


# --- proposals and ballots -------------------------------------------------------------------

STATUSES = (
    "voting",
    "queued",
    "enacted",
    "rejected",
    "expired",
    "vetoed",
    "cancelled",
    "streaming",
    "completed",
    "failed",
)
VOTING, QUEUED, ENACTED, REJECTED, EXPIRED, VETOED, CANCELLED, STREAMING, COMPLETED, FAILED = range(
    len(STATUSES)
)
LIVE_STATUSES = (VOTING, QUEUED)
CHOICES = ("no", "yes", "abstain", "veto")
NO, YES, ABSTAIN, VETO = range(4)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    yes: int = 0
    no: int = 0
    abstain: int = 0
    veto: int = 0
    turnout: int = 0  # power without conviction, counted for quorum


TALLY_RECORD: Record[Tally] = Record(Tally, tuple((f.name, U128) for f in fields(Tally)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    id: int
    proposer: Address
    kind: int  # the transaction kind of the proposal (50-54)
    action: bytes  # the proposal's body, canonically encoded
    track: int
    rules: Track  # the track's numbers when the proposal was submitted
    veto_threshold_u16: int
    total_power: int  # voting power in existence when it was submitted
    status: int
    tally: Tally
    extended: bool
    submitted_at: int
    voting_ends_at: int
    closed_at: int  # 0 until then, as are the other heights
    enact_at: int
    enacted_at: int
    deposit: int
    escrow: int  # streams: what is still to pay
    payments_made: int
    next_payment_at: int


PROPOSAL_RECORD: Record[Proposal] = Record(
    Proposal,
    (
        ("id", U64),
        ("proposer", ADDRESS),
        ("kind", U16),
        ("action", VarBytes(1 << 17)),
        ("track", U8),
        ("rules", TRACK_RECORD),
        ("veto_threshold_u16", U16),
        ("total_power", U128),
        ("status", U8),
        ("tally", TALLY_RECORD),
        ("extended", BOOL),
        ("submitted_at", U64),
        ("voting_ends_at", U64),
        ("closed_at", U64),
        ("enact_at", U64),
        ("enacted_at", U64),
        ("deposit", U64),
        ("escrow", U64),
        ("payments_made", U64),
        ("next_payment_at", U64),
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ballot:
    choice: int
    conviction: int
    stake: int
    contribution: int
    power: int
    height: int


BALLOT_RECORD: Record[Ballot] = Record(
    Ballot,
    (
        ("choice", U8),
        ("conviction", U8),
        ("stake", U64),
        ("contribution", U64),
        ("power", U128),
        ("height", U64),
    ),
)
SCHEDULE_ROW: FieldType[tuple[int, ...]] = ListOf(U64, 1 << 20)


def _u64_key() -> tuple[Any, Any]:
    return (lambda value: value.to_bytes(8, "big"), lambda raw: int.from_bytes(raw, "big"))


def register_tables(state: State) -> None:
    state.add_table(
        PROPOSALS_TAG, "proposals", _u64_key(), (PROPOSAL_RECORD.encode, PROPOSAL_RECORD.decode)
    )
    state.add_table(
        BALLOTS_TAG,
        "ballots",
        (
            lambda key: key[0].to_bytes(8, "big") + key[1],
            lambda raw: (int.from_bytes(raw[:8], "big"), Address(bytes(raw[8:]))),
        ),
        (BALLOT_RECORD.encode, BALLOT_RECORD.decode),
    )
    state.add_table(
        TRACKS_TAG,
        "tracks",
        (lambda track: bytes((track,)), lambda raw: raw[0]),
        (TRACK_RECORD.encode, TRACK_RECORD.decode),
    )
    state.add_table(
        SCHEDULE_TAG,
        "proposal_schedule",
        _u64_key(),
        (
            lambda ids: encode_field(SCHEDULE_ROW, ids),
            lambda raw: decode_field(SCHEDULE_ROW, raw),
        ),
    )
    state.add_table(
        LIVE_PROPOSALS_TAG,
        "live_proposals",
        (
            lambda key: key[0] + bytes((key[1],)),
            lambda raw: (Address(bytes(raw[:32])), raw[32]),
        ),
        _u64_key(),
    )


def apply_genesis(state: State, genesis: Any) -> None:
    """Every track starts with its default numbers, or those of the genesis document::

    "governance": {"tracks": {"parameters": {"voting_period_blocks": 100, ...}, ...}}
    """
    for track, rules in enumerate(tracks_from_json(genesis.get("governance", {}))):
        state.tables["tracks"].set(track, rules)


def tracks_from_json(value: Any) -> tuple[Track, ...]:
    if not isinstance(value, dict) or set(value) - {"tracks"}:
        raise InvalidGenesis('governance: expected {"tracks": {...}}')
    overrides = value.get("tracks", {})
    if not isinstance(overrides, dict):
        raise InvalidGenesis("governance.tracks: expected an object of track name to fields")
    unknown = sorted(set(overrides) - set(TRACK_NAMES))
    if unknown:
        raise InvalidGenesis(f"governance.tracks.{unknown[0]}: unknown track")
    tracks = []
    for name, rules in zip(TRACK_NAMES, DEFAULT_TRACKS, strict=True):
        fields_given = overrides.get(name, {})
        if not isinstance(fields_given, dict):
            raise InvalidGenesis(f"governance.tracks.{name}: expected an object")
        for field, number in fields_given.items():
            path = f"governance.tracks.{name}.{field}"
            if field not in TRACK_BOUNDS:
                raise InvalidGenesis(f"{path}: unknown field")
            low, high = TRACK_BOUNDS[field]
            if isinstance(number, bool) or not isinstance(number, int):
                raise InvalidGenesis(f"{path}: expected an integer")
            if not low <= number <= high:
                raise InvalidGenesis(f"{path}: must be between {low} and {high}")
        tracks.append(replace(rules, **fields_given))
    return tuple(tracks)


# --- reading -----------------------------------------------------------------------------------


def get_track(state: State, track: int) -> Track:
    rules: Track = state.tables["tracks"][track]
    return rules


def get_tracks(state: State) -> list[Track]:
    return [get_track(state, track) for track in range(len(TRACK_NAMES))]


def get_proposal(state: State, proposal_id: int) -> Proposal:
    proposal: Proposal | None = state.tables["proposals"].get(proposal_id, None)
    if proposal is None:
        raise ProposalNotFound(f"proposal {proposal_id} does not exist")
    return proposal


def get_proposals(state: State) -> list[Proposal]:
    return sorted((p for _, p in state.tables["proposals"].items()), key=lambda p: p.id)


def get_ballots(state: State, proposal_id: int) -> list[tuple[Address, Ballot]]:
    return sorted(
        (voter, ballot)
        for (pid, voter), ballot in state.tables["ballots"].items()
        if pid == proposal_id
    )


def get_ballot(state: State, proposal_id: int, voter: Address) -> Ballot | None:
    ballot: Ballot | None = state.tables["ballots"].get((proposal_id, voter), None)
    return ballot


def get_kind(kind: int) -> TransactionKind:
    """One of this module's transaction kinds by number."""
    return next(k for k in KINDS if k.kind == kind)


def decode_action(proposal: Proposal) -> Any:
    """The proposal's action: the body of one of this module's proposal kinds."""
    return decode_field(get_kind(proposal.kind).body, proposal.action)


def compute_contribution_power(state: State, contribution: int) -> int:
    # Floor: a thousandth of a base unit of power is never counted.
    return contribution * state.params.contribution_weight_per_mille // 1_000


def compute_voting_power(
    state: State, voter: Address, conviction: int, height: int
) -> tuple[int, int, int, int]:
    """(stake, contribution, power with conviction, power without) of ``voter`` now."""
    stake = get_coldkey_stake(state, voter)
    contribution = get_contribution(state, voter, height)
    from_work = compute_contribution_power(state, contribution)
    return stake, contribution, stake * (1 + conviction) + from_work, stake + from_work


def compute_total_power(state: State, height: int) -> int:
    contribution = get_total_contribution(state, height)
    return get_total_staked(state) + compute_contribution_power(state, contribution)


def is_quorum_reached(tally: Tally, quorum_u16: int, total_power: int) -> bool:
    return tally.turnout * U16_ONE >= quorum_u16 * total_power


def compute_outcome(proposal: Proposal) -> int:
    """The status a proposal's tally gives it when its voting closes."""
    tally, rules = proposal.tally, proposal.rules
    if not is_quorum_reached(tally, rules.quorum_u16, proposal.total_power):
        return EXPIRED
    decisive = tally.yes + tally.no + tally.veto
    if decisive and tally.veto * U16_ONE > proposal.veto_threshold_u16 * decisive:
        return VETOED
    if decisive and tally.yes * U16_ONE > rules.threshold_u16 * decisive:
        return QUEUED
    return REJECTED


# --- governable parameters --------------------------------------------------------------------

ParameterChange = tuple[str, int]


def resolve_parameter(name: str) -> tuple[str, str, str, tuple[int, int]]:
    """(space, target, field, hard bounds) of a governable parameter's name.

    Names: a field of the global parameters (``min_fee``), ``track.<track>.<field>``, or
    ``hyperparameter.<name>.min`` / ``.max`` (the bounds subnet owners must stay within).
    """
    if name in PARAM_BOUNDS:
        return "params", "", name, PARAM_BOUNDS[name]
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "track" and parts[1] in TRACK_NAMES:
        if parts[2] in TRACK_BOUNDS:
            return "track", parts[1], parts[2], TRACK_BOUNDS[parts[2]]
    if len(parts) == 3 and parts[0] == "hyperparameter" and parts[2] in ("min", "max"):
        if parts[1] in HYPERPARAMETER_BOUNDS:
            return "hyperparameter", parts[1], parts[2], HYPERPARAMETER_BOUNDS[parts[1]]
    raise UnknownParameter(
        f"{name!r} is not a governable parameter: use a global parameter (min_fee, ...), "
        "track.<track>.<field> or hyperparameter.<name>.min|max"
    )


def validate_parameter_changes(changes: tuple[ParameterChange, ...]) -> None:
    """Stateless: each name is governable, appears once, and its value is within bounds."""
    if not changes:
        raise MalformedProposal("a param_change changes at least one parameter")
    if len(changes) > MAX_CHANGES:
        raise MalformedProposal(f"a param_change changes at most {MAX_CHANGES} parameters")
    names = [name for name, _ in changes]
    if len(set(names)) != len(names):
        raise MalformedProposal("a param_change names each parameter once")
    for name, value in changes:
        low, high = resolve_parameter(name)[3]
        if not low <= value <= high:
            raise ParameterOutOfBounds(f"{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True, slots=True)
class Governed:
    """The values a param_change acts on, as they would be after it."""

    params: Params
    tracks: tuple[Track, ...]
    hyperparameter_bounds: dict[str, tuple[int, int]]


def compute_changed(state: State, changes: tuple[ParameterChange, ...]) -> Governed:
    params_changes: dict[str, int] = {}
    tracks = list(get_tracks(state))
    bounds: dict[str, tuple[int, int]] = {}
    for name, value in changes:
        space, target, field, _ = resolve_parameter(name)
        if space == "params":
            params_changes[field] = value
        elif space == "track":
            index = TRACK_NAMES.index(target)
            tracks[index] = replace(tracks[index], **{field: value})
        else:
            low, high = bounds.get(target, get_hyperparameter_bounds(state, target))
            bounds[target] = (value, high) if field == "min" else (low, value)
    return Governed(replace(state.params, **params_changes), tuple(tracks), bounds)


def find_broken_invariant(state: State, governed: Governed) -> str | None:
    """What the changed values would break in the current state, or None."""
    problem = validate_params_consistent(governed.params)
    if problem is not None:
        return problem
    if governed.params.max_transaction_bytes < MIN_GOVERNED_TRANSACTION_BYTES:
        # A genesis may choose tiny transactions; a vote may not shrink them below the size
        # of a proposal, which would leave no way to vote them back.
        return (
            f"max_transaction_bytes below {MIN_GOVERNED_TRANSACTION_BYTES} would leave no "
            "room for proposals"
        )
    subnets = len(state.tables["subnets"])
    if governed.params.max_subnets < subnets:
        return f"{subnets} subnets exist; max_subnets cannot be lower"
    supply = state.get_ledger("genesis_supply") + state.get_ledger("minted")
    supply -= state.get_ledger("burned")
    if governed.params.supply_cap < supply:
        return f"the supply is already {supply}; supply_cap cannot be lower"
    for name, (low, high) in governed.hyperparameter_bounds.items():
        if low > high:
            return f"hyperparameter {name}: its minimum {low} would exceed its maximum {high}"
    return None


def set_governed(state: State, governed: Governed) -> None:
    state.set_params(governed.params)
    for track, rules in enumerate(governed.tracks):
        if rules != get_track(state, track):
            state.tables["tracks"].set(track, rules)
    for name, bounds in governed.hyperparameter_bounds.items():
        set_hyperparameter_bounds(state, name, bounds)


# --- proposal bodies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeParamChange:
    changes: tuple[ParameterChange, ...]
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeTreasurySpend:
    recipient: Address
    amount: int  # per payment
    payments: int  # 1: at once; n: one payment per governance epoch, n times
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeEmissionShares:
    shares: tuple[tuple[int, int], ...]  # (netuid, share)
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeCancel:
    target: int
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeText:
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    proposal_id: int
    choice: int  # 0 no, 1 yes, 2 abstain, 3 veto
    conviction: int  # 0 to MAX_CONVICTION


def validate_param_change(tx: Transaction) -> None:
    validate_parameter_changes(tx.body.changes)


def validate_treasury_spend(tx: Transaction) -> None:
    body: ProposeTreasurySpend = tx.body
    if body.amount == 0 or body.payments == 0:
        raise MalformedProposal("a spend pays a positive amount at least once")
    if body.amount * body.payments >= 1 << 64:
        raise MalformedProposal("a spend's total must fit in 64 bits")


def validate_emission_shares(tx: Transaction) -> None:
    body: ProposeEmissionShares = tx.body
    if not body.shares:
        raise MalformedProposal("emission_shares sets the share of at least one subnet")
    netuids = [netuid for netuid, _ in body.shares]
    if len(set(netuids)) != len(netuids):
        raise MalformedProposal("emission_shares names each subnet once")
    for netuid, share in body.shares:
        if share > MAX_EMISSION_SHARE:
            raise ParameterOutOfBounds(
                f"subnet {netuid}: a share is at most {MAX_EMISSION_SHARE}, got {share}"
            )


def validate_nothing(tx: Transaction) -> None:
    """The body's encoding bounds are its only stateless rules."""


def validate_vote(tx: Transaction) -> None:
    body: Vote = tx.body
    if body.choice >= len(CHOICES):
        raise InvalidVote(f"choice is 0 (no), 1 (yes), 2 (abstain) or 3 (veto), got {body.choice}")
    if body.conviction > MAX_CONVICTION:
        raise InvalidVote(f"conviction is 0 to {MAX_CONVICTION}, got {body.conviction}")


# --- submitting ---------------------------------------------------------------------------------


def process_param_change(state: State, tx: Transaction, context: BlockContext) -> None:
    body: ProposeParamChange = tx.body
    problem = find_broken_invariant(state, compute_changed(state, body.changes))
    if problem is not None:
        raise ParameterChangeBreaksInvariant(problem)
    submit_proposal(state, tx, context, PARAMETERS_TRACK)


def process_treasury_spend(state: State, tx: Transaction, context: BlockContext) -> None:
    body: ProposeTreasurySpend = tx.body
    total = body.amount * body.payments
    if total <= get_track(state, SMALL_SPEND_TRACK).max_spend:
        track = SMALL_SPEND_TRACK
    elif total <= get_track(state, LARGE_SPEND_TRACK).max_spend:
        track = LARGE_SPEND_TRACK
    else:
        limit = get_track(state, LARGE_SPEND_TRACK).max_spend
        raise SpendAboveTrackLimit(f"the spend totals {total}; no track pays over {limit}")
    treasury = state.get_ledger("treasury")
    if total > treasury:
        raise TreasuryInsufficient(f"the spend totals {total}; the treasury holds {treasury}")
    submit_proposal(state, tx, context, track)


def process_emission_shares(state: State, tx: Transaction, context: BlockContext) -> None:
    body: ProposeEmissionShares = tx.body
    shares = {subnet.netuid: subnet.emission_share for subnet in get_subnets(state)}
    for netuid, share in body.shares:
        get_subnet(state, netuid)
        shares[netuid] = share
    if sum(shares.values()) == 0:
        raise ParameterChangeBreaksInvariant("at least one subnet must keep a positive share")
    submit_proposal(state, tx, context, PARAMETERS_TRACK)


def process_cancel(state: State, tx: Transaction, context: BlockContext) -> None:
    body: ProposeCancel = tx.body
    target = get_proposal(state, body.target)
    if target.status not in (QUEUED, STREAMING):
        raise CannotCancel(
            f"proposal {body.target} is {STATUSES[target.status]}; only a queued proposal "
            "or a running stream can be cancelled"
        )
    submit_proposal(state, tx, context, EMERGENCY_TRACK)


def process_text(state: State, tx: Transaction, context: BlockContext) -> None:
    submit_proposal(state, tx, context, SIGNAL_TRACK)


def submit_proposal(state: State, tx: Transaction, context: BlockContext, track: int) -> None:
    """Take the deposit, copy the track's numbers, and open the voting."""
    live = state.tables["live_proposals"].get((tx.sender, track), None)
    if live is not None:
        raise LiveProposalExists(
            f"proposal {live} of this proposer is still live on the {TRACK_NAMES[track]} track"
        )
    rules = get_track(state, track)
    decrease_balance(state, tx.sender, rules.deposit)
    proposal_id = state.get_ledger("proposals")
    state.set_ledger("proposals", proposal_id + 1)
    kind = next(k for k in KINDS if type(tx.body) is k.body.cls)
    proposal = Proposal(
        id=proposal_id,
        proposer=tx.sender,
        kind=kind.kind,
        action=kind.body.encode(tx.body),
        track=track,
        rules=rules,
        veto_threshold_u16=state.params.veto_threshold_u16,
        total_power=compute_total_power(state, context.height),
        status=VOTING,
        tally=Tally(),
        extended=False,
        submitted_at=context.height,
        voting_ends_at=context.height + rules.voting_period_blocks,
        closed_at=0,
        enact_at=0,
        enacted_at=0,
        deposit=rules.deposit,
        escrow=0,
        payments_made=0,
        next_payment_at=0,
    )
    set_proposal(state, proposal)
    state.tables["live_proposals"].set((tx.sender, track), proposal_id)
    schedule(state, proposal.voting_ends_at, proposal_id)


def set_proposal(state: State, proposal: Proposal) -> None:
    state.tables["proposals"].set(proposal.id, proposal)


def schedule(state: State, height: int, proposal_id: int) -> None:
    ids: tuple[int, ...] = state.tables["proposal_schedule"].get(height, ())
    state.tables["proposal_schedule"].set(height, (*ids, proposal_id))


# --- voting ---------------------------------------------------------------------------------------


def process_vote(state: State, tx: Transaction, context: BlockContext) -> None:
    body: Vote = tx.body
    proposal = get_proposal(state, body.proposal_id)
    if proposal.status != VOTING or context.height > proposal.voting_ends_at:
        raise ProposalNotVoting(
            f"proposal {proposal.id} is {STATUSES[proposal.status]}; its voting ended at "
            f"block {proposal.voting_ends_at}"
        )
    if get_ballot(state, proposal.id, tx.sender) is not None:
        raise AlreadyVoted(f"this account already voted on proposal {proposal.id}")
    stake, contribution, power, base = compute_voting_power(
        state, tx.sender, body.conviction, context.height
    )
    if base == 0:
        raise NoVotingPower(
            "this account has no stake and no recent verified contribution: stake first"
        )
    state.tables["ballots"].set(
        (proposal.id, tx.sender),
        Ballot(
            choice=body.choice,
            conviction=body.conviction,
            stake=stake,
            contribution=contribution,
            power=power,
            height=context.height,
        ),
    )
    tally = add_to_tally(proposal.tally, body.choice, power, base)
    proposal = replace(proposal, tally=tally)
    proposal = extend_for_late_quorum(state, proposal, context.height)
    set_proposal(state, proposal)
    if stake:
        lock_blocks = body.conviction * state.params.conviction_lock_blocks
        until = proposal.voting_ends_at + proposal.rules.extension_blocks + 1 + lock_blocks
        increase_vote_lock(state, tx.sender, stake, until, context.height)


def add_to_tally(tally: Tally, choice: int, power: int, base: int) -> Tally:
    name = CHOICES[choice]
    return replace(tally, **{name: getattr(tally, name) + power, "turnout": tally.turnout + base})


def extend_for_late_quorum(state: State, proposal: Proposal, height: int) -> Proposal:
    """Quorum reached within the last ``extension_blocks``: voting goes on that long, once."""
    extension = proposal.rules.extension_blocks
    if proposal.extended or extension == 0:
        return proposal
    if not is_quorum_reached(proposal.tally, proposal.rules.quorum_u16, proposal.total_power):
        return proposal
    if proposal.voting_ends_at >= height + extension:
        return proposal
    schedule(state, height + extension, proposal.id)
    return replace(proposal, extended=True, voting_ends_at=height + extension)


# --- end of block: closing, enacting, streaming --------------------------------------------------


def process_proposals_due(state: State, context: BlockContext) -> None:
    """Every proposal due at this block: close its voting, enact it, or pay its stream."""
    height = context.height
    due: tuple[int, ...] = state.tables["proposal_schedule"].get(height, ())
    if not due:
        return
    state.tables["proposal_schedule"].delete(height)
    for proposal_id in due:
        proposal = get_proposal(state, proposal_id)
        if proposal.status == VOTING and proposal.voting_ends_at == height:
            process_close_voting(state, proposal, height)
        elif proposal.status == QUEUED and proposal.enact_at == height:
            process_enactment(state, proposal, height)
        elif proposal.status == STREAMING and proposal.next_payment_at == height:
            process_stream_payment(state, proposal, height)


def process_close_voting(state: State, proposal: Proposal, height: int) -> None:
    status = compute_outcome(proposal)
    if status == VETOED:
        state.set_ledger("treasury", state.get_ledger("treasury") + proposal.deposit)
    else:
        increase_balance(state, proposal.proposer, proposal.deposit)
    proposal = replace(proposal, status=status, closed_at=height)
    if status != QUEUED:
        set_proposal(state, proposal)
        release_live(state, proposal)
        return
    proposal = replace(proposal, enact_at=height + proposal.rules.timelock_blocks)
    set_proposal(state, proposal)
    if proposal.enact_at == height:
        process_enactment(state, proposal, height)
    else:
        schedule(state, proposal.enact_at, proposal.id)


def release_live(state: State, proposal: Proposal) -> None:
    key = (proposal.proposer, proposal.track)
    if state.tables["live_proposals"].get(key, None) == proposal.id:
        state.tables["live_proposals"].delete(key)


def process_enactment(state: State, proposal: Proposal, height: int) -> None:
    """Apply a proposal whose timelock ended; one that no longer fits the state fails."""
    action = decode_action(proposal)
    enacted = replace(proposal, status=ENACTED, enacted_at=height)
    if isinstance(action, ProposeParamChange):
        governed = compute_changed(state, action.changes)
        if find_broken_invariant(state, governed) is not None:
            enacted = replace(enacted, status=FAILED)
        else:
            set_governed(state, governed)
    elif isinstance(action, ProposeEmissionShares):
        for netuid, share in action.shares:
            set_subnet(state, replace(get_subnet(state, netuid), emission_share=share))
    elif isinstance(action, ProposeTreasurySpend):
        enacted = start_spend(state, enacted, action, height)
    elif isinstance(action, ProposeCancel):
        enacted = replace(enacted, status=FAILED)
        if cancel_target(state, action.target, height):
            enacted = replace(enacted, status=ENACTED)
    set_proposal(state, enacted)
    release_live(state, enacted)


def start_spend(
    state: State, proposal: Proposal, action: ProposeTreasurySpend, height: int
) -> Proposal:
    """Take the whole spend from the treasury; pay the first payment, escrow the rest."""
    total = action.amount * action.payments
    treasury = state.get_ledger("treasury")
    if total > treasury:
        return replace(proposal, status=FAILED)
    state.set_ledger("treasury", treasury - total)
    increase_balance(state, action.recipient, action.amount)
    if action.payments == 1:
        return replace(proposal, payments_made=1)
    next_payment = height + state.params.governance_epoch_blocks
    schedule(state, next_payment, proposal.id)
    return replace(
        proposal,
        status=STREAMING,
        escrow=total - action.amount,
        payments_made=1,
        next_payment_at=next_payment,
    )


def process_stream_payment(state: State, proposal: Proposal, height: int) -> None:
    action: ProposeTreasurySpend = decode_action(proposal)
    increase_balance(state, action.recipient, action.amount)
    proposal = replace(
        proposal, escrow=proposal.escrow - action.amount, payments_made=proposal.payments_made + 1
    )
    if proposal.payments_made == action.payments:
        proposal = replace(proposal, status=COMPLETED, next_payment_at=0)
    else:
        next_payment = height + state.params.governance_epoch_blocks
        schedule(state, next_payment, proposal.id)
        proposal = replace(proposal, next_payment_at=next_payment)
    set_proposal(state, proposal)


def cancel_target(state: State, target_id: int, height: int) -> bool:
    """Cancel a queued proposal, or stop a stream and return its escrow to the treasury."""
    target = get_proposal(state, target_id)
    if target.status == QUEUED:
        set_proposal(state, replace(target, status=CANCELLED))
        release_live(state, target)
        return True
    if target.status == STREAMING:
        state.set_ledger("treasury", state.get_ledger("treasury") + target.escrow)
        set_proposal(
            state, replace(target, status=CANCELLED, escrow=0, next_payment_at=0, closed_at=height)
        )
        return True
    return False


# --- kinds, supply and invariants ---------------------------------------------------------------

_CHANGE: FieldType[tuple[str, int]] = TupleOf((Text(96), U64))

KINDS = (
    TransactionKind(
        kind=50,
        name="propose_param_change",
        body=Record(
            ProposeParamChange,
            (("changes", ListOf(_CHANGE, MAX_CHANGES)), ("description", DESCRIPTION)),
        ),
        validate=validate_param_change,
        process=process_param_change,
    ),
    TransactionKind(
        kind=51,
        name="propose_treasury_spend",
        body=Record(
            ProposeTreasurySpend,
            (
                ("recipient", ADDRESS),
                ("amount", U64),
                ("payments", U16),
                ("description", DESCRIPTION),
            ),
        ),
        validate=validate_treasury_spend,
        process=process_treasury_spend,
    ),
    TransactionKind(
        kind=52,
        name="propose_emission_shares",
        body=Record(
            ProposeEmissionShares,
            (("shares", ListOf(TupleOf((U16, U64)), 4_096)), ("description", DESCRIPTION)),
        ),
        validate=validate_emission_shares,
        process=process_emission_shares,
    ),
    TransactionKind(
        kind=53,
        name="propose_cancel",
        body=Record(ProposeCancel, (("target", U64), ("description", DESCRIPTION))),
        validate=validate_nothing,
        process=process_cancel,
    ),
    TransactionKind(
        kind=54,
        name="propose_text",
        body=Record(ProposeText, (("description", Text(4_096)),)),
        validate=validate_nothing,
        process=process_text,
    ),
    TransactionKind(
        kind=55,
        name="vote",
        body=Record(Vote, (("proposal_id", U64), ("choice", U8), ("conviction", U8))),
        validate=validate_vote,
        process=process_vote,
    ),
)
TREASURY_SPEND_KIND = 51
PROPOSAL_KIND_NAMES = {
    50: "param_change",
    51: "treasury_spend",
    52: "emission_shares",
    53: "cancel",
    54: "text",
}


def compute_supply_held(state: State) -> int:
    """Deposits of proposals still voting, and what running streams have yet to pay."""
    held = 0
    for _, proposal in state.tables["proposals"].items():
        if proposal.status == VOTING:
            held += proposal.deposit
        elif proposal.status == STREAMING:
            held += proposal.escrow
    return held


def check_invariants(state: State) -> None:
    """Parameters, tracks and hyperparameter bounds within their hard bounds; proposals
    enacted no earlier than their timelock, escrow held only while streaming."""
    params = state.params
    for name, (low, high) in PARAM_BOUNDS.items():
        if not low <= getattr(params, name) <= high:
            raise InvariantViolated(f"parameter {name} is outside its bounds")
    for rules in get_tracks(state):
        for name, (low, high) in TRACK_BOUNDS.items():
            if not low <= getattr(rules, name) <= high:
                raise InvariantViolated(f"track field {name} is outside its bounds")
    for name, (low, high) in state.tables["hyperparameter_bounds"].items():
        hard_low, hard_high = HYPERPARAMETER_BOUNDS[name]
        if not hard_low <= low <= high <= hard_high:
            raise InvariantViolated(f"the bounds of hyperparameter {name} are inconsistent")
    for _, proposal in state.tables["proposals"].items():
        if proposal.enacted_at and proposal.enacted_at < proposal.enact_at:
            raise InvariantViolated(f"proposal {proposal.id} was enacted before its timelock")
        if proposal.status != STREAMING and proposal.escrow:
            raise InvariantViolated(f"proposal {proposal.id} holds escrow without streaming")


def validate_proposal(body: Any) -> None:
    """The stateless checks of a proposal body (kinds, bounds), as the chain runs them."""
    kind = next(k for k in KINDS if type(body) is k.body.cls)
    unsigned = Transaction(chain_id="", sender=Address(bytes(32)), nonce=0, fee=0, body=body)
    kind.validate(unsigned)

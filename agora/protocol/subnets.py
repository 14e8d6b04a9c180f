"""Subnets and registration: markets for one kind of AI work, and the neurons that join them.

A subnet is created by a coldkey (its owner) who locks ``subnet_lock_cost``; it names a task
kind with its configuration, and carries the hyperparameters of its consensus, which the owner
may change within ``HYPERPARAMETER_BOUNDS``.

A hotkey joins a subnet by burning the current registration price (docs/yuma.md §10): the
price decays every block with a half-life and is multiplied after each registration, so that
a burst of registrations makes the next one dear. When the subnet is full, the newcomer
replaces the uid that pruning picks. A neuron publishes its endpoint with ``serve``.

The ledger knows no list of task kinds: any well-formed one is accepted (``is_task_kind``: a
lowercase letter, then lowercase letters, digits, ``.``, ``_`` or ``-``, at most
``TASK_KIND_MAX_BYTES``), with a configuration that is a JSON object of at most
``TASK_CONFIG_MAX_BYTES``. Which kinds a miner or validator can run is up to the task
plug-ins installed beside it (``agora.tasks.registry``), so a new task needs no new ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from agora.protocol.accounts import decrease_balance
from agora.protocol.address import Address
from agora.protocol.codec import (
    ADDRESS,
    BOOL,
    U16,
    U64,
    FieldType,
    ListOf,
    Record,
    Text,
    TupleOf,
    decode_field,
    encode_field,
)
from agora.protocol.consensus.registration import (
    DEFAULT_BURN_INCREASE_MULT_U64F64,
    ONE_U64F64,
    BurnPriceRules,
    PruningCandidate,
    compute_burn_after_block,
    compute_burn_after_registration,
    compute_immortal_owner_uids,
    compute_uid_to_prune,
)
from agora.protocol.consensus.yuma import DEFAULT_YUMA_PARAMS, YumaParams
from agora.protocol.errors import (
    AlreadyRegistered,
    HyperparameterOutOfBounds,
    InvalidField,
    NeuronNotFound,
    NotSubnetOwner,
    SubnetNotFound,
    TooManySubnets,
    UnknownHyperparameter,
)
from agora.protocol.kinds import BlockContext, Transaction, TransactionKind
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import bind_hotkey
from agora.protocol.state import State
from agora.protocol.weight_commits import clear_commits

SUBNETS_TAG = 10
NEURONS_TAG = 11
SUBNET_HOTKEYS_TAG = 12
# Governance-set bounds on hyperparameters, within ``HYPERPARAMETER_BOUNDS``; a name with no
# row has the hard bounds.
HYPERPARAMETER_BOUNDS_TAG = 53
NO_HOTKEY = Address(bytes(32))
MAX_UIDS_LIMIT = 4096
# The owner's uids that pruning never picks (the chain's ``ImmuneOwnerUidsLimit``).
IMMUNE_OWNER_UIDS_LIMIT = 1
TASK_KIND_MAX_BYTES = 32
TASK_CONFIG_MAX_BYTES = 2048
_TASK_KIND_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_TASK_KIND_REST = _TASK_KIND_FIRST | frozenset("0123456789._-")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hyperparameters:
    """A subnet's consensus and registration rules (units as in docs/yuma.md §3).

    The consensus fields default to ``DEFAULT_YUMA_PARAMS``, the one statement of a new
    subnet's consensus defaults, which the simulator reads too. The field order is the
    encoding's: never reorder.
    """

    tempo: int = 100
    max_uids: int = 256
    immunity_period: int = 4096
    min_non_immune_uids: int = 10
    kappa_u16: int = DEFAULT_YUMA_PARAMS.kappa_u16
    bonds_penalty_u16: int = DEFAULT_YUMA_PARAMS.bonds_penalty_u16
    bonds_moving_average: int = DEFAULT_YUMA_PARAMS.bonds_moving_average
    yuma3: bool = DEFAULT_YUMA_PARAMS.yuma3
    liquid_alpha: bool = DEFAULT_YUMA_PARAMS.liquid_alpha
    alpha_low_u16: int = DEFAULT_YUMA_PARAMS.alpha_low_u16
    alpha_high_u16: int = DEFAULT_YUMA_PARAMS.alpha_high_u16
    alpha_sigmoid_steepness: int = DEFAULT_YUMA_PARAMS.alpha_sigmoid_steepness
    max_validators: int = DEFAULT_YUMA_PARAMS.max_validators
    activity_cutoff: int = DEFAULT_YUMA_PARAMS.activity_cutoff
    stake_threshold: int = DEFAULT_YUMA_PARAMS.stake_threshold
    commit_reveal: bool = True
    reveal_period_epochs: int = 1
    weights_rate_limit: int = 100
    weights_version_key: int = 0
    min_allowed_weights: int = 1
    max_weight_limit_u16: int = 65_535
    min_burn: int = BASE_UNITS_PER_AGR // 2_000
    max_burn: int = 100 * BASE_UNITS_PER_AGR
    burn_half_life: int = 360
    # What each registration adds to the price: U64F64 bits of (multiplier - 1), so that it
    # fits the u64 of set_hyperparameter and of JSON (0.26: the chain's multiplier 1.26).
    burn_increase_u64f64: int = DEFAULT_BURN_INCREASE_MULT_U64F64 - ONE_U64F64


# Hard inclusive bounds, written here so that no vote can cross them (booleans are 0..1);
# governance narrows them per hyperparameter (``get_hyperparameter_bounds``).
HYPERPARAMETER_BOUNDS: dict[str, tuple[int, int]] = {
    "tempo": (1, 50_000),
    "max_uids": (1, MAX_UIDS_LIMIT),
    "immunity_period": (0, 1_000_000),
    "min_non_immune_uids": (0, MAX_UIDS_LIMIT),
    "kappa_u16": (0, 65_535),
    "bonds_penalty_u16": (0, 65_535),
    "bonds_moving_average": (0, 999_999),
    "yuma3": (0, 1),
    "liquid_alpha": (0, 1),
    "alpha_low_u16": (1, 65_535),
    "alpha_high_u16": (1, 65_535),
    "alpha_sigmoid_steepness": (0, 32_767),
    "max_validators": (1, MAX_UIDS_LIMIT),
    "activity_cutoff": (1, 1_000_000),
    "stake_threshold": (0, 1_000_000 * BASE_UNITS_PER_AGR),
    "commit_reveal": (0, 1),
    "reveal_period_epochs": (1, 100),
    "weights_rate_limit": (0, 1_000_000),
    "weights_version_key": (0, (1 << 64) - 1),
    "min_allowed_weights": (0, MAX_UIDS_LIMIT),
    "max_weight_limit_u16": (1, 65_535),
    "min_burn": (0, 1_000_000 * BASE_UNITS_PER_AGR),
    "max_burn": (1, 1_000_000 * BASE_UNITS_PER_AGR),
    "burn_half_life": (0, 65_535),
    "burn_increase_u64f64": (0, (1 << 64) - 1),
}

HYPERPARAMETERS_RECORD: Record[Hyperparameters] = Record(
    Hyperparameters,
    tuple((f.name, BOOL if f.type == "bool" else U64) for f in fields(Hyperparameters)),
)


def compute_yuma_params(hyperparameters: Hyperparameters) -> YumaParams:
    """The consensus parameters an epoch of a subnet with these hyperparameters runs with."""
    return YumaParams(**{f.name: getattr(hyperparameters, f.name) for f in fields(YumaParams)})


@dataclass(frozen=True, slots=True, kw_only=True)
class Subnet:
    netuid: int
    owner: Address  # coldkey
    owner_hotkey: Address  # NO_HOTKEY when the owner named none
    task_kind: str
    task_config: str  # JSON text the task module reads (model name, dataset, ...)
    locked: int  # the lock cost, held for the subnet's life
    hyperparameters: Hyperparameters
    burn: int  # current registration price
    created_at: int
    n: int  # uids in use
    emission_share: int  # relative weight among subnets, set by governance
    pending_emission: int  # accumulated since the last epoch, paid at the next
    last_epoch_block: int
    epoch_index: int


SUBNET_RECORD: Record[Subnet] = Record(
    Subnet,
    (
        ("netuid", U16),
        ("owner", ADDRESS),
        ("owner_hotkey", ADDRESS),
        ("task_kind", Text(TASK_KIND_MAX_BYTES)),
        ("task_config", Text(TASK_CONFIG_MAX_BYTES)),
        ("locked", U64),
        ("hyperparameters", HYPERPARAMETERS_RECORD),
        ("burn", U64),
        ("created_at", U64),
        ("n", U16),
        ("emission_share", U64),
        ("pending_emission", U64),
        ("last_epoch_block", U64),
        ("epoch_index", U64),
    ),
)

WEIGHT_ROW: FieldType[tuple[tuple[int, int], ...]] = ListOf(TupleOf((U16, U16)), MAX_UIDS_LIMIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Neuron:
    hotkey: Address
    coldkey: Address
    registered_at: int
    last_update: int
    validator_permit: bool = False
    active: bool = False
    stake_u16: int = 0
    consensus_u16: int = 0
    incentive_u16: int = 0
    dividends_u16: int = 0
    validator_trust_u16: int = 0
    emission: int = 0  # base units earned at the last epoch (miner plus validator)
    endpoint: str = ""
    weights: tuple[tuple[int, int], ...] = ()  # (uid, u16), stored max-upscaled
    bonds: tuple[tuple[int, int], ...] = ()  # (uid, u16)


NEURON_RECORD: Record[Neuron] = Record(
    Neuron,
    (
        ("hotkey", ADDRESS),
        ("coldkey", ADDRESS),
        ("registered_at", U64),
        ("last_update", U64),
        ("validator_permit", BOOL),
        ("active", BOOL),
        ("stake_u16", U16),
        ("consensus_u16", U16),
        ("incentive_u16", U16),
        ("dividends_u16", U16),
        ("validator_trust_u16", U16),
        ("emission", U64),
        ("endpoint", Text(256)),
        ("weights", WEIGHT_ROW),
        ("bonds", WEIGHT_ROW),
    ),
)


def _netuid_uid_codec() -> tuple[Any, Any]:
    return (
        lambda key: key[0].to_bytes(2, "big") + key[1].to_bytes(2, "big"),
        lambda raw: (int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")),
    )


def _netuid_hotkey_codec() -> tuple[Any, Any]:
    return (
        lambda key: key[0].to_bytes(2, "big") + key[1],
        lambda raw: (int.from_bytes(raw[:2], "big"), Address(bytes(raw[2:]))),
    )


def register_tables(state: State) -> None:
    state.add_table(
        SUBNETS_TAG,
        "subnets",
        (lambda netuid: netuid.to_bytes(2, "big"), lambda raw: int.from_bytes(raw, "big")),
        (SUBNET_RECORD.encode, SUBNET_RECORD.decode),
    )
    state.add_table(
        NEURONS_TAG, "neurons", _netuid_uid_codec(), (NEURON_RECORD.encode, NEURON_RECORD.decode)
    )
    state.add_table(
        SUBNET_HOTKEYS_TAG,
        "subnet_hotkeys",
        _netuid_hotkey_codec(),
        (lambda uid: uid.to_bytes(2, "big"), lambda raw: int.from_bytes(raw, "big")),
    )
    state.add_table(
        HYPERPARAMETER_BOUNDS_TAG,
        "hyperparameter_bounds",
        (lambda name: name.encode(), lambda raw: bytes(raw).decode()),
        (
            lambda bounds: encode_field(BOUNDS_FIELD, bounds),
            lambda raw: decode_field(BOUNDS_FIELD, raw),
        ),
    )


BOUNDS_FIELD: FieldType[tuple[int, int]] = TupleOf((U64, U64))


# --- reading -----------------------------------------------------------------------------


def get_subnet(state: State, netuid: int) -> Subnet:
    subnet: Subnet | None = state.tables["subnets"].get(netuid, None)
    if subnet is None:
        raise SubnetNotFound(f"subnet {netuid} does not exist")
    return subnet


def get_subnets(state: State) -> list[Subnet]:
    return sorted((s for _, s in state.tables["subnets"].items()), key=lambda s: s.netuid)


def get_uid(state: State, netuid: int, hotkey: Address) -> int | None:
    uid: int | None = state.tables["subnet_hotkeys"].get((netuid, hotkey), None)
    return uid


def get_neuron(state: State, netuid: int, uid: int) -> Neuron:
    neuron: Neuron = state.tables["neurons"][(netuid, uid)]
    return neuron


def get_neurons(state: State, netuid: int) -> list[Neuron]:
    n = get_subnet(state, netuid).n
    neurons = state.tables["neurons"]
    return [neurons[(netuid, uid)] for uid in range(n)]


def get_registered_neuron(state: State, netuid: int, hotkey: Address) -> tuple[int, Neuron]:
    uid = get_uid(state, netuid, hotkey)
    if uid is None:
        raise NeuronNotFound(f"this hotkey is not registered on subnet {netuid}")
    return uid, get_neuron(state, netuid, uid)


def get_owner_uid(state: State, subnet: Subnet) -> int | None:
    if subnet.owner_hotkey == NO_HOTKEY:
        return None
    return get_uid(state, subnet.netuid, subnet.owner_hotkey)


def get_hyperparameter_bounds(state: State, name: str) -> tuple[int, int]:
    """The bounds a subnet owner must stay within now: governance's, else the hard ones."""
    bounds: tuple[int, int] = state.tables["hyperparameter_bounds"].get(
        name, HYPERPARAMETER_BOUNDS[name]
    )
    return bounds


def set_hyperparameter_bounds(state: State, name: str, bounds: tuple[int, int]) -> None:
    if bounds == HYPERPARAMETER_BOUNDS[name]:
        state.tables["hyperparameter_bounds"].delete(name)
    else:
        state.tables["hyperparameter_bounds"].set(name, bounds)


def iterate_subnet_ids(state: State) -> Iterator[int]:
    return iter(sorted(netuid for netuid, _ in state.tables["subnets"].items()))


# --- writing -----------------------------------------------------------------------------


def set_subnet(state: State, subnet: Subnet) -> None:
    state.tables["subnets"].set(subnet.netuid, subnet)


def set_neuron(state: State, netuid: int, uid: int, neuron: Neuron) -> None:
    state.tables["neurons"].set((netuid, uid), neuron)


def process_registration_prices(state: State, context: BlockContext) -> None:
    """Every block, each subnet's registration price decays toward its minimum."""
    for netuid in iterate_subnet_ids(state):
        subnet = get_subnet(state, netuid)
        burn = compute_burn_after_block(subnet.burn, _burn_rules(subnet), context.height)
        if burn != subnet.burn:
            set_subnet(state, replace(subnet, burn=burn))


def _burn_rules(subnet: Subnet) -> BurnPriceRules:
    h = subnet.hyperparameters
    return BurnPriceRules(
        min_burn=h.min_burn,
        max_burn=h.max_burn,
        half_life=h.burn_half_life,
        increase_mult_u64f64=ONE_U64F64 + h.burn_increase_u64f64,
    )


# --- create_subnet ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSubnet:
    task_kind: str
    task_config: str
    owner_hotkey: Address  # NO_HOTKEY (all zeros) for none


def is_task_kind(name: str) -> bool:
    """A lowercase letter, then lowercase letters, digits, ``.``, ``_`` or ``-``; at most
    ``TASK_KIND_MAX_BYTES`` (so ASCII only, and the name is also a Python entry-point name)."""
    return (
        0 < len(name) <= TASK_KIND_MAX_BYTES
        and name[0] in _TASK_KIND_FIRST
        and all(character in _TASK_KIND_REST for character in name)
    )


def is_task_config(text: str) -> bool:
    """A JSON object of at most ``TASK_CONFIG_MAX_BYTES`` of UTF-8 (the codec bounds the size;
    a JSON text nested past the parser's depth is refused like any malformed one)."""
    if len(text.encode()) > TASK_CONFIG_MAX_BYTES:
        return False
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def validate_create_subnet(tx: Transaction) -> None:
    body: CreateSubnet = tx.body
    if not is_task_kind(body.task_kind):
        raise InvalidField(
            f"task_kind {body.task_kind[:TASK_KIND_MAX_BYTES]!r} is malformed: a lowercase "
            f"letter, then lowercase letters, digits, '.', '_' or '-', at most "
            f"{TASK_KIND_MAX_BYTES} characters"
        )
    if not is_task_config(body.task_config):
        raise InvalidField(
            f"task_config must be a JSON object of at most {TASK_CONFIG_MAX_BYTES} bytes"
        )


def process_create_subnet(state: State, tx: Transaction, context: BlockContext) -> None:
    body: CreateSubnet = tx.body
    params = state.params
    taken = {netuid for netuid, _ in state.tables["subnets"].items()}
    if len(taken) >= params.max_subnets:
        raise TooManySubnets(f"the chain allows {params.max_subnets} subnets")
    netuid = next(n for n in range(1, params.max_subnets + 2) if n not in taken)
    decrease_balance(state, tx.sender, params.subnet_lock_cost)
    hyperparameters = Hyperparameters()
    set_subnet(
        state,
        Subnet(
            netuid=netuid,
            owner=tx.sender,
            owner_hotkey=body.owner_hotkey,
            task_kind=body.task_kind,
            task_config=body.task_config,
            locked=params.subnet_lock_cost,
            hyperparameters=hyperparameters,
            burn=hyperparameters.min_burn,
            created_at=context.height,
            n=0,
            emission_share=1,
            pending_emission=0,
            last_epoch_block=0,
            epoch_index=0,
        ),
    )


# --- set_hyperparameter ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SetHyperparameter:
    netuid: int
    name: str
    value: int


def validate_set_hyperparameter(tx: Transaction) -> None:
    body: SetHyperparameter = tx.body
    bounds = HYPERPARAMETER_BOUNDS.get(body.name)
    if bounds is None:
        raise UnknownHyperparameter(
            f"{body.name!r} is not a hyperparameter; known: {', '.join(HYPERPARAMETER_BOUNDS)}"
        )
    if not bounds[0] <= body.value <= bounds[1]:
        raise HyperparameterOutOfBounds(
            f"{body.name} must be between {bounds[0]} and {bounds[1]}, got {body.value}"
        )


def process_set_hyperparameter(state: State, tx: Transaction, context: BlockContext) -> None:
    body: SetHyperparameter = tx.body
    subnet = get_subnet(state, body.netuid)
    if subnet.owner != tx.sender:
        raise NotSubnetOwner(f"only the owner of subnet {body.netuid} may change it")
    low, high = get_hyperparameter_bounds(state, body.name)
    if not low <= body.value <= high:
        raise HyperparameterOutOfBounds(
            f"{body.name} must be between {low} and {high} (bounds set by governance), "
            f"got {body.value}"
        )
    changes: dict[str, Any] = {body.name: body.value}
    if isinstance(getattr(subnet.hyperparameters, body.name), bool):
        changes[body.name] = body.value == 1
    hyperparameters = replace(subnet.hyperparameters, **changes)
    if hyperparameters.min_burn > hyperparameters.max_burn:
        raise HyperparameterOutOfBounds("min_burn cannot exceed max_burn")
    if hyperparameters.max_uids < subnet.n:
        raise HyperparameterOutOfBounds(f"{subnet.n} uids are in use; max_uids cannot be lower")
    burn = min(max(subnet.burn, hyperparameters.min_burn), hyperparameters.max_burn)
    set_subnet(state, replace(subnet, hyperparameters=hyperparameters, burn=burn))


# --- register ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    netuid: int
    hotkey: Address


def validate_register(tx: Transaction) -> None:
    body: Register = tx.body
    if body.hotkey == NO_HOTKEY:
        raise InvalidField("the hotkey cannot be the zero key")


def process_register(state: State, tx: Transaction, context: BlockContext) -> None:
    """Burn the price, then take a free uid or replace the one pruning picks."""
    body: Register = tx.body
    subnet = get_subnet(state, body.netuid)
    if get_uid(state, body.netuid, body.hotkey) is not None:
        raise AlreadyRegistered(f"this hotkey already has a uid on subnet {body.netuid}")
    bind_hotkey(state, body.hotkey, tx.sender)
    decrease_balance(state, tx.sender, subnet.burn)
    state.set_ledger("burned", state.get_ledger("burned") + subnet.burn)
    if subnet.n < subnet.hyperparameters.max_uids:
        uid = subnet.n
        subnet = replace(subnet, n=subnet.n + 1)
    else:
        uid = _choose_uid_to_prune(state, subnet, context.height)
        _clear_uid(state, subnet, uid)
    state.tables["subnet_hotkeys"].set((body.netuid, body.hotkey), uid)
    set_neuron(
        state,
        body.netuid,
        uid,
        Neuron(
            hotkey=body.hotkey,
            coldkey=tx.sender,
            registered_at=context.height,
            last_update=context.height,
        ),
    )
    burn = compute_burn_after_registration(subnet.burn, _burn_rules(subnet))
    set_subnet(state, replace(subnet, burn=burn))


def _choose_uid_to_prune(state: State, subnet: Subnet, block: int) -> int:
    neurons = get_neurons(state, subnet.netuid)
    owner_coldkey_uids = [
        (uid, neuron.registered_at)
        for uid, neuron in enumerate(neurons)
        if neuron.coldkey == subnet.owner
    ]
    immortal_uids = compute_immortal_owner_uids(
        get_owner_uid(state, subnet), owner_coldkey_uids, IMMUNE_OWNER_UIDS_LIMIT
    )
    candidates = [
        PruningCandidate(uid=uid, emission=neuron.emission, registered_at=neuron.registered_at)
        for uid, neuron in enumerate(neurons)
    ]
    return compute_uid_to_prune(
        candidates,
        block=block,
        immunity_period=subnet.hyperparameters.immunity_period,
        min_non_immune_uids=subnet.hyperparameters.min_non_immune_uids,
        immortal_uids=immortal_uids,
    )


def _clear_uid(state: State, subnet: Subnet, uid: int) -> None:
    """Replacement (§10): the old hotkey leaves, and no weight points at the uid any more."""
    old = get_neuron(state, subnet.netuid, uid)
    state.tables["subnet_hotkeys"].delete((subnet.netuid, old.hotkey))
    clear_commits(state, subnet.netuid, old.hotkey)
    for other_uid, neuron in enumerate(get_neurons(state, subnet.netuid)):
        if other_uid == uid:
            continue
        if any(target == uid for target, _ in neuron.weights):
            weights = tuple((t, 0 if t == uid else v) for t, v in neuron.weights)
            set_neuron(state, subnet.netuid, other_uid, replace(neuron, weights=weights))


# --- serve ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Serve:
    """Signed by the hotkey: where its server listens (e.g. ``http://host:port``)."""

    netuid: int
    endpoint: str


def validate_serve(tx: Transaction) -> None:
    body: Serve = tx.body
    if body.endpoint and not body.endpoint.startswith(("http://", "https://")):
        raise InvalidField("endpoint must be an http:// or https:// URL")


def process_serve(state: State, tx: Transaction, context: BlockContext) -> None:
    body: Serve = tx.body
    get_subnet(state, body.netuid)
    uid, neuron = get_registered_neuron(state, body.netuid, tx.sender)
    set_neuron(state, body.netuid, uid, replace(neuron, endpoint=body.endpoint))


KINDS = (
    TransactionKind(
        kind=10,
        name="create_subnet",
        body=Record(
            CreateSubnet,
            (
                ("task_kind", Text(TASK_KIND_MAX_BYTES)),
                ("task_config", Text(TASK_CONFIG_MAX_BYTES)),
                ("owner_hotkey", ADDRESS),
            ),
        ),
        validate=validate_create_subnet,
        process=process_create_subnet,
    ),
    TransactionKind(
        kind=11,
        name="set_hyperparameter",
        body=Record(SetHyperparameter, (("netuid", U16), ("name", Text(64)), ("value", U64))),
        validate=validate_set_hyperparameter,
        process=process_set_hyperparameter,
    ),
    TransactionKind(
        kind=12,
        name="register",
        body=Record(Register, (("netuid", U16), ("hotkey", ADDRESS))),
        validate=validate_register,
        process=process_register,
    ),
    TransactionKind(
        kind=13,
        name="serve",
        body=Record(Serve, (("netuid", U16), ("endpoint", Text(256)))),
        validate=validate_serve,
        process=process_serve,
    ),
)


def compute_supply_held(state: State) -> int:
    """Lock costs and emission waiting for an epoch."""
    return sum(s.locked + s.pending_emission for _, s in state.tables["subnets"].items())


def check_invariants(state: State) -> None:
    """Subnets check no invariant of their own beyond the supply they hold."""


def is_epoch_block(netuid: int, tempo: int, block: int) -> bool:
    """Bittensor's schedule: subnets fire at staggered blocks, every ``tempo + 1`` blocks."""
    return (block + netuid + 1) % (tempo + 1) == 0


def get_epoch_with_lookahead(subnet: Subnet, block: int) -> int:
    """The epoch index as seen by a transaction (+1 if an epoch fires at the end of the block)."""
    fires = is_epoch_block(subnet.netuid, subnet.hyperparameters.tempo, block)
    return subnet.epoch_index + (1 if fires else 0)

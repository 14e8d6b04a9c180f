"""Replay a JSON scenario through the protocol's own Yuma Consensus (``docs/yuma.md`` 0.1),
or a governance scenario through the ledger's own governance (at the end of this module).

A subnet designer tries an incentive design here before putting it on a chain: neurons with
stake, weight submissions, replacements and epochs, and every epoch's outputs as JSON. There
is one implementation of the math: this module only keeps a small subnet state between
operations and calls ``agora.protocol.consensus``, so what it prints is what the ledger
would compute.

Defaults. A parameter a scenario omits takes the value a new subnet has on the chain: the
simulator and the ledger read the same ``DEFAULT_YUMA_PARAMS`` (``protocol/consensus/yuma.py``,
where the choice is explained), so a design tried here behaves as it will on a new subnet.
Only ``tempo`` is the simulator's own (1): a scenario runs its epochs where it says.

A bad scenario raises ``ScenarioError`` with the path of the faulty field
(``ops[3].uids: ...``), so a person can fix the file without reading this code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from agora.errors import AgoraError
from agora.node.wire import proposal_from_json, proposal_to_json
from agora.protocol.accounts import get_account
from agora.protocol.address import Address, encode_address
from agora.protocol.consensus.fixed import U16_MAX, U64_MAX, compute_u16_max_upscale
from agora.protocol.consensus.yuma import (
    DEFAULT_YUMA_PARAMS,
    EpochInputs,
    EpochResult,
    WeightRow,
    YumaParams,
    compute_epoch,
)
from agora.protocol.errors import ProtocolError
from agora.protocol.genesis import create_genesis_state
from agora.protocol.governance import CHOICES, MAX_CONVICTION, Vote, get_proposal, get_proposals
from agora.protocol.kinds import Transaction
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake, RemoveStake
from agora.protocol.state import State
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register, get_subnets
from agora.protocol.transactions import encode_transaction, sign_transaction
from agora.protocol.transition import Receipt, build_block
from agora.protocol.voting_power import record_contribution

DEFAULT_EMISSION = 1_000_000_000
# A scenario's names for the consensus parameters (docs/yuma.md 0.1), and their fields.
_PARAM_FIELDS = {
    "kappa": "kappa_u16",
    "bonds_penalty": "bonds_penalty_u16",
    "bonds_moving_average": "bonds_moving_average",
    "max_validators": "max_validators",
    "activity_cutoff": "activity_cutoff",
    "stake_threshold": "stake_threshold",
    "yuma3": "yuma3",
    "liquid_alpha": "liquid_alpha",
    "alpha_low": "alpha_low_u16",
    "alpha_high": "alpha_high_u16",
    "alpha_sigmoid_steepness": "alpha_sigmoid_steepness",
}
# Epochs in a scenario run where its ops say; tempo only sets how far back bonds are masked.
DEFAULT_SCENARIO_TEMPO = 1
_U16_PARAMS = {"kappa", "bonds_penalty", "alpha_low", "alpha_high", "max_validators", "tempo"}
_BOOL_PARAMS = {"yuma3", "liquid_alpha"}
_OP_FIELDS = {
    "set_weights": ({"uid", "uids", "values", "block"}, set()),
    "epoch": ({"block"}, {"emission"}),
    "replace_neuron": ({"uid", "block"}, {"stake"}),
}


class ScenarioError(AgoraError):
    """A scenario file is not valid JSON, or a field is missing, unknown or out of range.

    The message starts with the field's path, e.g. ``ops[3].uids: uid 9 does not exist``.
    """

    code = 3300


@dataclass(slots=True)
class _Subnet:
    """The state a scenario evolves: what the ledger would store for one subnet."""

    params: YumaParams
    tempo: int
    owner_uid: int | None
    stake: list[int]
    registered_at: list[int]
    last_update: list[int]
    validator_permit: list[bool]
    weights: list[WeightRow] = field(default_factory=list)
    bonds: list[WeightRow] = field(default_factory=list)


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read a scenario file; unreadable files and invalid JSON raise ``ScenarioError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read the scenario file ({error.strerror})") from error
    try:
        scenario = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScenarioError(
            f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from error
    if not isinstance(scenario, dict):
        raise ScenarioError(f"{path}: a scenario is a JSON object")
    return scenario


def run_scenario(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply each operation in order; return one output object per ``epoch`` operation."""
    if not isinstance(scenario, dict):
        raise ScenarioError("scenario: expected a JSON object")
    _reject_unknown(scenario, {"params", "owner_uid", "neurons", "ops"}, "")
    subnet = _read_subnet(scenario)
    ops = scenario.get("ops", [])
    if not isinstance(ops, list):
        raise ScenarioError("ops: expected a list of operations")
    outputs: list[dict[str, Any]] = []
    for index, op in enumerate(ops):
        where = f"ops[{index}]"
        kind = _read_op_kind(op, where)
        if kind == "set_weights":
            _apply_set_weights(subnet, op, where)
        elif kind == "replace_neuron":
            _apply_replace_neuron(subnet, op, where)
        else:
            outputs.append(_apply_epoch(subnet, op, where))
    return outputs


# --- reading the scenario ------------------------------------------------------------


def _read_subnet(scenario: dict[str, Any]) -> _Subnet:
    neurons = scenario.get("neurons")
    if not isinstance(neurons, list) or not neurons:
        raise ScenarioError("neurons: expected a non-empty list of neurons")
    if len(neurons) > U16_MAX + 1:
        raise ScenarioError(f"neurons: at most {U16_MAX + 1} neurons fit in u16 uids")
    stake, registered_at, last_update = [], [], []
    for uid, neuron in enumerate(neurons):
        where = f"neurons[{uid}]"
        if not isinstance(neuron, dict):
            raise ScenarioError(f"{where}: expected an object")
        _reject_unknown(neuron, {"stake", "registered_at", "last_update"}, where)
        if "stake" not in neuron:
            raise ScenarioError(f"{where}.stake: missing (base units)")
        stake.append(_read_int(neuron["stake"], f"{where}.stake", U64_MAX))
        registered = _read_int(neuron.get("registered_at", 0), f"{where}.registered_at", U64_MAX)
        registered_at.append(registered)
        # Registration sets the last update to the registration block.
        updated = neuron.get("last_update", registered)
        last_update.append(_read_int(updated, f"{where}.last_update", U64_MAX))
    n = len(neurons)
    owner_uid = scenario.get("owner_uid")
    if owner_uid is not None:
        owner_uid = _read_int(owner_uid, "owner_uid", n - 1)
    params, tempo = read_params(scenario.get("params", {}))
    return _Subnet(
        params=params,
        tempo=tempo,
        owner_uid=owner_uid,
        stake=stake,
        registered_at=registered_at,
        last_update=last_update,
        validator_permit=[False] * n,
        weights=[()] * n,
        bonds=[()] * n,
    )


def read_params(raw: Any) -> tuple[YumaParams, int]:
    """A scenario's ``params``: its consensus parameters and tempo. What it omits takes the
    defaults of a new subnet on the chain (``DEFAULT_YUMA_PARAMS``), tempo 1."""
    if not isinstance(raw, dict):
        raise ScenarioError("params: expected an object")
    _reject_unknown(raw, set(_PARAM_FIELDS) | {"tempo"}, "params")
    values: dict[str, Any] = {
        name: getattr(DEFAULT_YUMA_PARAMS, field) for name, field in _PARAM_FIELDS.items()
    }
    values["tempo"] = DEFAULT_SCENARIO_TEMPO
    for name, value in raw.items():
        where = f"params.{name}"
        if name in _BOOL_PARAMS:
            if not isinstance(value, bool):
                raise ScenarioError(f"{where}: expected true or false")
            values[name] = value
        elif name == "alpha_sigmoid_steepness":
            values[name] = _read_int(value, where, (1 << 15) - 1, low=-(1 << 15))
        else:
            values[name] = _read_int(value, where, U16_MAX if name in _U16_PARAMS else U64_MAX)
    if values["alpha_low"] > values["alpha_high"]:
        raise ScenarioError("params.alpha_low: must not exceed params.alpha_high")
    params = replace(
        DEFAULT_YUMA_PARAMS, **{field: values[name] for name, field in _PARAM_FIELDS.items()}
    )
    return params, int(values["tempo"])


def _read_op_kind(op: Any, where: str) -> str:
    if not isinstance(op, dict):
        raise ScenarioError(f"{where}: expected an object")
    kind = op.get("op")
    if kind not in _OP_FIELDS:
        raise ScenarioError(f"{where}.op: expected one of {', '.join(sorted(_OP_FIELDS))}")
    required, optional = _OP_FIELDS[kind]
    _reject_unknown(op, required | optional | {"op"}, where)
    for name in sorted(required):
        if name not in op:
            raise ScenarioError(f"{where}.{name}: missing")
    return str(kind)


def _read_int(value: Any, where: str, high: int, *, low: int = 0) -> int:
    # JSON true/false parse as Python bools, which are ints: refuse them explicitly.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ScenarioError(f"{where}: expected an integer")
    if not low <= value <= high:
        raise ScenarioError(f"{where}: {value} is outside [{low}, {high}]")
    return value


def _read_uid(value: Any, where: str, n: int) -> int:
    uid = _read_int(value, where, U16_MAX)
    if uid >= n:
        raise ScenarioError(f"{where}: uid {uid} does not exist (the subnet has {n} neurons)")
    return uid


def _reject_unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ScenarioError(f"{prefix}{unknown[0]}: unknown field")


# --- operations ----------------------------------------------------------------------


def _apply_set_weights(subnet: _Subnet, op: dict[str, Any], where: str) -> None:
    n = len(subnet.stake)
    uid = _read_uid(op["uid"], f"{where}.uid", n)
    uids, values = op["uids"], op["values"]
    if not isinstance(uids, list):
        raise ScenarioError(f"{where}.uids: expected a list of uids")
    if not isinstance(values, list):
        raise ScenarioError(f"{where}.values: expected a list of u16 weights")
    if len(uids) != len(values):
        raise ScenarioError(f"{where}.values: {len(values)} values for {len(uids)} uids")
    targets = [_read_uid(u, f"{where}.uids[{i}]", n) for i, u in enumerate(uids)]
    if len(set(targets)) != len(targets):
        duplicate = next(u for u in targets if targets.count(u) > 1)
        raise ScenarioError(f"{where}.uids: uid {duplicate} appears twice")
    weights = [_read_int(v, f"{where}.values[{i}]", U16_MAX) for i, v in enumerate(values)]
    block = _read_int(op["block"], f"{where}.block", U64_MAX)
    subnet.weights[uid] = tuple(zip(targets, compute_u16_max_upscale(weights), strict=True))
    subnet.last_update[uid] = block


def _apply_replace_neuron(subnet: _Subnet, op: dict[str, Any], where: str) -> None:
    n = len(subnet.stake)
    uid = _read_uid(op["uid"], f"{where}.uid", n)
    block = _read_int(op["block"], f"{where}.block", U64_MAX)
    stake = _read_int(op.get("stake", 0), f"{where}.stake", U64_MAX)
    subnet.registered_at[uid] = block
    subnet.last_update[uid] = block
    subnet.stake[uid] = stake
    subnet.validator_permit[uid] = False
    subnet.bonds[uid] = ()
    subnet.weights[uid] = ()
    # Weights *to* the old holder are zeroed, not removed: the entries stay in the rows.
    subnet.weights = [tuple((j, 0 if j == uid else w) for j, w in row) for row in subnet.weights]


def _apply_epoch(subnet: _Subnet, op: dict[str, Any], where: str) -> dict[str, Any]:
    block = _read_int(op["block"], f"{where}.block", U64_MAX)
    emission = _read_int(op.get("emission", DEFAULT_EMISSION), f"{where}.emission", U64_MAX)
    inputs = EpochInputs(
        block=block,
        tempo=subnet.tempo,
        last_step_block=0,  # manual epochs never record a step block
        emission=emission,
        stake=tuple(subnet.stake),
        registered_at=tuple(subnet.registered_at),
        last_update=tuple(subnet.last_update),
        validator_permit=tuple(subnet.validator_permit),
        weights=tuple(subnet.weights),
        bonds=tuple(subnet.bonds),
        params=subnet.params,
        owner_uid=subnet.owner_uid,
    )
    result = compute_epoch(inputs)
    subnet.validator_permit = list(result.validator_permit)
    subnet.bonds = list(result.bonds_u16)
    return _epoch_output(block, result)


def _epoch_output(block: int, result: EpochResult) -> dict[str, Any]:
    n = len(result.active)
    bonds = []
    for row in result.bonds_u16:
        dense = [0] * n
        for j, value in row:
            if j < n:
                dense[j] = value
        bonds.append(dense)
    return {
        "block": block,
        "active": list(result.active),
        "validator_permit": list(result.validator_permit),
        "stake": list(result.stake_u16),
        "consensus": list(result.consensus_u16),
        "incentive": list(result.incentive_u16),
        "dividends": list(result.dividends_u16),
        "validator_trust": list(result.validator_trust_u16),
        "emission": list(result.emission),
        "miner_emission": list(result.miner_emission),
        "validator_emission": list(result.validator_emission),
        "bonds": bonds,
    }


# --- governance scenarios ------------------------------------------------------------------
#
# ``agora simulate governance SCENARIO.json`` replays accounts, their stake and verified
# contribution, proposals and votes through the ledger itself: a genesis state, a subnet the
# accounts stake on, signed transactions sealed into blocks, and the epoch step's own
# ``record_contribution`` for what each account earned. What it prints is what a chain
# would hold::
#
#     {
#       "params": {"contribution_weight_per_mille": 10000},
#       "tracks": {"signal": {"voting_period_blocks": 10}},
#       "accounts": {"whale": {"stake": 400000000000},
#                    "worker": {"stake": 150000000000, "contribution": 12000000000}},
#       "ops": [
#         {"op": "propose", "proposer": "whale", "proposal": {"kind": "text", "description": "x"}},
#         {"op": "vote", "voter": "worker", "proposal": 0, "choice": "no", "conviction": 0},
#         {"op": "earn", "account": "worker", "amount": 1000000000},
#         {"op": "stake", "account": "worker", "amount": 1000000000},
#         {"op": "unstake", "account": "worker", "amount": 1000000000},
#         {"op": "advance", "blocks": 20}
#       ]
#     }

GOVERNANCE_CHAIN_ID = "agora-simulate"
_SPARE_BALANCE = 10_000 * BASE_UNITS_PER_AGR  # deposits and fees, beyond each account's stake
_MAX_ADVANCE = 100_000
_GOVERNANCE_OPS: dict[str, tuple[set[str], set[str]]] = {
    "propose": ({"proposer", "proposal"}, set()),
    "vote": ({"voter", "proposal", "choice"}, {"conviction"}),
    "earn": ({"account", "amount"}, set()),
    "stake": ({"account", "amount"}, set()),
    "unstake": ({"account", "amount"}, set()),
    "advance": ({"blocks"}, set()),
}


@dataclass(slots=True)
class _Governed:
    state: State
    keys: dict[str, SigningKey]
    hotkeys: dict[str, Address]


def run_governance_scenario(scenario: Any) -> dict[str, Any]:
    """Every step's outcome and tallies, every proposal at the end, and the state root."""
    if not isinstance(scenario, dict):
        raise ScenarioError("scenario: expected a JSON object")
    _reject_unknown(scenario, {"params", "tracks", "accounts", "ops"}, "")
    governed = _create_governed(scenario)
    ops = scenario.get("ops", [])
    if not isinstance(ops, list):
        raise ScenarioError("ops: expected a list of operations")
    steps = [_apply_governance_op(governed, op, f"ops[{i}]") for i, op in enumerate(ops)]
    state = governed.state
    return {
        "accounts": {
            name: encode_address(bytes(k.verify_key)) for name, k in governed.keys.items()
        },
        "steps": steps,
        "proposals": [proposal_to_json(state, p, include_votes=True) for p in get_proposals(state)],
        "height": state.head.height,
        "state_root": "0x" + state.state_root.hex(),
    }


def _account_key(name: str) -> SigningKey:
    return SigningKey(hashlib.blake2b(b"agora-simulate:" + name.encode(), digest_size=32).digest())


def _create_governed(scenario: dict[str, Any]) -> _Governed:
    accounts = scenario.get("accounts")
    if not isinstance(accounts, dict) or not accounts:
        raise ScenarioError("accounts: expected an object of account name to {stake, contribution}")
    keys = {name: _account_key(name) for name in accounts}
    owner = _account_key("\x00subnet-owner")
    stakes: dict[str, int] = {}
    contributions: dict[str, int] = {}
    for name, account in accounts.items():
        where = f"accounts.{name}"
        if not isinstance(account, dict):
            raise ScenarioError(f"{where}: expected an object")
        _reject_unknown(account, {"stake", "contribution"}, where)
        stakes[name] = _read_int(account.get("stake", 0), f"{where}.stake", U64_MAX // 4)
        contributions[name] = _read_int(
            account.get("contribution", 0), f"{where}.contribution", U64_MAX // 4
        )
    genesis = {
        "chain_id": GOVERNANCE_CHAIN_ID,
        "params": scenario.get("params", {}),
        "governance": {"tracks": scenario.get("tracks", {})},
        "balances": {
            encode_address(bytes(owner.verify_key)): _SPARE_BALANCE,
            **{
                encode_address(bytes(keys[name].verify_key)): stakes[name] + _SPARE_BALANCE
                for name in accounts
            },
        },
    }
    try:
        state = create_genesis_state(genesis)
    except ProtocolError as error:
        raise ScenarioError(f"params or tracks: {error.message}") from None
    hotkeys = {name: Address(bytes(_account_key("\x00hotkey:" + name).verify_key)) for name in keys}
    governed = _Governed(state=state, keys=keys, hotkeys=hotkeys)
    subnet = CreateSubnet(task_kind="custom", task_config="{}", owner_hotkey=NO_HOTKEY)
    _seal_setup(governed, [(owner, subnet)])
    netuid = max(subnet.netuid for subnet in get_subnets(state))
    _seal_setup(
        governed,
        [
            (keys[name], Register(netuid=netuid, hotkey=hotkeys[name]))
            for name in keys
            if stakes[name]
        ],
    )
    _seal_setup(
        governed,
        [
            (keys[name], AddStake(hotkey=hotkeys[name], amount=stakes[name]))
            for name in keys
            if stakes[name]
        ],
    )
    for name, amount in contributions.items():
        record_contribution(state, Address(bytes(keys[name].verify_key)), amount, state.head.height)
    return governed


def _seal(governed: _Governed, items: list[tuple[SigningKey, Any]]) -> list[Receipt]:
    """One block holding ``items`` in order, each signed with its sender's next nonce."""
    state = governed.state
    raws = []
    offsets: dict[bytes, int] = {}
    for key, body in items:
        sender = Address(bytes(key.verify_key))
        offset = offsets.get(sender, 0)
        offsets[sender] = offset + 1
        tx = Transaction(
            chain_id=state.chain_id,
            sender=sender,
            nonce=get_account(state, sender).nonce + offset,
            fee=state.params.min_fee,
            body=body,
        )
        raws.append(encode_transaction(sign_transaction(tx, _signer(key))))
    timestamp = state.head.timestamp + 12
    receipts: list[Receipt] = build_block(state, timestamp, raws).receipts
    return receipts


def _signer(key: SigningKey) -> Callable[[bytes], bytes]:
    return lambda message: key.sign(message).signature


def _seal_setup(governed: _Governed, items: list[tuple[SigningKey, Any]]) -> None:
    failed = [r for r in _seal(governed, items) if not r.success]
    if failed:
        raise ScenarioError(f"accounts: setting up the stakes failed: {failed[0].message}")


def _read_account(governed: _Governed, value: Any, where: str) -> SigningKey:
    if not isinstance(value, str) or value not in governed.keys:
        raise ScenarioError(f"{where}: {value!r} is not one of the scenario's accounts")
    return governed.keys[value]


def _apply_governance_op(governed: _Governed, op: Any, where: str) -> dict[str, Any]:
    if not isinstance(op, dict) or op.get("op") not in _GOVERNANCE_OPS:
        raise ScenarioError(f"{where}.op: one of {', '.join(_GOVERNANCE_OPS)}")
    required, optional = _GOVERNANCE_OPS[op["op"]]
    _reject_unknown(op, {"op"} | required | optional, where)
    for name in sorted(required):
        if name not in op:
            raise ScenarioError(f"{where}.{name}: missing")
    state = governed.state
    kind = op["op"]
    step: dict[str, Any] = {"op": kind}
    if kind == "advance":
        before = {p.id: p.status for p in get_proposals(state)}
        for _ in range(_read_int(op["blocks"], f"{where}.blocks", _MAX_ADVANCE, low=1)):
            _seal(governed, [])
        step["changed"] = [
            _tally_of(state, p) for p in get_proposals(state) if before.get(p.id) != p.status
        ]
    elif kind == "earn":
        key = _read_account(governed, op["account"], f"{where}.account")
        amount = _read_int(op["amount"], f"{where}.amount", U64_MAX // 4)
        record_contribution(state, Address(bytes(key.verify_key)), amount, state.head.height + 1)
        _seal(governed, [])
    else:
        key, body = _read_transaction(governed, op, where)
        (receipt,) = _seal(governed, [(key, body)])
        step.update(ok=receipt.success, code=receipt.code, message=receipt.message)
        if kind in ("propose", "vote") and receipt.success:
            proposal_id = op["proposal"] if kind == "vote" else state.get_ledger("proposals") - 1
            step["tally"] = _tally_of(state, get_proposal(state, proposal_id))
    step["block"] = state.head.height
    return step


def _read_transaction(
    governed: _Governed, op: dict[str, Any], where: str
) -> tuple[SigningKey, Any]:
    kind = op["op"]
    if kind == "propose":
        key = _read_account(governed, op["proposer"], f"{where}.proposer")
        try:
            return key, proposal_from_json(op["proposal"], f"{where}.proposal")
        except ProtocolError as error:
            raise ScenarioError(error.message) from None
    if kind == "vote":
        key = _read_account(governed, op["voter"], f"{where}.voter")
        if op["choice"] not in CHOICES:
            raise ScenarioError(f"{where}.choice: one of {', '.join(CHOICES)}")
        return key, Vote(
            proposal_id=_read_int(op["proposal"], f"{where}.proposal", U64_MAX),
            choice=CHOICES.index(op["choice"]),
            conviction=_read_int(op.get("conviction", 0), f"{where}.conviction", MAX_CONVICTION),
        )
    name = op["account"]
    key = _read_account(governed, name, f"{where}.account")
    amount = _read_int(op["amount"], f"{where}.amount", U64_MAX // 4, low=1)
    body_type = AddStake if kind == "stake" else RemoveStake
    return key, body_type(hotkey=governed.hotkeys[name], amount=amount)


def _tally_of(state: State, proposal: Any) -> dict[str, Any]:
    shown = proposal_to_json(state, proposal, include_votes=False)
    return {
        "proposal": shown["id"],
        "status": shown["status"],
        "tally": shown["tally"],
        "voting_ends_at": shown["timeline"]["voting_ends_at"],
    }

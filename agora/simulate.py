"""Replay a JSON scenario through the protocol's own Yuma Consensus (``docs/yuma.md`` 0.1).

A subnet designer tries an incentive design here before putting it on a chain: neurons with
stake, weight submissions, replacements and epochs, and every epoch's outputs as JSON. There
is one implementation of the math: this module only keeps a small subnet state between
operations and calls ``agora.protocol.consensus``, so what it prints is what the ledger
would compute.

A bad scenario raises ``ScenarioError`` with the path of the faulty field
(``ops[3].uids: ...``), so a person can fix the file without reading this code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agora.errors import AgoraError
from agora.protocol.consensus.fixed import U16_MAX, U64_MAX, compute_u16_max_upscale
from agora.protocol.consensus.yuma import (
    EpochInputs,
    EpochResult,
    WeightRow,
    YumaParams,
    compute_epoch,
)

DEFAULT_EMISSION = 1_000_000_000
_PARAM_DEFAULTS: dict[str, int | bool] = {
    "tempo": 1,
    "kappa": 32_767,
    "bonds_penalty": 65_535,
    "bonds_moving_average": 900_000,
    "activity_cutoff": 5_000,
    "stake_threshold": 0,
    "yuma3": False,
    "liquid_alpha": False,
    "alpha_low": 45_875,
    "alpha_high": 58_982,
    "alpha_sigmoid_steepness": 1_000,
}
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
    params, tempo = _read_params(scenario.get("params", {}), n)
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


def _read_params(raw: Any, n: int) -> tuple[YumaParams, int]:
    if not isinstance(raw, dict):
        raise ScenarioError("params: expected an object")
    known = set(_PARAM_DEFAULTS) | {"max_validators"}
    _reject_unknown(raw, known, "params")
    values: dict[str, int | bool] = {**_PARAM_DEFAULTS, "max_validators": min(n, U16_MAX)}
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
    params = YumaParams(
        kappa_u16=int(values["kappa"]),
        bonds_penalty_u16=int(values["bonds_penalty"]),
        bonds_moving_average=int(values["bonds_moving_average"]),
        max_validators=int(values["max_validators"]),
        activity_cutoff=int(values["activity_cutoff"]),
        stake_threshold=int(values["stake_threshold"]),
        yuma3=bool(values["yuma3"]),
        liquid_alpha=bool(values["liquid_alpha"]),
        alpha_low_u16=int(values["alpha_low"]),
        alpha_high_u16=int(values["alpha_high"]),
        alpha_sigmoid_steepness=int(values["alpha_sigmoid_steepness"]),
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

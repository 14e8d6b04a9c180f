"""The simulator replays scenarios through the consensus module and names bad fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from protocol_helpers import Chain, create_subnet, make_genesis_state, make_keys

from agora.protocol.consensus.yuma import (
    DEFAULT_YUMA_PARAMS,
    EpochInputs,
    YumaParams,
    compute_epoch,
)
from agora.protocol.emission import compute_epoch_inputs
from agora.protocol.subnets import Hyperparameters, compute_yuma_params, get_subnet
from agora.simulate import ScenarioError, load_scenario, read_params, run_scenario

M = 65_535
OUTPUT_KEYS = {
    "block",
    "active",
    "validator_permit",
    "stake",
    "consensus",
    "incentive",
    "dividends",
    "validator_trust",
    "emission",
    "miner_emission",
    "validator_emission",
    "bonds",
}


def scenario(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        # Original (Yuma2) bonds, named: a new subnet's default is Yuma3.
        "params": {"tempo": 1, "max_validators": 2, "yuma3": False},
        "neurons": [{"stake": 3}, {"stake": 1}, {"stake": 0}, {"stake": 0}],
        "ops": [
            {"op": "epoch", "block": 1},
            {"op": "set_weights", "uid": 0, "uids": [2, 3], "values": [1, 1], "block": 2},
            {"op": "set_weights", "uid": 1, "uids": [2], "values": [9], "block": 2},
            {"op": "epoch", "block": 2, "emission": 1_000},
        ],
    }
    base.update(overrides)
    return base


def test_the_spec_example_runs() -> None:
    example = {
        "params": {
            "tempo": 1,
            "kappa": 32_767,
            "bonds_penalty": 65_535,
            "bonds_moving_average": 900_000,
            "max_validators": 8,
            "activity_cutoff": 13,
            "stake_threshold": 0,
            "yuma3": False,
            "liquid_alpha": False,
            "alpha_low": 45_875,
            "alpha_high": 58_982,
            "alpha_sigmoid_steepness": 1_000,
        },
        "owner_uid": None,
        "neurons": [{"stake": 1, "registered_at": 1, "last_update": 1}],
        "ops": [{"op": "epoch", "block": 2, "emission": 1_000_000_000}],
    }
    (out,) = run_scenario(example)
    assert out == {
        "block": 2,
        "active": [True],
        "validator_permit": [True],
        "stake": [M],
        "consensus": [0],
        "incentive": [0],
        "dividends": [0],
        "validator_trust": [0],
        "emission": [1_000_000_000],
        "miner_emission": [0],
        "validator_emission": [1_000_000_000],
        "bonds": [[0]],
    }


def test_one_output_per_epoch_with_dense_bonds() -> None:
    first, second = run_scenario(scenario())
    assert set(first) == set(second) == OUTPUT_KEYS
    assert first["validator_permit"] == [True, True, False, False]
    assert second["block"] == 2
    assert len(second["bonds"]) == 4 and all(len(row) == 4 for row in second["bonds"])
    assert sum(second["emission"]) <= 1_000
    assert second["incentive"][2] > second["incentive"][3] > 0


def test_the_simulator_is_the_consensus_module() -> None:
    """Same inputs through compute_epoch directly: the same numbers."""
    out = run_scenario(scenario())[1]
    inputs = EpochInputs(
        block=2,
        tempo=1,
        emission=1_000,
        stake=(3, 1, 0, 0),
        registered_at=(0, 0, 0, 0),
        last_update=(2, 2, 0, 0),
        validator_permit=(True, True, False, False),
        weights=(((2, M), (3, M)), ((2, M),), (), ()),
        bonds=((), (), (), ()),
        params=YumaParams(yuma3=False, max_validators=2, liquid_alpha=False),
    )
    result = compute_epoch(inputs)
    assert out["incentive"] == list(result.incentive_u16)
    assert out["emission"] == list(result.emission)


def test_defaults_fill_omitted_parameters() -> None:
    minimal = {"neurons": [{"stake": 5}, {"stake": 5}], "ops": [{"op": "epoch", "block": 1}]}
    (out,) = run_scenario(minimal)
    # max_validators defaults to a new subnet's (64, more than these neurons); emission to 10**9.
    assert out["validator_permit"] == [True, True]
    assert out["emission"] == [500_000_000, 500_000_000]
    assert run_scenario({"neurons": [{"stake": 1}]}) == []


def test_the_simulator_and_the_chain_share_their_consensus_defaults() -> None:
    """What a scenario omits takes the value a new subnet has on the ledger: one object."""
    simulated, tempo = read_params({})
    assert simulated == DEFAULT_YUMA_PARAMS and tempo == 1
    assert compute_yuma_params(Hyperparameters()) == DEFAULT_YUMA_PARAMS
    # The ledger's own path: a subnet created by a transaction runs its epochs with them.
    keys = make_keys(2)
    chain = Chain(make_genesis_state(keys))
    netuid = create_subnet(chain, keys[0])
    subnet = get_subnet(chain.state, netuid)
    assert compute_epoch_inputs(chain.state, subnet, 0, chain.height).params == simulated


def test_replace_neuron_resets_the_uid() -> None:
    ops = scenario()["ops"] + [
        {"op": "replace_neuron", "uid": 2, "block": 3, "stake": 7},
        {"op": "epoch", "block": 4},
    ]
    *_, after = run_scenario(scenario(ops=ops))
    assert after["incentive"][2] == 0  # weights to uid 2 were zeroed
    assert after["stake"][2] > 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ops": [{"op": "set_weights", "uid": 0, "uids": [9], "values": [1], "block": 1}]},
         "ops[0].uids[0]"),
        ({"ops": [{"op": "epoch"}]}, "ops[0].block"),
        ({"ops": [{"op": "dance", "block": 1}]}, "ops[0].op"),
        ({"ops": [{"op": "epoch", "block": 1, "emision": 5}]}, "ops[0].emision"),
        ({"ops": [{"op": "epoch", "block": -1}]}, "ops[0].block"),
        ({"ops": [{"op": "epoch", "block": True}]}, "ops[0].block"),
        ({"ops": [{"op": "set_weights", "uid": 0, "uids": [1, 1], "values": [1, 2], "block": 1}]},
         "ops[0].uids"),
        ({"ops": [{"op": "set_weights", "uid": 0, "uids": [1], "values": [1, 2], "block": 1}]},
         "ops[0].values"),
        ({"ops": [{"op": "set_weights", "uid": 0, "uids": [1], "values": [70_000], "block": 1}]},
         "ops[0].values[0]"),
        ({"ops": [{"op": "replace_neuron", "uid": 4, "block": 1}]}, "ops[0].uid"),
        ({"ops": {"op": "epoch"}}, "ops"),
        ({"params": {"kapa": 1}}, "params.kapa"),
        ({"params": {"kappa": 70_000}}, "params.kappa"),
        ({"params": {"yuma3": 1}}, "params.yuma3"),
        ({"params": {"alpha_sigmoid_steepness": 40_000}}, "params.alpha_sigmoid_steepness"),
        ({"params": {"alpha_low": 50_000, "alpha_high": 40_000}}, "params.alpha_low"),
        ({"params": []}, "params"),
        ({"neurons": []}, "neurons"),
        ({"neurons": [{"registered_at": 1}]}, "neurons[0].stake"),
        ({"neurons": [{"stake": "1"}]}, "neurons[0].stake"),
        ({"neurons": [{"stake": 1, "age": 3}]}, "neurons[0].age"),
        ({"owner_uid": 4}, "owner_uid"),
        ({"extra": 1}, "extra"),
    ],
)  # fmt: skip
def test_bad_scenarios_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        run_scenario(scenario(**change))
    assert raised.value.message.startswith(f"{field}: ")
    assert raised.value.code == 3300


def test_a_scenario_must_be_an_object() -> None:
    with pytest.raises(ScenarioError):
        run_scenario([])  # type: ignore[arg-type]


def test_load_scenario_reads_json(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario()), encoding="utf-8")
    assert run_scenario(load_scenario(path)) == run_scenario(scenario())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("{not json", "invalid JSON at line 1"), ("[1, 2]", "a scenario is a JSON object")],
)
def test_load_scenario_refuses_bad_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert fragment in raised.value.message


def test_load_scenario_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as raised:
        load_scenario(tmp_path / "absent.json")
    assert "cannot read" in raised.value.message

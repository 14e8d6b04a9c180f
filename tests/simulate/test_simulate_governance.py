"""`agora simulate governance`: scenarios replayed through the ledger's own governance.

The whale scenario is the reason votes weigh verified work: an account with 40% of the stake
and no contribution votes yes; accounts with 30% of the stake and most of the contribution
vote no. Counting tokens only (λ = 0), the whale wins; with the default λ, the workers do.
The same scenario gives the same output, state root included, every time; a bad scenario
names the field at fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.simulate import ScenarioError, run_governance_scenario

AGR = BASE_UNITS_PER_AGR
TEXT = {"kind": "text", "description": "the whale's signal"}
TRACKS = {"signal": {"voting_period_blocks": 10, "extension_blocks": 2}}


def whale_scenario(weight_per_mille: int | None) -> dict[str, Any]:
    params = {} if weight_per_mille is None else {"contribution_weight_per_mille": weight_per_mille}
    return {
        "params": params,
        "tracks": TRACKS,
        "accounts": {
            "whale": {"stake": 400 * AGR},
            "worker-a": {"stake": 150 * AGR, "contribution": 12 * AGR},
            "worker-b": {"stake": 150 * AGR, "contribution": 6 * AGR},
            "holder": {"stake": 300 * AGR},
        },
        "ops": [
            {"op": "earn", "account": "worker-b", "amount": 2 * AGR},
            {"op": "propose", "proposer": "whale", "proposal": TEXT},
            {"op": "vote", "voter": "whale", "proposal": 0, "choice": "yes"},
            {"op": "vote", "voter": "worker-a", "proposal": 0, "choice": "no"},
            {"op": "vote", "voter": "worker-b", "proposal": 0, "choice": "no"},
            {"op": "advance", "blocks": 12},
        ],
    }  # fmt: skip


def test_the_whale_wins_on_tokens_alone_and_loses_to_verified_work() -> None:
    tokens_only = run_governance_scenario(whale_scenario(0))
    (proposal,) = tokens_only["proposals"]
    assert proposal["status"] == "enacted"
    assert (proposal["tally"]["yes"], proposal["tally"]["no"]) == (400 * AGR, 300 * AGR)

    default = run_governance_scenario(whale_scenario(None))
    (proposal,) = default["proposals"]
    assert proposal["status"] == "rejected"
    weight = Params().contribution_weight_per_mille
    work = 20 * AGR * weight // 1_000
    assert (proposal["tally"]["yes"], proposal["tally"]["no"]) == (400 * AGR, 300 * AGR + work)
    # Every step printed its tally; the advance reports the closing.
    votes = [step for step in default["steps"] if step["op"] == "vote"]
    assert [step["tally"]["tally"]["no"] for step in votes] == [
        0,
        150 * AGR + 12 * AGR * weight // 1_000,
        300 * AGR + work,
    ]
    (closed,) = default["steps"][-1]["changed"]
    assert closed["status"] == "rejected"


def test_a_scenario_replays_bit_for_bit() -> None:
    first = run_governance_scenario(whale_scenario(None))
    again = run_governance_scenario(whale_scenario(None))
    assert first == again and first["state_root"].startswith("0x")
    assert run_governance_scenario(whale_scenario(0))["state_root"] != first["state_root"]


def test_refused_transactions_are_steps_with_their_code() -> None:
    scenario = whale_scenario(None)
    scenario["ops"] = [
        {"op": "vote", "voter": "whale", "proposal": 3, "choice": "yes"},
        {"op": "propose", "proposer": "holder", "proposal": {"kind": "text", "description": "a"}},
        {"op": "vote", "voter": "holder", "proposal": 0, "choice": "yes", "conviction": 2},
        {"op": "unstake", "account": "holder", "amount": AGR},
        {"op": "stake", "account": "holder", "amount": AGR},
    ]
    steps = run_governance_scenario(scenario)["steps"]
    assert [(s["ok"], s["code"]) for s in steps] == [
        (False, 2404),
        (True, 0),
        (True, 0),
        (False, 2413),  # the vote locked the stake
        (True, 0),
    ]
    assert steps[2]["tally"]["tally"]["yes"] == 3 * 300 * AGR


VOTE = {"op": "vote", "voter": "whale", "proposal": 0, "choice": "yes"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"accounts": {}}, "accounts"),
        ({"accounts": {"a": {"stake": -1}}}, "accounts.a.stake"),
        ({"accounts": {"a": {"stak": 1}}}, "accounts.a.stak"),
        ({"params": {"min_fee": -5}}, "params"),
        ({"tracks": {"signal": {"deposit": "x"}}}, "tracks"),
        ({"ops": [{"op": "dance"}]}, "ops[0].op"),
        ({"ops": [{**VOTE, "voter": "nobody"}]}, "ops[0].voter"),
        ({"ops": [{**VOTE, "choice": "maybe"}]}, "ops[0].choice"),
        ({"ops": [{"op": "propose", "proposer": "whale", "proposal": {"kind": "x"}}]}, "proposal"),
        ({"ops": [{"op": "advance"}]}, "ops[0].blocks"),
        ({"ops": [{"op": "advance", "blocks": 0}]}, "ops[0].blocks"),
        ({"extra": 1}, "extra"),
    ],
)  # fmt: skip
def test_a_bad_scenario_names_the_field(change: dict[str, Any], field: str) -> None:
    scenario = {**whale_scenario(None), **change}
    with pytest.raises(ScenarioError) as caught:
        run_governance_scenario(scenario)
    assert field in caught.value.message


def test_the_command_in_another_process_prints_the_same_json(tmp_path: Path) -> None:
    path = tmp_path / "whale.json"
    path.write_text(json.dumps(whale_scenario(0)))
    result = subprocess.run(
        [sys.executable, "-m", "agora", "simulate", "governance", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # Another process with another hash seed: no tally or root may depend on the
        # iteration order of sets or of dicts keyed by strings.
        env=os.environ | {"PYTHONHASHSEED": "4242"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == run_governance_scenario(whale_scenario(0))
    path.write_text("{")
    bad = subprocess.run(
        [sys.executable, "-m", "agora", "simulate", "governance", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0 and bad.stderr.startswith("error[3300]:")

"""The governance routes of a real node on loopback: proposals, params and the treasury.

A node started from a dev genesis whose tracks vote for 10 blocks, with blocks every 100 ms;
three dev accounts stake through the node, then propose and vote with signed transactions.
The routes answer with what the ledger holds, filter by status and track, refuse bad queries
with a coded 400 and unknown proposals with a 404, and ``NodeClient`` reads the same JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from governance_helpers import stake_on_node, write_governed_genesis
from node_helpers import NodeProcess, NodeProcesses, get_dev_keys, wait_for

from agora.client.client import NodeClient
from agora.client.transactions import make_transaction
from agora.node.devchain import DEV_CHAIN_ID
from agora.protocol.errors import ParameterOutOfBounds, UnknownParameter
from agora.protocol.governance import ProposeParamChange, ProposeText, Vote
from agora.protocol.params import BASE_UNITS_PER_AGR, PARAM_BOUNDS

KEYS = get_dev_keys(4)
OWNER, ALICE, BOB, CAROL = KEYS


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    directory = tmp_path_factory.mktemp("governance")
    genesis = write_governed_genesis(directory / "genesis.json", len(KEYS))
    node = processes.run(directory / "data", dev=False, genesis=genesis, block_time_ms=100)
    stake_on_node(node, OWNER, [ALICE, BOB, CAROL], 1_000 * BASE_UNITS_PER_AGR)
    yield node
    processes.stop_all()


def send(node: NodeProcess, key: Any, body: Any) -> dict[str, Any]:
    raw = make_transaction(
        chain_id=DEV_CHAIN_ID,
        public_key=key.public_key,
        sign=key.sign,
        nonce=node.account(key.address)["next_nonce"],
        fee=node.get_json("/v1/chain")["params"]["min_fee"],  # governance may have raised it
        body=body,
    )
    (tx_hash,) = node.submit([raw])
    status = node.wait_included(tx_hash)
    assert status["receipt"]["success"], status
    return status


def test_a_proposal_is_listed_tallied_and_enacted(node: NodeProcess) -> None:
    status = send(node, ALICE, ProposeParamChange(changes=(("min_fee", 1_500),), description="x"))
    (proposal,) = node.get_json("/v1/governance/proposals?status=voting&track=parameters")[
        "proposals"
    ]
    assert proposal["proposer"] == ALICE.address and proposal["kind"] == "param_change"
    assert proposal["timeline"]["submitted_at"] == status["height"]
    assert proposal["action"] == {"changes": [["min_fee", 1_500]], "description": "x"}
    send(node, ALICE, Vote(proposal_id=proposal["id"], choice=1, conviction=2))
    send(node, BOB, Vote(proposal_id=proposal["id"], choice=0, conviction=0))

    detail = node.get_json(f"/v1/governance/proposals/{proposal['id']}")
    stake = 1_000 * BASE_UNITS_PER_AGR
    assert detail["tally"]["yes"] == 3 * stake and detail["tally"]["no"] == stake
    assert detail["tally"]["turnout"] == 2 * stake and detail["tally"]["quorum_reached"]
    assert {v["voter"]: v["choice"] for v in detail["votes"]} == {
        ALICE.address: "yes",
        BOB.address: "no",
    }

    def enacted() -> dict[str, Any] | None:
        shown: dict[str, Any] = node.get_json(f"/v1/governance/proposals/{proposal['id']}")
        return shown if shown["status"] == "enacted" else None

    done = wait_for(enacted, 30, "the proposal's enactment")
    timeline = done["timeline"]
    assert timeline["enacted_at"] == timeline["enact_at"] == timeline["closed_at"] + 5
    params = node.get_json("/v1/governance/params")
    assert params["params"]["min_fee"] == {
        "value": 1_500,
        **dict(zip(("min", "max"), PARAM_BOUNDS["min_fee"], strict=True)),
    }
    assert node.get_json("/v1/chain")["params"]["min_fee"] == 1_500
    assert node.get_json("/v1/governance/proposals?status=voting")["proposals"] == []


def test_params_and_treasury_describe_the_ledger(node: NodeProcess) -> None:
    params = node.get_json("/v1/governance/params")
    assert params["tracks"]["signal"]["voting_period_blocks"]["value"] == 10
    assert params["hyperparameter_bounds"]["tempo"] == {
        "min": 1,
        "max": 50_000,
        "hard_min": 1,
        "hard_max": 50_000,
    }
    assert set(params["proposal_kinds"]) == {
        "param_change",
        "treasury_spend",
        "emission_shares",
        "cancel",
        "text",
    }
    treasury = node.get_json("/v1/treasury")
    assert treasury["balance"] > 0 and treasury["streams"] == []
    assert treasury["emission_share_u16"] == params["params"]["treasury_emission_u16"]["value"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/governance/proposals?status=sleeping", 400, 3001),
        ("/v1/governance/proposals?track=fast", 400, 3001),
        ("/v1/governance/proposals/abc", 400, 3001),
        ("/v1/governance/proposals/-1", 400, 3001),
        ("/v1/governance/proposals/99999", 404, 3004),
    ],
)
def test_bad_queries_get_a_coded_error(
    node: NodeProcess, path: str, status: int, code: int
) -> None:
    response = node.get(path)
    assert response.status == status, response.body
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_the_client_reads_the_same_json(node: NodeProcess) -> None:
    send(node, CAROL, ProposeText(description="a signal from the client test"))

    async def read() -> tuple[Any, ...]:
        async with NodeClient(node.url) as client:
            proposals = await client.list_proposals(track="signal")
            first = await client.get_proposal(proposals[0]["id"])
            return (
                proposals,
                first,
                await client.get_governance_params(),
                await client.get_treasury(),
            )

    proposals, first, params, treasury = asyncio.run(read())
    assert proposals[0]["proposer"] == CAROL.address and proposals[0]["track"] == "signal"
    assert first == node.get_json(f"/v1/governance/proposals/{first['id']}")
    assert params["max_conviction"] == 6
    assert treasury["height"] <= node.get_json("/v1/head")["height"]


def test_a_proposal_outside_the_bounds_is_refused_at_admission(node: NodeProcess) -> None:
    before = node.account(ALICE.address)
    for changes, code in [
        ((("max_fee", 1),), UnknownParameter.code),
        ((("treasury_emission_u16", 65_535),), ParameterOutOfBounds.code),
    ]:
        raw = make_transaction(
            chain_id=DEV_CHAIN_ID,
            public_key=ALICE.public_key,
            sign=ALICE.sign,
            nonce=before["next_nonce"],
            fee=node.get_json("/v1/chain")["params"]["min_fee"],
            body=ProposeParamChange(changes=changes, description=""),
        )
        response = node.post("/v1/transactions", {"transaction": {"raw": "0x" + raw.hex()}})
        assert response.status == 400 and response.json()["error"]["code"] == code
    assert node.account(ALICE.address) == {
        **before,
        "height": node.account(ALICE.address)["height"],
    }

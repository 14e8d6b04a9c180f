"""Lineage from data to payout: walked from a model or an account, exported as W3C PROV-JSON
and OpenLineage run events, from a real ledger (trained rounds) served by a real node.

openlineage-python 1.54 ships no JSON schema file (its events carry only the schema URL), so
run events are checked twice: built through the client's own classes, whose validators check
the event time, producer and schema URL, and validated with jsonschema against the required
structure of the OpenLineage 2-0-2 ``RunEvent`` written out below.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from federated_helpers import CONTRIBUTORS, KEYS, SERVER, STRANGER, FederatedChain
from node_helpers import NodeProcesses
from protocol_helpers import make_genesis
from prov.model import ProvDocument

from agora.lineage import (
    Lineage,
    LineageNotFound,
    compute_run_id,
    to_openlineage_events,
    to_prov,
    to_prov_json,
)
from agora.node.store import Store
from agora.node.wire import lineage_to_json
from agora.protocol.address import encode_address
from agora.protocol.data import ServeModel, get_federation
from agora.protocol.transition import apply_block
from agora.tasks import federated

ROUNDS = 3

RUN_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventType": {
            "enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"],
        },
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "format": "uri"},
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {"runId": {"type": "string", "format": "uuid"}},
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}},
        },
        "inputs": {"type": "array", "items": {"$ref": "#/$defs/Dataset"}},
        "outputs": {"type": "array", "items": {"$ref": "#/$defs/Dataset"}},
    },
    "$defs": {
        "Dataset": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}},
        }
    },
}


@pytest.fixture(scope="module")
def network() -> FederatedChain:
    trained = FederatedChain()
    trained.commit_data()
    trained.start()
    trained.run_rounds(ROUNDS)
    model_hash = get_federation(trained.chain.state, trained.netuid).model_hash
    trained.ok((SERVER, ServeModel(netuid=trained.netuid, model_hash=model_hash)))
    return trained


def current_model(network: FederatedChain) -> str:
    return "0x" + get_federation(network.chain.state, network.netuid).model_hash.hex()


def test_a_model_walks_back_to_the_data_that_trained_it(network: FederatedChain) -> None:
    lineage = Lineage(lineage_to_json(network.chain.state))
    walked = lineage.walk_model(current_model(network))
    assert [r["round"] for r in walked["rounds"]] == list(range(ROUNDS - 1, -1, -1))
    assert walked["served_by"] == [encode_address(SERVER.address)]
    roots = {
        encode_address(key.address): "0x" + federated.compute_data_root(c.data).hex()
        for key, c in zip(CONTRIBUTORS, network.contributors, strict=True)
    }
    for record in walked["rounds"]:
        for contribution in record["contributions"]:
            assert contribution["data"]["merkle_root"] == roots[contribution["hotkey"]]
    shares = [c["royalty_share_ppm"] for c in walked["credits"]]
    assert shares and 999_990 <= sum(shares) <= 1_000_000
    honest = encode_address(CONTRIBUTORS[0].address)
    account = lineage.walk_account(honest)
    assert len(account["contributions"]) == ROUNDS
    assert account["credited_in"] and account["data_commitments"][0]["rows"] > 0
    server = lineage.walk_account(encode_address(SERVER.address))
    assert server["serves"][0]["model_hash"] == current_model(network)
    with pytest.raises(LineageNotFound) as missing:
        lineage.walk_model("0x" + "ab" * 32)
    assert missing.value.code == 3671
    with pytest.raises(LineageNotFound):
        lineage.walk_account(encode_address(STRANGER.address))


def test_prov_json_reads_back_into_the_same_document(network: FederatedChain) -> None:
    lineage = Lineage(lineage_to_json(network.chain.state))
    text = to_prov_json(lineage)
    parsed = ProvDocument.deserialize(content=text, format="json")
    assert parsed == to_prov(lineage)
    raw = json.loads(text)
    models = {key for key in raw["entity"] if key.startswith("agora:model/")}
    assert len(models) == ROUNDS + 1
    assert len(raw["activity"]) == ROUNDS + 1  # the rounds and one serving
    assert len(raw["wasDerivedFrom"]) >= ROUNDS


def test_openlineage_events_follow_the_run_event_schema(network: FederatedChain) -> None:
    lineage = Lineage(lineage_to_json(network.chain.state))
    heights = {r["recorded_at"] for r in lineage.document["rounds"]}
    events = to_openlineage_events(lineage, "agora-test", {h: 1_700_000_000 + h for h in heights})
    assert len(events) == ROUNDS
    checker = jsonschema.Draft202012Validator(
        RUN_EVENT_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for event in events:
        checker.validate(event)
        uuid.UUID(event["run"]["runId"])
        assert event["eventType"] == "COMPLETE" and event["job"]["name"] == "federated-round"
    chained = [(e["inputs"][0]["name"], e["outputs"][0]["name"]) for e in events]
    for (_, output), (parent, _) in zip(chained, chained[1:], strict=False):
        assert output == parent  # each round's output model is the next round's input
    assert events[0]["run"]["runId"] == compute_run_id("agora-test", network.netuid, 0)
    with pytest.raises(jsonschema.ValidationError):
        checker.validate({**events[0], "run": {"runId": "not a uuid"}})


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[NodeProcesses]:
    started = NodeProcesses(tmp_path / "logs")
    yield started
    started.stop_all()


def agora(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agora", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_walks_and_exports_the_lineage_a_node_serves(
    network: FederatedChain, processes: NodeProcesses, tmp_path: Path
) -> None:
    genesis = make_genesis(KEYS)
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(json.dumps(genesis))
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    store = Store(data_dir / "node.db")
    state = store.initialize(genesis)
    for block in network.chain.blocks:
        store.commit_block(apply_block(state, block))
    store.close()
    node = processes.run(data_dir, dev=False, genesis=genesis_path)
    model = current_model(network)
    shown = agora("lineage", "show", model, "--node", node.url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == Lineage(lineage_to_json(network.chain.state)).walk_model(
        model
    )
    human = agora("lineage", "show", encode_address(CONTRIBUTORS[0].address), "--node", node.url)
    assert human.returncode == 0 and "credited in" in human.stdout
    missing = agora("lineage", "show", "0x" + "cd" * 32, "--node", node.url)
    assert missing.returncode != 0 and "error[3671]" in missing.stderr
    out = tmp_path / "export"
    exported = agora("lineage", "export", "--out", str(out), "--node", node.url)
    assert exported.returncode == 0, exported.stderr
    prov_text = (out / "lineage.prov.json").read_text()
    assert ProvDocument.deserialize(content=prov_text, format="json") == to_prov(
        Lineage(lineage_to_json(network.chain.state))
    )
    events = json.loads((out / "openlineage.json").read_text())
    assert len(events) == ROUNDS
    for event in events:
        jsonschema.validate(event, RUN_EVENT_SCHEMA)
    served = node.get_json(f"/v1/models/{model}")
    assert served["parameters"] == list(network.model)
    assert node.get(f"/v1/models/0x{'ee' * 32}").status == 404

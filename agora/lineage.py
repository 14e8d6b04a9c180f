"""Lineage from data to payout: walk the ledger's records, and export them as standard lineage.

The node serves every lineage record as one JSON document (``GET /v1/lineage``, built by
``node.wire.lineage_to_json``). ``Lineage`` indexes it and walks the graph:

- from a model hash: the rounds that produced it back to the initial model, each round's
  contributors with their update hashes and credits, the data commitments behind them, and
  who serves the model;
- from an account: its data commitments, the rounds it took part in, the models that credit
  it (with its share of their royalties) and the models it serves;
- from a gateway receipt (``req_...``, read from the gateway that wrote it): each paid call,
  the hash of the trained model that answered it, and that model's walk.

Two exports, each in a standard others read:

- W3C PROV (PROV-JSON, through the ``prov`` package): data commitments, updates and models
  are entities, rounds are activities, contributors and servers are agents. A round *used*
  its parent model and the updates; the new model *wasGeneratedBy* it and *wasDerivedFrom*
  its parent; an update *wasDerivedFrom* its contributor's data and *wasAttributedTo* it; a
  server's *serving* activity used the model it serves.
- OpenLineage run events (through ``openlineage-python``): one COMPLETE event per round, job
  ``federated-round`` in the namespace ``agora/<chain>/subnet-<netuid>``, the parent model
  and the contributors' data as inputs, the new model as output. The run id is a UUID made
  from the round's identity, so the same ledger exports the same events.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.serde import Serde
from prov.model import ProvDocument

from agora.errors import AgoraError

PROV_NAMESPACE = "https://agora.network/ns/lineage#"
PRODUCER = "https://agora.network/lineage"
ROUND_JOB = "federated-round"


class LineageError(AgoraError):
    """A lineage query or export is refused (codes 3670-3679)."""

    code = 3670


class LineageNotFound(LineageError):
    """Nothing in the ledger's lineage has that model hash or account, or the receipt names
    no trained model."""

    code = 3671


class ReceiptUnavailable(LineageError):
    """The gateway cannot be reached, or holds no receipt with that request id."""

    code = 3672


@dataclass(frozen=True, slots=True)
class Lineage:
    """The lineage document of one ledger, indexed for walking."""

    document: dict[str, Any]

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return {m["model_hash"]: m for m in self.document["models"]}

    @property
    def rounds(self) -> dict[tuple[int, int], dict[str, Any]]:
        return {(r["netuid"], r["round"]): r for r in self.document["rounds"]}

    def get_commitment(self, netuid: int, owner: str) -> dict[str, Any] | None:
        for commitment in self.document["data_commitments"]:
            if commitment["netuid"] == netuid and commitment["owner"] == owner:
                return dict(commitment)
        return None

    def walk_model(self, model_hash: str) -> dict[str, Any]:
        """The model's ancestry, newest round first, and who serves it."""
        models = self.models
        if model_hash not in models:
            raise LineageNotFound(f"no round produced model {model_hash}")
        model = models[model_hash]
        ancestry = []
        current = model
        while current["parent_hash"] != "0x" + "00" * 32:
            record = self.rounds[(current["netuid"], current["round"])]
            ancestry.append(
                {
                    "round": record["round"],
                    "parent_hash": record["parent_hash"],
                    "model_hash": record["model_hash"],
                    "recorded_at": record["recorded_at"],
                    "contributions": [
                        {**c, "data": self.get_commitment(record["netuid"], c["hotkey"])}
                        for c in record["contributions"]
                    ],
                }
            )
            current = models[record["parent_hash"]]
        total = sum(c["credit"] for c in model["credits"])
        return {
            "model_hash": model_hash,
            "netuid": model["netuid"],
            "credits": [
                {**c, "royalty_share_ppm": c["credit"] * 1_000_000 // total if total else 0}
                for c in model["credits"]
            ],
            "rounds": ancestry,
            "served_by": [
                s["hotkey"] for s in self.document["served"] if s["model_hash"] == model_hash
            ],
        }

    def walk_receipt(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """A gateway receipt's paid calls, each with the trained model that answered it,
        and each such model's walk."""
        hashes = sorted({"0x" + c["model_hash"] for c in receipt["calls"] if c.get("model_hash")})
        if not hashes:
            raise LineageNotFound(f"receipt {receipt['request_id']} names no trained model")
        return {
            "request_id": receipt["request_id"],
            "model": receipt["model"],
            "cost": receipt["cost"],
            "calls": [
                {
                    "miner": c["miner"],
                    "cost": c["cost"],
                    "status": c["status"],
                    "model_hash": "0x" + c["model_hash"] if c.get("model_hash") else None,
                }
                for c in receipt["calls"]
            ],
            "models": [self.walk_model(h) for h in hashes],
        }

    def walk_account(self, address: str) -> dict[str, Any]:
        commitments = [c for c in self.document["data_commitments"] if c["owner"] == address]
        contributions = [
            {"netuid": r["netuid"], "round": r["round"], **c}
            for r in self.document["rounds"]
            for c in r["contributions"]
            if c["hotkey"] == address
        ]
        credited = []
        for model in self.document["models"]:
            total = sum(c["credit"] for c in model["credits"])
            for credit in model["credits"]:
                if credit["hotkey"] == address:
                    credited.append(
                        {
                            "model_hash": model["model_hash"],
                            "credit": credit["credit"],
                            "royalty_share_ppm": credit["credit"] * 1_000_000 // total,
                        }
                    )
        served = [s for s in self.document["served"] if s["hotkey"] == address]
        if not (commitments or contributions or credited or served):
            raise LineageNotFound(f"account {address} appears nowhere in the lineage")
        return {
            "account": address,
            "data_commitments": commitments,
            "contributions": contributions,
            "credited_in": credited,
            "serves": served,
        }


# --- W3C PROV ------------------------------------------------------------------------------


def to_prov(lineage: Lineage) -> ProvDocument:
    """The lineage as a ``prov.model.ProvDocument``."""
    document = ProvDocument()
    document.add_namespace("agora", PROV_NAMESPACE)
    data = lineage.document
    for c in data["data_commitments"]:
        owner = document.agent(f"agora:account/{c['owner']}")
        entity = document.entity(
            _data_id(c["netuid"], c["owner"]),
            {
                "agora:merkle_root": c["merkle_root"],
                "agora:rows": c["rows"],
                "agora:schema": c["schema"],
                "agora:allow_training": c["allow_training"],
                "agora:allow_inference": c["allow_inference"],
            },
        )
        document.wasAttributedTo(entity, owner)
    for m in data["models"]:
        document.entity(
            f"agora:model/{m['model_hash']}",
            {"agora:netuid": m["netuid"], "agora:round": m["round"]},
        )
    for r in data["rounds"]:
        activity = document.activity(
            f"agora:round/{r['netuid']}/{r['round']}",
            other_attributes={"agora:recorded_at": r["recorded_at"]},
        )
        parent = f"agora:model/{r['parent_hash']}"
        model = f"agora:model/{r['model_hash']}"
        document.used(activity, parent)
        document.wasGeneratedBy(model, activity)
        if r["model_hash"] != r["parent_hash"]:
            document.wasDerivedFrom(model, parent)
        for c in r["contributions"]:
            update = document.entity(
                f"agora:update/{c['update_hash']}", {"agora:credit_u16": c["credit_u16"]}
            )
            contributor = document.agent(f"agora:account/{c['hotkey']}")
            document.wasAttributedTo(update, contributor)
            document.used(activity, update)
            if lineage.get_commitment(r["netuid"], c["hotkey"]) is not None:
                document.wasDerivedFrom(update, _data_id(r["netuid"], c["hotkey"]))
    for s in data["served"]:
        serving = document.activity(f"agora:serving/{s['netuid']}/{s['hotkey']}")
        document.used(serving, f"agora:model/{s['model_hash']}")
        document.wasAssociatedWith(serving, document.agent(f"agora:account/{s['hotkey']}"))
    return document


def _data_id(netuid: int, owner: str) -> str:
    return f"agora:data/{netuid}/{owner}"


def to_prov_json(lineage: Lineage) -> str:
    text = to_prov(lineage).serialize(format="json")
    if text is None:  # prov returns the document as text when given no destination
        raise RuntimeError("prov did not return the PROV-JSON document")
    return text


# --- OpenLineage ---------------------------------------------------------------------------


def compute_run_id(chain_id: str, netuid: int, round_number: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"agora:{chain_id}:{netuid}:{round_number}"))


def to_openlineage_events(
    lineage: Lineage, chain_id: str, timestamps: dict[int, int]
) -> list[dict[str, Any]]:
    """One COMPLETE run event per round; ``timestamps`` maps block heights to Unix seconds."""
    events = []
    for r in lineage.document["rounds"]:
        namespace = f"agora/{chain_id}/subnet-{r['netuid']}"
        moment = datetime.datetime.fromtimestamp(timestamps[r["recorded_at"]], datetime.UTC)
        inputs = [InputDataset(namespace=namespace, name=f"model/{r['parent_hash']}")]
        inputs += [
            InputDataset(namespace=namespace, name=f"data/{c['hotkey']}")
            for c in r["contributions"]
            if c["credit_u16"] > 0
        ]
        event = RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=moment.isoformat(),
            run=Run(runId=compute_run_id(chain_id, r["netuid"], r["round"])),
            job=Job(namespace=namespace, name=ROUND_JOB),
            producer=PRODUCER,
            inputs=inputs,
            outputs=[OutputDataset(namespace=namespace, name=f"model/{r['model_hash']}")],
        )
        events.append(Serde.to_dict(event))
    return events

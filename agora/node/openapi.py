"""The OpenAPI 3.1 description of the node API, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

from agora.protocol.governance import STATUSES, TRACK_NAMES
from agora.protocol.transactions import get_kinds

_ERROR = {
    "description": "A coded error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Agora node API", "version": "1"},
    "paths": {
        "/v1/transactions": {
            "post": {
                "summary": "Submit one or several signed transactions (all or nothing)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "required": ["transaction"],
                                        "properties": {
                                            "transaction": {"$ref": "#/components/schemas/Tx"}
                                        },
                                    },
                                    {
                                        "type": "object",
                                        "required": ["transactions"],
                                        "properties": {
                                            "transactions": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Tx"},
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": _ok(
                        "Accepted: the transaction hashes",
                        {
                            "type": "object",
                            "properties": {
                                "hashes": {"type": "array", "items": {"type": "string"}}
                            },
                        },
                    ),
                    "400": _ERROR,
                    "413": _ERROR,
                    "429": _ERROR,
                },
            }
        },
        "/v1/transactions/{hash}": {
            "get": {
                "summary": "Status of a transaction: pending, or included with its receipt",
                "parameters": [_path_param("hash", "0x-hex transaction hash")],
                "responses": {"200": _ok("Status and receipt"), "404": _ERROR},
            }
        },
        "/v1/accounts/{address}": {
            "get": {
                "summary": "Balance and nonce of an account",
                "parameters": [_path_param("address", "agr1... address")],
                "responses": {"200": _ok("The account"), "400": _ERROR},
            }
        },
        "/v1/blocks": {
            "get": {
                "summary": "Consecutive blocks with raw transactions, for followers",
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                ],
                "responses": {"200": _ok("Blocks")},
            }
        },
        "/v1/blocks/{id}": {
            "get": {
                "summary": "A block by height or 0x-hash, with its receipts",
                "parameters": [_path_param("id", "height or 0x-hex block hash")],
                "responses": {"200": _ok("The block"), "404": _ERROR},
            }
        },
        "/v1/head": {
            "get": {
                "summary": "The header of the last applied block",
                "responses": {"200": _ok("Header")},
            }
        },
        "/v1/chain": {
            "get": {
                "summary": "Chain id, height and parameters",
                "responses": {"200": _ok("Chain")},
            }
        },
        "/v1/genesis": {
            "get": {"summary": "The genesis document", "responses": {"200": _ok("Genesis")}}
        },
        "/v1/stream/blocks": {
            "get": {
                "summary": "Server-sent events, one `block` event per applied block",
                "responses": {"200": {"description": "text/event-stream"}},
            }
        },
        "/v1/faucet": {
            "post": {
                "summary": "Dev chains only: send test funds to an address",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["address"],
                                "properties": {
                                    "address": {"type": "string"},
                                    "amount": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "responses": {"202": _ok("The transfer's hash"), "403": _ERROR},
            }
        },
        "/v1/subnets": {
            "get": {
                "summary": "Every subnet with its task and hyperparameters",
                "responses": {"200": _ok("Subnets")},
            }
        },
        "/v1/subnets/{netuid}": {
            "get": {
                "summary": "One subnet",
                "parameters": [_path_param("netuid", "subnet id")],
                "responses": {"200": _ok("The subnet"), "400": _ERROR},
            }
        },
        "/v1/subnets/{netuid}/metagraph": {
            "get": {
                "summary": "Per uid: hotkey, coldkey, stake, permit, active, consensus, incentive, "
                "dividends, validator trust, emission, last update, registered at, "
                "endpoint; weights and bonds with ?matrices=1",
                "parameters": [
                    _path_param("netuid", "subnet id"),
                    {"name": "matrices", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": _ok("The metagraph"), "400": _ERROR},
            }
        },
        "/v1/hotkeys/{address}": {
            "get": {
                "summary": "A hotkey's owner, take, stake, stakers and uids",
                "parameters": [_path_param("address", "agr1... hotkey")],
                "responses": {"200": _ok("The hotkey"), "400": _ERROR},
            }
        },
        "/v1/channels": {
            "get": {
                "summary": "Payment channels of a payer and/or a payee, closed ones included",
                "parameters": [
                    {
                        "name": "payer",
                        "in": "query",
                        "description": "agr1... address of the payer",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "payee",
                        "in": "query",
                        "description": "agr1... hotkey of the payee",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _ok(
                        "The channels, in id order",
                        {
                            "type": "object",
                            "properties": {
                                "channels": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Channel"},
                                }
                            },
                        },
                    ),
                    "400": _ERROR,
                },
            }
        },
        "/v1/channels/{id}": {
            "get": {
                "summary": "One payment channel: deposit, claimed so far, expiry, closed",
                "parameters": [_path_param("id", "0x-hex channel id (32 bytes)")],
                "responses": {
                    "200": _ok("The channel", {"$ref": "#/components/schemas/Channel"}),
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/v1/services": {
            "get": {
                "summary": "Live services (agents selling work), cheapest first, with reputation",
                "parameters": [
                    {
                        "name": name,
                        "in": "query",
                        "description": description,
                        "schema": {"type": "string"},
                    }
                    for name, description in (
                        ("tag", "only services with this tag"),
                        ("owner", "agr1... owner hotkey"),
                        ("netuid", "only services listed on this subnet"),
                        ("max_price", "base units per unit, at most"),
                        ("unit", "call, 1k-tokens or second"),
                    )
                ],
                "responses": {
                    "200": _ok(
                        "The services",
                        {
                            "type": "object",
                            "properties": {
                                "services": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Service"},
                                }
                            },
                        },
                    ),
                    "400": _ERROR,
                },
            }
        },
        "/v1/services/{id}": {
            "get": {
                "summary": "One live service: endpoints with their proofs, price, schemas",
                "parameters": [_path_param("id", "0x-hex service id (32 bytes)")],
                "responses": {
                    "200": _ok("The service", {"$ref": "#/components/schemas/Service"}),
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/v1/governance/proposals": {
            "get": {
                "summary": "Governance proposals, newest first, with their tallies and timelines",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "description": "voting, queued, enacted, rejected, expired, vetoed, "
                        "cancelled, streaming, completed or failed",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "track",
                        "in": "query",
                        "description": "parameters, small_spend, large_spend, emergency or signal",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _ok(
                        "The proposals",
                        {
                            "type": "object",
                            "properties": {
                                "proposals": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Proposal"},
                                },
                                "height": {"type": "integer"},
                            },
                        },
                    ),
                    "400": _ERROR,
                },
            }
        },
        "/v1/governance/proposals/{id}": {
            "get": {
                "summary": "One proposal: action, copied rules, tally, every vote, timeline",
                "parameters": [_path_param("id", "the proposal number")],
                "responses": {
                    "200": _ok("The proposal", {"$ref": "#/components/schemas/Proposal"}),
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/v1/governance/params": {
            "get": {
                "summary": "Every governable number: value and hard bounds; tracks; "
                "subnet hyperparameter bounds",
                "responses": {
                    "200": _ok(
                        "Parameters, tracks and hyperparameter bounds",
                        {
                            "type": "object",
                            "required": ["params", "tracks", "hyperparameter_bounds"],
                            "properties": {
                                "params": {"type": "object"},
                                "tracks": {"type": "object"},
                                "hyperparameter_bounds": {"type": "object"},
                                "proposal_kinds": {"type": "array", "items": {"type": "string"}},
                                "choices": {"type": "array", "items": {"type": "string"}},
                                "max_conviction": {"type": "integer"},
                            },
                        },
                    )
                },
            }
        },
        "/v1/treasury": {
            "get": {
                "summary": "The treasury: balance, emission share, running streams",
                "responses": {
                    "200": _ok(
                        "The treasury",
                        {
                            "type": "object",
                            "required": ["balance", "emission_share_u16", "streams"],
                            "properties": {
                                "balance": {"type": "integer"},
                                "emission_share_u16": {"type": "integer"},
                                "committed_to_streams": {"type": "integer"},
                                "streams": {"type": "array", "items": {"type": "object"}},
                                "height": {"type": "integer"},
                            },
                        },
                    )
                },
            }
        },
        "/v1/lineage": {
            "get": {
                "summary": "Lineage records: data commitments, federated rounds, models, servers",
                "responses": {"200": _ok("The lineage records", {"type": "object"})},
            }
        },
        "/v1/models/{hash}": {
            "get": {
                "summary": "A federated subnet's current model, by its content address",
                "parameters": [_path_param("hash", "0x-hex model hash (32 bytes)")],
                "responses": {
                    "200": _ok("The model's fixed-point parameters", {"type": "object"}),
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/v1/federations/{netuid}": {
            "get": {
                "summary": "A federated subnet's current round: windows, commitments, reveals",
                "parameters": [_path_param("netuid", "the subnet")],
                "responses": {
                    "200": _ok("The round", {"type": "object"}),
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/v1/openapi.json": {
            "get": {"summary": "This description", "responses": {"200": _ok("OpenAPI 3.1")}}
        },
        "/health": {
            "get": {"summary": "Liveness", "responses": {"200": _ok("ok"), "503": _ok("halted")}}
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text/plain"}},
            }
        },
    },
    "components": {
        "schemas": {
            "Proposal": {
                "type": "object",
                "required": ["id", "proposer", "kind", "track", "status", "tally", "timeline"],
                "properties": {
                    "id": {"type": "integer"},
                    "proposer": {"type": "string"},
                    "kind": {"type": "string"},
                    "track": {"type": "string"},
                    "status": {"type": "string"},
                    "action": {"type": "object"},
                    "deposit": {"type": "integer"},
                    "rules": {"type": "object"},
                    "tally": {"type": "object"},
                    "timeline": {"type": "object"},
                    "stream": {"type": "object"},
                    "votes": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "name", "message"],
                        "properties": {
                            "code": {"type": "integer"},
                            "name": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {"type": "object"},
                        },
                    }
                },
            },
            "Channel": {
                "type": "object",
                "required": [
                    "id",
                    "payer",
                    "payee",
                    "netuid",
                    "deposit",
                    "claimed",
                    "expiry",
                    "closed",
                ],
                "properties": {
                    "id": {"type": "string", "description": "0x-hex, 32 bytes"},
                    "payer": {"type": "string", "description": "agr1... account"},
                    "payee": {"type": "string", "description": "agr1... hotkey"},
                    "netuid": {"type": "integer"},
                    "deposit": {"type": "integer", "description": "base units, all top-ups"},
                    "claimed": {"type": "integer", "description": "base units claimed so far"},
                    "expiry": {
                        "type": "integer",
                        "description": "block height from which the payer may close",
                    },
                    "closed": {"type": "boolean"},
                },
            },
            "Service": {
                "type": "object",
                "required": ["id", "owner", "name", "endpoints", "netuid", "price", "expiry"],
                "properties": {
                    "id": {"type": "string", "description": "0x-hex, 32 bytes"},
                    "owner": {"type": "string", "description": "agr1... hotkey"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "endpoints": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "transport": {"type": "string"},
                                "url": {"type": "string"},
                                "block_height": {"type": "integer"},
                                "state_root": {"type": "string"},
                                "signature": {"type": "string"},
                            },
                        },
                    },
                    "netuid": {"type": "integer"},
                    "price": {
                        "type": "object",
                        "properties": {
                            "amount": {"type": "integer", "description": "base units"},
                            "unit": {"type": "string"},
                        },
                    },
                    "input_schema_hash": {"type": "string"},
                    "output_schema_hash": {"type": "string"},
                    "schema_url": {"type": "string"},
                    "model_hash": {"type": ["string", "null"]},
                    "bond": {"type": "integer"},
                    "registered_at": {"type": "integer"},
                    "expiry": {"type": "integer", "description": "block height"},
                    "reputation": {
                        "type": "object",
                        "properties": {
                            "settled": {"type": "integer", "description": "base units claimed"},
                            "channels": {"type": "integer"},
                            "payers": {"type": "integer"},
                            "incentive_u16": {"type": "integer"},
                        },
                    },
                },
            },
            "Tx": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["raw"],
                        "properties": {
                            "raw": {"type": "string", "description": "0x-hex canonical bytes"}
                        },
                    },
                    {
                        "type": "object",
                        "required": [
                            "chain_id",
                            "sender",
                            "nonce",
                            "fee",
                            "kind",
                            "body",
                            "signature",
                        ],
                        "properties": {
                            "chain_id": {"type": "string"},
                            "sender": {"type": "string"},
                            "nonce": {"type": "integer"},
                            "fee": {"type": "integer"},
                            "kind": {"type": "string"},
                            "body": {"type": "object"},
                            "signature": {"type": "string"},
                        },
                    },
                ]
            },
        }
    },
}


# --- the contract made exact: formats, ranges and every status code --------------------------
#
# Applied to the description above as one last step, so that a route added there gets the
# same treatment: a parameter is described by what the handler accepts (a generated client
# then knows what is valid), and an operation lists every status it can answer.

ADDRESS_SCHEMA = {
    "type": "string",
    "pattern": "^agr1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$",
    "description": "agr1... bech32m address of a 32-byte key (its checksum is checked too)",
}
HASH_SCHEMA = {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$", "description": "0x + 32 bytes"}
HEX_SCHEMA = {"type": "string", "pattern": "^0x([0-9a-fA-F]{2})+$"}
HEIGHT_SCHEMA = {"type": "integer", "minimum": 0, "maximum": (1 << 64) - 1}
NETUID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 65_535}
MAX_BLOCKS_PER_PAGE = 100

_PATH_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/transactions/{hash}", "hash"): HASH_SCHEMA,
    ("/v1/accounts/{address}", "address"): ADDRESS_SCHEMA,
    ("/v1/hotkeys/{address}", "address"): ADDRESS_SCHEMA,
    ("/v1/blocks/{id}", "id"): {
        "type": "string",
        "pattern": "^([0-9]{1,19}|0x[0-9a-fA-F]{64})$",
        "description": "a height, or a 0x-hex block hash",
    },
    ("/v1/subnets/{netuid}", "netuid"): NETUID_SCHEMA,
    ("/v1/subnets/{netuid}/metagraph", "netuid"): NETUID_SCHEMA,
    ("/v1/channels/{id}", "id"): HASH_SCHEMA,
    ("/v1/services/{id}", "id"): HASH_SCHEMA,
    ("/v1/governance/proposals/{id}", "id"): HEIGHT_SCHEMA,
    ("/v1/federations/{netuid}", "netuid"): NETUID_SCHEMA,
    ("/v1/models/{hash}", "hash"): HASH_SCHEMA,
}
_QUERY_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/blocks", "from"): HEIGHT_SCHEMA,
    ("/v1/blocks", "limit"): {"type": "integer", "minimum": 0, "maximum": MAX_BLOCKS_PER_PAGE},
    ("/v1/channels", "payer"): ADDRESS_SCHEMA,
    ("/v1/channels", "payee"): ADDRESS_SCHEMA,
    ("/v1/services", "owner"): ADDRESS_SCHEMA,
    ("/v1/services", "netuid"): HEIGHT_SCHEMA,
    ("/v1/services", "max_price"): HEIGHT_SCHEMA,
    ("/v1/governance/proposals", "status"): {"enum": list(STATUSES)},
    ("/v1/governance/proposals", "track"): {"enum": list(TRACK_NAMES)},
}
_STREAM_PARAMETERS = [
    {
        "name": "from",
        "in": "query",
        "description": "the first height to send (default: the next block)",
        "schema": HEIGHT_SCHEMA,
    },
    {
        "name": "Last-Event-ID",
        "in": "header",
        "description": "the last height received: the stream resumes after it",
        "schema": {"type": "string", "pattern": "^[0-9]{0,19}$"},
    },
]
_TRANSACTION_STATUS = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["pending", "included", "refused"]},
        "hash": HASH_SCHEMA,
        "height": {"type": "integer"},
        "position": {"type": "integer"},
        "receipt": {"type": "object"},
    },
}


def _complete(document: dict[str, Any]) -> dict[str, Any]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                key = (path, parameter["name"])
                schema = _PATH_SCHEMAS.get(key) or _QUERY_SCHEMAS.get(key)
                if schema is not None:
                    parameter["schema"] = schema
            _add_statuses(path, method, operation)
    paths = document["paths"]
    paths["/v1/stream/blocks"]["get"]["parameters"] = _STREAM_PARAMETERS
    paths["/v1/stream/blocks"]["get"]["responses"] = {
        "200": {
            "description": "text/event-stream: `block` events (id: the height), or one "
            "`behind` event (code 3041, resume_from, head) for a reader too far behind",
            "content": {
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": {"enum": ["block", "behind"]},
                            "id": {"type": "string", "pattern": "^[0-9]+$"},
                            "data": {"type": "string", "description": "JSON"},
                        },
                    }
                }
            },
        },
        "400": _ERROR,
    }
    paths["/v1/transactions/{hash}"]["get"]["responses"]["200"] = _ok(
        "pending; included with its receipt; or refused (left out of a block: it could not "
        "pay its fee) with a failed receipt",
        _TRANSACTION_STATUS,
    )
    submitted = paths["/v1/transactions"]["post"]["responses"]["202"]
    submitted["content"]["application/json"]["schema"]["properties"]["hashes"]["items"] = (
        HASH_SCHEMA
    )
    transaction = document["components"]["schemas"]["Tx"]["oneOf"]
    transaction[0]["properties"]["raw"] = HEX_SCHEMA
    signed = transaction[1]["properties"]
    signed["sender"] = ADDRESS_SCHEMA
    signed["kind"] = {"enum": sorted(get_kinds()[1])}
    signed["nonce"] = signed["fee"] = HEIGHT_SCHEMA
    signed["signature"] = {"type": "string", "pattern": "^0x[0-9a-fA-F]{128}$"}
    faucet = paths["/v1/faucet"]["post"]["requestBody"]["content"]["application/json"]
    faucet["schema"]["properties"]["address"] = ADDRESS_SCHEMA
    faucet["schema"]["properties"]["amount"] = HEIGHT_SCHEMA
    return document


def _add_statuses(path: str, method: str, operation: dict[str, Any]) -> None:
    """Every status the handler can answer: 400 for any input it parses, 404 for any missing
    resource, 413/429/503 where a submission can meet them."""
    responses = operation["responses"]
    if operation.get("parameters") or "requestBody" in operation:
        responses.setdefault("400", _ERROR)
    if "{" in path:
        responses.setdefault("404", _ERROR)
    if method == "post":
        for status in ("400", "413", "429", "503"):
            responses.setdefault(status, _ERROR)


OPENAPI = _complete(OPENAPI)

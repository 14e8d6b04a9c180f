"""The OpenAPI 3.1 description of the gateway, served at ``/v1/agora/openapi.json``.

The OpenAI routes are described by their Agora-relevant shape only (OpenAI's own description
is the reference for their fields); Agora's extensions under ``/v1/agora`` are described in
full, the predictions of a trained federated model included: a developer's paid request
there pays the miner, and a royalty of it pays the data contributors who trained the model.
"""

from __future__ import annotations

from typing import Any

from agora.gateway.config import LEVELS
from agora.tasks.federated import CLASSES, FEATURES, MAX_PIXEL, MAX_PREDICT_ROWS, MODEL_NAME

_ERROR = {
    "description": "An error in the OpenAI shape, with Agora's numeric code",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _post(summary: str, request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {
                    "name": "Agora-Verification",
                    "in": "header",
                    "required": False,
                    "description": (
                        "How many miners check the answer; under spot and redundant, only "
                        "the answers accepted are paid"
                    ),
                    "schema": {"enum": list(LEVELS)},
                }
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": answer, "400": _ERROR, "404": _ERROR, "502": _ERROR},
        }
    }


PREDICTION_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "additionalProperties": False,
    "properties": {
        "model": {
            "type": "string",
            "description": f"{MODEL_NAME}, or {MODEL_NAME}@NETUID for one federated subnet",
        },
        "input": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_PREDICT_ROWS,
            "description": f"8x8 digit images, {FEATURES} pixels in 0..{MAX_PIXEL} each",
            "items": {
                "type": "array",
                "minItems": FEATURES,
                "maxItems": FEATURES,
                "items": {"type": "number", "minimum": 0, "maximum": MAX_PIXEL},
            },
        },
        "agora_verification": {"enum": list(LEVELS)},
    },
}

PREDICTION_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["object", "model", "model_hash", "data", "usage", "agora"],
    "properties": {
        "object": {"const": "list"},
        "model": {"type": "string"},
        "model_hash": {
            "type": "string",
            "pattern": "^0x[0-9a-f]{64}$",
            "description": "The content hash of the trained model that answered",
        },
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["object", "index", "label", "probabilities"],
                "properties": {
                    "object": {"const": "prediction"},
                    "index": {"type": "integer", "minimum": 0},
                    "label": {"type": "integer", "minimum": 0, "maximum": CLASSES - 1},
                    "probabilities": {
                        "type": "array",
                        "minItems": CLASSES,
                        "maxItems": CLASSES,
                        "items": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                },
            },
        },
        "usage": {
            "type": "object",
            "required": ["rows"],
            "properties": {"rows": {"type": "integer", "minimum": 1}},
        },
        "agora": {"$ref": "#/components/schemas/Usage"},
    },
}

CALL: dict[str, Any] = {
    "type": "object",
    "required": ["uid", "miner", "role", "cost", "latency_ms", "status", "error"],
    "properties": {
        "uid": {"type": "integer"},
        "miner": {"type": "string", "description": "The miner's hotkey (agr1...)"},
        "role": {"enum": ["primary", "spot", "tiebreak", "redundant"]},
        "cost": {
            "type": "integer",
            "description": "Base units paid (0 unless ok; a rejected answer is not paid)",
        },
        "latency_ms": {"type": "integer"},
        "status": {"enum": ["ok", "failed", "rejected"]},
        "error": {"type": "string"},
        "model_hash": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "The trained model the miner declared on chain (federated models)",
        },
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Agora gateway: the OpenAI API and Agora's extensions", "version": "1"},
    "paths": {
        "/v1/models": {
            "get": {"summary": "The network's models for sale", "responses": {"200": _ok("List")}}
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One model, its miners and prices",
                "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": _ok("The model"), "404": _ERROR},
            }
        },
        "/v1/embeddings": _post(
            "OpenAI embeddings, paid per request", {"type": "object"}, _ok("Embeddings")
        ),
        "/v1/chat/completions": _post(
            "OpenAI chat completions (or a stream of server-sent events), paid per request",
            {"type": "object"},
            _ok("A completion"),
        ),
        "/v1/agora/predictions": _post(
            "Agora extension: predictions of a trained federated model, paid per request; a "
            "royalty of what the serving miner is paid goes to the model's data contributors",
            PREDICTION_REQUEST,
            _ok("A prediction per row", PREDICTION_RESPONSE),
        ),
        "/v1/agora/receipts": {
            "get": {
                "summary": "Receipts, newest first: every miner call, its cost and model hash",
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": schema}
                    for name, schema in (
                        ("limit", {"type": "integer", "minimum": 0}),
                        ("day", {"type": "string"}),
                        ("request_id", {"type": "string"}),
                    )
                ],
                "responses": {"200": _ok("Receipts"), "400": _ERROR},
            }
        },
        "/v1/agora/channels": {
            "get": {"summary": "The gateway's payment channels", "responses": {"200": _ok("List")}}
        },
        "/v1/agora/openapi.json": {
            "get": {"summary": "This description", "responses": {"200": _ok("OpenAPI 3.1")}}
        },
        "/health": {"get": {"summary": "Liveness", "responses": {"200": _ok("ok")}}},
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["message", "type", "code", "agora_code"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                            "agora_code": {"type": "integer"},
                        },
                    }
                },
            },
            "Call": CALL,
            "Usage": {
                "type": "object",
                "required": ["request_id", "verification", "cost", "calls"],
                "properties": {
                    "request_id": {"type": "string"},
                    "verification": {"enum": list(LEVELS)},
                    "cost": {"type": "integer"},
                    "cost_agr": {"type": "string"},
                    "latency_ms": {"type": "integer"},
                    "calls": {"type": "array", "items": {"$ref": "#/components/schemas/Call"}},
                    "prices": {"type": "object"},
                },
            },
        }
    },
}


def make_openapi() -> dict[str, Any]:
    return OPENAPI

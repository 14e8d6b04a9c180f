"""The OpenAPI description of the explorer's JSON twins, served at /v1/explorer/openapi.json.

The node's own routes are described in ``agora.node.openapi``; these exist only on a node that
runs the explorer (``agora node run``, ``agora node follow``). Every page's twin is listed
here, or is a node route already (the page's footer links to it).
"""

from __future__ import annotations

from typing import Any


def _get(summary: str, parameters: tuple[str, ...] = (), query: tuple[str, ...] = ()) -> Any:
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in parameters
            ]
            + [{"name": name, "in": "query", "schema": {"type": "string"}} for name in query],
            "responses": {
                "200": {"description": "the page's data", "content": {"application/json": {}}},
                "400": {"description": "a malformed value (code 3802)"},
                "404": {"description": "no such block, transaction, uid or epoch (code 3801)"},
            },
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Agora explorer", "version": "1"},
    "paths": {
        "/v1/explorer/overview": _get("Head, blocks per minute, supply, treasury, emission"),
        "/v1/explorer/blocks": _get("Indexed blocks, newest first", query=("before", "limit")),
        "/v1/explorer/transactions": _get(
            "Indexed transactions with receipts", query=("kind", "limit")
        ),
        "/v1/explorer/accounts/{address}": _get(
            "Balance, delegations, registrations, channels, history", ("address",)
        ),
        "/v1/explorer/subnets/{netuid}": _get(
            "Metagraph with pruning rank, immunity left, fee revenue; recent epochs", ("netuid",)
        ),
        "/v1/explorer/subnets/{netuid}/validators": _get(
            "Validators: stake, take, delegators, dividends against stake share", ("netuid",)
        ),
        "/v1/explorer/subnets/{netuid}/uids/{uid}": _get(
            "A neuron now and by epoch", ("netuid", "uid")
        ),
        "/v1/explorer/subnets/{netuid}/epochs/{epoch}/uids/{uid}": _get(
            "Why this reward: the epoch recomputed from its inputs beside the ledger's outputs",
            ("netuid", "epoch", "uid"),
        ),
        "/v1/explorer/channels": _get("Payment channels and their receipts"),
        "/v1/explorer/search": _get(
            "Where an address, hash, height or netuid/uid leads", query=("q",)
        ),
        "/v1/explorer/openapi.json": _get("This document"),
    },
}

"""A decorated function's schemas, price and argument checks, and the signed A2A agent card.

Shown: JSON schemas derived from type annotations (scalars, lists, dicts, optionals, literals,
typed dicts, dataclasses); functions that cannot be services are refused when decorated;
arguments that break the schema are refused before the function runs; a dataclass argument
is built from its JSON object; the agent card verifies with its owner's key and fails with
another key or after a change of any one of its bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import pytest
from jsonschema import Draft202012Validator

from agora.agents import service
from agora.agents.card import build_agent_card, sign_agent_card, verify_agent_card
from agora.agents.decorator import get_definition, parse_price
from agora.agents.errors import ArgumentsInvalid, InvalidAgentCard, InvalidServiceDefinition
from agora.agents.schema import canonical_json, compute_schema_hash
from agora.wallet.keys import Keypair

RUNS: list[Any] = []


@dataclass
class Window:
    start: int
    size: int = 10


class Hit(TypedDict):
    id: str
    score: float


@service(name="search", price="0.0005", tags=("search",))
def search(
    query: str,
    window: Window,
    mode: Literal["fast", "exact"] = "fast",
    filters: dict[str, list[str]] | None = None,
) -> list[Hit]:
    """Find documents."""
    RUNS.append((query, window, mode, filters))
    return [{"id": f"{query}-{window.start}", "score": 0.5}]


def test_schemas_follow_the_signature() -> None:
    definition = get_definition(search)
    assert definition.name == "search" and definition.price == 500_000
    assert definition.description == "Find documents." and definition.tags == ("search",)
    schema = definition.input_schema
    Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["query", "window"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["query"] == {"type": "string"}
    assert schema["properties"]["mode"] == {"enum": ["fast", "exact"]}
    assert schema["properties"]["window"]["required"] == ["start"]
    assert schema["properties"]["filters"] == {
        "anyOf": [
            {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            {"type": "null"},
        ]
    }
    output = definition.output_schema
    assert output["type"] == "array"
    assert output["items"]["properties"] == {"id": {"type": "string"}, "score": {"type": "number"}}
    assert definition.input_schema_hash == hashlib.sha256(canonical_json(schema)).digest()
    assert compute_schema_hash({"b": 1, "a": 2}) == compute_schema_hash({"a": 2, "b": 1})


def test_arguments_are_checked_before_the_function_runs() -> None:
    definition = get_definition(search)
    RUNS.clear()
    for bad in (
        {},
        {"query": 1, "window": {"start": 0}},
        {"query": "q", "window": {"start": "0"}},
        {"query": "q", "window": {"start": 0}, "mode": "slow"},
        {"query": "q", "window": {"start": 0}, "extra": True},
        {"query": "q", "window": {"start": 0}, "filters": {"a": [1]}},
    ):
        with pytest.raises(ArgumentsInvalid) as caught:
            definition.validate_arguments(bad)
        assert caught.value.code == ArgumentsInvalid.code
    assert RUNS == []
    good = {"query": "q", "window": {"start": 3}}
    definition.validate_arguments(good)
    result = asyncio.run(definition.invoke(good))
    assert result == [{"id": "q-3", "score": 0.5}]
    assert RUNS == [("q", Window(start=3), "fast", None)]


def test_functions_that_cannot_be_services_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def no_return(x: int):  # type: ignore[no-untyped-def]
        return x

    def opaque(x: object) -> int:
        return 0

    def variadic(*texts: str) -> int:
        return 0

    def int_keys(x: dict[int, str]) -> int:
        return 0

    for function in (untyped, no_return, opaque, variadic, int_keys):
        with pytest.raises(InvalidServiceDefinition):
            service(price=1)(function)
    with pytest.raises(InvalidServiceDefinition):
        get_definition(opaque)
    for price in ("0", "-1", "abc", "0.0000000001", "1/hour", 0):
        with pytest.raises(InvalidServiceDefinition):
            parse_price(price)  # type: ignore[arg-type]
    assert parse_price("0.001/call") == parse_price("0.001") == 1_000_000
    assert parse_price(7) == 7


def test_the_agent_card_verifies_with_its_owner_and_fails_after_any_byte_changes() -> None:
    owner = Keypair(hashlib.sha256(b"agora-agents-test:card-owner").digest())
    other = Keypair(hashlib.sha256(b"agora-agents-test:card-other").digest())
    record = {
        "id": "0x" + "ab" * 32,
        "name": "search",
        "description": "Find documents.",
        "tags": ["search"],
        "netuid": 3,
        "price": {"amount": 500_000, "unit": "call"},
        "input_schema_hash": "0x" + "01" * 32,
        "output_schema_hash": "0x" + "02" * 32,
    }
    card = build_agent_card(
        url="http://127.0.0.1:9000/call", service=record, owner=owner.public_key, chain_id="c"
    )
    raw = sign_agent_card(card, owner)
    verified = verify_agent_card(raw, owner.public_key)
    assert verified.name == "search" and verified.skills[0].tags == ["search"]
    assert verified.capabilities.extensions[0].params["price"] == "500000"
    with pytest.raises(InvalidAgentCard):
        verify_agent_card(raw, other.public_key)
    with pytest.raises(InvalidAgentCard):
        verify_agent_card(sign_agent_card(card, other), owner.public_key)
    for index in range(len(raw)):
        for delta in (1, 0x20):
            changed = bytearray(raw)
            changed[index] ^= delta
            with pytest.raises(InvalidAgentCard):
                verify_agent_card(bytes(changed), owner.public_key)

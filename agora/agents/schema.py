"""JSON schemas from Python type annotations, canonical JSON, and schema hashes.

A service's input schema is derived from its function's signature: an object whose
properties are the parameters (required unless they have a default, nothing else allowed);
its output schema from the return annotation. Supported types: ``int``, ``float``, ``str``,
``bool``, ``None``, ``list[T]``, ``dict[str, T]``, ``tuple[T, ...]``, ``Optional``/unions,
``Literal``, ``TypedDict``, dataclasses and ``Any``. Anything else is refused when the
function is decorated, not when it is first called.

``compute_schema_hash`` is the sha256 of the canonical JSON (sorted keys, no spaces): the hash
the ledger records, so that anyone can check a fetched schema against it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from agora.agents.errors import InvalidServiceDefinition

_SCALARS: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
}


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that is hashed and signed."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def compute_schema_hash(schema: Any) -> bytes:
    return hashlib.sha256(canonical_json(schema)).digest()


def compute_type_schema(annotation: Any, where: str) -> dict[str, Any]:
    """The JSON schema of one annotation; raises InvalidServiceDefinition naming ``where``."""
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(arguments)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [compute_type_schema(a, where) for a in arguments]}
    if origin in (list, Sequence) or annotation in (list, Sequence):
        items = compute_type_schema(arguments[0], where) if arguments else {}
        return {"type": "array", "items": items}
    if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
        return {"type": "array", "items": compute_type_schema(arguments[0], where)}
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if arguments and arguments[0] is not str:
            raise InvalidServiceDefinition(f"{where}: JSON object keys are strings")
        values = compute_type_schema(arguments[1], where) if arguments else {}
        return {"type": "object", "additionalProperties": values}
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        required = sorted(getattr(annotation, "__required_keys__", hints))
        return _object_schema(
            {name: compute_type_schema(t, f"{where}.{name}") for name, t in hints.items()},
            required,
        )
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        hints = typing.get_type_hints(annotation)
        fields = dataclasses.fields(annotation)
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return _object_schema(
            {f.name: compute_type_schema(hints[f.name], f"{where}.{f.name}") for f in fields},
            required,
        )
    raise InvalidServiceDefinition(f"{where}: {annotation!r} has no JSON schema")


def _object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def compute_function_schemas(function: Callable[..., Any]) -> tuple[dict[str, Any], Any]:
    """(input schema, output schema) of a plain typed function."""
    name = getattr(function, "__qualname__", repr(function))
    try:
        hints = typing.get_type_hints(function)
    except NameError as error:
        raise InvalidServiceDefinition(f"{name}: an annotation does not resolve: {error}") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise InvalidServiceDefinition(f"{name}: *args and **kwargs have no schema")
        if parameter.name not in hints:
            raise InvalidServiceDefinition(f"{name}: annotate the argument {parameter.name!r}")
        properties[parameter.name] = compute_type_schema(
            hints[parameter.name], f"{name}({parameter.name})"
        )
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    if "return" not in hints:
        raise InvalidServiceDefinition(f"{name}: annotate the return type")
    output = compute_type_schema(hints["return"], f"{name} -> return")
    return _object_schema(properties, required), output

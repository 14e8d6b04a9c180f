"""``@service``: a plain typed Python function becomes a paid service.

    @service(name="word-count", price="0.0001", tags=("text",))
    def word_count(text: str, unique: bool = False) -> int:
        ...

The decorator leaves the function as it was (it can still be called and tested directly) and
attaches a ``ServiceDefinition``: its name, price (AGR per call, or base units as an int),
tags, description (the docstring by default), and input and output JSON schemas derived from
the signature (``schema``). ``agora service serve module:function`` serves it
(``server``). Arguments are validated against the input schema before the function runs;
a dataclass argument is built from its JSON object.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from jsonschema import Draft202012Validator

from agora.agents.errors import ArgumentsInvalid, InvalidServiceDefinition
from agora.agents.schema import compute_function_schemas, compute_schema_hash
from agora.protocol.params import BASE_UNITS_PER_AGR

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__agora_service__"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceDefinition:
    function: Callable[..., Any]
    name: str
    description: str
    price: int  # base units per call
    tags: tuple[str, ...]
    input_schema: dict[str, Any]
    output_schema: Any
    model_hash: bytes = bytes(32)
    _validator: Any = field(default=None, repr=False, compare=False)
    _dataclass_arguments: dict[str, type] = field(default_factory=dict, repr=False)

    @property
    def price_unit(self) -> str:
        return "call"

    @property
    def input_schema_hash(self) -> bytes:
        return compute_schema_hash(self.input_schema)

    @property
    def output_schema_hash(self) -> bytes:
        return compute_schema_hash(self.output_schema)

    def validate_arguments(self, arguments: Any) -> None:
        """Raise ArgumentsInvalid unless ``arguments`` satisfy the input schema."""
        validator = self._validator
        if validator.is_valid(arguments):
            return
        error = min(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        where = "/".join(str(part) for part in error.absolute_path) or "arguments"
        raise ArgumentsInvalid(f"{where}: {error.message}")

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Run the function on validated arguments (a coroutine function is awaited)."""
        for name, cls in self._dataclass_arguments.items():
            if name in arguments:
                arguments = {**arguments, name: cls(**arguments[name])}
        result = self.function(**arguments)
        if inspect.isawaitable(result):
            result = await result
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            return dataclasses.asdict(result)
        return result


def parse_price(price: str | int) -> int:
    """``"0.001"`` or ``"0.001/call"`` (AGR per call), or an int of base units."""
    if isinstance(price, int) and not isinstance(price, bool):
        amount = price
    else:
        text, _, unit = str(price).partition("/")
        if unit.strip() not in ("", "call"):
            raise InvalidServiceDefinition(
                f"price {price!r}: a decorated function is sold per call"
            )
        try:
            value = Decimal(text.strip()) * BASE_UNITS_PER_AGR
        except InvalidOperation:
            raise InvalidServiceDefinition(f"price {price!r}: write AGR like 0.001") from None
        if not value.is_finite() or value != value.to_integral_value():
            raise InvalidServiceDefinition(f"price {price!r}: at most 9 decimals of AGR")
        amount = int(value)
    if amount <= 0:
        raise InvalidServiceDefinition("a price is a positive amount")
    return amount


def define_service(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    price: str | int,
    tags: tuple[str, ...] | list[str] = (),
    description: str | None = None,
    model_hash: bytes = bytes(32),
) -> ServiceDefinition:
    input_schema, output_schema = compute_function_schemas(function)
    hints = typing.get_type_hints(function)
    dataclass_arguments = {
        parameter: hints[parameter]
        for parameter in inspect.signature(function).parameters
        if dataclasses.is_dataclass(hints[parameter]) and isinstance(hints[parameter], type)
    }
    return ServiceDefinition(
        function=function,
        name=name or function.__name__.replace("_", "-"),
        description=description or inspect.getdoc(function) or "",
        price=parse_price(price),
        tags=tuple(tags),
        input_schema=input_schema,
        output_schema=output_schema,
        model_hash=model_hash,
        _validator=Draft202012Validator(input_schema),
        _dataclass_arguments=dataclass_arguments,
    )


def service(
    *,
    name: str | None = None,
    price: str | int,
    tags: tuple[str, ...] | list[str] = (),
    description: str | None = None,
    model_hash: bytes = bytes(32),
) -> Callable[[F], F]:
    """Mark ``function`` as a paid service (see the module docstring)."""

    def decorate(function: F) -> F:
        definition = define_service(
            function,
            name=name,
            price=price,
            tags=tags,
            description=description,
            model_hash=model_hash,
        )
        setattr(function, ATTRIBUTE, definition)
        return function

    return decorate


def get_definition(function: Any) -> ServiceDefinition:
    definition = getattr(function, ATTRIBUTE, None)
    if not isinstance(definition, ServiceDefinition):
        raise InvalidServiceDefinition(
            f"{getattr(function, '__qualname__', function)!r} is not decorated with @service"
        )
    return definition

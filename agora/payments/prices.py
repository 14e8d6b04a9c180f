"""What a seller charges: ``Price``, its text and its place on chain, and the cost of a request.

A miner sells its task at ``Price``: base units per unit, the unit being one of
- ``request``: a flat amount per request;
- ``item``: per input item (an embedding request's texts, a prediction request's rows; a chat
  request is one item);
- ``1k-tokens``: per thousand tokens, *estimated from the request alone* so that payer and
  miner compute the same number before any work: one token per ``CHARS_PER_TOKEN``
  characters of input (rounded up), plus ``max_tokens`` for a chat request.
``Price.compute_cost(task_kind, request)`` is that number, in base units (rounded up). The
price is published on chain in the endpoint's fragment, ``http://h:p#price=1000000&per=request``
(``Price.attach``; ``parse_endpoint`` reads it back): a fragment is never sent to a server.
Amounts are read and written in AGR by ``agora.amounts``.

Pure: no I/O, integers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from agora.amounts import InvalidAmount, format_agr, parse_agr
from agora.payments.errors import InvalidPrice

UNITS = ("request", "item", "1k-tokens")
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """``amount`` base units per ``per`` (one of ``UNITS``)."""

    amount: int
    per: str = "request"

    def __post_init__(self) -> None:
        if self.per not in UNITS:
            raise InvalidPrice(f"a price is per {', '.join(UNITS)}; not {self.per!r}")
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise InvalidPrice("a price is a positive number of base units")

    @classmethod
    def parse(cls, text: str) -> Price:
        """``"0.001/request"`` (AGR per unit); a bare amount is per request."""
        amount_text, _, unit = text.strip().partition("/")
        try:
            amount = parse_agr(amount_text.strip())
        except InvalidAmount as error:
            raise InvalidPrice(f"price {text!r}: {error.message}") from None
        return cls(amount=amount, per=unit.strip() or "request")

    def to_text(self) -> str:
        return f"{format_agr(self.amount, unit=False)}/{self.per}"

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "per": self.per, "text": self.to_text()}

    def attach(self, url: str) -> str:
        """The endpoint to publish: ``url`` with the price in its fragment."""
        return url.split("#", 1)[0] + "#" + urlencode({"price": self.amount, "per": self.per})

    def compute_cost(self, task_kind: str, request: Any) -> int:
        """Base units the request costs at this price (rounded up); never raises."""
        if self.per == "request":
            return self.amount
        if self.per == "item":
            return self.amount * count_items(task_kind, request)
        tokens = estimate_tokens(task_kind, request)
        return -(-self.amount * tokens // 1000)


def parse_endpoint(endpoint: str) -> tuple[str, Price | None]:
    """A published endpoint as (the URL to call, its price, or None if it sells nothing)."""
    url, _, fragment = endpoint.partition("#")
    if not fragment:
        return url, None
    fields = parse_qs(fragment)
    try:
        amount = int(fields["price"][0])
        per = fields.get("per", ["request"])[0]
        return url, Price(amount=amount, per=per)
    except (KeyError, ValueError, InvalidPrice):
        return url, None


def count_items(task_kind: str, request: Any) -> int:
    if task_kind == "embedding" and isinstance(request, dict):
        texts = request.get("texts")
        if isinstance(texts, list) and texts:
            return len(texts)
    if task_kind == "federated" and isinstance(request, dict):  # rows of a prediction request
        rows = request.get("input")
        if isinstance(rows, list) and rows:
            return len(rows)
    return 1


def estimate_tokens(task_kind: str, request: Any) -> int:
    """The billing estimate of ``1k-tokens`` prices (see the module docstring)."""
    if not isinstance(request, dict):
        return 1
    characters = 0
    extra = 0
    if task_kind == "embedding":
        texts = request.get("texts")
        if isinstance(texts, list):
            characters = sum(len(t) for t in texts if isinstance(t, str))
    else:
        messages = request.get("messages")
        if isinstance(messages, list):
            characters = sum(
                len(m["content"])
                for m in messages
                if isinstance(m, dict) and isinstance(m.get("content"), str)
            )
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
            extra = max_tokens
    return max(1, -(-characters // CHARS_PER_TOKEN) + extra)

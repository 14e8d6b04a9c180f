"""The root of every Agora error: a stable numeric code and a message a person can act on.

Each layer (protocol, node, wallet, neuron, ...) has its own hierarchy under ``AgoraError``,
with codes in its own range, so the CLI and the HTTP API can report any of them the same way.
Code ranges: protocol 1000-2999 (payment channels 2300-2349), node API 3000-3099, wallet
3100-3199, sequencer 3200-3299, neuron protocol 3400-3449, tasks 3450-3499, miner and
validator 3500-3549 (``agora.payments`` 3520-3539), devnet 3550-3599, gateway 3600-3649,
explorer (``agora.web``) 3800-3849.
AGR amounts as text (``amounts.py``): 3300.

The error envelope. The node API and the neuron protocol answer every refusal with the same
JSON body, written by ``encode_error`` and read back by ``decode_error``::

    {"error": {"code": N, "name": "ClassName", "message": "...", "details": {...}}}

``details`` is present only for an error that carries data a program acts on (its
``details``, e.g. a payment refusal's ``served`` and ``required``): a program reads numbers
from there, never from the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class AgoraError(Exception):
    """Base of every error Agora reports to a person or a client."""

    code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[AgoraError], tuple[str]]:
        return (type(self), (self.message,))

    @property
    def details(self) -> dict[str, Any]:
        """The error's data beside its message, for programs (JSON values); none by default."""
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEnvelope:
    """An error answer as read from the wire: the remote side's code, name and message."""

    code: int
    name: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def encode_error(error: AgoraError) -> dict[str, Any]:
    """The envelope of ``error`` (module docstring), ready for a JSON encoder."""
    body: dict[str, Any] = {
        "code": error.code,
        "name": type(error).__name__,
        "message": error.message,
    }
    details = error.details
    if details:
        body["details"] = details
    return {"error": body}


def decode_error(body: Any, *, status: int, default: type[AgoraError]) -> ErrorEnvelope:
    """The envelope in a decoded error answer of HTTP ``status``. A field that is missing or
    of the wrong type reads as ``default``'s code and name and the message ``HTTP <status>``:
    whatever a remote side sent, the caller gets an error it can report."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    name = error.get("name")
    message = error.get("message")
    details = error.get("details")
    return ErrorEnvelope(
        code=code if isinstance(code, int) and not isinstance(code, bool) else default.code,
        name=name if isinstance(name, str) else default.__name__,
        message=message if isinstance(message, str) else f"HTTP {status}",
        details=details if isinstance(details, dict) else {},
    )

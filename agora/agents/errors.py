"""Errors of services and agents (codes 3700-3799), each with the HTTP status a service answers.

A service's refusals reach the caller as ``{"error": {"code", "name", "message"}}``; payment
refusals keep their own codes (``agora.payments``, 3520-3539) and come with the x402 payment
requirements. A buyer raises ``CallRefused`` carrying the service's code as ``remote_code``.
"""

from __future__ import annotations

from typing import Any

from agora.errors import AgoraError


class AgentError(AgoraError):
    """Base of the errors of services and agents."""

    code = 3700
    http_status = 400


class MalformedCall(AgentError):
    """The call's body is not a JSON object of arguments, or its payment header is not
    base64 JSON in the x402 shape."""

    code = 3701


class ArgumentsInvalid(AgentError):
    """The arguments break the service's input schema; the message names the first field
    that does. Nothing was paid and the function did not run."""

    code = 3702
    http_status = 422


class ServiceNotLive(AgentError):
    """The service's record is not live on the ledger (never registered, or expired because
    its owner did not renew it): it takes no call until it is registered again."""

    code = 3703
    http_status = 410


class InvalidAnswer(AgentError):
    """A service's answer is not signed by the service's owner hotkey for this call, result
    and payment: the buyer keeps no receipt and pays nothing more on the channel."""

    code = 3704
    http_status = 502


class EndpointProofMismatch(AgentError):
    """The URL does not serve, at ``/.well-known/agora-service.json``, the proof the ledger
    holds for it: whoever answers there is not vouched for by the owner's key."""

    code = 3705
    http_status = 502


class ServiceFailed(AgentError):
    """The service's function raised; the call was not charged."""

    code = 3706
    http_status = 500


class NoServiceFound(AgentError):
    """No live service matches the tag or id asked for."""

    code = 3707
    http_status = 404


class InvalidServiceDefinition(AgentError):
    """A decorated function cannot be a service: an argument or return type with no JSON
    schema, a missing annotation, or a price that is not per call."""

    code = 3708


class InvalidAgentCard(AgentError):
    """An A2A agent card whose signature does not verify with the owner's key, or whose bytes
    are not the canonical form that was signed."""

    code = 3709


class CallRefused(AgentError):
    """The service refused the call; ``remote_code`` is the service's code (a payment error's
    3520-3539 included) and ``details`` what it sent with it."""

    code = 3710

    def __init__(
        self, message: str, remote_code: int, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.remote_code = remote_code
        self.remote_details = details or {}

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.remote_code, self.remote_details))

    @property
    def details(self) -> dict[str, Any]:
        return {"remote_code": self.remote_code, **self.remote_details}


class GatewayRefused(AgentError):
    """The gateway refused a model call made for an MCP tool, without an Agora code."""

    code = 3711
    http_status = 502

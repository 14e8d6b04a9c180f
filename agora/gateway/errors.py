"""Every way a developer's request to the gateway can fail, each with a stable code in
3600-3649, an HTTP status, and the OpenAI error ``type`` and ``code`` the API answers with
(``{"error": {"message", "type", "param", "code"}}``, see ``openai_wire.encode_error``).

The OpenAI ``code`` strings are part of the contract too: a program matches on them.
"""

from __future__ import annotations

from typing import Any

from agora.errors import AgoraError


class GatewayError(AgoraError):
    """Base of the gateway's errors; an unexpected failure inside the gateway."""

    code = 3600
    http_status = 500
    openai_type = "api_error"
    openai_code = "gateway_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.param))


class BadRequest(GatewayError):
    """The request is not what the route takes: invalid JSON, a missing or malformed field,
    an unsupported option (``param`` names the field)."""

    code = 3601
    http_status = 400
    openai_type = "invalid_request_error"
    openai_code = "invalid_request"


class UnknownModel(GatewayError):
    """No subnet on the chain serves this model (see ``GET /v1/models``)."""

    code = 3602
    http_status = 404
    openai_type = "invalid_request_error"
    openai_code = "model_not_found"


class UnknownRoute(GatewayError):
    """The gateway has no such route."""

    code = 3603
    http_status = 404
    openai_type = "invalid_request_error"
    openai_code = "unknown_url"


class SpendLimitReached(GatewayError):
    """The request could take the day's spending past ``--daily-limit`` (UTC days)."""

    code = 3604
    http_status = 402
    openai_type = "insufficient_quota"
    openai_code = "daily_limit_exceeded"


class InsufficientFunds(GatewayError):
    """The wallet cannot fund a payment channel (deposit plus fee): top the coldkey up."""

    code = 3605
    http_status = 402
    openai_type = "insufficient_quota"
    openai_code = "insufficient_funds"


class NoMinerAvailable(GatewayError):
    """No miner of the model's subnet sells its work (or enough of them for the requested
    verification level) right now."""

    code = 3606
    http_status = 503
    openai_type = "api_error"
    openai_code = "no_miner_available"


class MinersFailed(GatewayError):
    """Every miner tried failed or timed out; nothing was paid for their failures."""

    code = 3607
    http_status = 502
    openai_type = "api_error"
    openai_code = "miners_failed"


class VerificationFailed(GatewayError):
    """The miners' answers did not agree within the task's tolerance (spot or redundant)."""

    code = 3608
    http_status = 502
    openai_type = "api_error"
    openai_code = "verification_failed"


class ChainUnavailable(GatewayError):
    """The node could not be reached, or refused a channel transaction."""

    code = 3609
    http_status = 503
    openai_type = "api_error"
    openai_code = "chain_unavailable"

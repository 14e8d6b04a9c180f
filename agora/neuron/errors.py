"""Every way a neuron request can fail, each with a stable code in 3400-3449.

Codes 3400-3429 are the server's refusals: it answers them in the error envelope of
``agora.errors`` (``{"error": {"code": N, "name": "...", "message": "..."}}``, the node API's
shape too) with the class's ``http_status``, and the handler never runs. Codes 3430-3449 are
raised by the client itself: no answer, or an answer it cannot trust. A refusal that came back
from the remote side reaches the caller as ``RemoteError``, which carries the remote code,
name, message, details and status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agora.errors import AgoraError

if TYPE_CHECKING:
    from agora.neuron.client import NeuronResponse


class NeuronError(AgoraError):
    """Base of every neuron protocol error."""

    code = 3400
    http_status = 400


# --- the server's refusals -----------------------------------------------------------------


class MissingAuth(NeuronError):
    """A signed route was called without the four ``Agora-*`` headers, or with one malformed."""

    code = 3401
    http_status = 401


class BadSignature(NeuronError):
    """``Agora-Signature`` is not the caller's signature of this request (method, path, body)."""

    code = 3402
    http_status = 401


class WrongCallee(NeuronError):
    """The request was signed for another hotkey than the one this server answers as."""

    code = 3403
    http_status = 403


class StaleNonce(NeuronError):
    """The nonce (the caller's clock in microseconds) is too far from the server's clock."""

    code = 3404
    http_status = 401


class ReplayedNonce(NeuronError):
    """This caller already sent a request with this nonce: a replay, or two processes
    signing with one hotkey in the same microsecond."""

    code = 3405
    http_status = 401


class CallerNotRegistered(NeuronError):
    """The caller's hotkey has no uid on the server's subnet and the route is not public."""

    code = 3406
    http_status = 403


class RateLimited(NeuronError):
    """The caller spent its request allowance (which grows with its stake); retry later."""

    code = 3407
    http_status = 429


class BodyTooLarge(NeuronError):
    """The request body exceeds the server's size limit."""

    code = 3408
    http_status = 413


class MalformedBody(NeuronError):
    """The request body is not a JSON object."""

    code = 3409
    http_status = 400


class HandlerTimeout(NeuronError):
    """The route's handler did not answer within the server's handler timeout."""

    code = 3410
    http_status = 504


class Overloaded(NeuronError):
    """Every handler slot is busy and the waiting line is full (or the wait ran out)."""

    code = 3411
    http_status = 503


class UnknownRoute(NeuronError):
    """No route with this method and path on this server."""

    code = 3412
    http_status = 404


class HandlerFailed(NeuronError):
    """The route's handler raised something other than an ``AgoraError`` (a bug, logged)."""

    code = 3413
    http_status = 500


class MalformedMetagraph(NeuronError):
    """The node's metagraph JSON does not have the documented shape."""

    code = 3420


# --- the client's own failures -----------------------------------------------------------


class NeuronTimeout(NeuronError):
    """No complete answer within the client's timeout."""

    code = 3430


class NeuronUnreachable(NeuronError):
    """No connection to the endpoint (nothing listening, refused, reset, DNS failure)."""

    code = 3431


class BadResponseSignature(NeuronError):
    """The answer is not signed by the callee the client meant to call: an impostor, a
    proxy that altered it, or not a neuron server at all."""

    code = 3432


class MalformedResponse(NeuronError):
    """A correctly signed answer whose body is not the JSON object the protocol promises."""

    code = 3433


class RemoteError(NeuronError):
    """The callee refused the request; ``code``, ``name`` and ``status`` are the callee's,
    ``details`` the data its error carried (see ``agora.errors``).

    ``response`` is the signed answer, so the refusal itself can be shown to a third party.
    """

    code = 3434

    def __init__(
        self,
        message: str,
        code: int | None = None,
        name: str = "RemoteError",
        status: int = 0,
        response: NeuronResponse | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = type(self).code if code is None else code
        self.name = name
        self.status = status
        self.response = response
        self._details = {} if details is None else details

    @property
    def details(self) -> dict[str, Any]:
        return self._details

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.code, self.name, self.status, None, self.details))

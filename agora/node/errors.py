"""Errors of the node's HTTP API (codes 3000-3099); protocol errors keep their own codes.

Every error response has the body ``{"error": {"code": N, "name": "...", "message": "..."}}``
(the envelope of ``agora.errors``) whatever raised it, so a client matches on ``code`` alone.
"""

from __future__ import annotations

from agora.errors import AgoraError


class NodeError(AgoraError):
    """Base of the API's own refusals."""

    code = 3000
    http_status = 400


class MalformedRequest(NodeError):
    """The request body is not valid JSON or does not have the documented shape."""

    code = 3001


class NotFound(NodeError):
    """No block, transaction or route with that identifier."""

    code = 3004
    http_status = 404


class FaucetDisabled(NodeError):
    """The faucet exists only on dev chains started with a faucet key."""

    code = 3005
    http_status = 403


class PoolFull(NodeError):
    """Too many transactions are waiting; retry after a few blocks."""

    code = 3006
    http_status = 429


class SenderPoolFull(NodeError):
    """This sender already has the most transactions a node keeps waiting for one account;
    retry once a block has included some of them."""

    code = 3040
    http_status = 429


class StreamTooFarBehind(NodeError):
    """A block-stream reader asked to resume further back than the stream replays; it reads
    the missing blocks with GET /v1/blocks?from=H and reconnects from the last one it has."""

    code = 3041
    http_status = 409


class MethodNotAllowed(NodeError):
    """The path exists but not with this method; the ``Allow`` header lists the ones it has."""

    code = 3042
    http_status = 405


class ParameterOutOfRange(NodeError):
    """A query parameter is a number outside the range the API documents for it."""

    code = 3043


class GenesisMismatch(NodeError):
    """A follower's leader serves another chain's genesis than the one the follower recorded
    or was given with ``--genesis``; the follower refuses to follow it."""

    code = 3044
    http_status = 502


class MalformedBlock(NodeError):
    """A node's answer carries a block that cannot be decoded; a follower served one by its
    leader halts instead of asking again forever."""

    code = 3045
    http_status = 502


class BodyTooLarge(NodeError):
    """The request body exceeds the API's size limit."""

    code = 3013
    http_status = 413


class ChainHalted(NodeError):
    """The node stopped applying blocks (a follower saw a state root mismatch)."""

    code = 3020
    http_status = 503

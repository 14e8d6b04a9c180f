"""Errors of the explorer's pages and its JSON (codes 3800-3849).

A page answers them as a short HTML page with the error's code, message and HTTP status; its
``/v1/explorer`` twin answers the node's JSON error envelope with the same code.
"""

from __future__ import annotations

from agora.errors import AgoraError


class ExplorerError(AgoraError):
    """Base of the explorer's refusals."""

    code = 3800
    http_status = 400


class PageNotFound(ExplorerError):
    """No block, transaction, subnet, uid, epoch or record with that identifier."""

    code = 3801
    http_status = 404


class BadParameter(ExplorerError):
    """A path or query value is malformed (not a height, a hash, an address, a number)."""

    code = 3802


class IndexBehind(ExplorerError):
    """The explorer's index has not reached the block asked about yet; retry shortly."""

    code = 3803
    http_status = 503


class IndexDiverged(ExplorerError):
    """Replaying the node's blocks gave another state root than the block claims."""

    code = 3804
    http_status = 500

"""The root of every Agora error: a stable numeric code and a message a person can act on.

Each layer (protocol, node, wallet, neuron, ...) has its own hierarchy under ``AgoraError``,
with codes in its own range, so the CLI and the HTTP API can report any of them the same way.
Code ranges: protocol 1000-2999 (payment channels 2300-2349), node API 3000-3099, wallet
3100-3199, sequencer 3200-3299, neuron protocol 3400-3449, tasks 3450-3499, miner and
validator 3500-3549 (payments 3520-3539), devnet 3550-3599, gateway 3600-3649.
AGR amounts as text (``amounts.py``): 3300.
"""

from __future__ import annotations


class AgoraError(Exception):
    """Base of every error Agora reports to a person or a client."""

    code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[AgoraError], tuple[str]]:
        return (type(self), (self.message,))

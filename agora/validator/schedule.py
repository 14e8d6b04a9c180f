"""When a validator may commit and reveal: the subnet's epoch schedule seen from a head block.

A transaction in block ``b`` belongs to the epoch index the subnet has after ``b`` (the
protocol's look-ahead: an epoch that fires at the end of ``b`` already counts). A commit of
epoch ``e`` is revealed in epoch ``e + reveal_period``; the transaction must land before the
next epoch fires, so a validator only sends when a few blocks remain (``margin``).
"""

from __future__ import annotations

from agora.protocol.subnets import is_epoch_block


def count_epochs(netuid: int, tempo: int, after: int, through: int) -> int:
    """Epochs that fire in blocks ``after+1 .. through``."""
    return sum(1 for block in range(after + 1, through + 1) if is_epoch_block(netuid, tempo, block))


def blocks_until_epoch(netuid: int, tempo: int, head: int) -> int:
    """How many blocks after ``head`` the next epoch fires (1 = in the very next block)."""
    for distance in range(1, tempo + 2):
        if is_epoch_block(netuid, tempo, head + distance):
            return distance
    raise AssertionError("an epoch fires every tempo + 1 blocks")


def epoch_of_block(netuid: int, tempo: int, block: int, head: int, head_epoch: int) -> int:
    """The epoch index of a transaction included in ``block``, from the epoch index at ``head``."""
    return head_epoch - count_epochs(netuid, tempo, block, head)


def is_safe_to_send(netuid: int, tempo: int, head: int, margin: int) -> bool:
    """Whether a transaction sent now lands in the current epoch, with ``margin`` blocks spare."""
    return blocks_until_epoch(netuid, tempo, head) > margin

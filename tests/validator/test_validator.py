"""The validator's pure parts: moving averages, weights from scores, the epoch schedule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agora.protocol.subnets import is_epoch_block
from agora.tasks.base import SCORE_ONE
from agora.validator.schedule import (
    blocks_until_epoch,
    count_epochs,
    epoch_of_block,
    is_safe_to_send,
)
from agora.validator.scores import (
    U16_MAX,
    WEIGHT_FLOOR,
    MinerRecord,
    compute_weights,
    update_average,
)


def test_average_starts_at_the_first_score_then_moves_by_alpha() -> None:
    assert update_average(0, 800_000, 300_000, first=True) == 800_000
    assert update_average(800_000, 0, 300_000, first=False) == 560_000
    assert update_average(560_000, SCORE_ONE, 300_000, first=False) == 692_000


def test_weights_follow_averages_with_the_best_at_full_scale() -> None:
    records = {
        b"a": MinerRecord(uid=4, average=900_000),
        b"b": MinerRecord(uid=1, average=450_000),
    }
    assert compute_weights(records) == ([1, 4], [U16_MAX // 2, U16_MAX])


def test_a_lone_cheater_below_the_floor_gets_no_weight() -> None:
    """Honest miners still loading score 0; a random answer's 0.02 must not take it all."""
    records = {
        b"honest": MinerRecord(uid=0, average=0),
        b"cheat": MinerRecord(uid=1, average=WEIGHT_FLOOR - 1),
    }
    assert compute_weights(records) == ([], [])
    records[b"honest"].average = SCORE_ONE
    assert compute_weights(records) == ([0], [U16_MAX])


@given(
    netuid=st.integers(1, 8),
    tempo=st.integers(1, 30),
    head=st.integers(1, 400),
)
def test_epoch_of_a_block_matches_the_protocol_schedule(netuid: int, tempo: int, head: int) -> None:
    """Replay the chain's epoch counter; every block's epoch is recovered from the head's."""
    index_after = [0]
    for block in range(1, head + 1):
        index_after.append(index_after[-1] + is_epoch_block(netuid, tempo, block))
    for block in range(1, head + 1):
        assert epoch_of_block(netuid, tempo, block, head, index_after[head]) == index_after[block]
    assert count_epochs(netuid, tempo, 0, head) == index_after[head]
    distance = blocks_until_epoch(netuid, tempo, head)
    assert is_epoch_block(netuid, tempo, head + distance)
    assert not any(is_epoch_block(netuid, tempo, head + d) for d in range(1, distance))
    assert is_safe_to_send(netuid, tempo, head, 2) == (distance > 2)

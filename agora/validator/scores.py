"""A validator's memory: moving averages of miners' scores, and the weights they become.

Integer-only, so two validators that saw the same scores set the same weights. The moving
average is keyed by hotkey: when a uid changes hands, the newcomer starts from zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.tasks.base import SCORE_ONE

PPM = 1_000_000
U16_MAX = 65_535
# Below this average a miner gets no weight at all. The chain normalizes each validator's row,
# so without a floor a lone cheater scoring 0.01 (while honest miners still load their
# models) would receive all of that validator's weight.
WEIGHT_FLOOR = SCORE_ONE // 10


@dataclass(slots=True)
class MinerRecord:
    uid: int
    average: int = 0  # 0..SCORE_ONE
    rounds: int = 0
    last_score: int = 0
    last_reason: str = ""


def update_average(previous: int, score: int, alpha_ppm: int, first: bool) -> int:
    """Exponential moving average; the first score is taken as is."""
    if first:
        return score
    return (previous * (PPM - alpha_ppm) + score * alpha_ppm) // PPM


def compute_weights(records: dict[bytes, MinerRecord]) -> tuple[list[int], list[int]]:
    """(uids, u16 values) proportional to the averages at or above ``WEIGHT_FLOOR``, the best
    miner at 65,535; nothing when no miner reaches the floor."""
    eligible = [r for r in records.values() if r.average >= WEIGHT_FLOOR]
    if not eligible:
        return [], []
    best = max(r.average for r in eligible)
    pairs = sorted((r.uid, r.average * U16_MAX // best) for r in eligible)
    pairs = [(uid, value) for uid, value in pairs if value > 0]
    return [uid for uid, _ in pairs], [value for _, value in pairs]


def format_score(score: int) -> str:
    return f"{score / SCORE_ONE:.3f}"

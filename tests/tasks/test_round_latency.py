"""Latency scored against the round: a busy machine slows every miner alike and fails none.

Real classification answers (a trained scikit-learn model, and a cheater answering one label)
scored with the challenge's bounds stretched to the round's median answer.
"""

from __future__ import annotations

import asyncio

import pytest

from agora.tasks import classification
from agora.tasks.base import SCORE_ONE, compute_round_latency_ms, scale_to_round
from agora.tasks.classification import SklearnDigitsBackend

SEED = bytes(range(32))
HOTKEY = b"\x11" * 32


@pytest.fixture(scope="module")
def svc() -> SklearnDigitsBackend:
    return asyncio.run(SklearnDigitsBackend.train("svc", 0))


def score(challenge: classification.Challenge, response: dict, latency_ms: int) -> int:
    reference = asyncio.run(classification.compute_reference(None, challenge, response, b"any"))
    return classification.compute_score(challenge, response, reference, latency_ms)


def test_the_round_latency_is_the_lower_median_of_the_answers() -> None:
    assert compute_round_latency_ms([]) == 0
    assert compute_round_latency_ms([700]) == 700
    assert compute_round_latency_ms([900, 100, 500]) == 500
    assert compute_round_latency_ms([400, 100, 300, 200]) == 200


def test_scaling_never_makes_the_bounds_stricter() -> None:
    challenge = classification.make_challenge(SEED, HOTKEY)
    assert scale_to_round(challenge, 0) == challenge
    assert scale_to_round(challenge, challenge.fast_ms - 1) == challenge
    slow = scale_to_round(challenge, 4 * challenge.timeout_ms)
    assert slow.fast_ms == 4 * challenge.timeout_ms
    assert slow.timeout_ms == 2 * slow.fast_ms
    assert (slow.request, slow.secret) == (challenge.request, challenge.secret)


def test_on_a_busy_machine_honest_answers_keep_their_credit_and_a_cheater_gets_none(
    svc: SklearnDigitsBackend,
) -> None:
    """Every answer took 3x the challenge's timeout (models loading on two cores)."""
    challenge = classification.make_challenge(SEED, HOTKEY)
    honest = asyncio.run(classification.handle(svc, challenge.request))
    cheat = {"labels": [3 for _ in honest["labels"]]}
    busy_ms = 3 * challenge.timeout_ms
    latencies = [busy_ms - 200, busy_ms, busy_ms + 200, 2 * busy_ms]
    scaled = scale_to_round(challenge, compute_round_latency_ms(latencies))

    on_a_quiet_machine = score(challenge, honest, challenge.fast_ms)
    at_the_median = score(scaled, honest, busy_ms)
    assert at_the_median == on_a_quiet_machine > SCORE_ONE // 2
    # Without the round's pace the same answer would be at the floor.
    assert score(challenge, honest, busy_ms) == on_a_quiet_machine // 2
    # Slower than its peers still costs, down to half credit.
    assert at_the_median > score(scaled, honest, busy_ms + 200) > score(scaled, honest, 2 * busy_ms)
    assert score(scaled, honest, 10 * busy_ms) == on_a_quiet_machine // 2
    # A cheater (one constant label) scores nothing, however fast.
    assert score(scaled, cheat, 0) == 0

"""An Agora task in one file: the sum of the decimal digits of long integers.

A toy, but a complete task (``agora.tasks.base.Task``): validators draw numbers from a secret
seed and the miner's hotkey, miners add up digits behind a backend, validators recompute a
random sample of the answers and score them with integers only. A miner that answers noise
(``agora miner run --behaviour random``) scores 0. docs/write-your-own-task.md builds it
step by step.

Wire format (route ``/task/digit-sum``)::

    request  {"numbers": ["8071...", ...]}   decimal strings
    response {"sums": [41, ...]}             one integer per number
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from agora.tasks.base import (
    SCORE_ONE,
    BadBackendSpec,
    Challenge,
    InvalidRequestError,
    RequestTooLargeError,
    apply_latency,
    compute_sample_indices,
    derive_rng,
)

TASK = "digit-sum"
ROUTE = "/task/digit-sum"
# What a subnet's configuration may change (``agora subnet create --config '{"items": 64}'``).
DEFAULT_CONFIG: dict[str, int] = {"items": 32, "digits": 40, "sample": 8}
MAX_ITEMS = 1_024
MAX_DIGITS = 1_000


class DigitSumBackend:
    """Where a miner's work happens; a real task would hold a model here."""

    def compute_sums(self, numbers: list[str]) -> list[int]:
        return [compute_digit_sum(number) for number in numbers]


def compute_digit_sum(number: str) -> int:
    return sum(int(digit) for digit in number)


def make_challenge(seed: bytes, miner_hotkey: bytes, config: dict[str, Any]) -> Challenge:
    """``items`` numbers of ``digits`` digits, fixed by the seed and the miner's hotkey."""
    settings = {**DEFAULT_CONFIG, **config}
    rng = derive_rng(b"digit-sum/challenge", seed, miner_hotkey)
    digits = settings["digits"]
    numbers = [str(rng.randrange(10 ** (digits - 1), 10**digits)) for _ in range(settings["items"])]
    return Challenge(task=TASK, request={"numbers": numbers}, secret={"sample": settings["sample"]})


def validate_request(request: Any) -> list[str]:
    numbers = request.get("numbers") if isinstance(request, dict) else None
    if not isinstance(numbers, list) or not all(
        isinstance(n, str) and n.isascii() and n.isdigit() for n in numbers
    ):
        raise InvalidRequestError("'numbers' is a list of decimal strings")
    if len(numbers) > MAX_ITEMS or any(len(n) > MAX_DIGITS for n in numbers):
        raise RequestTooLargeError(f"at most {MAX_ITEMS} numbers of {MAX_DIGITS} digits")
    return numbers


async def handle(backend: DigitSumBackend, request: dict[str, Any]) -> dict[str, Any]:
    """The miner's side."""
    return {"sums": backend.compute_sums(validate_request(request))}


def make_random_response(request: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Noise of the right shape: what a cheating miner answers without doing the work."""
    return {"sums": [rng.randrange(9 * len(number) + 1) for number in request["numbers"]]}


async def compute_reference(
    reference_backend: None, challenge: Challenge, response: Any, sample_seed: bytes
) -> dict[int, int]:
    """The right sums of a sample drawn after the answer arrived: index to sum."""
    numbers = challenge.request["numbers"]
    indices = compute_sample_indices(sample_seed, len(numbers), challenge.secret["sample"])
    return {index: compute_digit_sum(numbers[index]) for index in indices}


def compute_score(
    challenge: Challenge, response: Any, reference: dict[int, int], latency_ms: int
) -> int:
    """``SCORE_ONE`` (less latency) when every sampled sum is right; one wrong sum, or a
    malformed answer, scores 0, so skipping part of the work never pays."""
    sums = response.get("sums") if isinstance(response, dict) else None
    if not isinstance(sums, list) or len(sums) != len(challenge.request["numbers"]):
        return 0
    if any(
        type(sums[index]) is not int or sums[index] != right for index, right in reference.items()
    ):
        return 0
    return apply_latency(SCORE_ONE, latency_ms, challenge)


async def load_backend(spec: str, cache_dir: Path | None = None) -> DigitSumBackend:
    """The miner's backend for ``--backend``: only ``local`` here."""
    if spec != "local":
        raise BadBackendSpec(f"the {TASK} task runs locally only, not on {spec!r}")
    return DigitSumBackend()


async def load_reference_backend(cache_dir: Path | None = None) -> None:
    """Nothing: a validator recomputes sums without a model."""
    return None

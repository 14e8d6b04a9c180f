"""The public task interface: what every task provides, built into Agora or installed beside it.

A task is one kind of AI work a subnet pays for. Its code is a Python module (or any object)
with these members, found through the ``agora.tasks`` entry-point group (``registry``); the
subnet names its kind on chain, and the ledger never runs task code. ``Task`` below states the
interface for type checkers; a module satisfies it by defining the names:

- ``TASK``: the kind, as subnets name it and as the entry point is named (a lowercase letter,
  then lowercase letters, digits, ``.``, ``_`` or ``-``; at most 32 characters);
- ``ROUTE``: the HTTP path miners serve it on (``/task/<kind>``);
- ``make_challenge(seed, miner_hotkey, config) -> Challenge``: what a validator asks one miner,
  derived only from a seed (which the validator keeps secret until it asks) and the miner's
  hotkey, so that two miners never get the same items and cannot copy each other; ``config``
  is the subnet's configuration (a JSON object, ``{}`` by default);
- ``handle(backend, request) -> response`` (async): the miner's side, behind a backend (a
  model loaded in-process, or an existing inference engine reached over its HTTP API);
- ``compute_reference(reference_backend, challenge, response, sample_seed) -> reference``
  (async): the validator recomputes a sample of the items; ``sample_seed`` is drawn after the
  answer arrives, so the miner cannot know which items are checked;
- ``compute_score(challenge, response, reference, latency_ms) -> int``: pure and integer-only,
  in ``0..SCORE_ONE``; correct and fast work scores high, random, wrong-model, copied, empty or
  malformed answers score near zero, a late answer scores lower than the same answer on time.
  The validator scores latency against its round (``scale_to_round``): the round's median
  answer sets the pace, so a busy machine does not fail every miner on it;
- ``make_random_response(request, rng) -> response``: noise of the right shape, which the
  ``random`` cheating miner of devnets and tests answers with (validators must score it 0);
- ``load_backend(spec, cache_dir) -> backend`` (async): the miner's backend for a backend spec
  (``local`` always; ``openai:<base url>#<model>`` where the task supports it, else
  ``BadBackendSpec``);
- ``load_reference_backend(cache_dir) -> backend`` (async): what the validator recomputes
  with (``None`` when it needs nothing).

Requests and responses are JSON objects; the neuron protocol signs and carries them. A task's
errors subclass ``TaskError`` with codes in ``TASK_CODES``. docs/write-your-own-task.md walks
through writing one.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from agora.errors import AgoraError

SCORE_ONE = 1_000_000  # a perfect score

# Latency: full credit up to ``fast_ms``, then linear down to half credit at ``timeout_ms``.
# Past the timeout there is no answer at all, which scores 0.
LATENCY_FLOOR = SCORE_ONE // 2


@dataclass(frozen=True, slots=True)
class Challenge:
    """One validator's question to one miner."""

    task: str
    request: dict[str, Any]  # exactly what the miner receives
    secret: dict[str, Any] = field(default_factory=dict)  # only the validator sees it
    fast_ms: int = 1_000
    timeout_ms: int = 10_000


def compute_latency_factor(latency_ms: int, fast_ms: int, timeout_ms: int) -> int:
    """``SCORE_ONE`` when fast, ``LATENCY_FLOOR`` at the timeout, linear in between."""
    if latency_ms <= fast_ms:
        return SCORE_ONE
    if latency_ms >= timeout_ms:
        return LATENCY_FLOOR
    span = timeout_ms - fast_ms
    return SCORE_ONE - (SCORE_ONE - LATENCY_FLOOR) * (latency_ms - fast_ms) // span


def compute_round_latency_ms(latencies_ms: list[int]) -> int:
    """The median latency of a round's answers (the lower middle one); 0 for no answer."""
    if not latencies_ms:
        return 0
    ordered = sorted(latencies_ms)
    return ordered[(len(ordered) - 1) // 2]


def scale_to_round(challenge: Challenge, round_latency_ms: int) -> Challenge:
    """The challenge with its latency bounds set by what this round's miners could do.

    A busy or slow machine slows every miner on it alike, so latency is scored against the
    round's median answer rather than a wall clock: full credit up to the median (never
    stricter than ``fast_ms``), then linear down to half credit at twice that (never before
    ``timeout_ms``). A miner slower than its peers still scores less; one that answers
    nothing, or garbage, still scores 0.
    """
    fast_ms = max(challenge.fast_ms, round_latency_ms)
    timeout_ms = max(challenge.timeout_ms, 2 * fast_ms)
    return replace(challenge, fast_ms=fast_ms, timeout_ms=timeout_ms)


def apply_latency(quality: int, latency_ms: int, challenge: Challenge) -> int:
    """A quality in ``0..SCORE_ONE`` scaled by the latency factor."""
    factor = compute_latency_factor(latency_ms, challenge.fast_ms, challenge.timeout_ms)
    return quality * factor // SCORE_ONE


def derive_rng(domain: bytes, *parts: bytes) -> random.Random:
    """A generator fixed by its inputs: the same domain and parts give the same draws anywhere.

    Each part is length-prefixed before hashing, so ``(b"ab", b"c")`` and ``(b"a", b"bc")``
    differ. ``random.Random`` seeded with an int draws the same sequence on every platform
    (and has across recent Python versions); golden-vector tests in the task tests pin it.
    """
    digest = hashlib.sha256()
    for part in (domain, *parts):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return random.Random(int.from_bytes(digest.digest(), "big"))


def compute_sample_indices(sample_seed: bytes, count: int, sample_size: int) -> list[int]:
    """Which of ``count`` items a validator recomputes: ``sample_size`` distinct, sorted."""
    rng = derive_rng(b"agora/tasks/sample", sample_seed)
    return sorted(rng.sample(range(count), min(sample_size, count)))


TASK_CODES = range(3450, 3500)  # every task's errors, built-in or not, have codes here


class TaskError(AgoraError):
    """A request a task cannot serve: malformed, over its limits, or a backend failure."""

    code = 3450


class InvalidRequestError(TaskError):
    """The request is not the JSON object the task's route expects (a field missing, of the
    wrong type, or out of range)."""

    code = 3451


class RequestTooLargeError(TaskError):
    """The request asks for more items, or longer items, than the task serves at once."""

    code = 3452


class ModelNotServedError(TaskError):
    """The request names a model other than the one this miner's backend runs."""

    code = 3453


class BackendError(TaskError):
    """The backend failed or returned something of the wrong shape; the miner should check
    its model or inference engine."""

    code = 3454


class BadBackendSpec(TaskError):
    """The backend spec is not ``local`` or ``openai:<url>#<model>``, or names an engine the
    task cannot be forwarded to."""

    code = 3481


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """``(base url, model)`` from ``openai:<base url>#<model>``."""
    if not spec.startswith("openai:") or "#" not in spec:
        raise BadBackendSpec(f"backend {spec!r}: use local, or openai:<base url>#<model>")
    base_url, model = spec[len("openai:") :].split("#", 1)
    return base_url, model


class Task(Protocol):
    """The interface every task module provides (see the module docstring for each member)."""

    TASK: str
    ROUTE: str

    def make_challenge(
        self, seed: bytes, miner_hotkey: bytes, config: dict[str, Any]
    ) -> Challenge: ...

    async def handle(self, backend: Any, request: dict[str, Any]) -> dict[str, Any]: ...

    async def compute_reference(
        self, reference_backend: Any, challenge: Challenge, response: Any, sample_seed: bytes
    ) -> Any: ...

    def compute_score(
        self, challenge: Challenge, response: Any, reference: Any, latency_ms: int
    ) -> int: ...

    def make_random_response(
        self, request: dict[str, Any], rng: random.Random
    ) -> dict[str, Any]: ...

    async def load_backend(self, spec: str, cache_dir: Path | None) -> Any: ...

    async def load_reference_backend(self, cache_dir: Path | None) -> Any: ...


TASK_MEMBERS = (
    "TASK",
    "ROUTE",
    "make_challenge",
    "handle",
    "compute_reference",
    "compute_score",
    "make_random_response",
    "load_backend",
    "load_reference_backend",
)

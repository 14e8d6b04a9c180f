"""The classification task with real scikit-learn models on the bundled digits.

An SVC is trained once for the module on the public split (and its one-pixel shifts), as an
honest miner would; cheats are random labels, one constant label, and another miner's
answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

import pytest

from agora.tasks import classification
from agora.tasks.base import (
    SCORE_ONE,
    BackendError,
    InvalidRequestError,
    RequestTooLargeError,
    TaskError,
    compute_sample_indices,
)
from agora.tasks.classification import SklearnDigitsBackend

SEED = bytes(range(32))
HOTKEY = b"\x11" * 32
OTHER_HOTKEY = b"\x22" * 32


@pytest.fixture(scope="module")
def svc() -> SklearnDigitsBackend:
    return asyncio.run(SklearnDigitsBackend.train("svc", 0))


@pytest.fixture(scope="module")
def challenge() -> classification.Challenge:
    return classification.make_challenge(SEED, HOTKEY)


def score(challenge: classification.Challenge, response: dict | None, latency_ms: int = 0) -> int:
    reference = asyncio.run(classification.compute_reference(None, challenge, response, b"any"))
    return classification.compute_score(challenge, response, reference, latency_ms)


def answer(backend: SklearnDigitsBackend, challenge: classification.Challenge) -> dict:
    return asyncio.run(classification.handle(backend, challenge.request))


# --- the split and the challenges --------------------------------------------------------


def test_the_held_out_pool_never_overlaps_the_public_split() -> None:
    split = classification.load_split()
    public, held_out = set(split.public_rows), set(split.held_out_rows)
    assert not public & held_out
    assert public | held_out == set(range(len(split.images)))
    assert (len(public), len(held_out)) == (1_197, 600)
    for label in range(10):
        per_class = sum(split.labels[row] == label for row in held_out)
        assert per_class * 10 >= classification.MAX_CHALLENGE_ITEMS
    training_images, training_labels = classification.load_public_training_set()
    assert training_images == [list(split.images[row]) for row in split.public_rows]
    assert training_labels == [split.labels[row] for row in split.public_rows]


def test_challenges_draw_only_from_the_pool_and_hide_the_labels() -> None:
    split = classification.load_split()
    public_images = {split.images[r] for r in split.public_rows}
    every_image = set(split.images)
    verbatim = 0
    for seed in range(20):
        challenge = classification.make_challenge(seed.to_bytes(4, "big"), HOTKEY)
        assert "labels" not in json.dumps(challenge.request)
        verbatim += sum(tuple(image) in every_image for image in challenge.request["features"])
        labels = challenge.secret["labels"]
        assert sorted(labels) == sorted(list(range(10)) * 6)  # balanced: a constant gets chance
    assert verbatim == 0  # perturbed: no image can be looked up in the public data
    assert public_images  # (the split is not empty)


def test_challenge_is_pure_and_pinned() -> None:
    first = classification.make_challenge(SEED, HOTKEY)
    assert first == classification.make_challenge(SEED, HOTKEY)
    encoded = json.dumps([first.request, first.secret], sort_keys=True).encode()
    # A golden vector: changing the split, the perturbation or the RNG use breaks it on purpose.
    assert hashlib.sha256(encoded).hexdigest()[:16] == "0dc1fb1506ff5c50"
    assert compute_sample_indices(b"fixed", 16, 4) == [10, 11, 13, 14]


def test_each_hotkey_gets_its_own_images() -> None:
    mine = classification.make_challenge(SEED, HOTKEY).request["features"]
    theirs = classification.make_challenge(SEED, OTHER_HOTKEY).request["features"]
    assert not {tuple(image) for image in mine} & {tuple(image) for image in theirs}


def test_config_overrides_the_defaults() -> None:
    challenge = classification.make_challenge(
        SEED, HOTKEY, {"items": 25, "fast_ms": 7, "timeout_ms": 70}
    )
    assert len(challenge.request["features"]) == len(challenge.secret["labels"]) == 25
    assert (challenge.fast_ms, challenge.timeout_ms) == (7, 70)
    assert all(2 <= challenge.secret["labels"].count(label) <= 3 for label in range(10))
    largest = classification.MAX_CHALLENGE_ITEMS
    assert len(classification.make_challenge(SEED, HOTKEY, {"items": largest}).secret["labels"])
    for items in (0, largest + 1):
        with pytest.raises(InvalidRequestError):
            classification.make_challenge(SEED, HOTKEY, {"items": items})


# --- scores ------------------------------------------------------------------------------


def test_an_honest_trained_model_scores_high(svc: SklearnDigitsBackend) -> None:
    scores = []
    for seed in range(10):
        challenge = classification.make_challenge(seed.to_bytes(4, "big"), HOTKEY)
        scores.append(score(challenge, answer(svc, challenge)))
    assert min(scores) >= SCORE_ONE * 85 // 100
    assert sum(scores) // len(scores) >= SCORE_ONE * 93 // 100


def test_knn_scores_high_too() -> None:
    knn = asyncio.run(SklearnDigitsBackend.train("knn", 0))
    challenge = classification.make_challenge(b"knn", HOTKEY)
    assert answer(knn, challenge)["model"] == "digits-knn"
    assert score(challenge, answer(knn, challenge)) >= SCORE_ONE * 85 // 100


def test_random_labels_score_near_zero() -> None:
    rng = random.Random(3)
    scores = []
    for seed in range(30):
        challenge = classification.make_challenge(seed.to_bytes(4, "big"), HOTKEY)
        response = classification.make_random_response(challenge.request, rng)
        assert classification.is_well_formed_response(challenge, response)
        scores.append(score(challenge, response))
    assert sum(scores) // len(scores) < SCORE_ONE // 20
    assert max(scores) < SCORE_ONE // 4


@pytest.mark.parametrize("label", range(10))
def test_a_constant_label_scores_zero(challenge: classification.Challenge, label: int) -> None:
    assert score(challenge, {"labels": [label] * 60}) == 0


def test_all_correct_scores_full_and_the_secret_labels_are_right(
    challenge: classification.Challenge,
) -> None:
    assert score(challenge, {"labels": list(challenge.secret["labels"])}) == SCORE_ONE


def test_an_answer_copied_from_another_miner_scores_near_zero(svc: SklearnDigitsBackend) -> None:
    copied = answer(svc, classification.make_challenge(SEED, OTHER_HOTKEY))
    assert score(classification.make_challenge(SEED, HOTKEY), copied) < SCORE_ONE // 4


@pytest.mark.parametrize(
    "labels",
    [
        None,
        [],
        [0] * 59,
        [0] * 61,
        [0] * 59 + [10],
        [0] * 59 + [-1],
        [0] * 59 + ["1"],
        [0] * 59 + [True],
        [0] * 59 + [1.0],
        "0" * 60,
    ],
)
def test_malformed_answers_score_zero(challenge: classification.Challenge, labels: object) -> None:
    assert score(challenge, {"labels": labels}) == 0
    assert score(challenge, None) == 0
    assert score(challenge, [0] * 60) == 0  # type: ignore[arg-type]


def test_a_late_answer_scores_lower(
    svc: SklearnDigitsBackend, challenge: classification.Challenge
) -> None:
    response = answer(svc, challenge)
    fast, timeout = challenge.fast_ms, challenge.timeout_ms
    on_time = score(challenge, response, fast)
    late = [score(challenge, response, ms) for ms in (fast + 1, (fast + timeout) // 2, timeout)]
    assert on_time > late[0] > late[1] > late[2] == on_time // 2


def test_scores_are_deterministic(svc: SklearnDigitsBackend) -> None:
    scores = set()
    for _ in range(3):
        challenge = classification.make_challenge(SEED, HOTKEY)
        scores.add(score(challenge, answer(svc, challenge), 700))
    assert len(scores) == 1


def test_the_quality_scale() -> None:
    assert classification.compute_quality(60, 60) == SCORE_ONE
    assert classification.compute_quality(6, 60) == 0
    assert classification.compute_quality(0, 60) == 0
    assert classification.compute_quality(33, 60) == SCORE_ONE // 2


# --- the miner's handler -----------------------------------------------------------------

IMAGE = [0] * 64


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ([IMAGE], InvalidRequestError),
        ({}, InvalidRequestError),
        ({"features": []}, InvalidRequestError),
        ({"features": IMAGE}, InvalidRequestError),
        ({"features": [IMAGE[:-1]]}, InvalidRequestError),
        ({"features": [IMAGE + [0]]}, InvalidRequestError),
        ({"features": [[17] + IMAGE[1:]]}, InvalidRequestError),
        ({"features": [[-1] + IMAGE[1:]]}, InvalidRequestError),
        ({"features": [[0.5] + IMAGE[1:]]}, InvalidRequestError),
        ({"features": [[True] + IMAGE[1:]]}, InvalidRequestError),
        ({"features": [IMAGE] * (classification.MAX_ITEMS + 1)}, RequestTooLargeError),
    ],
)
def test_handle_rejects_malformed_requests(
    svc: SklearnDigitsBackend, request_: object, error: type[TaskError]
) -> None:
    with pytest.raises(error) as raised:
        asyncio.run(classification.handle(svc, request_))  # type: ignore[arg-type]
    assert 3451 <= raised.value.code <= 3454


class OutOfRangeBackend:
    """A broken deployment that answers class 10."""

    model = "broken"

    async def predict(self, features: list[list[int]]) -> list[int]:
        return [10 for _ in features]


def test_handle_reports_a_backend_that_answers_nonsense() -> None:
    with pytest.raises(BackendError):
        asyncio.run(classification.handle(OutOfRangeBackend(), {"features": [IMAGE]}))


def test_shifting_moves_pixels_and_blanks_the_edge() -> None:
    image = list(range(64))
    right = classification.compute_shifted(image, 1, 0)
    assert right[0:8] == [0, 0, 1, 2, 3, 4, 5, 6]
    down = classification.compute_shifted(image, 0, 1)
    assert down[:8] == [0] * 8 and down[8:16] == list(range(8))
    assert classification.compute_shifted(image, 0, 0) == image

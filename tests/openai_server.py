"""A small OpenAI-compatible inference server with real models, for tests on loopback.

It stands in for a GPU owner's engine (vLLM, llama.cpp's server, Ollama): real models behind
the real wire format, so the forwarding backends in ``agora.tasks.forward`` are tested against
HTTP, not mocks. Routes:

- ``GET /v1/models``;
- ``POST /v1/embeddings``: a SentenceTransformer (all-MiniLM-L6-v2), vectors normalized;
- ``POST /v1/chat/completions``: a ``SmolLM2Backend``; ``"stream": true`` answers server-sent
  ``chat.completion.chunk`` events ending with ``data: [DONE]``.

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``. Tests run
without an asyncio plugin, so ``ServerThread`` runs an app on its own event loop in a thread;
each test then calls it with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from typing import Any

from aiohttp import web

from agora.tasks.generation import ChatResult
from agora.tasks.generation_model import SmolLM2Backend


class RequestError(Exception):
    """An OpenAI-style client error: answered with ``status`` and the error object."""

    def __init__(
        self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.code = message, status, param, code


class OpenAIServer:
    """The app, with either model optional (an endpoint without one answers 404)."""

    def __init__(
        self,
        *,
        chat_backend: SmolLM2Backend | None = None,
        chat_model: str = "SmolLM2-135M-Instruct",
        embedder: Any = None,
        embedding_model: str = "all-MiniLM-L6-v2",
        api_key: str | None = None,
    ) -> None:
        self.api_key = api_key  # when set, requests need "Authorization: Bearer <api_key>"
        self.chat_backend = chat_backend
        self.chat_model = chat_model
        self.embedder = embedder
        self.embedding_model = embedding_model
        self.app = web.Application(middlewares=[self._errors])
        self.app.router.add_get("/v1/models", self.list_models)
        self.app.router.add_post("/v1/embeddings", self.create_embeddings)
        self.app.router.add_post("/v1/chat/completions", self.create_chat_completion)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise RequestError("Incorrect API key provided", status=401, code="invalid_api_key")
            response: web.StreamResponse = await handler(request)
        except RequestError as error:
            body = {
                "error": {
                    "message": error.message,
                    "type": "invalid_request_error",
                    "param": error.param,
                    "code": error.code,
                }
            }
            return web.json_response(body, status=error.status)
        return response

    def _served_models(self) -> list[str]:
        return [
            name
            for name, served in (
                (self.chat_model, self.chat_backend),
                (self.embedding_model, self.embedder),
            )
            if served
        ]

    async def list_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "agora-tests"}
            for name in self._served_models()
        ]
        return web.json_response({"object": "list", "data": data})

    # --- embeddings ---

    async def create_embeddings(self, request: web.Request) -> web.Response:
        body = await _read_json(request)
        _check_model(body, self.embedding_model, self.embedder is not None)
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise RequestError(
                "input must be a string or a non-empty list of strings", param="input"
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise RequestError(
                "encoding_format must be 'float' or 'base64'", param="encoding_format"
            )
        vectors, tokens = await asyncio.to_thread(self._embed, texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, encoding)}
            for i, v in enumerate(vectors)
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": self.embedding_model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _embed(self, texts: list[str]) -> tuple[Any, int]:
        vectors = self.embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        tokens = sum(len(ids) for ids in self.embedder.tokenizer(texts)["input_ids"])
        return vectors, tokens

    # --- chat ---

    async def create_chat_completion(self, request: web.Request) -> web.StreamResponse:
        body = await _read_json(request)
        _check_model(body, self.chat_model, self.chat_backend is not None)
        options = _parse_chat_options(body)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.get("stream"):
            stream_options = body.get("stream_options") or {}
            include_usage = isinstance(stream_options, dict) and bool(
                stream_options.get("include_usage")
            )
            return await self._stream(request, completion_id, options, include_usage)
        result = await self.chat_backend.chat(**options)  # type: ignore[union-attr]
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.chat_model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "logprobs": None,
                        "finish_reason": result.finish_reason,
                    }
                ],
                "usage": _usage(result),
            }
        )

    async def _stream(
        self,
        request: web.Request,
        completion_id: str,
        options: dict[str, Any],
        include_usage: bool,
    ) -> web.StreamResponse:
        """Chunks: the role, content deltas, the finish reason, the usage if asked for (with
        no choices, as OpenAI sends it), then ``data: [DONE]``."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        created = int(time.time())

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.chat_model,
                "choices": choices,
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        await send([choice({"role": "assistant", "content": ""})])
        assert self.chat_backend is not None
        async for event in self.chat_backend.generate(**options):
            if isinstance(event, ChatResult):
                await send([choice({}, event.finish_reason)])
                if include_usage:
                    await send([], usage=_usage(event))
            else:
                await send([choice({"content": event})])
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _encode_vector(vector: Any, encoding: str) -> list[float] | str:
    """OpenAI's two encodings: JSON numbers, or base64 of little-endian float32."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _usage(result: ChatResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as error:
        raise RequestError("the body is not JSON") from error
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


def _check_model(body: dict[str, Any], served: str, available: bool) -> None:
    if not available or body.get("model") != served:
        raise RequestError(
            f"the model {body.get('model')!r} does not exist",
            status=404,
            param="model",
            code="model_not_found",
        )


def _parse_chat_options(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        raise RequestError("messages must be a non-empty list of {role, content}", param="messages")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 256))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestError("max_tokens must be a positive integer", param="max_tokens")
    temperature = body.get("temperature", 1.0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise RequestError("temperature must be a number from 0 to 2", param="temperature")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise RequestError("stop must be a string or a list of strings", param="stop")
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise RequestError("seed must be an integer", param="seed")
    return {
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "max_tokens": max_tokens,
        "temperature": float(temperature),
        "stop": stop or None,
        "seed": seed,
    }


class ServerThread:
    """An aiohttp app on 127.0.0.1 (a free port), in its own thread and event loop."""

    def __init__(self, app: web.Application) -> None:
        self.url = ""
        self._loop = asyncio.new_event_loop()
        # A client that hangs up (a timeout) cancels its handler, and so stops the model.
        self._runner = web.AppRunner(app, handler_cancellation=True)
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="openai-server"
        )

    def start(self) -> str:
        """Start serving; returns the base URL, ``http://127.0.0.1:<port>``."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self.url

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

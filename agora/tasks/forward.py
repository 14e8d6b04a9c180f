"""Backends that forward a task to an inference engine through its OpenAI-compatible HTTP API.

A GPU owner already runs vLLM, llama.cpp's server or Ollama; with these backends a miner sells
what that engine serves instead of loading a model itself. ``OpenAIChatBackend`` is a
``generation.ChatBackend`` (``POST /v1/chat/completions``, streamed as server-sent events for
``stream_chat``); ``OpenAIEmbeddingBackend`` serves the embedding task (``POST /v1/embeddings``).

``base_url`` is the engine's root, with or without a trailing ``/v1``. Each backend keeps one
``aiohttp`` session, opened on first use in the running event loop; ``close()`` ends it.
Every failure reaches the caller as a ``ForwardError`` (codes 3470-3479) naming the engine's
URL and, where the engine said one, its own message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from agora.tasks.base import TaskError
from agora.tasks.generation import FINISH_REASONS, ChatResult

DEFAULT_CHAT_TIMEOUT_S = 120.0
DEFAULT_EMBEDDING_TIMEOUT_S = 30.0
MAX_ERROR_CHARS = 300  # of an engine's error message, quoted in ours


class ForwardError(TaskError):
    """Base of the errors of forwarding a task to an inference engine."""

    code = 3470
    http_status = 502


class EngineUnreachable(ForwardError):
    """No connection to the engine: wrong URL, engine not running, or a network failure."""

    code = 3471


class EngineTimeout(ForwardError):
    """The engine did not answer (or, streaming, send the next chunk) within ``timeout_s``."""

    code = 3472
    http_status = 504


class EngineRejected(ForwardError):
    """The engine answered 4xx: it does not serve this model, or refused the request's
    parameters. The engine's own message says which."""

    code = 3473


class EngineFailed(ForwardError):
    """The engine answered 5xx: it failed while serving (out of memory, crashed worker)."""

    code = 3474


class EngineBadResponse(ForwardError):
    """The engine answered 2xx with something that is not the OpenAI schema (not JSON, a
    field missing or of the wrong type, the wrong number of embeddings)."""

    code = 3475


class EngineUnsupportedFinish(ForwardError):
    """The engine ended the answer for a reason a task cannot score (``content_filter``,
    ``tool_calls``): only "stop" and "length" are."""

    code = 3476


class InvalidEngineUrl(ForwardError):
    """``base_url`` is not an ``http://`` or ``https://`` URL."""

    code = 3477
    http_status = 400


def normalize_base_url(base_url: str) -> str:
    """``http://host:port`` from ``http://host:port/``, ``.../v1`` or ``.../v1/``."""
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidEngineUrl(f"engine URL {base_url!r} must start with http:// or https://")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


class _EngineClient:
    """One session to one engine: POST JSON, map every failure to a ``ForwardError``."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float) -> None:
        self.base_url = normalize_base_url(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        url = self.base_url + path
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        try:
            async with self._get_session().post(url, json=body, timeout=timeout) as response:
                await _raise_for_status(response, url)
                text = await response.text()
        except TimeoutError as error:
            raise EngineTimeout(f"{url} did not answer within {self._timeout_s:g} s") from error
        except aiohttp.ClientError as error:
            raise EngineUnreachable(f"cannot reach {url}: {error}") from error
        try:
            return json.loads(text)
        except ValueError as error:
            raise EngineBadResponse(f"{url} answered something that is not JSON") from error

    async def post_stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[Any]:
        """The JSON payloads of a server-sent event stream, up to ``data: [DONE]``."""
        url = self.base_url + path
        # Between chunks, not in total: a long answer may stream for longer than timeout_s.
        timeout = aiohttp.ClientTimeout(sock_connect=self._timeout_s, sock_read=self._timeout_s)
        try:
            async with self._get_session().post(url, json=body, timeout=timeout) as response:
                await _raise_for_status(response, url)
                async for payload in _read_events(response, url):
                    yield payload
        except TimeoutError as error:
            raise EngineTimeout(
                f"{url} sent nothing for {self._timeout_s:g} s while streaming"
            ) from error
        except aiohttp.ClientError as error:
            raise EngineUnreachable(f"lost the stream from {url}: {error}") from error


async def _raise_for_status(response: aiohttp.ClientResponse, url: str) -> None:
    if response.status < 400:
        return
    message = _extract_error_message(await response.text())
    if response.status < 500:
        raise EngineRejected(f"{url} refused the request ({response.status}): {message}")
    raise EngineFailed(f"{url} failed ({response.status}): {message}")


def _extract_error_message(body: str) -> str:
    """The engine's own words: OpenAI's ``{"error": {"message"}}``, FastAPI's ``detail``,
    Ollama's ``{"error": "..."}``, else the raw body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:MAX_ERROR_CHARS] or "no message"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail"))
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message[:MAX_ERROR_CHARS]
        if isinstance(error, str):
            return error[:MAX_ERROR_CHARS]
    return body.strip()[:MAX_ERROR_CHARS]


async def _read_events(response: aiohttp.ClientResponse, url: str) -> AsyncIterator[Any]:
    async for raw_line in response.content:
        line = raw_line.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments (":"), "event:" and "id:" lines
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except ValueError as error:
            raise EngineBadResponse(f"{url} streamed an event that is not JSON") from error
        if isinstance(payload, dict) and "error" in payload:
            raise EngineFailed(f"{url} failed while streaming: {_extract_error_message(data)}")
        yield payload
    raise EngineBadResponse(f"{url} ended the stream without 'data: [DONE]'")


class OpenAIChatBackend:
    """A ``ChatBackend`` served by an engine's ``/v1/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_CHAT_TIMEOUT_S,
    ) -> None:
        self.model = model
        self._engine = _EngineClient(base_url, api_key, timeout_s)

    async def close(self) -> None:
        await self._engine.close()

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> ChatResult:
        body = self._make_body(messages, max_tokens, temperature, stop, stream=False)
        data = await self._engine.post_json("/v1/chat/completions", body)
        return self._parse_completion(data)

    async def stream_chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> AsyncIterator[str]:
        body = self._make_body(messages, max_tokens, temperature, stop, stream=True)
        async for chunk in self._engine.post_stream("/v1/chat/completions", body):
            choice = self._first_choice(chunk)
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if content:
                yield str(content)
            self._check_finish(choice.get("finish_reason"), allow_none=True)

    def _make_body(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        *,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        if stop:
            body["stop"] = stop
        return body

    def _parse_completion(self, data: Any) -> ChatResult:
        choice = self._first_choice(data)
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        usage = data.get("usage") or {}
        if not isinstance(content, str | None) or not isinstance(usage, dict):
            raise self._bad("a chat completion without message.content")
        return ChatResult(
            text=content or "",
            finish_reason=self._check_finish(choice.get("finish_reason"), allow_none=False),
            prompt_tokens=_as_count(usage.get("prompt_tokens")),
            completion_tokens=_as_count(usage.get("completion_tokens")),
        )

    def _first_choice(self, data: Any) -> dict[str, Any]:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._bad("a chat completion without choices")
        return choices[0]

    def _check_finish(self, finish_reason: Any, *, allow_none: bool) -> str:
        if finish_reason is None and allow_none:
            return ""
        if finish_reason not in FINISH_REASONS:
            raise EngineUnsupportedFinish(
                f"{self._engine.base_url} ended the answer with finish_reason "
                f"{finish_reason!r}; a task scores only {' or '.join(FINISH_REASONS)}"
            )
        return str(finish_reason)

    def _bad(self, what: str) -> EngineBadResponse:
        return EngineBadResponse(f"{self._engine.base_url} answered {what} (model {self.model})")


class OpenAIEmbeddingBackend:
    """Text embeddings served by an engine's ``/v1/embeddings``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_EMBEDDING_TIMEOUT_S,
    ) -> None:
        self.model = model
        self._engine = _EngineClient(base_url, api_key, timeout_s)

    async def close(self) -> None:
        await self._engine.close()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in the order given (engines may answer out of order)."""
        if not texts:
            return []
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        data = await self._engine.post_json("/v1/embeddings", body)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(texts):
            raise self._bad(f"a number of embeddings other than the {len(texts)} asked for")
        vectors: list[list[float] | None] = [None] * len(texts)
        for position, item in enumerate(items):
            index = item.get("index", position) if isinstance(item, dict) else None
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(texts) or not _is_vector(vector):
                raise self._bad("an embedding that is not a list of numbers with an index")
            vectors[index] = [float(x) for x in vector or []]
        if any(v is None for v in vectors) or len({len(v) for v in vectors if v}) != 1:
            raise self._bad("embeddings with repeated indices or of different lengths")
        return [v for v in vectors if v is not None]

    def _bad(self, what: str) -> EngineBadResponse:
        return EngineBadResponse(f"{self._engine.base_url} answered {what} (model {self.model})")


def _is_vector(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
    )


def _as_count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

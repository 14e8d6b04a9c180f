"""The gateway's parts that need no network: the OpenAI wire format, routing, the answers'
comparisons, the receipts store and the command's own errors. (``test_gateway.py`` runs the
whole thing against real miners.)"""

from __future__ import annotations

import base64
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
import typer
from typer.testing import CliRunner

from agora.cli.gateway import register
from agora.gateway import openai_wire as wire
from agora.gateway.catalog import Market, Offer
from agora.gateway.errors import BadRequest, SpendLimitReached, UnknownModel
from agora.gateway.routing import MAX_REST_S, Router
from agora.gateway.service import Call, Outcome, SpendMeter, compute_level_prices
from agora.gateway.store import ChannelRecord, GatewayStore, Receipt
from agora.gateway.verification import (
    CHECKS,
    find_majority,
    normalize_text,
    vectors_agree,
)
from agora.payments.prices import Price

PRICE = Price.parse("0.001/request")


# --- the OpenAI wire format --------------------------------------------------------------------


def test_embedding_requests_are_read_or_refused_naming_the_field() -> None:
    one = wire.parse_embedding_request({"model": "m", "input": "hello"})
    assert one.request == {"model": "all-MiniLM-L6-v2", "texts": ["hello"]}
    assert one.encoding_format == "float"
    many = wire.parse_embedding_request(
        {"model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 384}
    )
    assert many.request["texts"] == ["a", "b"] and many.encoding_format == "base64"
    for body, param in [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [1, 2]}, "input"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 64}, "dimensions"),
        ({"model": "m", "input": "x", "truncate": True}, "truncate"),
    ]:
        with pytest.raises(BadRequest) as refused:
            wire.parse_embedding_request(body)
        assert refused.value.param == param, body


def test_chat_requests_are_read_or_refused_naming_the_field() -> None:
    parsed = wire.parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
                },
            ],
            "stop": "\n",
            "stream": True,
            "stream_options": {"include_usage": True},
            "n": 1,
            "top_p": 1,
            "user": "someone",
        }
    )
    assert parsed.request == {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": wire.DEFAULT_MAX_TOKENS,
        "temperature": 0,
        "stop": ["\n"],
    }
    assert parsed.stream and parsed.include_usage
    limited = wire.parse_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7}
    )
    assert limited.request["max_tokens"] == 7 and not limited.stream
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    for extra, param in [
        ({"n": 2}, "n"),
        ({"tools": []}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"stream": "yes"}, "stream"),
    ]:
        with pytest.raises(BadRequest) as refused:
            wire.parse_chat_request({**base, **extra})
        assert refused.value.param == param, extra


def test_headers_choose_the_verification_and_the_miners() -> None:
    assert wire.read_verification({}, {}, "none") == "none"
    assert wire.read_verification({"Agora-Verification": "spot"}, {}, "none") == "spot"
    assert wire.read_verification({}, {"agora_verification": "redundant"}, "none") == "redundant"
    with pytest.raises(BadRequest):
        wire.read_verification({"Agora-Verification": "paranoid"}, {}, "none")
    assert wire.read_prefer({"Agora-Miner": "3, 1"}) == (3, 1)
    with pytest.raises(BadRequest):
        wire.read_prefer({"Agora-Miner": "three"})


def make_outcome(answer: dict, cost: int = 2_000_000) -> Outcome:
    call = Call(uid=1, miner="agr1x", role="primary", cost=cost, latency_ms=12, status="ok")
    return Outcome(
        request_id="req_abc",
        model="m",
        task="generation",
        verification="none",
        answer=answer,
        calls=(call,),
        cost=cost,
        latency_ms=15,
    )


def test_a_stream_is_openais_chunks_ending_with_done() -> None:
    answer = {
        "text": "The capital of France is Paris.",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }
    events = list(wire.encode_chat_stream(make_outcome(answer), 1_700_000_000, True, {}))
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(event.removeprefix(b"data: ")) for event in events[:-1]]
    assert {chunk["id"] for chunk in chunks} == {"chatcmpl-abc"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == answer["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 16
    assert chunks[-1]["usage"]["agora"]["cost_agr"] == "0.002"
    plain = list(wire.encode_chat_stream(make_outcome(answer), 0, False, {}))
    assert all(b'"usage"' not in event for event in plain)


def test_embeddings_encode_as_float_or_base64_and_errors_as_openai_does() -> None:
    vectors = [[0.5, -0.25, 1.0], [0.0, 2.0, -1.5]]
    outcome = make_outcome({"embeddings": vectors})
    as_float = wire.encode_embedding_response(outcome, "float", 5, {})
    assert [item["embedding"] for item in as_float["data"]] == vectors
    assert as_float["usage"]["prompt_tokens"] == 5
    as_base64 = wire.encode_embedding_response(outcome, "base64", 5, {})
    for item, expected in zip(as_base64["data"], vectors, strict=True):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert decoded.tolist() == expected
    assert wire.count_embedding_tokens(["hello world"]) == 4  # [CLS] hello world [SEP]

    status, body = wire.encode_error(UnknownModel("no such model", param="model"))
    assert status == 404
    assert body["error"] == {
        "message": "no such model",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
        "agora_code": 3602,
    }
    status, body = wire.encode_error(SpendLimitReached("too much"))
    assert (status, body["error"]["type"], body["error"]["code"]) == (
        402,
        "insufficient_quota",
        "daily_limit_exceeded",
    )


# --- routing ------------------------------------------------------------------------------------


def offer(uid: int, incentive: int) -> Offer:
    return Offer(
        uid=uid,
        hotkey=bytes([uid]) * 32,
        address=f"agr1{uid}",
        url="http://127.0.0.1:1",
        price=PRICE,
        incentive=incentive,
        stake=0,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_routing_follows_incentive_latency_and_load() -> None:
    clock = Clock()
    router = Router(random.Random(1), clock)
    offers = [offer(0, 0), offer(1, 30_000), offer(2, 30_000)]
    picks = [router.choose(offers) for _ in range(400)]
    assert {pick.uid for pick in picks if pick} == {1, 2}  # no incentive, no traffic
    # A fast miner gets most of the traffic; a slow one some.
    router.begin(offers[1])
    router.succeed(offers[1], 10.0)
    router.begin(offers[2])
    router.succeed(offers[2], 200.0)
    counts = [0, 0, 0]
    for _ in range(1_000):
        counts[router.choose(offers).uid] += 1  # type: ignore[union-attr]
    assert counts[1] > 5 * counts[2] > 0
    # Requests under way at the fast miner spread the next ones.
    for _ in range(6):
        router.begin(offers[1])
    assert sum(router.choose(offers).uid == 2 for _ in range(200)) > 100  # type: ignore[union-attr]


def test_a_failing_miner_rests_and_preferences_come_first() -> None:
    clock = Clock()
    router = Router(random.Random(2), clock)
    offers = [offer(1, 100), offer(2, 100)]
    router.begin(offers[0])
    router.fail(offers[0])
    assert {router.choose(offers).uid for _ in range(50)} == {2}  # type: ignore[union-attr]
    clock.now += MAX_REST_S
    assert 1 in {router.choose(offers).uid for _ in range(50)}  # type: ignore[union-attr]
    assert router.choose(offers, prefer=(1,)).uid == 1  # type: ignore[union-attr]
    assert router.choose(offers, exclude={offers[1].hotkey}).uid == 1  # type: ignore[union-attr]
    assert router.choose(offers, exclude={o.hotkey for o in offers}) is None
    # Resting everyone still answers: a tired miner beats none.
    router.penalize(offers[1])
    router.penalize(offers[0])
    assert router.choose(offers) is not None
    # The developer's own error does not rest a miner.
    fresh = Router(random.Random(3), clock)
    fresh.begin(offers[0])
    fresh.fail(offers[0], blame=False)
    assert fresh.snapshot(offers[0])["resting"] is False


# --- comparing answers ---------------------------------------------------------------------------


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=384)
    return (vector / np.linalg.norm(vector)).tolist()


def test_embeddings_agree_within_the_tasks_tolerance() -> None:
    a, b = unit(1), unit(2)
    nudged = (np.asarray(a) + 0.001 * np.asarray(b)).tolist()
    assert vectors_agree([a], [nudged])
    assert not vectors_agree([a], [b])
    assert not vectors_agree([a], [a, a])
    assert not vectors_agree([a], [[float("nan")] * 384])
    check = CHECKS["embedding"]
    request = {"texts": [f"t{i}" for i in range(17)]}
    sample = check.sample(request, random.Random(5))
    assert len(sample.request["texts"]) == 3  # one in eight, rounded up
    answer = {"embeddings": [unit(i) for i in range(17)]}
    by_text = {text: answer["embeddings"][i] for i, text in enumerate(request["texts"])}
    checker = {"embeddings": [by_text[text] for text in sample.request["texts"]]}
    assert check.agrees_with_sample(sample.project(answer), sample.read(checker))
    assert check.validate_answer(request, answer)
    assert not check.validate_answer(request, {"embeddings": answer["embeddings"][:-1]})


def test_chat_answers_agree_when_greedy_texts_match() -> None:
    check = CHECKS["generation"]
    request = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 40, "temperature": 0}
    sample = check.sample(request, random.Random(0))
    assert sample.request["max_tokens"] == 8
    full = {"text": "The capital of  France is Paris.", "finish_reason": "stop"}
    assert check.agrees_with_sample(
        sample.project(full),
        sample.read({"text": "The capital of France", "finish_reason": "length"}),
    )
    assert not check.agrees_with_sample(
        sample.project(full), sample.read({"text": "The capital of", "finish_reason": "stop"})
    )
    assert check.agrees(full, {"text": "The capital of France is Paris.", "finish_reason": "stop"})
    assert normalize_text(" a \n b ") == "a b"
    with pytest.raises(BadRequest):
        check.validate_request({**request, "temperature": 0.5}, "spot")
    check.validate_request({**request, "temperature": 0.5}, "none")


def test_the_majority_needs_more_than_half() -> None:
    same = lambda a, b: a == b  # noqa: E731
    assert find_majority(["x", "x", "y"], same) == [0, 1]
    assert find_majority(["x", "y", "z"], same) is None
    assert find_majority(["x", "y"], same) is None
    assert find_majority(["y", "x", "x"], same) == [1, 2]


# --- receipts, channels, the daily limit ----------------------------------------------------------


def receipt(request_id: str, day: str, cost: int, created_at: float) -> Receipt:
    return Receipt(
        request_id=request_id,
        created_at=created_at,
        day=day,
        model="m",
        task="embedding",
        verification="none",
        status="ok",
        cost=cost,
        latency_ms=3,
        calls=({"uid": 1, "miner": "agr1x", "role": "primary", "cost": cost},),
    )


def test_receipts_and_channels_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = GatewayStore(path)
    channel = ChannelRecord(
        channel_id=b"\x01" * 32,
        payer="agr1payer",
        payee="agr1miner",
        netuid=1,
        deposit=5,
        expiry=100,
        committed=2,
        closed=False,
        refund=0,
    )
    store.add_receipt(receipt("a", "2026-11-20", 2, 1.0), [channel])
    store.add_receipt(receipt("b", "2026-11-21", 3, 2.0))
    store.add_receipt(receipt("c", "2026-11-21", 4, 3.0))
    store.close()
    store = GatewayStore(path)
    assert [r.request_id for r in store.list_receipts()] == ["c", "b", "a"]
    assert [r.request_id for r in store.list_receipts(day="2026-11-21", limit=1)] == ["c"]
    assert store.list_receipts(request_id="a")[0].calls[0]["cost"] == 2
    assert (store.get_spent("2026-11-21"), store.get_spent("2026-11-20")) == (7, 2)
    assert store.list_channels("agr1payer", open_only=True) == [channel]
    store.save_channel(replace(channel, closed=True, refund=3))
    assert store.list_channels("agr1payer", open_only=True) == []

    clock = Clock()
    clock.now = 1_795_219_200.0  # 2026-11-21 00:00 UTC
    meter = SpendMeter(10, store, clock)
    meter.reserve(3)  # 7 spent + 3 under way
    with pytest.raises(SpendLimitReached):
        meter.check(1)
    meter.release(3, paid=False)
    meter.check(3)
    clock.now += 86_400  # a new UTC day starts from nothing
    meter.check(10)
    store.close()


def test_the_command_says_what_is_missing(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    no_wallet = runner.invoke(app, ["gateway", "--data-dir", str(tmp_path)])
    assert no_wallet.exit_code == 1 and "error[2]: give --wallet" in no_wallet.stderr
    bad_level = runner.invoke(app, ["gateway", "--wallet", "w", "--verification", "maybe"])
    assert bad_level.exit_code == 1 and "--verification" in bad_level.stderr
    nothing = runner.invoke(app, ["gateway", "receipts", "--data-dir", str(tmp_path / "none")])
    assert nothing.exit_code == 1 and "no gateway data" in nothing.stderr
    store = GatewayStore(tmp_path / "gateway.db")
    store.add_receipt(receipt("r1", "2026-11-21", 5, 1.0))
    store.close()
    listed = runner.invoke(app, ["gateway", "channels", "--data-dir", str(tmp_path), "--json"])
    assert listed.exit_code == 0 and orjson.loads(listed.stdout) == {"channels": []}


def test_level_prices_follow_the_median_miner() -> None:
    cheap = replace(offer(3, 1), price=Price.parse("0.0005/request"))
    by_item = replace(offer(4, 1), price=Price.parse("0.1/item"))
    market = Market(
        netuid=1, task="embedding", model="m", offers=(offer(1, 1), cheap, by_item), block=0
    )
    assert compute_level_prices(market, 3) == {
        "per": "request",
        "none": 750_000,
        "spot": 1_500_000,
        "redundant": 2_250_000,
    }

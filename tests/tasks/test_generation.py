"""The generation task with the real SmolLM2-135M-Instruct: challenges, the miner's handler,
and the validator's proof-of-logits score against honest answers and every cheat we know.

The model loads once for the module (from the cache of de-quantized weights; the first run
ever converts the GGUF file, about 20 s). Answers are kept short (``MAX_TOKENS``) so the
module stays quick on two cores.
"""

from __future__ import annotations

import asyncio
import copy
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agora.tasks import generation
from agora.tasks.base import SCORE_ONE, Challenge
from agora.tasks.generation import (
    FAILURE_COST,
    LENGTH_SLACK_TOKENS,
    MISMATCH_COST,
    TOLERANCE_MILLI,
    ChatResult,
    compute_quality,
    compute_reference,
    compute_sample_positions,
    compute_score,
    handle,
    make_challenge,
)
from agora.tasks.generation_model import SmolLM2Backend, get_converted_model_dir

MAX_TOKENS = 20
CONFIG = {"max_tokens": MAX_TOKENS}
ROUND_SEED = b"round-42"
HOTKEYS = [bytes([n]) * 32 for n in (1, 2, 3)]
SAMPLE_SEEDS = [b"sample-a", b"sample-b", b"sample-c"]
NEAR_ZERO = SCORE_ONE // 20  # what a cheat may keep, at most, on average
HONEST_FLOOR = SCORE_ONE * 85 // 100


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def backend() -> Any:
    loaded = run(SmolLM2Backend.load())
    yield loaded
    run(loaded.close())


@pytest.fixture(scope="module")
def challenges() -> list[Challenge]:
    return [make_challenge(ROUND_SEED, hotkey, CONFIG) for hotkey in HOTKEYS]


@pytest.fixture(scope="module")
def honest(backend: SmolLM2Backend, challenges: list[Challenge]) -> list[dict]:
    return [run(handle(backend, challenge.request)) for challenge in challenges]


def score_each(
    backend: SmolLM2Backend, challenge: Challenge, response: Any, latency_ms: int = 0
) -> list[int]:
    """The score under each of ``SAMPLE_SEEDS``."""

    async def scores() -> list[int]:
        result = []
        for sample_seed in SAMPLE_SEEDS:
            reference = await compute_reference(backend, challenge, response, sample_seed)
            result.append(compute_score(challenge, response, reference, latency_ms))
        return result

    return run(scores())


def mean(values: list[int]) -> int:
    return sum(values) // len(values)


def as_response(result: ChatResult) -> dict:
    return {"text": result.text, "finish_reason": result.finish_reason, "usage": {}}


# --- challenges ---------------------------------------------------------------------------


def test_challenge_is_a_pure_function_of_seed_and_hotkey() -> None:
    first = make_challenge(b"seed", b"\x07" * 32)
    assert first == make_challenge(b"seed", b"\x07" * 32)
    assert first.request["messages"][1]["role"] == "user"
    assert first.request["temperature"] == 0
    assert first.request["max_tokens"] == generation.DEFAULT_CONFIG["max_tokens"]
    assert first.request["messages"][0]["role"] == "system"
    assert first.task == generation.TASK


def test_challenge_prompt_is_pinned() -> None:
    """A golden vector: validators on any platform or Python version ask the same thing."""
    challenge = make_challenge(b"golden", b"\x00" * 32, {"max_tokens": 24})
    assert challenge.request["messages"][1]["content"] == GOLDEN_PROMPT
    assert challenge.request["max_tokens"] == 24
    assert challenge.fast_ms == 1_000 + 100 * 24
    assert challenge.timeout_ms == 5_000 + 500 * 24


GOLDEN_PROMPT = "What would happen if tractors could dance?"


def test_miners_get_different_prompts() -> None:
    prompts = {
        make_challenge(ROUND_SEED, bytes([n]) * 32).request["messages"][1]["content"]
        for n in range(40)
    }
    assert len(prompts) >= 35
    seeds = {
        make_challenge(bytes([n]), HOTKEYS[0]).request["messages"][1]["content"] for n in range(40)
    }
    assert len(seeds) >= 35


# --- the miner's handler ---------------------------------------------------------------------


def test_honest_answer_is_greedy_and_well_formed(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    for challenge, response in zip(challenges, honest, strict=True):
        assert set(response) == {"text", "finish_reason", "usage"}
        assert response["text"].strip()
        assert response["finish_reason"] in ("stop", "length")
        usage = response["usage"]
        assert 0 < usage["completion_tokens"] <= MAX_TOKENS
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens"] == len(backend.encode_prompt(challenge.request["messages"]))
        if response["finish_reason"] == "length":
            assert usage["completion_tokens"] == MAX_TOKENS
    # Greedy decoding is deterministic: the same request, the same answer.
    assert run(handle(backend, challenges[0].request)) == honest[0]


def test_known_answer(backend: SmolLM2Backend) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    result = run(backend.chat(messages, max_tokens=16, temperature=0))
    assert "Paris" in result.text
    assert result.finish_reason == "stop"


VALID = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}


@pytest.mark.parametrize(
    ("request_body", "error"),
    [
        ("not a dict", generation.InvalidRequest),
        ({**VALID, "extra": 1}, generation.UnknownField),
        ({**VALID, "messages": []}, generation.InvalidMessages),
        ({**VALID, "messages": "Hi"}, generation.InvalidMessages),
        ({**VALID, "messages": [{"role": "wizard", "content": "Hi"}]}, generation.InvalidMessages),
        ({**VALID, "messages": [{"role": "user", "content": 7}]}, generation.InvalidMessages),
        ({**VALID, "messages": [{"role": "user"}]}, generation.InvalidMessages),
        (
            {**VALID, "messages": [{"role": "user", "content": "x" * 16_001}]},
            generation.InvalidMessages,
        ),
        ({k: v for k, v in VALID.items() if k != "max_tokens"}, generation.InvalidMaxTokens),
        ({**VALID, "max_tokens": 0}, generation.InvalidMaxTokens),
        ({**VALID, "max_tokens": 1_025}, generation.InvalidMaxTokens),
        ({**VALID, "max_tokens": 4.0}, generation.InvalidMaxTokens),
        ({**VALID, "max_tokens": True}, generation.InvalidMaxTokens),
        ({**VALID, "temperature": -0.1}, generation.InvalidTemperature),
        ({**VALID, "temperature": "0"}, generation.InvalidTemperature),
        ({**VALID, "temperature": 2.5}, generation.InvalidTemperature),
        ({**VALID, "stop": "."}, generation.InvalidStop),
        ({**VALID, "stop": [""]}, generation.InvalidStop),
        ({**VALID, "stop": ["a", "b", "c", "d", "e"]}, generation.InvalidStop),
    ],
)
def test_handle_rejects_malformed_requests(
    backend: SmolLM2Backend, request_body: Any, error: type[generation.GenerationError]
) -> None:
    with pytest.raises(error) as raised:
        run(handle(backend, request_body))
    assert 3460 <= raised.value.code <= 3469
    assert raised.value.code == error.code
    assert raised.value.message


def test_error_codes_are_unique_and_in_range() -> None:
    classes = [
        value
        for value in vars(generation).values()
        if isinstance(value, type) and issubclass(value, generation.GenerationError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)) == 10
    assert all(3460 <= code <= 3469 for code in codes)
    assert all(cls.__doc__ for cls in classes)


def test_stream_equals_chat_and_stop_sequences_cut(backend: SmolLM2Backend) -> None:
    messages = [{"role": "user", "content": "Write two sentences about the sea."}]

    async def scenario() -> tuple[ChatResult, list[str], ChatResult]:
        whole = await backend.chat(messages, max_tokens=MAX_TOKENS, temperature=0)
        deltas = [
            d async for d in backend.stream_chat(messages, max_tokens=MAX_TOKENS, temperature=0)
        ]
        cut = await backend.chat(messages, max_tokens=MAX_TOKENS, temperature=0, stop=[" "])
        return whole, deltas, cut

    whole, deltas, cut = run(scenario())
    assert "".join(deltas) == whole.text
    assert len(deltas) > 3
    assert cut.text and " " not in cut.text and whole.text.startswith(cut.text)  # a word
    assert cut.finish_reason == "stop"


def test_event_loop_stays_free_and_abandoned_streams_stop(backend: SmolLM2Backend) -> None:
    messages = [{"role": "user", "content": "Tell me a long story about a dragon."}]

    async def scenario() -> tuple[int, str, ChatResult]:
        ticks = 0
        done = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        first = ""
        async for delta in backend.stream_chat(messages, max_tokens=500, temperature=0):
            first = delta
            break  # abandoned: the worker must stop within a token, not after 500
        after = await backend.chat(messages, max_tokens=4, temperature=0)
        done.set()
        await ticker
        return ticks, first, after

    ticks, first, after = run(scenario())
    assert ticks > 1  # the loop ran while the model worked in its thread
    assert first
    assert after.completion_tokens == 4 and after.finish_reason == "length"


# --- the validator: honest answers -------------------------------------------------------------


def test_honest_answers_score_full(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    for challenge, response in zip(challenges, honest, strict=True):
        scores = score_each(backend, challenge, response)
        assert min(scores) >= HONEST_FLOOR, (response, scores)


def test_another_engine_bfloat16_scores_high(
    backend: SmolLM2Backend, challenges: list[Challenge]
) -> None:
    """The same weights in bfloat16 (what a GPU engine runs) break a few near-ties the other
    way; the tolerance keeps its answers high."""
    import torch

    engine = SmolLM2Backend(copy.deepcopy(backend.network).to(torch.bfloat16), backend.tokenizer)
    try:
        for challenge in challenges:
            response = run(handle(engine, challenge.request))
            assert min(score_each(backend, challenge, response)) >= SCORE_ONE * 3 // 4
    finally:
        run(engine.close())


def test_one_near_tie_taken_the_other_way_still_passes(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    """An answer that takes the reference's second choice at its closest near-tie, then goes
    on greedily (what another engine's rounding does), checked at every position: one
    mismatch costs ``MISMATCH_COST`` checks' worth, the rest of the answer still matches."""
    challenge = replace(challenges[0], secret={"sample_positions": 1_000})
    prompt_ids = backend.encode_prompt(challenge.request["messages"])
    answer_ids = backend.encode_text(honest[0]["text"])
    position, second = run(find_closest_near_tie(backend, prompt_ids, answer_ids))
    forked = answer_ids[:position] + [second]
    forked, finish_reason = run(continue_greedily(backend, prompt_ids, forked, MAX_TOKENS))
    response = {"text": backend.decode(forked), "finish_reason": finish_reason, "usage": {}}

    reference = run(compute_reference(backend, challenge, response, SAMPLE_SEEDS[0]))
    margins = reference["margins_milli"]
    assert len(margins) == reference["answer_tokens"] + (finish_reason == "stop")
    assert 0 < margins[position] <= TOLERANCE_MILLI
    score = compute_score(challenge, response, reference, 0)
    checked = len(margins)
    assert score >= SCORE_ONE * (checked - 2 * MISMATCH_COST) // checked
    assert score >= SCORE_ONE * 3 // 4


async def find_closest_near_tie(
    backend: SmolLM2Backend, prompt_ids: list[int], answer_ids: list[int]
) -> tuple[int, int]:
    """The answer position (not the last) whose top two logits are closest, and the second
    choice there."""
    positions = [len(prompt_ids) + i for i in range(len(answer_ids) - 1)]
    logits = await backend.compute_logits(prompt_ids + answer_ids, positions)
    best: tuple[float, int, int] | None = None
    for index, row in enumerate(logits):
        order = row.argsort()[::-1]
        second = int(order[1])
        if second == backend.eos_token_id:
            continue
        gap = float(row[order[0]] - row[second])
        if best is None or gap < best[0]:
            best = (gap, index, second)
    assert best is not None and best[0] * 1000 <= TOLERANCE_MILLI
    return best[1], best[2]


async def continue_greedily(
    backend: SmolLM2Backend, prompt_ids: list[int], answer_ids: list[int], max_tokens: int
) -> tuple[list[int], str]:
    answer = list(answer_ids)
    while len(answer) < max_tokens:
        sequence = prompt_ids + answer
        (row,) = await backend.compute_logits(sequence + [0], [len(sequence)])
        token = int(row.argmax())
        if token == backend.eos_token_id:
            return answer, "stop"
        answer.append(token)
    return answer, "length"


def test_token_splits_the_tokenizer_would_not_make_still_score_full(
    backend: SmolLM2Backend,
) -> None:
    """SmolLM2 writes "\\n\\n" as one token before "2."; encoding its text gives "\\n", "\\n":
    the validator follows greedy decoding's own split instead of failing what comes after."""
    challenge = make_challenge(b"split", b"k", {"max_tokens": 32})
    messages = [
        {"role": "system", "content": generation.SYSTEM_PROMPT},
        {"role": "user", "content": "Give three facts about waterfalls."},
    ]
    challenge = replace(challenge, request={**challenge.request, "messages": messages})
    response = run(handle(backend, challenge.request))
    generated = response["usage"]["completion_tokens"]
    assert "\n\n" in response["text"]
    assert len(backend.encode_text(response["text"])) != generated  # another split
    reference = run(compute_reference(backend, challenge, response, SAMPLE_SEEDS[0]))
    assert reference["answer_tokens"] == generated
    assert compute_score(challenge, response, reference, 0) == SCORE_ONE


# --- the validator: cheats ------------------------------------------------------------------


def test_sampling_at_temperature_one_scores_near_zero(
    backend: SmolLM2Backend, challenges: list[Challenge]
) -> None:
    scores = []
    for number, challenge in enumerate(challenges):
        result = run(
            backend.chat(
                challenge.request["messages"], max_tokens=MAX_TOKENS, temperature=1.0, seed=number
            )
        )
        scores += score_each(backend, challenge, as_response(result))
    assert mean(scores) <= NEAR_ZERO, scores


def test_another_model_scores_near_zero(
    backend: SmolLM2Backend, challenges: list[Challenge]
) -> None:
    """The same network with its weights perturbed by noise (15 % of each matrix's spread):
    a cheaper or different model that writes fluent text."""
    import torch

    network = copy.deepcopy(backend.network)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.dim() >= 2:
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.add_(noise * parameter.std() * 0.15)
    other = SmolLM2Backend(network, backend.tokenizer)
    scores = []
    try:
        for challenge in challenges:
            response = run(handle(other, challenge.request))
            scores += score_each(backend, challenge, response)
    finally:
        run(other.close())
    assert mean(scores) <= NEAR_ZERO, scores


def test_copied_answer_scores_near_zero(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    """Each miner's honest answer, replayed to the next miner's (different) prompt."""
    scores = []
    for number, challenge in enumerate(challenges):
        copied = honest[(number + 1) % len(honest)]
        scores += score_each(backend, challenge, copied)
    assert mean(scores) <= NEAR_ZERO, scores


def test_random_and_invented_text_score_near_zero(
    backend: SmolLM2Backend, challenges: list[Challenge]
) -> None:
    rng = random.Random(5)
    scores = []
    for challenge in challenges:
        scores += score_each(
            backend, challenge, generation.make_random_response(challenge.request, rng)
        )
        invented = {
            "text": "Sure! Here is a short and friendly answer to your question, "
            "written with care.",
            "finish_reason": "stop",
            "usage": {},
        }
        scores += score_each(backend, challenge, invented)
    assert max(scores) <= NEAR_ZERO, scores


def test_truncated_answers_score_zero(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    for challenge, response in zip(challenges, honest, strict=True):
        tokens = backend.encode_text(response["text"])
        half = backend.decode(tokens[: len(tokens) // 2])
        for finish_reason in ("stop", "length"):
            cut = {**response, "text": half, "finish_reason": finish_reason}
            assert max(score_each(backend, challenge, cut)) == 0


def test_over_long_answer_scores_zero(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    """An answer for twice the budget, sent for a challenge of ``MAX_TOKENS``."""
    over_long = []
    for challenge, response in zip(challenges, honest, strict=True):
        if response["finish_reason"] != "length":
            continue
        messages = challenge.request["messages"]
        longer = run(backend.chat(messages, max_tokens=2 * MAX_TOKENS, temperature=0))
        if len(backend.encode_text(longer.text)) > MAX_TOKENS + LENGTH_SLACK_TOKENS:
            over_long.append((challenge, as_response(longer)))
    assert over_long, "at least one honest answer should go on past max_tokens"
    for challenge, response in over_long:
        assert max(score_each(backend, challenge, response)) == 0


@pytest.mark.parametrize(
    "response",
    [
        None,
        "text",
        {},
        {"text": "", "finish_reason": "stop"},
        {"text": "", "finish_reason": "length"},
        {"text": 5, "finish_reason": "stop"},
        {"text": "Paris.", "finish_reason": "eos"},
        {"finish_reason": "stop"},
    ],
)
def test_empty_and_malformed_answers_score_zero(
    backend: SmolLM2Backend, challenges: list[Challenge], response: Any
) -> None:
    assert score_each(backend, challenges[0], response) == [0, 0, 0]


# --- the validator: latency, determinism, sampling --------------------------------------------


def test_late_answers_score_lower(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    challenge, response = challenges[0], honest[0]
    reference = run(compute_reference(backend, challenge, response, SAMPLE_SEEDS[0]))
    on_time = compute_score(challenge, response, reference, challenge.fast_ms)
    late = compute_score(
        challenge, response, reference, (challenge.fast_ms + challenge.timeout_ms) // 2
    )
    at_timeout = compute_score(challenge, response, reference, challenge.timeout_ms)
    assert on_time > late > at_timeout > 0
    assert at_timeout == on_time // 2


def test_scores_are_deterministic_for_a_seed(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    challenge = challenges[1]
    copied = honest[2]
    first = run(compute_reference(backend, challenge, copied, b"fixed"))
    second = run(compute_reference(backend, challenge, copied, b"fixed"))
    assert first == second
    assert all(isinstance(m, int) for m in first["margins_milli"])
    assert compute_score(challenge, copied, first, 1_234) == compute_score(
        challenge, copied, second, 1_234
    )


def test_sample_positions_depend_on_sample_seed(
    backend: SmolLM2Backend, challenges: list[Challenge], honest: list[dict]
) -> None:
    challenge = replace(challenges[0], secret={"sample_positions": 4})
    positions = {
        tuple(run(compute_reference(backend, challenge, honest[0], bytes([n])))["positions"])
        for n in range(6)
    }
    assert len(positions) >= 4
    length = len(backend.encode_text(honest[0]["text"])) + (honest[0]["finish_reason"] == "stop")
    for chosen in positions:
        assert len(chosen) == 5 and chosen[-1] == length - 1  # four, and always the final one
        assert list(chosen) == sorted(set(chosen))


def test_compute_sample_positions() -> None:
    assert compute_sample_positions(b"s", 0, 8) == []
    assert compute_sample_positions(b"s", 1, 8) == [0]
    assert compute_sample_positions(b"s", 5, 8) == [0, 1, 2, 3, 4]  # short: all of it
    drawn = compute_sample_positions(b"s", 100, 8)
    assert len(drawn) == 9 and drawn[-1] == 99 and drawn[:-1] == sorted(set(drawn[:-1]))
    assert drawn == compute_sample_positions(b"s", 100, 8)
    assert drawn != compute_sample_positions(b"t", 100, 8)
    seen = set()
    for n in range(200):
        seen.update(compute_sample_positions(n.to_bytes(2, "big"), 40, 8)[:-1])
    assert seen == set(range(39))  # every position can be checked


# --- tolerances, pure ----------------------------------------------------------------------


def test_quality_tolerance_boundaries() -> None:
    checked = 17
    assert compute_quality([0] * checked) == SCORE_ONE
    assert compute_quality([]) == 0
    one_mismatch = [0] * (checked - 1) + [TOLERANCE_MILLI]
    assert compute_quality(one_mismatch) == SCORE_ONE * (checked - MISMATCH_COST) // checked
    one_failure = [0] * (checked - 1) + [TOLERANCE_MILLI + 1]
    assert compute_quality(one_failure) == SCORE_ONE * (checked - FAILURE_COST) // checked
    assert compute_quality([1] + [0] * (checked - 1)) == compute_quality(one_mismatch)
    assert compute_quality(one_mismatch) >= SCORE_ONE * 85 // 100
    assert compute_quality([TOLERANCE_MILLI + 1] * 3 + [0] * (checked - 3)) == 0


def test_compute_score_rules_on_a_synthetic_reference() -> None:
    challenge = make_challenge(b"s", b"k", {"max_tokens": 20})
    stop = {"text": "x", "finish_reason": "stop"}
    length = {"text": "x", "finish_reason": "length"}

    def reference(answer_tokens: int, margins: list[int]) -> dict:
        return {
            "answer_tokens": answer_tokens,
            "positions": list(range(len(margins))),
            "margins_milli": margins,
        }

    assert compute_score(challenge, stop, reference(10, [0] * 11), 0) == SCORE_ONE
    # The end of turn the reference does not predict: a truncation.
    assert compute_score(challenge, stop, reference(10, [0] * 10 + [TOLERANCE_MILLI + 1]), 0) == 0
    # "length" needs max_tokens tokens, give or take the re-tokenization slack.
    assert (
        compute_score(challenge, length, reference(20 - LENGTH_SLACK_TOKENS, [0] * 17), 0)
        == SCORE_ONE
    )
    assert (
        compute_score(challenge, length, reference(20 - LENGTH_SLACK_TOKENS - 1, [0] * 17), 0) == 0
    )
    assert (
        compute_score(challenge, length, reference(20 + LENGTH_SLACK_TOKENS + 1, [0] * 17), 0) == 0
    )
    assert compute_score(challenge, stop, reference(0, []), 0) == 0


def test_compute_score_is_integer_only() -> None:
    source = Path(generation.__file__).read_text()
    body = source[source.index("def compute_quality") :]  # to the end: the model is elsewhere
    assert "float" not in body and "/" not in body.replace("//", "")


# --- the cache ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cache_is_written_atomically_and_rebuilt_when_damaged(
    backend: SmolLM2Backend, tmp_path: Path
) -> None:
    """A conversion killed halfway leaves only a temporary directory (cleaned by the next
    conversion); a damaged cache is converted again and gives the same logits. One conversion:
    the damaged cache is a copy of the one ``backend`` loaded, cut short."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import asyncio, pathlib, sys\n"
        "from agora.tasks.generation_model import SmolLM2Backend\n"
        "asyncio.run(SmolLM2Backend.load(pathlib.Path(sys.argv[1])))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        # Killed once the config is written, as the 540 MB of weights go to disk.
        while not list(tmp_path.glob(".smollm2-*.tmp-*/config.json")) and process.poll() is None:
            time.sleep(0.01)
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]

    converted = get_converted_model_dir(tmp_path)
    shutil.copytree(get_converted_model_dir(), converted)
    weights = converted / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1_000])  # a damaged cache
    rebuilt = run(SmolLM2Backend.load(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == [converted.name]  # the stale one is gone
    sequence = backend.encode_prompt([{"role": "user", "content": "Hello"}])
    positions = list(range(1, len(sequence)))
    expected = run(backend.compute_logits(sequence, positions))
    assert (run(rebuilt.compute_logits(sequence, positions)) == expected).all()
    run(rebuilt.close())

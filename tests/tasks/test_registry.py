"""The task registry: every task kind from the ``agora.tasks`` entry points, built-ins included.

Plug-ins here are real installed distributions: a ``*.dist-info`` folder with an
``entry_points.txt`` on ``sys.path``, which ``importlib.metadata`` reads as it reads pip's.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import pytest

from agora.tasks import federated
from agora.tasks.base import TASK_MEMBERS, BadBackendSpec
from agora.tasks.registry import (
    BrokenTaskPlugin,
    UnknownTask,
    get_task,
    list_task_kinds,
    load_backend,
)

BUILT_IN = ("classification", "embedding", "federated", "generation")


def install_plugin(root: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution ``name`` under ``root`` (already on ``sys.path``), as pip lays it out."""
    dist_info = root / f"{name}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[agora.tasks]\n{entry_points}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_the_built_in_tasks_are_entry_points_with_the_whole_interface() -> None:
    kinds = list_task_kinds()
    assert set(BUILT_IN) <= set(kinds)
    for kind in BUILT_IN:
        task = get_task(kind)
        assert task.TASK == kind
        assert task.ROUTE == f"/task/{kind}"
        assert all(hasattr(task, member) for member in TASK_MEMBERS)


def test_an_unknown_task_kind_is_a_coded_error_naming_the_installed_ones() -> None:
    with pytest.raises(UnknownTask) as raised:
        get_task("astrology")
    assert raised.value.code == 3480
    assert "embedding" in raised.value.message


def test_a_plugin_that_fails_to_import_is_a_coded_error(plugins: Path) -> None:
    install_plugin(
        plugins,
        "broken",
        "broken-task = broken_task_module",
        {"broken_task_module": "raise RuntimeError('the plug-in is broken')\n"},
    )
    assert "broken-task" in list_task_kinds()
    with pytest.raises(BrokenTaskPlugin) as raised:
        get_task("broken-task")
    assert raised.value.code == 3482
    assert "the plug-in is broken" in raised.value.message
    assert get_task("embedding").TASK == "embedding"  # one broken plug-in harms no other


def test_a_plugin_missing_part_of_the_interface_is_a_coded_error(plugins: Path) -> None:
    source = 'TASK = "half"\nROUTE = "/task/half"\ndef make_challenge(seed, hotkey, config): ...\n'
    install_plugin(plugins, "half", "half = half_task", {"half_task": source})
    with pytest.raises(BrokenTaskPlugin) as raised:
        get_task("half")
    assert "compute_score" in raised.value.message


def test_a_plugin_whose_task_names_another_kind_is_a_coded_error(plugins: Path) -> None:
    install_plugin(plugins, "alias", "alias = agora.tasks.embedding", {})
    with pytest.raises(BrokenTaskPlugin) as raised:
        get_task("alias")
    assert "'embedding'" in raised.value.message


def test_two_packages_claiming_one_kind_is_a_coded_error(plugins: Path) -> None:
    install_plugin(plugins, "shadow", "embedding = agora.tasks.classification", {})
    with pytest.raises(BrokenTaskPlugin) as raised:
        get_task("embedding")
    assert "several packages" in raised.value.message


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("classification", "openai:http://127.0.0.1:1/v1#m"),
        ("embedding", "vllm"),
        ("federated", "openai:http://127.0.0.1:1/v1#m"),
    ],
)
def test_a_backend_spec_a_task_cannot_serve_is_a_coded_error(kind: str, spec: str) -> None:
    with pytest.raises(BadBackendSpec) as raised:
        asyncio.run(load_backend(kind, spec))
    assert raised.value.code == 3481


def test_the_federated_task_scores_one_update_by_its_own_held_out_improvement() -> None:
    challenge = federated.make_challenge(bytes(32), b"contributor", {})
    pools = federated.load_pools()
    rows = random.Random(7).sample(range(len(pools.contributors)), 300)
    shard = federated.Dataset(pools.contributors.features[rows], pools.contributors.labels[rows])
    honest = federated.make_response(
        0,
        bytes.fromhex(challenge.request["model_hash"]),
        federated.compute_local_update(challenge.request["model"], shard),
    )
    noise = federated.make_random_response(challenge.request, random.Random(3))
    reference = asyncio.run(federated.compute_reference(None, challenge, honest, b"sample"))
    assert federated.compute_score(challenge, honest, reference, 0) > 0
    assert federated.compute_score(challenge, noise, reference, 0) == 0


@pytest.mark.parametrize(
    ("kind", "backend"),
    [("embedding", "OpenAIEmbeddingBackend"), ("generation", "OpenAIChatBackend")],
)
def test_an_openai_spec_forwards_the_tasks_that_support_it(kind: str, backend: str) -> None:
    loaded = asyncio.run(load_backend(kind, "openai:http://127.0.0.1:9/v1#served-model"))
    assert type(loaded).__name__ == backend
    assert loaded.model == "served-model"


def test_importing_the_registry_loads_no_task() -> None:
    probe = (
        "import sys, agora.tasks.registry\n"
        "print(sorted(m for m in sys.modules if m.startswith('agora.tasks.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    )
    assert result.stdout.split() == ["['agora.tasks.base',", "'agora.tasks.registry']"]

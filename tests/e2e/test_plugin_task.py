"""End to end: a task from a pip-installed package, unknown to Agora's code, runs a paying subnet.

The example package in ``tests/example_task`` (kind ``digit-sum``) is installed with pip into a
temporary folder, never into the shared environment, and reaches every process through
``PYTHONPATH``, as a ``pip install`` beside Agora would. ``agora devnet --tasks digit-sum``
then creates the subnet on a real node and starts real miner and validator processes, which
find the task through its ``agora.tasks`` entry point alone: the honest miners are paid, the
miner answering noise is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_helpers import http

from agora.tasks.base import SCORE_ONE
from agora.tasks.registry import get_task, list_task_kinds
from agora.wallet.keystore import Keystore

EXAMPLE = Path(__file__).resolve().parents[1] / "example_task"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "write-your-own-task.md"
KIND = "digit-sum"
READY_TIMEOUT_S = 600.0
EPOCH_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package, built and installed by pip into a folder of its own."""
    root = tmp_path_factory.mktemp("plugin")
    source, target = root / "source", root / "site"
    shutil.copytree(EXAMPLE, source)  # the build writes beside the sources: not in the repo
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps", "--no-build-isolation", "--no-index", "--target", str(target)]
    subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The installed package on this process's path and its children's."""
    monkeypatch.syspath_prepend(str(site))
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return site


def test_the_guide_shows_the_example_package_file_for_file() -> None:
    """docs/write-your-own-task.md has the package's two files in full: what this module
    installs and runs is what a reader copies."""
    guide = GUIDE.read_text()
    blocks = dict(re.findall(r"```(toml|python)\n(.*?)```", guide, flags=re.DOTALL))
    assert blocks["toml"] == (EXAMPLE / "pyproject.toml").read_text()
    assert blocks["python"] == (EXAMPLE / "digit_sum_task.py").read_text()
    assert "agora devnet --tasks digit-sum" in guide


def test_an_installed_package_adds_a_task_kind(installed: Path) -> None:
    assert KIND in list_task_kinds()
    task = get_task(KIND)
    assert (task.TASK, task.ROUTE) == (KIND, "/task/digit-sum")
    challenge = task.make_challenge(bytes(32), b"miner", {"items": 16})
    backend = asyncio.run(task.load_backend("local", None))
    honest = asyncio.run(task.handle(backend, challenge.request))
    noise = task.make_random_response(challenge.request, random.Random(5))
    reference = asyncio.run(task.compute_reference(None, challenge, honest, b"sample"))
    assert task.compute_score(challenge, honest, reference, 0) == SCORE_ONE
    assert task.compute_score(challenge, noise, reference, 0) == 0
    other = task.make_challenge(bytes(32), b"another miner", {"items": 16})
    assert other.request != challenge.request


def test_the_cli_lists_an_installed_task_beside_the_built_in_ones(installed: Path) -> None:
    command = [sys.executable, "-m", "agora", "subnet", "tasks", "--json"]
    listed = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    assert listed["entry_point_group"] == "agora.tasks"
    assert {KIND, "embedding", "classification", "generation", "federated"} <= set(listed["tasks"])


def metagraph(url: str, netuid: int) -> dict[str, Any]:
    response = http("GET", f"{url}/v1/subnets/{netuid}/metagraph")
    assert response.status == 200, response.body
    result: dict[str, Any] = response.json()
    return result


@contextlib.contextmanager
def devnet(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """``agora devnet --tasks digit-sum`` until ready; SIGINT on the way out."""
    output = data_dir.parent / "devnet-output.log"
    command = [sys.executable, "-m", "agora", "devnet", "--data-dir", str(data_dir)]
    command += ["--tasks", KIND, "--miners", "2", "--validators", "1", "--cheaters", "random"]
    command += ["--port", "0", "--no-gateway", "--block-time-ms", "500", "--tempo", "10"]
    with output.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Agora devnet is running." not in (text := output.read_text(errors="replace")):
            assert process.poll() is None, text[-4000:]
            assert time.monotonic() < deadline, f"devnet not ready:\n{text[-4000:]}"
            time.sleep(1.0)
        url = re.search(r"node\s+(http://127\.0\.0\.1:\d+)", text)
        assert url is not None, text[-3000:]
        yield process, output, url.group(1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_a_subnet_of_an_installed_task_pays_honest_miners_and_not_the_cheater(
    installed: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "devnet"
    with devnet(data_dir) as (process, output, url):
        subnets = http("GET", f"{url}/v1/subnets").json()["subnets"]
        netuid = next(s["netuid"] for s in subnets if s["task_kind"] == KIND)
        start = metagraph(url, netuid)["subnet"]["epoch_index"]
        deadline = time.monotonic() + EPOCH_TIMEOUT_S * 4
        while metagraph(url, netuid)["subnet"]["epoch_index"] < start + 4:
            assert process.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline, "epochs did not advance"
            time.sleep(1.0)
        keystore = Keystore(data_dir / "wallets")
        by_hotkey = {n["hotkey"]: n for n in metagraph(url, netuid)["neurons"]}

        def incentive(wallet: str) -> int:
            value: int = by_hotkey[keystore.get_hotkey(wallet, "default").address]["incentive"]
            return value

        honest = [incentive(f"{KIND}-miner-{i}") for i in range(2)]
        assert all(value > 0 for value in honest), honest
        assert incentive(f"{KIND}-random") == 0
        validator = by_hotkey[keystore.get_hotkey(f"{KIND}-validator-0", "default").address]
        assert validator["dividends"] > 0

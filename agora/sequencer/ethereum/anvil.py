"""Start a real anvil (Foundry's EVM node) on a free loopback port: for devnets and tests.

anvil comes from npm (``npm install --prefix . --no-save @foundry-rs/anvil-linux-amd64``),
which puts it at ``node_modules/.bin/anvil`` in the repository; ``$AGORA_ANVIL`` or one found
on PATH works too. Whoever launches it stops it by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Anvil:
    url: str
    pid: int
    # Funded accounts' hex private keys, from anvil's own --config-out file.
    private_keys: tuple[str, ...]


def find_anvil() -> str | None:
    configured = os.environ.get("AGORA_ANVIL")
    if configured:
        return configured
    local = REPO / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    return shutil.which("anvil")


def launch_anvil(
    command: list[str], directory: Path, preexec_fn: Callable[[], None] | None = None
) -> tuple[subprocess.Popen[bytes], Anvil]:
    """Start anvil on a free port; a port taken in between gets another try."""
    config_path = directory / "anvil.json"
    log_path = directory / "anvil.log"
    failure = ""
    for _ in range(3):
        port = _find_free_port()
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port), "--silent"]
                + ["--config-out", str(config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec_fn,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_ready(process, url, log_path)
            keys = tuple(json.loads(config_path.read_text())["private_keys"])
            return process, Anvil(url=url, pid=process.pid, private_keys=keys)
        except Exception as error:
            stop_process(process)
            failure = str(error)
    raise RuntimeError(f"anvil did not start: {failure}")


def rpc_call(url: str, method: str, params: list[object]) -> object:
    """One blocking JSON-RPC call, for set-up code (the sequencer itself is async)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = log_path.read_text(errors="replace")
            raise RuntimeError(f"anvil exited with {process.returncode}: {error[-2000:]}")
        with contextlib.suppress(OSError):
            rpc_call(url, "eth_chainId", [])
            return
        time.sleep(0.05)
    raise RuntimeError(f"anvil did not answer on {url} within {START_TIMEOUT_SECONDS:.0f}s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, 15)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, 9)
            process.wait(timeout=5)

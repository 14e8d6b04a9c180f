"""Helpers for the node tests: real node processes on loopback, plain HTTP, signed transfers.

A node is started as ``python -m agora node run|follow ... --port 0`` in its own process, its
URL is read from what it prints, and the helper waits for ``/health``. It is stopped by pid:
SIGTERM, then SIGKILL if it does not exit, so a failed test leaves no process behind (use
``NodeProcesses``, whose ``stop_all`` a fixture calls in teardown).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from agora.client.transactions import make_transaction
from agora.node.devchain import DEV_CHAIN_ID, FAUCET_ACCOUNT, get_dev_accounts
from agora.node.wire import transaction_to_json
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, decode_address, encode_address
from agora.protocol.params import Params
from agora.protocol.transactions import decode_transaction

MIN_FEE = Params().min_fee
DEV_ACCOUNTS = 8
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_URL_PATTERN = re.compile(r"API\s+(http://[0-9.]+:[0-9]+)/v1")


# --- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> int:
        code: int = self.json()["error"]["code"]
        return code


def http(
    method: str, url: str, body: Any = None, *, data: bytes | None = None, timeout: float = 30
) -> Response:
    """One request; ``body`` is sent as JSON, ``data`` as raw bytes. Never raises on 4xx/5xx."""
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Response(answer.status, dict(answer.headers), answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers), error.read())


# --- node processes --------------------------------------------------------------------------


@dataclass
class NodeProcess:
    """A node running in its own process; ``url`` is its API root (no trailing slash)."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str) -> Response:
        return http("GET", self.url + path)

    def post(self, path: str, body: Any = None, *, data: bytes | None = None) -> Response:
        return http("POST", self.url + path, body, data=data)

    def get_json(self, path: str) -> Any:
        response = self.get(path)
        assert response.status == 200, (path, response.status, response.body)
        return response.json()

    def submit(self, raws: list[bytes]) -> list[str]:
        response = self.post(
            "/v1/transactions", {"transactions": [{"raw": hex_of(r)} for r in raws]}
        )
        assert response.status == 202, response.body
        hashes: list[str] = response.json()["hashes"]
        return hashes

    def wait_included(self, tx_hash: str, timeout: float = 30) -> dict[str, Any]:
        def included() -> dict[str, Any] | None:
            status: dict[str, Any] = self.get_json(f"/v1/transactions/{tx_hash}")
            return status if status["status"] == "included" else None

        return wait_for(included, timeout, f"transaction {tx_hash} included")

    def wait_height(self, height: int, timeout: float = 30) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            head: dict[str, Any] = self.get_json("/v1/head")
            return head if head["height"] >= height else None

        return wait_for(reached, timeout, f"height {height} on {self.url}")

    def account(self, address: str) -> dict[str, Any]:
        account: dict[str, Any] = self.get_json(f"/v1/accounts/{address}")
        return account

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after a grace period; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL at once: the crash a power cut or the OOM killer would cause."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@dataclass
class NodeProcesses:
    """Starts node processes and remembers them, so teardown can stop every one by pid."""

    root: Path
    started: list[NodeProcess] = field(default_factory=list)

    def run(
        self,
        data_dir: Path,
        *,
        dev: bool = True,
        block_time_ms: int = 0,
        genesis: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> NodeProcess:
        args = ["node", "run", "--data-dir", str(data_dir), "--block-time-ms", str(block_time_ms)]
        if dev:
            args += ["--dev", "--dev-accounts", str(DEV_ACCOUNTS)]
        if genesis is not None:
            args += ["--genesis", str(genesis)]
        return self.start([*args, *extra], data_dir)

    def follow(self, leader_url: str, data_dir: Path, *, wait_healthy: bool = True) -> NodeProcess:
        args = ["node", "follow", "--leader", leader_url, "--data-dir", str(data_dir)]
        return self.start(args, data_dir, wait_healthy=wait_healthy)

    def start(self, args: list[str], data_dir: Path, *, wait_healthy: bool = True) -> NodeProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        stdout_path = self.root / f"node-{len(self.started)}.out"
        stderr_path = self.root / f"node-{len(self.started)}.err"
        env = os.environ | {"COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
        port = [] if "--port" in args else ["--port", "0"]  # any free port unless one is named
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "agora", *args, *port],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        node = NodeProcess(
            process=process,
            url="",
            data_dir=data_dir,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
        )
        self.started.append(node)
        node.url = wait_for(lambda: _read_url(node), START_TIMEOUT_SECONDS, "the node's URL")
        if wait_healthy:
            wait_for(lambda: _is_serving(node), START_TIMEOUT_SECONDS, "/health")
        return node

    def stop_all(self) -> None:
        for node in self.started:
            node.stop()


def _read_url(node: NodeProcess) -> str | None:
    match = _URL_PATTERN.search(node.stdout_path.read_text(errors="replace"))
    if match is not None:
        return match.group(1)
    if not node.is_running():
        raise AssertionError(f"the node exited with {node.process.returncode}:\n{node.output()}")
    return None


def _is_serving(node: NodeProcess) -> bool:
    if not node.is_running():
        raise AssertionError(f"the node exited with {node.process.returncode}:\n{node.output()}")
    try:
        return node.get("/health").status in (200, 503)
    except OSError:
        return False


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


# --- keys and transactions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DevKey:
    name: str
    signing_key: SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def address(self) -> str:
        return encode_address(self.public_key)

    @property
    def seed_hex(self) -> str:
        return bytes(self.signing_key).hex()

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


def get_dev_keys(count: int = DEV_ACCOUNTS) -> list[DevKey]:
    """The funded keys of a node started with ``--dev --dev-accounts count``."""
    return [DevKey(a.name, SigningKey(a.seed)) for a in get_dev_accounts(count)]


FAUCET_KEY = DevKey("faucet", SigningKey(FAUCET_ACCOUNT.seed))


def make_key(name: str) -> DevKey:
    """A deterministic unfunded key, for recipients."""
    return DevKey(name, SigningKey(hashlib.sha256(f"agora-node-test:{name}".encode()).digest()))


def sign_transfer(
    sender: DevKey,
    recipient: str | Address,
    amount: int,
    nonce: int,
    *,
    fee: int = MIN_FEE,
    chain_id: str = DEV_CHAIN_ID,
) -> bytes:
    """Canonical signed bytes of a transfer, as a wallet would post them."""
    to = decode_address(recipient) if isinstance(recipient, str) else recipient
    return make_transaction(
        chain_id=chain_id,
        public_key=sender.public_key,
        sign=sender.sign,
        nonce=nonce,
        fee=fee,
        body=Transfer(recipient=to, amount=amount),
    )


def to_json_form(raw: bytes) -> dict[str, Any]:
    """The JSON form of a signed transaction (what ``transaction_from_json`` reads)."""
    return transaction_to_json(decode_transaction(raw))


def hex_of(data: bytes) -> str:
    return "0x" + data.hex()


def parse_metrics(text: str) -> dict[str, float]:
    """Samples of the Prometheus text format, keyed by name with its labels."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def get_metrics(node: NodeProcess) -> dict[str, float]:
    response = node.get("/metrics")
    assert response.status == 200, response.body
    return parse_metrics(response.body.decode())


def wait_no_pending(node: NodeProcess, timeout: float = 30) -> None:
    """Until the node has nothing waiting (every accepted transaction is in a block)."""

    def drained() -> bool:
        return get_metrics(node)["agora_pending_transactions"] == 0

    wait_for(drained, timeout, f"no pending transactions on {node.url}")

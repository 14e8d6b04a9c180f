"""End to end: ``agora devnet`` with real models, honest and cheating miners, two validators.

One devnet runs for the whole module (starting it loads every model in a dozen processes),
started while every core is busy with another program:
- from the first epoch that pays, every subnet pays every honest miner (generation included)
  and no cheater, and that epoch comes at most three epochs after the devnet says it runs;
- after several epochs, honest miners hold at least 95% of each subnet's incentive, and the
  validators earn dividends;
- a miner killed with SIGKILL mid-epoch and started again rejoins under the same uid and is
  scored again;
- a validator killed and restarted goes on committing and revealing, never twice in an epoch;
- when the devnet stops, every process it started is gone, and the node's store passes the
  supply invariant.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from node_helpers import http

from agora.devnet import WALLET_PASSWORD
from agora.protocol.address import encode_address
from agora.protocol.invariants import check_invariants
from agora.protocol.subnets import is_epoch_block
from agora.protocol.transactions import decode_transaction
from agora.protocol.weights import CommitWeights
from agora.wallet.keystore import Keystore

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 900.0
EPOCH_TIMEOUT_S = 240.0
TEMPO = 10
TASKS = ("embedding", "classification", "generation")


@dataclass
class RunningDevnet:
    process: subprocess.Popen[bytes]
    data_dir: Path
    output: Path
    url: str
    gateway_url: str
    tasks: tuple[str, ...]
    running_epochs: dict[str, int]  # each subnet's epoch index in the "running" banner

    def get(self, path: str) -> Any:
        response = http("GET", self.url + path)
        assert response.status == 200, response.body
        return response.json()

    def hotkey(self, name: str) -> str:
        return Keystore(self.data_dir / "wallets").get_hotkey(name, "default").address

    def metagraph(self, task: str) -> dict[str, Any]:
        return self.get(f"/v1/subnets/{self.netuid(task)}/metagraph")

    def netuid(self, task: str) -> int:
        subnets = self.get("/v1/subnets")["subnets"]
        return next(s["netuid"] for s in subnets if s["task_kind"] == task)

    def wait_epochs(self, count: int) -> None:
        """Until every subnet has run ``count`` more epochs."""
        start = {task: self.metagraph(task)["subnet"]["epoch_index"] for task in self.tasks}
        deadline = time.monotonic() + EPOCH_TIMEOUT_S * count
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output.read_text()[-3000:]
            now = {task: self.metagraph(task)["subnet"]["epoch_index"] for task in self.tasks}
            if all(now[t] >= start[t] + count for t in self.tasks):
                return
            time.sleep(1.0)
        raise AssertionError(f"epochs did not advance: {start}")


def processes_under(data_dir: Path) -> list[int]:
    """Pids of processes whose command line names the devnet's data directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(data_dir) in cmdline and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def find_process(data_dir: Path, wallet: str) -> tuple[int, list[str]]:
    for pid in processes_under(data_dir):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if "--wallet" in argv and argv[argv.index("--wallet") + 1] == wallet:
            return pid, argv
    raise AssertionError(f"no process for {wallet}")


@contextlib.contextmanager
def start_devnet(data_dir: Path, options: list[str]) -> Iterator[RunningDevnet]:
    """``agora devnet`` in its own process until ready; SIGINT (then kills) on the way out."""
    output = data_dir.parent / f"{data_dir.name}-output.log"
    command = [sys.executable, "-m", "agora", "devnet", "--data-dir", str(data_dir)]
    command += ["--port", "0", "--gateway-port", "0", "--block-time-ms", "500"]
    command += ["--tempo", str(TEMPO), *options]
    with output.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Ctrl-C stops everything." not in (text := output.read_text(errors="replace")):
            assert process.poll() is None, text[-4000:]
            assert time.monotonic() < deadline, f"devnet not ready:\n{text[-4000:]}"
            time.sleep(1.0)
        url = re.search(r"node\s+(http://127\.0\.0\.1:\d+)", text)
        gateway = re.search(r"gateway\s+(http://127\.0\.0\.1:\d+/v1)", text)
        subnets = re.search(r"subnets\s+(.*)", text)
        assert url is not None and subnets is not None, text[-3000:]
        tasks = tuple(part.split(" = ")[0] for part in subnets.group(1).split(", "))
        running = RunningDevnet(
            process, data_dir, output, url.group(1), gateway.group(1) if gateway else "", tasks, {}
        )
        banner = re.findall(r"^  subnet \d+ +(\S+): .*, at epoch (\d+)$", text, re.M)
        running.running_epochs = {task: int(epoch) for task, epoch in banner}
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        for pid in processes_under(data_dir):
            os.kill(pid, signal.SIGKILL)


class BusyCores:
    """One process spinning on each core, as another program on the machine would."""

    def __init__(self) -> None:
        spin = [sys.executable, "-c", "while True: pass"]
        self.processes = [subprocess.Popen(spin) for _ in range(os.cpu_count() or 1)]

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def busy_cores() -> Iterator[BusyCores]:
    busy = BusyCores()
    try:
        yield busy
    finally:
        busy.stop()


@pytest.fixture(scope="module")
def devnet(
    tmp_path_factory: pytest.TempPathFactory, busy_cores: BusyCores
) -> Iterator[RunningDevnet]:
    options = ["--miners", "2", "--generation-miners", "1", "--validators", "2"]
    with start_devnet(
        tmp_path_factory.mktemp("devnet"), options + ["--cheaters", "random,copycat"]
    ) as running:
        yield running


def incentive_shares(devnet: RunningDevnet, task: str) -> tuple[int, int, dict[str, int]]:
    graph = devnet.metagraph(task)
    by_hotkey = {n["hotkey"]: n for n in graph["neurons"]}
    honest = [devnet.hotkey(f"{task}-miner-{i}") for i in range(1 if task == "generation" else 2)]
    total = sum(n["incentive"] for n in graph["neurons"])
    honest_total = sum(by_hotkey[h]["incentive"] for h in honest)
    dividends = {
        f"validator-{i}": by_hotkey[devnet.hotkey(f"{task}-validator-{i}")]["dividends"]
        for i in range(2)
    }
    return honest_total, total, dividends


def test_a_busy_machine_pays_every_honest_miner_from_the_first_paying_epoch(
    devnet: RunningDevnet, busy_cores: BusyCores
) -> None:
    """Weights committed in one epoch count at the end of the next: a miner ready when the
    devnet says it runs is paid at most two epochs on (earlier where its validators committed
    before); one more is allowed for a validator's first round on a busy machine."""
    devnet.wait_epochs(5)
    busy_cores.stop()
    for task in TASKS:
        netuid = devnet.netuid(task)
        uids = {n["hotkey"]: n["uid"] for n in devnet.metagraph(task)["neurons"]}
        names = [f"miner-{i}" for i in range(1 if task == "generation" else 2)]
        honest = [uids[devnet.hotkey(f"{task}-{name}")] for name in names]
        cheaters = [uids[devnet.hotkey(f"{task}-{name}")] for name in ("random", "copycat")]
        incentive = {
            uid: {
                row["epoch"]: row["incentive"]
                for row in devnet.get(f"/v1/explorer/subnets/{netuid}/uids/{uid}")["series"]
            }
            for uid in honest + cheaters
        }
        start = devnet.running_epochs[task]
        epochs = sorted(e for e in incentive[honest[0]] if e > start)
        paying = [e for e in epochs if any(incentive[uid][e] > 0 for uid in honest)]
        assert paying and paying[0] <= start + 3, (task, start, incentive)
        for epoch in epochs[epochs.index(paying[0]) :]:
            assert all(incentive[uid][epoch] > 0 for uid in honest), (task, epoch, incentive)
            assert all(incentive[uid][epoch] == 0 for uid in cheaters), (task, epoch, incentive)


def test_the_devnet_prints_each_epoch_from_when_it_runs(devnet: RunningDevnet) -> None:
    """Only epochs after "running"; until a subnet's first weights count, a line that says so
    rather than every miner at 0%; from then on each miner's share, the cheaters' at 0%."""
    devnet.wait_epochs(1)
    text = devnet.output.read_text(errors="replace")
    lines = re.findall(r"^block +\d+ +(\S+) +epoch (\d+): (.*)$", text, re.M)
    for task in TASKS:
        printed = [(int(epoch), shares) for name, epoch, shares in lines if name == task]
        assert printed and min(e for e, _ in printed) > devnet.running_epochs[task], printed
        first = next(i for i, (_, shares) in enumerate(printed) if "%" in shares)
        waiting = {shares for _, shares in printed[:first]}
        paying = [shares for _, shares in printed[first:]]
        assert waiting <= {"no weights in effect yet (committed weights count an epoch later)"}
        assert all("random 0%" in shares and "copycat 0%" in shares for shares in paying), paying


def test_honest_miners_earn_and_cheaters_do_not(devnet: RunningDevnet) -> None:
    devnet.wait_epochs(4)
    for task in TASKS:
        honest, total, dividends = incentive_shares(devnet, task)
        assert total > 0, task
        assert honest * 100 >= total * 95, (task, honest, total)
        assert all(value > 0 for value in dividends.values()), (task, dividends)


def test_the_devnet_shows_the_model_and_each_process_ready(devnet: RunningDevnet) -> None:
    text = devnet.output.read_text(errors="replace")
    loading = text[: text.index("Agora devnet is running.")]
    assert re.search(r"^  model +(SmolLM2-135M-Instruct, cached in|converted in) ", loading, re.M)
    ready = re.findall(r"^  ready (\d+)/(\d+): (\S+)  \(\d+ s\)$", loading, re.M)
    expected = {
        f"{task}-{role}"
        for task in TASKS
        for role in [f"miner-{i}" for i in range(1 if task == "generation" else 2)]
        + ["random", "copycat", "validator-0", "validator-1"]
    }
    assert [int(count) for count, _, _ in ready] == list(range(1, len(expected) + 1)), ready
    assert {int(total) for _, total, _ in ready} == {len(expected)}
    assert {name for _, _, name in ready} == expected


def test_the_devnets_gateway_sells_the_miners_work(devnet: RunningDevnet) -> None:
    """A developer's program with the official client, pointed at the devnet's gateway."""
    import openai

    client = openai.OpenAI(base_url=devnet.gateway_url, api_key="unused", max_retries=0)
    models = {m.id for m in client.models.list().data}
    assert "all-MiniLM-L6-v2" in models, models
    answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello", "world"])
    assert [len(item.embedding) for item in answer.data] == [384, 384]
    receipts = http("GET", devnet.gateway_url.removesuffix("/v1") + "/v1/agora/receipts")
    assert receipts.status == 200 and receipts.json()["data"]


def test_the_devnets_agent_sells_search_and_pays_the_miners(devnet: RunningDevnet) -> None:
    """developer -> agent -> miner: `agora service call` as the devnet prints it; the answer
    carries the agent's receipt from the embedding miner it paid."""
    text = devnet.output.read_text(errors="replace")
    assert re.search(r"agent\s+http://127\.0\.0\.1:\d+\s+\(semantic-search 0x", text), text
    command = [sys.executable, "-m", "agora", "service", "call", "--tag", "search"]
    command += ["--args", '{"query": "how are miners paid?"}', "--wallet", "developer"]
    command += ["--wallet-dir", str(devnet.data_dir / "wallets"), "--node", devnet.url, "--json"]
    env = dict(os.environ, AGORA_WALLET_PASSWORD=WALLET_PASSWORD)
    done = subprocess.run(command, capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    answer = json.loads(done.stdout)
    assert answer["result"]["hits"] and answer["receipt"]["cost"] > 0
    miners = {n["hotkey"] for n in devnet.metagraph("embedding")["neurons"]}
    assert answer["result"]["upstream"]["miner"] in miners


def kill(devnet: RunningDevnet, name: str) -> list[str]:
    """SIGKILL the devnet's process for wallet ``name``; its command line, to restart it."""
    pid, argv = find_process(devnet.data_dir, name)
    os.kill(pid, signal.SIGKILL)
    return argv


@contextlib.contextmanager
def restarted(
    devnet: RunningDevnet, name: str, argv: list[str]
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The killed process started again by the test; it must exit cleanly on SIGTERM."""
    env = dict(os.environ, AGORA_WALLET_PASSWORD=WALLET_PASSWORD, OMP_NUM_THREADS="1")
    log = devnet.data_dir / "logs" / f"{name}-restarted.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        yield process, log
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_killed_miner_rejoins(devnet: RunningDevnet) -> None:
    name = "embedding-miner-0"
    hotkey = devnet.hotkey(name)
    before = {n["hotkey"]: n for n in devnet.metagraph("embedding")["neurons"]}[hotkey]
    argv = kill(devnet, name)
    with restarted(devnet, name, argv) as (process, log):
        deadline = time.monotonic() + EPOCH_TIMEOUT_S
        while time.monotonic() < deadline:
            neurons = {n["hotkey"]: n for n in devnet.metagraph("embedding")["neurons"]}
            if neurons[hotkey]["endpoint"] != before["endpoint"]:
                break
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(1.0)
        else:
            raise AssertionError("the restarted miner did not publish its new endpoint")
        assert neurons[hotkey]["uid"] == before["uid"]
        devnet.wait_epochs(3)
        after = {n["hotkey"]: n for n in devnet.metagraph("embedding")["neurons"]}[hotkey]
        assert after["incentive"] > 0
        validator_log = (devnet.data_dir / "logs" / "embedding-validator-0.log").read_text()
        served_again = re.findall(rf"uid\s+{before['uid']} .* scored", validator_log)
        assert served_again


def commits_per_epoch(devnet: RunningDevnet, task: str, hotkey: str) -> dict[int, int]:
    """Successful commit_weights of ``hotkey`` grouped by the epoch they belong to."""
    netuid = devnet.netuid(task)
    head = devnet.get("/v1/head")["height"]
    counts: dict[int, int] = {}
    epoch = 0
    for height in range(1, head + 1):
        block = devnet.get(f"/v1/blocks/{height}")
        if is_epoch_block(netuid, TEMPO, height):
            epoch += 1  # a firing block's transactions already belong to the next epoch
        for raw, receipt in zip(block["transactions"], block["receipts"], strict=True):
            tx = decode_transaction(bytes.fromhex(raw.removeprefix("0x")))
            if not receipt["success"] or not isinstance(tx.body, CommitWeights):
                continue
            if tx.body.netuid == netuid and encode_address(tx.sender) == hotkey:
                counts[epoch] = counts.get(epoch, 0) + 1
    return counts


def test_restarted_validator_never_commits_twice_in_an_epoch(devnet: RunningDevnet) -> None:
    name = "classification-validator-0"
    hotkey = devnet.hotkey(name)
    argv = kill(devnet, name)
    before = sum(commits_per_epoch(devnet, "classification", hotkey).values())
    with restarted(devnet, name, argv) as (process, log):
        devnet.wait_epochs(3)
        assert process.poll() is None, log.read_text()[-3000:]
        counts = commits_per_epoch(devnet, "classification", hotkey)
        assert sum(counts.values()) > before, "the restarted validator never committed"
        assert max(counts.values()) == 1, counts
        assert "revealed weights" in log.read_text()


def test_stopping_leaves_no_process_and_a_consistent_store(devnet: RunningDevnet) -> None:
    devnet.process.send_signal(signal.SIGINT)
    assert devnet.process.wait(timeout=90) == 0, devnet.output.read_text()[-3000:]
    assert processes_under(devnet.data_dir) == []
    from agora.node.store import Store

    store = Store(devnet.data_dir / "node" / "node.db")
    try:
        check_invariants(store.load_state())
    finally:
        store.close()


def test_the_same_network_runs_over_ethereum(tmp_path: Path) -> None:
    """``--sequencer ethereum``: anvil, an Inbox, and the node deriving blocks from it."""
    data_dir = tmp_path / "devnet-eth"
    options = ["--sequencer", "ethereum", "--tasks", "classification", "--no-gateway"]
    with start_devnet(data_dir, options + ["--miners", "2", "--validators", "2"]) as devnet:
        assert re.search(
            r"ethereum\s+http://127\.0\.0\.1:\d+\s+Inbox 0x[0-9a-fA-F]{40}",
            devnet.output.read_text(),
        )
        devnet.wait_epochs(4)
        honest, total, dividends = incentive_shares(devnet, "classification")
        assert total > 0 and honest * 100 >= total * 95, (honest, total)
        assert all(value > 0 for value in dividends.values()), dividends
        devnet.process.send_signal(signal.SIGINT)
        assert devnet.process.wait(timeout=90) == 0
        assert processes_under(data_dir) == []

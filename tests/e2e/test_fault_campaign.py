"""A fault campaign: a small real network under load, its processes killed and restarted.

The network is started with the devnet's own functions (``agora devnet`` itself forgets a
child that dies and restarts none), each process with the command line an operator types: a
node, the embedding subnet with two honest miners selling all-MiniLM-L6-v2 per request and
one miner answering at random, two validators, and the OpenAI-compatible gateway paying from
the developer's wallet. A steady load runs throughout:
embeddings bought through the gateway with the official ``openai`` client, and signed
transfers sent to the node. Meanwhile the campaign SIGKILLs, one at a time and after pauses
drawn from a fixed seed, the node, an honest miner, a validator or the gateway, ``KILLS`` times
in all, and starts each again with the same command line (same data directory, same wallet),
waiting until it serves again before the next pause.

Requests and transactions that fail while a process is down are counted, not failed. Once
everything has stopped cleanly, the test checks from the node's store, the gateway's store
and the miners' voucher stores that nothing acknowledged was lost:
- every transaction the node acknowledged (HTTP 2xx with its hash) is included exactly once,
  and succeeded;
- every request the gateway answered has exactly one receipt, which says it was paid; each
  gateway channel is on chain with the deposit the gateway counts, its committed amount
  within that deposit and at least its answered requests' costs, and each miner claimed at
  least what the gateway's receipts say it earned;
- every voucher a miner kept is claimed on chain;
- the supply invariant holds;
- the honest miners hold at least 95% of the subnet's incentive.
The figures (load, kills per role, losses) are printed on one line (``pytest -s``) and
written to ``.artifacts/fault-campaign.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from node_helpers import http

from agora.client.client import NodeClient
from agora.client.transactions import make_transaction
from agora.devnet import (
    DEVELOPER,
    Child,
    Devnet,
    DevnetConfig,
    Processes,
    child_env,
    create_subnets,
    fund_wallets,
    plan_participants,
    prepare_data_dir,
    start_gateway,
    start_node,
    start_participants,
    tail,
    wait_until_serving,
)
from agora.gateway.store import GatewayStore
from agora.node.devchain import compute_dev_seed
from agora.node.store import Store, iterate_blocks
from agora.node.wire import to_hex
from agora.payments.store import VoucherStore
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, decode_address
from agora.protocol.channels import get_channels
from agora.protocol.errors import InvariantViolated
from agora.protocol.invariants import check_invariants
from agora.protocol.state import State
from agora.protocol.transactions import compute_transaction_hash
from agora.wallet.keys import Keypair

pytestmark = pytest.mark.slow

SEED = 2027
KILLS = {"node": 6, "gateway": 6, "miner": 6, "validator": 6}
PAUSE_S = (0.5, 3.0)  # between a restarted process serving again and the next kill
RESTART_TIMEOUT_S = 240.0
SETTLE_TIMEOUT_S = 180.0
BLOCK_TIME_MS = 500
TEMPO = 10
MODEL = "all-MiniLM-L6-v2"
REQUEST_WORKERS = 2
REQUEST_PAUSE_S = 0.1
TRANSFER_PAUSE_S = 0.2
TRANSFER_AMOUNT = 1_000
ARTIFACT = Path(__file__).resolve().parents[2] / ".artifacts" / "fault-campaign.json"
WORDS = "miner validator channel voucher ledger epoch subnet stake weight block".split()


# --- the network -------------------------------------------------------------------------------


def find_free_port(start: int) -> int:
    """A free port from ``start`` up, below the ephemeral range, so that no outgoing
    connection (nor a miner on port 0) takes it while its process is down after a kill."""
    for port in range(start, 32_000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port from {start}")


async def start_network(devnet: Devnet) -> None:
    """What ``agora devnet`` starts for the embedding subnet, the agent left out."""
    await start_node(devnet)
    async with NodeClient(devnet.node_url) as client:
        await create_subnets(devnet, client)
        plan = plan_participants(devnet.config)
        await fund_wallets(devnet, client, [name for name, *_ in plan] + [DEVELOPER])
        start_participants(devnet, plan)
        await wait_until_serving(devnet, client)
    await start_gateway(devnet)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Devnet]:
    node_port = find_free_port(20_000 + os.getpid() % 10_000)  # apart from another run's
    config = DevnetConfig(
        data_dir=tmp_path / "network",
        tasks=("embedding",),
        miners=2,
        validators=2,
        cheaters=("random",),
        block_time_ms=BLOCK_TIME_MS,
        tempo=TEMPO,
        node_port=node_port,
        gateway_port=find_free_port(node_port + 1),
        agent=False,
        say=lambda message: None,
    )
    prepare_data_dir(config.data_dir)
    devnet = Devnet(config, Processes(config.data_dir / "logs"))
    try:
        asyncio.run(start_network(devnet))
        yield devnet
    finally:
        devnet.processes.stop_all()


def get_json(url: str) -> Any:
    response = http("GET", url, timeout=10)
    assert response.status == 200, (url, response.status, response.body[:300])
    return response.json()


def is_serving(url: str) -> bool:
    with contextlib.suppress(OSError):
        return http("GET", url, timeout=5).status == 200
    return False


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def get_neuron(devnet: Devnet, hotkey: str) -> dict[str, Any]:
    netuid = devnet.subnets["embedding"]
    graph = get_json(f"{devnet.node_url}/v1/subnets/{netuid}/metagraph")
    neuron: dict[str, Any] = next(n for n in graph["neurons"] if n["hotkey"] == hotkey)
    return neuron


# --- the load ------------------------------------------------------------------------------------


@dataclass
class Load:
    """What a load thread sent and what came of it."""

    sent: int = 0
    acknowledged: list[str] = field(default_factory=list)  # tx hashes, or request ids
    failures: Counter[str] = field(default_factory=Counter)
    error: BaseException | None = None  # what stopped the thread before its time


class LoadThread(threading.Thread, ABC):
    """Calls ``send_one`` every ``pause_s`` until ``stop``; a failure it does not expect
    ends the thread and is kept for the test to raise."""

    def __init__(self, pause_s: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.pause_s = pause_s
        self.stop = stop
        self.load = Load()

    def run(self) -> None:
        try:
            while not self.stop.wait(self.pause_s):
                self.send_one()
        except BaseException as error:
            self.load.error = error

    @abstractmethod
    def send_one(self) -> None:
        """One request or transaction, its outcome counted in ``load``."""


class RequestLoad(LoadThread):
    """Embeddings through the gateway with the official client, one after another."""

    def __init__(self, gateway_url: str, seed: int, stop: threading.Event) -> None:
        super().__init__(REQUEST_PAUSE_S, stop)
        self.client = openai.OpenAI(
            base_url=gateway_url, api_key="unused", max_retries=0, timeout=60.0
        )
        self.rng = random.Random(seed)

    def send_one(self) -> None:
        text = " ".join(self.rng.choices(WORDS, k=self.rng.randint(2, 12)))
        self.load.sent += 1
        try:
            raw = self.client.embeddings.with_raw_response.create(model=MODEL, input=[text])
        except openai.APIStatusError as error:
            self.load.failures[f"http {error.status_code}"] += 1
            return
        except openai.APIConnectionError as error:
            self.load.failures[type(error).__name__] += 1
            return
        assert len(raw.parse().data[0].embedding) == 384
        self.load.acknowledged.append(raw.headers["Agora-Request-Id"])


class TransferLoad(LoadThread):
    """Signed transfers from a dev account, each submitted once; after a failure the next
    nonce is read again from the node (what was not acknowledged may still be included)."""

    def __init__(self, node_url: str, seed: int, stop: threading.Event) -> None:
        super().__init__(TRANSFER_PAUSE_S, stop)
        self.node_url = node_url
        self.sender = Keypair(compute_dev_seed("dev2"))
        self.recipient = Address(Keypair(random.Random(seed).randbytes(32)).public_key)
        chain = get_json(f"{node_url}/v1/chain")
        self.chain_id, self.fee = chain["chain_id"], chain["params"]["min_fee"]
        self.nonce: int | None = None
        self.unacknowledged: list[str] = []  # sent, no answer: included or not, both are fine

    def send_one(self) -> None:
        if self.nonce is None:
            with contextlib.suppress(OSError):  # the node is down: read it again next time
                self.nonce = self.read_next_nonce()
            return
        self.submit(self.nonce)

    def read_next_nonce(self) -> int | None:
        response = http("GET", f"{self.node_url}/v1/accounts/{self.sender.address}", timeout=10)
        return int(response.json()["next_nonce"]) if response.status == 200 else None

    def submit(self, nonce: int) -> None:
        raw = make_transaction(
            chain_id=self.chain_id,
            public_key=self.sender.public_key,
            sign=self.sender.sign,
            nonce=nonce,
            fee=self.fee,
            body=Transfer(recipient=self.recipient, amount=TRANSFER_AMOUNT),
        )
        tx_hash = to_hex(compute_transaction_hash(raw))
        self.load.sent += 1
        self.nonce = None  # unless acknowledged
        body = {"transactions": [{"raw": to_hex(raw)}]}
        try:
            response = http("POST", f"{self.node_url}/v1/transactions", body, timeout=10)
        except OSError as error:  # the node is down, or went down before it answered
            self.load.failures[type(error).__name__] += 1
            self.unacknowledged.append(tx_hash)
            return
        if not 200 <= response.status < 300:
            self.load.failures[f"http {response.status}"] += 1
            self.unacknowledged.append(tx_hash)
            return
        assert response.json()["hashes"] == [tx_hash]
        self.load.acknowledged.append(tx_hash)
        self.nonce = nonce + 1


def is_flowing(thread: LoadThread) -> bool:
    return bool(thread.load.acknowledged) or thread.load.error is not None


@contextlib.contextmanager
def steady_load(devnet: Devnet) -> Iterator[list[LoadThread]]:
    stop = threading.Event()
    threads: list[LoadThread] = [
        RequestLoad(devnet.gateway_url, SEED + i, stop) for i in range(REQUEST_WORKERS)
    ]
    threads.append(TransferLoad(devnet.node_url, SEED, stop))
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(is_flowing(t) for t in threads), RESTART_TIMEOUT_S, "answers")
        yield threads
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)


# --- the campaign --------------------------------------------------------------------------------


def draw_schedule(rng: random.Random) -> list[tuple[str, float]]:
    """(role, pause before its kill) for every kill, in a seeded order."""
    roles = [role for role, count in KILLS.items() for _ in range(count)]
    rng.shuffle(roles)
    return [(role, rng.uniform(*PAUSE_S)) for role in roles]


def choose_victim(devnet: Devnet, role: str, rng: random.Random) -> Child:
    children = [c for c in devnet.processes.children if c.role == role]
    if role == "miner":
        children = [c for c in children if c.behaviour == "honest"]
    return rng.choice(children)


def restart(devnet: Devnet, child: Child, count: int) -> Child:
    """SIGKILL ``child`` and start its command line again, with its log in a new file."""
    child.process.send_signal(signal.SIGKILL)
    child.process.wait()
    devnet.processes.children.remove(child)
    argv = [str(arg) for arg in child.process.args]
    again = devnet.processes.start(f"{child.name}-restart-{count}", child.role, argv, child_env())
    again.name = child.name  # the same participant; its log file says which run
    again.netuid, again.behaviour, again.hotkey = child.netuid, child.behaviour, child.hotkey
    return again


def wait_serving_again(devnet: Devnet, child: Child) -> None:
    """Until the restarted process does its work again: the node and the gateway answer, the
    miner's new endpoint is on chain, the validator has scored a round."""

    def ready() -> bool:
        assert child.process.poll() is None, f"{child.name} exited:\n{tail(child.log, 30)}"
        if child.role == "node":
            return is_serving(f"{devnet.node_url}/v1/head")
        if child.role == "gateway":
            return is_serving(devnet.gateway_url.removesuffix("/v1") + "/health")
        log = child.log.read_text(errors="replace")
        if child.role == "validator":
            return re.search(r"uid\s+\d+ \S+ score ", log) is not None
        serving = re.search(r"serving \S+ at (http://\S+) as uid", log)
        return serving is not None and get_neuron(devnet, child.hotkey)["endpoint"].startswith(
            serving.group(1)
        )

    wait_until(ready, RESTART_TIMEOUT_S, f"{child.name} to serve again")


def assert_all_running(devnet: Devnet) -> None:
    for child in devnet.processes.children:
        code = child.process.poll()
        assert code is None, f"{child.name} exited ({code}) unkilled:\n{tail(child.log, 30)}"


@dataclass
class Campaign:
    kills: Counter[str] = field(default_factory=Counter)
    downtime_s: dict[str, list[float]] = field(default_factory=dict)  # kill to serving again


def run_campaign(devnet: Devnet, rng: random.Random) -> Campaign:
    """Every kill of the schedule, each restarted and serving before the next pause."""
    campaign = Campaign()
    for role, pause_s in draw_schedule(rng):
        time.sleep(pause_s)  # the random instant: the load runs meanwhile
        assert_all_running(devnet)
        victim = choose_victim(devnet, role, rng)
        campaign.kills[role] += 1
        killed_at = time.monotonic()
        wait_serving_again(devnet, restart(devnet, victim, campaign.kills[role]))
        campaign.downtime_s.setdefault(role, []).append(time.monotonic() - killed_at)
    return campaign


# --- the checks ----------------------------------------------------------------------------------


def wait_included(devnet: Devnet, tx_hashes: list[str]) -> None:
    """Until the node reports every acknowledged transaction included (or the timeout)."""
    waiting = list(tx_hashes)

    def settled() -> bool:
        while waiting:
            status = get_json(f"{devnet.node_url}/v1/transactions/{waiting[-1]}")
            if status["status"] != "included":
                return False
            waiting.pop()
        return True

    with contextlib.suppress(AssertionError):
        wait_until(settled, SETTLE_TIMEOUT_S, "the acknowledged transactions")


def wait_one_epoch(devnet: Devnet) -> None:
    netuid = devnet.subnets["embedding"]
    url = f"{devnet.node_url}/v1/subnets/{netuid}/metagraph"
    start = get_json(url)["subnet"]["epoch_index"]
    wait_until(lambda: get_json(url)["subnet"]["epoch_index"] > start, SETTLE_TIMEOUT_S, "epoch")


def get_honest_share(devnet: Devnet) -> tuple[int, int]:
    """(the honest miners' incentive, the subnet's total)."""
    netuid = devnet.subnets["embedding"]
    neurons = get_json(f"{devnet.node_url}/v1/subnets/{netuid}/metagraph")["neurons"]
    honest = {
        c.hotkey for c in devnet.processes.children if c.role == "miner" and c.behaviour == "honest"
    }
    total = sum(n["incentive"] for n in neurons)
    return sum(n["incentive"] for n in neurons if n["hotkey"] in honest), total


def count_inclusions(store: Store) -> dict[str, list[bool]]:
    """Every included transaction's hash: the success of each of its inclusions."""
    inclusions: dict[str, list[bool]] = {}
    for block in iterate_blocks(store, 1):
        receipts = store.get_receipts(block.header.height)
        for raw, receipt in zip(block.transactions, receipts, strict=True):
            tx_hash = to_hex(compute_transaction_hash(raw))
            inclusions.setdefault(tx_hash, []).append(receipt.success)
    return inclusions


def find_lost_transactions(acknowledged: list[str], inclusions: dict[str, list[bool]]) -> list[str]:
    return [h for h in acknowledged if inclusions.get(h) != [True]]


def find_unreceipted_requests(answered: list[str], gateway: GatewayStore) -> list[str]:
    """Answered requests without exactly one receipt saying they were paid."""
    receipts: dict[str, list[tuple[str, int]]] = {}
    for receipt in gateway.list_receipts(limit=1 << 30):
        receipts.setdefault(receipt.request_id, []).append((receipt.status, receipt.cost))
    return [
        request_id
        for request_id in answered
        if len(found := receipts.get(request_id, [])) != 1
        or found[0][0] != "ok"
        or found[0][1] <= 0
    ]


def sum_receipts_by_miner(gateway: GatewayStore) -> Counter[str]:
    """What the receipts say each miner was paid for: the costs of their successful calls."""
    paid: Counter[str] = Counter()
    for receipt in gateway.list_receipts(limit=1 << 30):
        for call in receipt.calls:
            if call["status"] == "ok":
                paid[call["miner"]] += call["cost"]
    return paid


def check_gateway_channels(gateway: GatewayStore, state: State) -> tuple[dict[str, int], list[str]]:
    """The gateway's channels against the chain and its receipts: (totals, problems).

    On chain, every channel the developer opened is one the gateway knows, with the deposit
    it counts (a record whose opening never reached a block carries no voucher); what it
    committed stays within the deposit and covers its receipts; a closed channel's refund is
    what its claims left; each miner claimed at least what the receipts say it was paid for
    (a request whose answer was lost may be claimed as well)."""
    records = {r.channel_id: r for r in gateway.list_channels()}
    payers = {Address(decode_address(r.payer)) for r in records.values()}
    on_chain = {i: c for payer in payers for i, c in get_channels(state, payer=payer)}
    problems = [f"0x{i.hex()} not in the gateway's records" for i in set(on_chain) - set(records)]
    committed: Counter[str] = Counter()
    claimed: Counter[str] = Counter()
    for channel_id, record in records.items():
        chain = on_chain.get(channel_id)
        if chain is None:  # written ahead of an opening that never reached a block
            if record.committed:
                problems.append(f"{record}: vouchers on a channel that is not on chain")
            continue
        refund = chain.deposit - chain.claimed if chain.closed else 0
        if (record.deposit, record.refund) != (chain.deposit, refund):
            problems.append(f"{record} against {chain}")
        if record.committed > record.deposit:
            problems.append(f"{record}: committed above the deposit")
        committed[record.payee] += record.committed
        claimed[record.payee] += chain.claimed
    paid = sum_receipts_by_miner(gateway)
    for miner, amount in paid.items():
        if amount > min(committed[miner], claimed[miner]):
            problems.append(f"{miner}: receipts {amount}, {committed[miner]}, {claimed[miner]}")
    totals = {
        "count": len(records),
        "closed": sum(r.closed for r in records.values()),
        "deposit": sum(r.deposit for r in records.values()),
        "committed": sum(committed.values()),
        "claimed": sum(claimed.values()),
        "receipts_paid": sum(paid.values()),
    }
    return totals, problems


def find_unclaimed_vouchers(devnet: Devnet, state: State) -> list[str]:
    """Vouchers a miner kept above what its channel's claims reached on chain."""
    channels = dict(get_channels(state))
    unclaimed = []
    netuid = devnet.subnets["embedding"]
    for path in (devnet.data_dir / "miners").glob(f"vouchers-{netuid}-*.sqlite"):
        store = VoucherStore(path)
        try:
            for voucher in store.load():
                if channels[voucher.channel_id].claimed < voucher.cumulative:
                    unclaimed.append(f"{path.name}: 0x{voucher.channel_id.hex()}")
        finally:
            store.close()
    return unclaimed


def write_figures(figures: dict[str, Any]) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(figures, indent=2) + "\n")
    print("\nfault campaign: " + json.dumps(figures, separators=(",", ":")))


def read_stores(devnet: Devnet) -> tuple[State, dict[str, list[bool]], GatewayStore]:
    store = Store(devnet.data_dir / "node" / "node.db")
    try:
        return (
            store.load_state(),
            count_inclusions(store),
            GatewayStore(devnet.data_dir / "gateway" / "gateway.db"),
        )
    finally:
        store.close()


def check_supply_invariant(state: State) -> str:
    """ "holds", or what the invariant found."""
    try:
        check_invariants(state)
    except InvariantViolated as error:
        return error.message
    return "holds"


def collect_figures(
    devnet: Devnet, campaign: Campaign, threads: list[LoadThread], share: tuple[int, int]
) -> dict[str, Any]:
    """The campaign's figures, read from the load threads and the stopped network's stores."""
    requests = [t.load for t in threads if isinstance(t, RequestLoad)]
    transfer_load = next(t for t in threads if isinstance(t, TransferLoad))
    transfers = transfer_load.load
    # A transaction sent again after no answer has the same bytes (same nonce): acknowledged.
    unacknowledged = set(transfer_load.unacknowledged) - set(transfers.acknowledged)
    answered = [request_id for load in requests for request_id in load.acknowledged]
    state, inclusions, gateway = read_stores(devnet)
    try:
        channels, channel_problems = check_gateway_channels(gateway, state)
        losses = {
            "transactions": find_lost_transactions(transfers.acknowledged, inclusions),
            "receipts": find_unreceipted_requests(answered, gateway),
            "vouchers": find_unclaimed_vouchers(devnet, state),
            "channels": channel_problems,
        }
    finally:
        gateway.close()
    return {
        "seed": SEED,
        "kills": dict(campaign.kills),
        "downtime_s": {r: round(max(d), 1) for r, d in sorted(campaign.downtime_s.items())},
        "requests": {
            "sent": sum(load.sent for load in requests),
            "answered": len(answered),
            "failed": dict(sum((load.failures for load in requests), Counter())),
        },
        "transactions": {
            "sent": transfers.sent,
            "acknowledged": len(transfers.acknowledged),
            "included": sum(h in inclusions for h in transfers.acknowledged),
            "unacknowledged_included": len(unacknowledged & set(inclusions)),
            "failed": dict(transfers.failures),
        },
        "channels": channels,
        "losses": losses,
        "supply_invariant": check_supply_invariant(state),
        "honest_incentive": list(share),
        "exit_codes": {c.name: c.process.returncode for c in devnet.processes.children},
    }


# Three to four minutes on 2 busy cores; the margin is for a machine busier still.
@pytest.mark.timeout(1800)
def test_nothing_acknowledged_is_lost_when_processes_are_killed(network: Devnet) -> None:
    started = time.monotonic()
    with steady_load(network) as threads:
        campaign = run_campaign(network, random.Random(SEED))
    assert [t.load.error for t in threads] == [None] * len(threads)
    assert_all_running(network)
    transfers = next(t.load for t in threads if isinstance(t, TransferLoad))
    wait_included(network, transfers.acknowledged)
    wait_one_epoch(network)
    honest, total = get_honest_share(network)
    network.processes.stop_all()
    figures = collect_figures(network, campaign, threads, (honest, total))
    figures["wall_s"] = round(time.monotonic() - started)
    write_figures(figures)
    assert all(not lost for lost in figures["losses"].values()), figures["losses"]
    assert set(figures["exit_codes"].values()) == {0}, figures["exit_codes"]
    assert figures["supply_invariant"] == "holds"
    assert total > 0 and honest * 100 >= total * 95, (honest, total)

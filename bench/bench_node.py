"""A node end to end: transfers over HTTP until included, and a follower's catch-up speed.

    .venv/bin/python -m bench.bench_node [--senders N] [--batched N] [--single N] [--profile]

(a) raw ed25519 verifications per second (``nacl.bindings.crypto_sign_open``, the call the
    protocol makes) on the bench's own transfers: the limit every other figure is held to;
(b) signed transfers per second through a node process (``agora node run --dev
    --block-time-ms 0``), from submission of the first to inclusion of the last, by
    concurrent aiohttp clients, twice: requests of 100 transactions (several hundred in
    flight) and single-transaction requests (one in flight per sender, several hundred);
    also the node's own block-apply speed (its ``agora_block_apply_seconds``);
(c) a follower process syncing that chain from scratch: transactions per second of the
    blocks it re-executes, wall clock from its start to the leader's head; compared with
    (b)'s apply speed and with ``build_block`` and ``apply_block`` run in this process on
    the same blocks.

(d) the API while large blocks are built: a node sealing a block every 2 s receives
    requests of 2,000 transfers, so that its blocks hold up to 10,000 transactions, while a
    probe asks ``/health`` every 5 ms; the probe's p50, p99 and worst latency.

Goals: (b)/(a) >= 0.3 for both request sizes, with the p50/p99 time to acknowledge a
submission; (c)/apply >= 0.8; (d) p99 < 50 ms. Transactions are signed before any clock
starts; nothing here asserts, it prints figures and ratios. ``--profile`` runs the leader
and the follower under cProfile and prints where their time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
from nacl.bindings import crypto_sign_open
from nacl.signing import SigningKey

from agora.client.transactions import make_transaction
from agora.node.devchain import DEV_CHAIN_ID, get_dev_accounts
from agora.node.store import Store
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.blocks import Block
from agora.protocol.genesis import create_genesis_state
from agora.protocol.params import Params
from agora.protocol.transition import apply_block, build_block

SIGNATURE_SIZE = 64
BATCH_SIZE = 100
_URL_PATTERN = re.compile(r"API\s+(http://[0-9.]+:[0-9]+)/v1")


# --- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sync:
    from_start_seconds: float  # process start (Python, imports, genesis) to the leader's head
    from_ready_seconds: float  # API up (the sync loop starts) to the leader's head
    apply_seconds: float  # inside apply_block + commit, the follower's own metrics


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    url: str
    stdout: Path


def start(args: list[str], log: Path, profile: Path | None) -> Process:
    """``agora ARGS --port 0``, optionally under cProfile; waits for its URL."""
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "agora", *args, "--port", "0"]
    env = os.environ | {"COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while (match := _URL_PATTERN.search(log.read_text(errors="replace"))) is None:
        if popen.poll() is not None or time.monotonic() > deadline:
            stop(Process(popen, "", log))
            raise RuntimeError(f"the node did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.02)
    return Process(popen, match.group(1), log)


def stop(process: Process) -> None:
    if process.popen.poll() is None:
        process.popen.send_signal(signal.SIGTERM)
        try:
            process.popen.wait(30)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


# --- transactions ------------------------------------------------------------------------------


def make_senders(count: int) -> list[SigningKey]:
    return [SigningKey(account.seed) for account in get_dev_accounts(count)]


def sign_transfers(
    senders: list[SigningKey], first_nonce: int, per_sender: int
) -> list[list[bytes]]:
    """For each sender, ``per_sender`` transfers (to the next sender) in nonce order."""
    fee = Params().min_fee
    lanes = []
    for index, key in enumerate(senders):
        recipient = Address(bytes(senders[(index + 1) % len(senders)].verify_key))
        lanes.append(
            [
                make_transaction(
                    chain_id=DEV_CHAIN_ID,
                    public_key=bytes(key.verify_key),
                    sign=lambda message, key=key: key.sign(message).signature,
                    nonce=nonce,
                    fee=fee,
                    body=Transfer(recipient=recipient, amount=1 + nonce % 7),
                )
                for nonce in range(first_nonce, first_nonce + per_sender)
            ]
        )
    return lanes


def measure_verify_rate(raws: list[bytes]) -> float:
    """(a): verifications per second, exactly as ``validate_basic`` calls libsodium."""
    key_offset = 8 + len(DEV_CHAIN_ID.encode())  # magic, chain id length, chain id
    prepared = [
        (raw[-SIGNATURE_SIZE:] + raw[:-SIGNATURE_SIZE], raw[key_offset : key_offset + 32])
        for raw in raws
    ]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for signed, public_key in prepared:
            crypto_sign_open(signed, public_key)
        best = min(best, time.perf_counter() - started)
    return len(prepared) / best


def encode_request(raws: list[bytes]) -> bytes:
    return orjson.dumps({"transactions": [{"raw": "0x" + raw.hex()} for raw in raws]})


# --- (b) submission until inclusion -------------------------------------------------------------


async def post_all(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], latencies: list[float]
) -> None:
    """One lane: each request after the previous one's answer (nonces stay in order)."""
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        sent = time.perf_counter()
        async with session.post(url + "/v1/transactions", data=body, headers=headers) as answer:
            if answer.status != 202:
                raise RuntimeError(f"refused ({answer.status}): {await answer.read()!r}")
            await answer.read()
        latencies.append(time.perf_counter() - sent)


async def read_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as answer:
        text = await answer.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Throughput:
    transactions: int
    seconds: float
    in_flight: int
    apply_seconds: float
    node_cpu_seconds: float
    client_cpu_seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.transactions / self.seconds

    @property
    def apply_rate(self) -> float:
        return self.transactions / self.apply_seconds

    def latency_ms(self, quantile: float) -> float:
        """A submission's time from request to acknowledgement (202), in milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


async def submit_until_included(
    node: Process, lanes: list[list[bytes]], in_flight: int
) -> Throughput:
    """Post every lane concurrently; the clock stops when nothing is left pending."""
    url = node.url
    transactions = sum(body.count(b'"raw"') for lane in lanes for body in lane)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        before = await read_metrics(session, url)
        node_cpu, client_cpu = cpu_seconds(node.popen.pid), time.process_time()
        latencies: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(post_all(session, url, lane, latencies) for lane in lanes))
        while (metrics := await read_metrics(session, url))["agora_pending_transactions"] > 0:
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        node_cpu = cpu_seconds(node.popen.pid) - node_cpu
        client_cpu = time.process_time() - client_cpu
    applied = (
        metrics['agora_transactions_total{outcome="success"}']
        - (before['agora_transactions_total{outcome="success"}'])
    )
    if applied != transactions or metrics['agora_transactions_total{outcome="failed"}']:
        raise RuntimeError(f"{transactions} sent, {applied} succeeded: the bench inputs are wrong")
    apply_seconds = (
        metrics["agora_block_apply_seconds_sum"] - before["agora_block_apply_seconds_sum"]
    )
    return Throughput(
        transactions, seconds, in_flight, apply_seconds, node_cpu, client_cpu, latencies
    )


def batched_lanes(signed: list[list[bytes]], lanes: int) -> list[list[bytes]]:
    """Requests of BATCH_SIZE: lane l takes every l-th sender, one nonce of each per row."""
    result = []
    for lane in range(lanes):
        senders = signed[lane::lanes]
        ordered = [tx for nonce in range(len(senders[0])) for tx in (s[nonce] for s in senders)]
        result.append(
            [
                encode_request(ordered[i : i + BATCH_SIZE])
                for i in range(0, len(ordered), BATCH_SIZE)
            ]
        )
    return result


def single_lanes(signed: list[list[bytes]]) -> list[list[bytes]]:
    """One lane per sender, one transaction per request."""
    return [[encode_request([raw]) for raw in sender] for sender in signed]


# --- (d) the API's latency while large blocks are built --------------------------------------


@dataclass(frozen=True, slots=True)
class Responsiveness:
    probes: list[float]
    largest_block: int
    blocks: int

    def latency_ms(self, quantile: float) -> float:
        ordered = sorted(self.probes)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


async def probe_health(session: aiohttp.ClientSession, url: str, probes: list[float]) -> None:
    while True:
        sent = time.perf_counter()
        async with session.get(url + "/health") as answer:
            await answer.read()
        probes.append(time.perf_counter() - sent)
        await asyncio.sleep(0.005)


async def health_under_large_blocks(node: Process, lanes: list[list[bytes]]) -> Responsiveness:
    url = node.url
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start_height = await _head_height(url)
        probes: list[float] = []
        prober = asyncio.ensure_future(probe_health(session, url, probes))
        await asyncio.gather(*(post_all(session, url, lane, []) for lane in lanes))
        while (await read_metrics(session, url))["agora_pending_transactions"] > 0:
            await asyncio.sleep(0.05)
        prober.cancel()
        end_height = await _head_height(url)
        sizes = []
        for height in range(start_height + 1, end_height + 1):
            async with session.get(f"{url}/v1/blocks/{height}") as answer:
                sizes.append(len((await answer.json())["transactions"]))
    return Responsiveness(probes=probes, largest_block=max(sizes), blocks=len(sizes))


# --- (c) follower catch-up ----------------------------------------------------------------------


async def wait_caught_up(session: aiohttp.ClientSession, url: str, height: int) -> None:
    while True:
        try:
            async with session.get(url + "/v1/head") as answer:
                if answer.status == 200 and (await answer.json())["height"] >= height:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.01)


async def follow_from_scratch(
    leader_url: str, height: int, work: Path, profile: Path | None
) -> Sync:
    """A fresh follower's time to reach the leader's head ``height``."""
    started = time.perf_counter()
    follower = start(
        ["node", "follow", "--leader", leader_url, "--data-dir", str(work / "follower")],
        work / "follower.log",
        profile,
    )
    ready = time.perf_counter()
    try:
        async with aiohttp.ClientSession() as session:
            await wait_caught_up(session, follower.url, height)
            finished = time.perf_counter()
            metrics = await read_metrics(session, follower.url)
    finally:
        stop(follower)
    return Sync(
        from_start_seconds=finished - started,
        from_ready_seconds=finished - ready,
        apply_seconds=metrics["agora_block_apply_seconds_sum"],
    )


def measure_in_process(data_dir: Path) -> tuple[int, float, float]:
    """The leader's blocks rebuilt with ``build_block`` and replayed with ``apply_block``."""
    store = Store(data_dir / "node.db")
    genesis = store.get_genesis()
    blocks: list[Block] = []
    height = 1
    while (block := store.get_block(height)) is not None:
        blocks.append(block)
        height += 1
    store.close()
    transactions = sum(len(block.transactions) for block in blocks)

    state = create_genesis_state(genesis)
    started = time.perf_counter()
    for block in blocks:
        build_block(state, block.header.timestamp, list(block.transactions))
    build_seconds = time.perf_counter() - started

    state = create_genesis_state(genesis)
    started = time.perf_counter()
    for block in blocks:
        apply_block(state, block)
    return transactions, build_seconds, time.perf_counter() - started


# --- report ------------------------------------------------------------------------------------


def print_profile(title: str, path: Path) -> None:
    if not path.exists():
        print(f"\n(no profile written for {title})")
        return
    print(f"\n--- profile: {title} (top 25 by own time) ---")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)


def verdict(ratio: float, goal: float) -> str:
    return f"{ratio:.3f}  ({'meets' if ratio >= goal else 'MISSES'} goal >= {goal})"


def run(arguments: argparse.Namespace, work: Path) -> None:
    senders = make_senders(arguments.senders)
    per_sender_batched = max(1, arguments.batched // len(senders))
    per_sender_single = max(1, arguments.single // len(senders))
    print(f"signing {len(senders) * (per_sender_batched + per_sender_single)} transfers ...")
    batched = sign_transfers(senders, 0, per_sender_batched)
    single = sign_transfers(senders, per_sender_batched, per_sender_single)
    verify_rate = measure_verify_rate([raw for lane in batched + single for raw in lane])

    profile = work / "leader.prof" if arguments.profile else None
    leader_args = ["node", "run", "--dev", "--dev-accounts", str(len(senders))]
    leader_args += ["--data-dir", str(work / "leader"), "--block-time-ms", "0"]
    leader = start(leader_args, work / "leader.log", profile)
    try:
        lanes = batched_lanes(batched, arguments.lanes)
        in_flight = arguments.lanes * BATCH_SIZE
        by_batch = asyncio.run(submit_until_included(leader, lanes, in_flight))
        by_single = asyncio.run(submit_until_included(leader, single_lanes(single), len(single)))
        height = int(asyncio.run(_head_height(leader.url)))
        follower_profile = work / "follower.prof" if arguments.profile else None
        sync = asyncio.run(follow_from_scratch(leader.url, height, work, follower_profile))
    finally:
        stop(leader)
    transactions, build_seconds, replay_seconds = measure_in_process(work / "leader")
    responsive = measure_responsiveness(arguments, senders, work)

    sync_rate = transactions / sync.from_start_seconds
    sync_ready_rate = transactions / sync.from_ready_seconds
    leader_apply_rate = (by_batch.transactions + by_single.transactions) / (
        by_batch.apply_seconds + by_single.apply_seconds
    )
    build_rate, replay_rate = transactions / build_seconds, transactions / replay_seconds
    print(f"\n{len(senders)} senders; chain of {height} blocks, {transactions} transfers")
    print(f"{'measure':<62}{'tx/s':>10}{'us/tx':>9}")
    rows = [
        ("(a) ed25519 verify, crypto_sign_open", verify_rate),
        (f"(b) HTTP, {BATCH_SIZE}-tx requests, {by_batch.in_flight} tx in flight", by_batch.rate),
        (f"(b) HTTP, 1-tx requests, {by_single.in_flight} in flight", by_single.rate),
        ("    leader block apply (build_block + commit), its own metrics", leader_apply_rate),
        ("(c) follower sync from scratch, wall clock from its start", sync_rate),
        ("    the same, from its API up (Python start-up excluded)", sync_ready_rate),
        ("    follower block apply (apply_block + commit), its own metrics",
         transactions / sync.apply_seconds),
        ("    in-process build_block on the same blocks", build_rate),
        ("    in-process apply_block on the same blocks", replay_rate),
    ]  # fmt: skip
    for name, rate in rows:
        print(f"{name:<62}{rate:>10,.0f}{1e6 / rate:>9.1f}")
    for label, phase in (("100-tx requests", by_batch), ("1-tx requests", by_single)):
        print(
            f"    {label}: node process busy {phase.node_cpu_seconds / phase.seconds:.0%} "
            f"of one core ({1e6 * phase.node_cpu_seconds / phase.transactions:.0f} us CPU/tx, "
            f"of which block apply {1e6 * phase.apply_seconds / phase.transactions:.0f}); "
            f"bench client {phase.client_cpu_seconds / phase.seconds:.0%}"
        )
        print(
            f"    {label}: submission acknowledged (202) p50 {phase.latency_ms(0.5):.1f} ms, "
            f"p99 {phase.latency_ms(0.99):.1f} ms"
        )
    print(
        f"(d) /health every 5 ms while {responsive.blocks} blocks of up to "
        f"{responsive.largest_block} transactions are built: p50 "
        f"{responsive.latency_ms(0.5):.1f} ms, p99 {responsive.latency_ms(0.99):.1f} ms, "
        f"max {1000 * max(responsive.probes):.0f} ms ({len(responsive.probes)} probes)"
    )
    print()
    print(f"(b) batched / (a)            = {verdict(by_batch.rate / verify_rate, 0.3)}")
    print(f"(b) single / (a)             = {verdict(by_single.rate / verify_rate, 0.3)}")
    print(f"(c) / leader apply speed     = {verdict(sync_rate / leader_apply_rate, 0.8)}")
    print(f"(c) / in-process build_block = {verdict(sync_rate / build_rate, 0.8)}")
    print(f"(c) from API up / leader apply = {verdict(sync_ready_rate / leader_apply_rate, 0.8)}")
    p99 = responsive.latency_ms(0.99)
    word = "meets" if p99 < 50 else "MISSES"
    print(f"(d) /health p99              = {p99:.1f} ms  ({word} goal < 50)")
    if arguments.profile:
        print_profile("leader (both submission phases)", work / "leader.prof")
        print_profile("follower (sync)", work / "follower.prof")


def measure_responsiveness(
    arguments: argparse.Namespace, senders: list[SigningKey], work: Path
) -> Responsiveness:
    """(d) on a fresh node that seals every 2 s, so that submissions pile up into big blocks."""
    per_sender = max(1, arguments.large // len(senders))
    signed = sign_transfers(senders, 0, per_sender)
    lanes = []
    for lane in range(4):
        group = signed[lane::4]
        ordered = [tx for nonce in range(per_sender) for tx in (s[nonce] for s in group)]
        lanes.append(
            [encode_request(ordered[i : i + 2_000]) for i in range(0, len(ordered), 2_000)]
        )
    node_args = ["node", "run", "--dev", "--dev-accounts", str(len(senders))]
    node_args += ["--data-dir", str(work / "large"), "--block-time-ms", "2000"]
    node = start(node_args, work / "large.log", None)
    try:
        return asyncio.run(health_under_large_blocks(node, lanes))
    finally:
        stop(node)


async def _head_height(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url + "/v1/head") as answer:
        height: int = (await answer.json())["height"]
        return height


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--senders", type=int, default=400, help="funded dev accounts")
    parser.add_argument("--batched", type=int, default=24_000, help="transfers in 100-tx requests")
    parser.add_argument("--single", type=int, default=8_000, help="transfers in 1-tx requests")
    parser.add_argument("--large", type=int, default=40_000, help="transfers for (d)")
    parser.add_argument("--lanes", type=int, default=8, help="concurrent batched requests")
    parser.add_argument("--profile", action="store_true", help="cProfile leader and follower")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agora-bench-node-"))
    try:
        run(arguments, work)
    finally:
        if arguments.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

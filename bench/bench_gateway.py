"""The gateway's cost: embeddings through ``agora gateway`` next to the same miner called
directly and the model called in this process, in one run.

    .venv/bin/python -m bench.bench_gateway [--texts 16] [--concurrency 4] [--requests 60]
        [--latency-requests 100] [--pace 12]

One dev node, one embedding subnet, one miner process (``agora miner run --price
0.001/request``, the real model) and one gateway process paying from a developer's wallet,
all on this machine. Three ways to the same embeddings:
(a) the model in this process (``MiniLMBackend``, its batcher): the ceiling;
(b) the miner directly over the neuron protocol, paying it with vouchers of a channel opened
    from the same wallet: what a program that pays miners itself gets;
(c) the gateway through the official client (``openai.AsyncOpenAI``, its default base64
    encoding): routing, channel bookkeeping, a receipt per request, the OpenAI wire format;
(d) the gateway through plain aiohttp (no client library's own cost);
(e) the miner directly, each call paid by a hold and then accepted by a verdict (the second
    round trip a verified call adds per miner, ``payments.vouchers``), next to (b).

Throughput: ``--concurrency`` callers send ``--requests`` requests of ``--texts`` texts in
all; embeddings per second. Latency: ``--latency-requests`` one-text requests one after
another, paced at ``--pace`` per second (a caller without stake on the subnet may send 20 a
second to a miner: the neuron protocol's rate for zero stake), p50 and p99 in ms. Printed:
each figure, (c)/(b) and (c)/(a) throughput, (c) - (b) latency: the gateway's overhead, and
(e)/(b) and (e) - (b): what paying only accepted answers adds to a miner call.
Goals: (c)/(b) >= 0.9 and a p50 overhead <= 5 ms. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.neuron.client import NeuronClient
from agora.node.devchain import compute_dev_seed
from agora.payments.vouchers import VERDICT_ROUTE, Hold, make_payment, make_verdict
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.channels import OpenChannel, compute_channel_id, sign_voucher
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet
from agora.tasks.embedding import MODEL, ROUTE, load_corpus
from agora.wallet.keys import Keypair
from agora.wallet.keystore import KDF_PRESETS, Keystore

PASSWORD = "bench-gateway"
AGR = BASE_UNITS_PER_AGR
OWNER = Keypair(compute_dev_seed("dev0"))
FUNDER = Keypair(compute_dev_seed("dev1"))


# --- the network ---------------------------------------------------------------------------------


class Processes:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], pattern: str, timeout_s: float = 600) -> str:
        """Start ``argv``; return the first match of ``pattern`` in its output."""
        log = self.root / f"{name}.log"
        env = os.environ | {"AGORA_WALLET_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as handle:
            process = subprocess.Popen(
                argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.started.append(process)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, log.read_text(errors="replace"))
            if found:
                return found.group(1)
            if process.poll() is not None:
                raise SystemExit(f"{name} exited:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise SystemExit(f"{name} did not start in {timeout_s} s")

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def agora(*args: str) -> list[str]:
    return [sys.executable, "-m", "agora", *args]


def gateway_command() -> list[str]:
    from agora.cli.main import app

    wired = any(group.name == "gateway" for group in app.registered_groups)
    return [sys.executable, "-m", "agora" if wired else "agora.cli.gateway", "gateway"]


async def prepare_chain(url: str, keystore: Keystore) -> tuple[int, Keypair, Keypair]:
    """The subnet, and funded wallets: the miner's and the developer's."""
    async with NodeClient(url) as client:
        body = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
        await submit_and_wait(client, OWNER, body, "subnet")
        netuid = max(s["netuid"] for s in (await client.request("GET", "/v1/subnets"))["subnets"])
        miner = keystore.create_wallet("miner", PASSWORD, kdf=KDF_PRESETS["minimum"])
        keystore.create_hotkey("miner", "default")
        developer = keystore.create_wallet("developer", PASSWORD, kdf=KDF_PRESETS["minimum"])
        for key in (miner, developer):
            body = Transfer(recipient=Address(key.public_key), amount=10_000 * AGR)
            await submit_and_wait(client, FUNDER, body, "funding")
        return netuid, keystore.load_hotkey("miner", "default"), developer


async def find_miner(url: str, netuid: int, hotkey: Keypair) -> str:
    async with NodeClient(url) as client:
        while True:
            graph = await client.request("GET", f"/v1/subnets/{netuid}/metagraph")
            for neuron in graph["neurons"]:
                if neuron["hotkey"] == hotkey.address and neuron["endpoint"]:
                    return str(neuron["endpoint"]).split("#", 1)[0]
            await asyncio.sleep(0.5)


# --- the ways -------------------------------------------------------------------------------------


Call = Callable[[list[str]], Awaitable[Any]]


async def measure_throughput(call: Call, texts: list[str], args: Any) -> float:
    """Embeddings per second: ``--concurrency`` callers share ``--requests`` requests."""
    batches = [
        [texts[(i * args.texts + j) % len(texts)] for j in range(args.texts)]
        for i in range(args.requests)
    ]
    for batch in batches[:2]:  # warm: connections, channels, caches
        await call(batch)

    async def caller() -> None:
        while batches:
            await call(batches.pop())

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    return args.requests * args.texts / (time.perf_counter() - started)


async def measure_latency(
    ways: dict[str, Call], texts: list[str], args: Any
) -> dict[str, list[float]]:
    """One-text requests, each way once per round in a shuffled order (a miner woken from
    idle answers its first request slower), paced: each round sees the same machine."""
    latencies: dict[str, list[float]] = {name: [] for name in ways}
    interval = len(ways) / args.pace
    rng = random.Random(7)
    for index in range(args.latency_requests):
        began = time.perf_counter()
        order = list(ways.items())
        rng.shuffle(order)
        for name, call in order:
            started = time.perf_counter()
            await call([texts[index % len(texts)]])
            latencies[name].append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))
    return latencies


class DirectCaller:
    """The miner over the neuron protocol, paid with vouchers of the developer's channel."""

    def __init__(self, url: str, miner: Keypair, developer: Keypair, chain_id: str) -> None:
        self.url, self.miner, self.developer, self.chain_id = url, miner, developer, chain_id
        self.neurons = NeuronClient(developer)
        self.channel = b""
        self.cumulative = 0

    async def open(self, node_url: str, netuid: int) -> None:
        async with NodeClient(node_url) as client:
            nonce = (await client.get_account(self.developer.address))["next_nonce"]
            head = (await client.get_head())["height"]
            body = OpenChannel(
                payee=Address(self.miner.public_key),
                netuid=netuid,
                deposit=100 * AGR,
                expiry=head + 100_000,
            )
            await submit_and_wait(client, self.developer, body, "opening")
        self.channel = compute_channel_id(Address(self.developer.public_key), nonce)

    async def __call__(self, texts: list[str]) -> Any:
        # Every call succeeds here, so consecutive amounts are exactly the gateway's rule.
        self.cumulative += 1_000_000
        voucher = sign_voucher(self.chain_id, self.channel, self.cumulative, self.developer.sign)
        body = {"model": MODEL, "texts": texts, "payment": make_payment(voucher)}
        return (await self.neurons.call(self.url, self.miner.public_key, ROUTE, body)).body


class HoldCaller(DirectCaller):
    """(e): each call paid by a hold, then accepted: the verdict's voucher pays it."""

    async def __call__(self, texts: list[str]) -> Any:
        self.cumulative += 1_000_000
        amount = self.cumulative
        hold = Hold(channel_id=self.channel, cumulative=amount)
        body = {"model": MODEL, "texts": texts, "payment": make_payment(hold)}
        answer = (await self.neurons.call(self.url, self.miner.public_key, ROUTE, body)).body
        voucher = sign_voucher(self.chain_id, self.channel, amount, self.developer.sign)
        verdict = make_verdict([voucher], [])
        await self.neurons.call(self.url, self.miner.public_key, VERDICT_ROUTE, verdict)
        return answer


async def run(args: Any, root: Path) -> None:
    processes = Processes(root)
    try:
        node_url = processes.start(
            "node",
            agora(
                "node",
                "run",
                "--dev",
                "--dev-accounts",
                "4",
                "--data-dir",
                str(root / "node"),
                "--block-time-ms",
                "0",
                "--port",
                "0",
            ),
            r"API\s+(http://[0-9.]+:[0-9]+)/v1",
        )
        keystore = Keystore(root / "wallets")
        netuid, miner, developer = await prepare_chain(node_url, keystore)
        common = ["--node", node_url, "--wallet-dir", str(root / "wallets")]
        processes.start(
            "miner",
            agora(
                "miner",
                "run",
                "--netuid",
                str(netuid),
                "--wallet",
                "miner",
                "--hotkey",
                "default",
                "--price",
                "0.001/request",
                "--yes",
                *common,
            ),
            r"(serving)",
        )
        endpoint = await find_miner(node_url, netuid, miner)
        gateway_url = processes.start(
            "gateway",
            [
                *gateway_command(),
                "--wallet",
                "developer",
                "--port",
                "0",
                "--deposit",
                "50",
                "--data-dir",
                str(root / "gateway"),
                *common,
            ],
            r"OpenAI API at (http://[0-9.]+:[0-9]+/v1)",
        )
        texts = list(load_corpus())
        async with NodeClient(node_url) as client:
            chain_id = (await client.get_chain())["chain_id"]
        import aiohttp
        import openai
        import orjson

        from agora.tasks.embedding import MiniLMBackend

        backend = await MiniLMBackend.load()
        official = openai.AsyncOpenAI(base_url=gateway_url, api_key="unused", max_retries=0)
        session = aiohttp.ClientSession()
        direct = DirectCaller(endpoint, miner, developer, chain_id)
        await direct.open(node_url, netuid)
        held = HoldCaller(endpoint, miner, developer, chain_id)
        await held.open(node_url, netuid)

        async def through_official(batch: list[str]) -> Any:
            return await official.embeddings.create(model=MODEL, input=batch)

        async def through_plain(batch: list[str]) -> Any:
            body = orjson.dumps({"model": MODEL, "input": batch, "encoding_format": "base64"})
            headers = {"Content-Type": "application/json"}
            async with session.post(gateway_url + "/embeddings", data=body, headers=headers) as r:
                return orjson.loads(await r.read())

        ways: dict[str, Call] = {
            "(a) model in-process": backend.embed,
            "(b) miner direct, neuron": direct,
            "(c) gateway, openai client": through_official,
            "(d) gateway, plain aiohttp": through_plain,
            "(e) miner direct, hold+verdict": held,
        }
        throughput: dict[str, list[float]] = {name: [] for name in ways}
        rng = random.Random(11)
        for _ in range(args.repeats):
            order = list(ways.items())
            rng.shuffle(order)
            for name, call in order:
                throughput[name].append(await measure_throughput(call, texts, args))
        latency = await measure_latency(ways, texts, args)
        await direct.neurons.close()
        await held.neurons.close()
        await official.close()
        await session.close()
        report(throughput, latency, args)
        report_inside(root / "gateway" / "gateway.db")
    finally:
        processes.stop_all()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def report(throughput: dict[str, list[float]], latency: dict[str, list[float]], args: Any) -> None:
    print(
        f"\nthroughput: {args.requests} requests of {args.texts} texts, {args.concurrency} "
        f"concurrent, {args.repeats} interleaved rounds (median, best); latency: "
        f"{args.latency_requests} one-text requests per way, interleaved"
    )
    print(f"{'':30} {'emb/s med':>10} {'emb/s best':>11} {'p50 ms':>8} {'p99 ms':>8}")
    rate = {}
    for name, values in throughput.items():
        rate[name] = statistics.median(values)
        p50, p99 = statistics.median(latency[name]), percentile(latency[name], 0.99)
        print(f"{name:30} {rate[name]:10.1f} {max(values):11.1f} {p50:8.2f} {p99:8.2f}")
    a, b, c, d, e = (rate[name] for name in throughput)
    names = list(throughput)
    direct, official, plain, held = (latency[name] for name in names[1:])
    print(f"\n(c)/(b) throughput {c / b:.3f}  (goal >= 0.9)")
    print(f"(d)/(b) throughput {d / b:.3f}   (b)/(a) {b / a:.3f}   (c)/(a) {c / a:.3f}")
    held_overhead = statistics.median(held) - statistics.median(direct)
    print(f"(e)/(b) throughput {e / b:.3f}   (e) - (b) latency: p50 {held_overhead:.2f} ms")
    for label, way in (("(c)", official), ("(d)", plain)):
        paired = [x - y for x, y in zip(way, direct, strict=True)]
        overhead = statistics.median(way) - statistics.median(direct)
        print(
            f"{label} - (b) latency: p50 {overhead:.2f} ms, median of paired differences "
            f"{statistics.median(paired):.2f} ms  (goal <= 5 ms)"
        )


def report_inside(path: Path) -> None:
    """From the gateway's own receipts: its time around the miner call, immune to the order
    and pace the callers see (the HTTP in front of it is not included)."""
    from agora.gateway.store import GatewayStore

    store = GatewayStore(path)
    try:
        receipts = store.list_receipts(limit=100_000)
    finally:
        store.close()
    around = [r.latency_ms - r.calls[0]["latency_ms"] for r in receipts if len(r.calls) == 1]
    print(
        f"inside the gateway, around the miner call ({len(around)} receipts): "
        f"p50 {statistics.median(around):.0f} ms, p99 {percentile(around, 0.99):.0f} ms "
        "(whole milliseconds)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--texts", type=int, default=16, help="texts per throughput request")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent callers")
    parser.add_argument("--requests", type=int, default=60, help="throughput requests per way")
    parser.add_argument("--latency-requests", type=int, default=100, help="one-text requests")
    parser.add_argument("--pace", type=float, default=12.0, help="miner requests per second")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved throughput rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as directory:
        asyncio.run(run(args, Path(directory)))


if __name__ == "__main__":
    main()

"""Paid calls through the ``@service`` server against the same function behind a bare handler.

    .venv/bin/python -m bench.bench_services [--calls N] [--callers N] [--latency-calls N]

A dev node runs in its own process. For each function, a trivial one and one that does about
5 ms of work (sha256 over a buffer, calibrated here), two servers are measured in turn, each
in its own process:
(a) bare: an aiohttp handler that reads the JSON arguments, calls the function and answers
    its JSON result: no schema, no payment, no signature;
(b) paid: the function decorated with ``@service`` and served by ``ServiceServer``: schema
    check, x402 payment with a channel voucher (the payment gate's checks and books), the
    function, the answer signed by the owner hotkey; called by ``agora.agents.Client``,
    which signs a voucher per call and verifies every answer's signature.

Printed per function: calls per second of each with ``--callers`` concurrent callers, the
ratio (b)/(a), and the median latency of one caller at a time for each, with what payment
adds. The paid client's channel is opened before timing starts. Goal: ratio >= 0.8 for the
5 ms function, and <= 2 ms added at the median. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from agora.agents import Client, service
from agora.agents.decorator import get_definition
from agora.agents.server import ServeConfig, ServiceServer
from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.node.devchain import compute_dev_seed
from agora.process import run_until_signal
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet
from agora.wallet.keys import Keypair

OWNER = Keypair(compute_dev_seed("dev0"))
SELLER = Keypair(hashlib.sha256(b"agora-bench-services:seller").digest())
BUYER = Keypair(hashlib.sha256(b"agora-bench-services:buyer").digest())
_URL = re.compile(r"(http://127\.0\.0\.1:[0-9]+)")
BUFFER = bytes(1 << 16)
ROUNDS = {"rounds": 1}


def work(rounds: int) -> str:
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(BUFFER + digest).digest()
    return digest.hex()


@service(name="bench-trivial", price=1000, tags=("bench",))
def trivial(text: str) -> str:
    return text


@service(name="bench-5ms", price=1000, tags=("bench",))
def five_ms(text: str) -> str:
    return work(ROUNDS["rounds"])


FUNCTIONS = {"trivial": trivial, "5ms": five_ms}


def calibrate_rounds(target_s: float = 0.005) -> int:
    start = time.perf_counter()
    work(200)
    per_round = (time.perf_counter() - start) / 200
    return max(1, round(target_s / per_round))


# --- the server process --------------------------------------------------------------------


async def serve_bare(function: Any) -> None:
    async def handle(request: web.Request) -> web.Response:
        arguments = orjson.loads(await request.read())
        return web.Response(
            body=orjson.dumps(function(**arguments)), content_type="application/json"
        )

    app = web.Application()
    app.add_routes([web.post("/call", handle)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await run_until_signal(lambda stop: stop.wait())
    await runner.cleanup()


async def serve_paid(function: Any, node_url: str, netuid: int) -> None:
    async with NodeClient(node_url) as client:
        config = ServeConfig(node_url=node_url, netuid=netuid, claim_interval_s=3600)
        server = ServiceServer(get_definition(function), SELLER, config, client)
        print(await server.start(), flush=True)
        await run_until_signal(server.run)


def run_server(arguments: argparse.Namespace) -> None:
    ROUNDS["rounds"] = arguments.rounds
    function = FUNCTIONS[arguments.function]
    if arguments.kind == "bare":
        asyncio.run(serve_bare(function))
    else:
        asyncio.run(serve_paid(function, arguments.node, arguments.netuid))


# --- the bench -------------------------------------------------------------------------------


def start_process(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=out, env=os.environ
        )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        match = _URL.search(line)
        if match:
            return process, match.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"no URL from {args}: see {log}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def prepare_chain(node_url: str) -> int:
    async with NodeClient(node_url) as client:
        body = CreateSubnet(task_kind="custom", task_config="{}", owner_hotkey=NO_HOTKEY)
        await submit_and_wait(client, OWNER, body, "creating a subnet")
        for key in (SELLER, BUYER):
            transfer = Transfer(recipient=Address(key.public_key), amount=100 * BASE_UNITS_PER_AGR)
            await submit_and_wait(client, OWNER, transfer, "funding")
        subnets = (await client.request("GET", "/v1/subnets"))["subnets"]
        return max(int(s["netuid"]) for s in subnets)


async def measure_bare(
    url: str, calls: int, callers: int, latency_calls: int
) -> tuple[float, float]:
    body = orjson.dumps({"text": "bench"})
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with session.post(url + "/call", data=body) as response:
                await response.read()

        return await measure(one, calls, callers, latency_calls)


async def measure_paid(
    url: str, node_url: str, name: str, calls: int, callers: int, latency_calls: int
) -> tuple[float, float]:
    total = calls + latency_calls + 100
    async with Client(node_url=node_url, payer=BUYER, deposit_calls=total) as client:
        (found,) = [s for s in await client.node.list_services(tag="bench") if s["name"] == name]
        info = await client.check_endpoint(found)
        await client.call(info, {"text": "open the channel"})

        async def one() -> None:
            await client.call(info, {"text": "bench"})

        return await measure(one, calls, callers, latency_calls)


async def measure(one: Any, calls: int, callers: int, latency_calls: int) -> tuple[float, float]:
    """(calls per second with ``callers`` at once, median seconds of one call at a time)."""
    for _ in range(20):
        await one()
    latencies = []
    for _ in range(latency_calls):
        start = time.perf_counter()
        await one()
        latencies.append(time.perf_counter() - start)
    remaining = [calls]

    async def caller() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return calls / (time.perf_counter() - start), statistics.median(latencies)


def run_bench(arguments: argparse.Namespace) -> None:
    rounds = calibrate_rounds()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        node, node_url = start_process(
            [
                "-m",
                "agora",
                "node",
                "run",
                "--dev",
                "--data-dir",
                str(root / "node"),
                "--block-time-ms",
                "0",
                "--port",
                "0",
            ],
            root / "node.log",
        )
        try:
            netuid = asyncio.run(prepare_chain(node_url))
            print(f"5 ms function: {rounds} sha256 rounds over 64 KiB")
            print(
                f"{'function':<9} {'bare/s':>8} {'paid/s':>8} {'ratio':>6} "
                f"{'bare p50':>9} {'paid p50':>9} {'added':>8}"
            )
            for function in ("trivial", "5ms"):
                results = {}
                for kind in ("bare", "paid"):
                    server, url = start_process(
                        [
                            "-m",
                            "bench.bench_services",
                            "serve",
                            "--kind",
                            kind,
                            "--function",
                            function,
                            "--rounds",
                            str(rounds),
                            "--node",
                            node_url,
                            "--netuid",
                            str(netuid),
                        ],
                        root / f"{kind}-{function}.log",
                    )
                    try:
                        if kind == "bare":
                            results[kind] = asyncio.run(
                                measure_bare(
                                    url, arguments.calls, arguments.callers, arguments.latency_calls
                                )
                            )
                        else:
                            name = get_definition(FUNCTIONS[function]).name
                            results[kind] = asyncio.run(
                                measure_paid(
                                    url,
                                    node_url,
                                    name,
                                    arguments.calls,
                                    arguments.callers,
                                    arguments.latency_calls,
                                )
                            )
                    finally:
                        stop_process(server)
                (bare_rate, bare_p50), (paid_rate, paid_p50) = results["bare"], results["paid"]
                print(
                    f"{function:<9} {bare_rate:>8.0f} {paid_rate:>8.0f} "
                    f"{paid_rate / bare_rate:>6.2f} {bare_p50 * 1e3:>7.2f}ms "
                    f"{paid_p50 * 1e3:>7.2f}ms {(paid_p50 - bare_p50) * 1e3:>6.2f}ms"
                )
        finally:
            stop_process(node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve")
    serve.add_argument("--kind", choices=("bare", "paid"), required=True)
    serve.add_argument("--function", choices=tuple(FUNCTIONS), required=True)
    serve.add_argument("--rounds", type=int, default=1)
    serve.add_argument("--node", default="")
    serve.add_argument("--netuid", type=int, default=0)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--latency-calls", type=int, default=300)
    arguments = parser.parse_args()
    if arguments.command == "serve":
        run_server(arguments)
    else:
        run_bench(arguments)


if __name__ == "__main__":
    main()

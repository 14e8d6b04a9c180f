"""The neuron protocol's cost per request: a signed echo against the signature limit.

    .venv/bin/python -m bench.bench_neuron [--callers N] [--requests N] [--body-bytes N]

(a) raw ed25519: one sign plus one verify of a request-sized message per loop, in this
    process (``Keypair.sign``, ``nacl.bindings.crypto_sign_open``): each side of a neuron
    request does exactly one of each, so this is the limit either side is held to;
(b) a plain aiohttp JSON echo (no headers, no signatures), server in its own process,
    ``--callers`` concurrent callers on keep-alive connections in this one: the HTTP floor;
(c) the same echo as a ``NeuronServer`` route called by ``--callers`` ``NeuronClient``s,
    each its own registered, staked hotkey: every request signed, verified, nonce-checked,
    looked up, rate-limited and queued, every answer signed and verified.

Printed: requests per second of each, with the CPU time per request of the server process
and of the callers' process (read from /proc, so it holds on a busy machine where requests
per second do not); (c)/(a) and (c)/(b); and the protocol's added CPU time per request on
the server, (c) - (b), next to (a)'s one sign and one verify: what a miner's model sees added
to each call. Server and callers run in two processes. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from nacl.bindings import crypto_sign_open

from agora.neuron.auth import compute_request_message, compute_route_digest
from agora.neuron.client import NeuronClient
from agora.neuron.metagraph import MetagraphView, NeuronInfo
from agora.neuron.server import Caller, NeuronServer, NeuronServerConfig
from agora.wallet.keys import Keypair

PATH = "/echo"
STAKE = 10**15


def make_keypair(name: str) -> Keypair:
    return Keypair(hashlib.sha256(f"agora-bench-neuron:{name}".encode()).digest())


SERVER = make_keypair("server")


def make_callers(count: int) -> list[Keypair]:
    return [make_keypair(f"caller-{i}") for i in range(count)]


# --- (a) ------------------------------------------------------------------------------------


def measure_crypto_rate(body: bytes, seconds: float = 2.0) -> float:
    """Sign-plus-verify pairs per CPU second on one request message."""
    caller = make_keypair("caller-0")
    digest = compute_route_digest("POST", PATH)
    message = compute_request_message(caller.public_key, SERVER.public_key, 1, digest, body)
    count = 0
    started = time.process_time()
    while (elapsed := time.process_time() - started) < seconds:
        for _ in range(200):
            signature = caller.sign(message)
            crypto_sign_open(signature + message, caller.public_key)
        count += 200
    return count / elapsed


# --- servers (run as ``--serve plain|neuron`` in a process of their own) ----------------------


async def serve(kind: str, callers: int) -> None:
    if kind == "plain":

        async def echo_plain(request: web.Request) -> web.Response:
            body = orjson.loads(await request.read())
            return web.Response(body=orjson.dumps({"echo": body}), content_type="application/json")

        app = web.Application()
        app.router.add_post(PATH, echo_plain)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    else:

        async def echo(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            return {"echo": body}

        neurons = [
            NeuronInfo(uid, key.public_key, key.public_key, STAKE, True, True, 0, 0, "")
            for uid, key in enumerate(make_callers(callers))
        ]
        server = NeuronServer(
            SERVER,
            MetagraphView.from_neurons(1, neurons),
            NeuronServerConfig(max_rate_per_s=1_000_000.0),
        )
        server.add_route(PATH, echo)
        url = await server.start()
    print(f"URL {url}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def start_server(kind: str, callers: int) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_neuron", "--serve", kind, "--callers", str(callers)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("URL "):
        process.kill()
        raise SystemExit(f"the {kind} server did not start: {line!r}")
    return process, line.removeprefix("URL ")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- load ----------------------------------------------------------------------------------


async def load_plain(
    url: str, callers: int, requests: int, body: dict[str, Any], server_pid: int
) -> Load:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=callers)) as session:

        async def one() -> None:
            async with session.post(
                url + PATH, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
            ) as answer:
                orjson.loads(await answer.read())

        return await drive([one] * callers, requests, server_pid)


async def load_neuron(
    url: str, callers: int, requests: int, body: dict[str, Any], server_pid: int
) -> Load:
    clients = [NeuronClient(key) for key in make_callers(callers)]
    try:
        calls = [
            lambda client=client: client.call(url, SERVER.public_key, PATH, body)
            for client in clients
        ]
        return await drive(calls, requests, server_pid)
    finally:
        for client in clients:
            await client.close()


@dataclass(frozen=True, slots=True)
class Load:
    rate: float  # requests per second
    server_cpu_us: float  # the server process's CPU time per request
    callers_cpu_us: float  # this process's CPU time per request


async def drive(calls: list[Any], requests: int, server_pid: int) -> Load:
    """Each caller sends one request after another, after a warm-up."""
    per_caller = max(1, requests // len(calls))

    async def lane(call: Any, count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(lane(call, 20) for call in calls))
    server_cpu, callers_cpu = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(lane(call, per_caller) for call in calls))
    elapsed = time.perf_counter() - started
    count = per_caller * len(calls)
    return Load(
        rate=count / elapsed,
        server_cpu_us=1e6 * (cpu_seconds(server_pid) - server_cpu) / count,
        callers_cpu_us=1e6 * (time.process_time() - callers_cpu) / count,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, callers: int, requests: int, body: dict[str, Any]) -> Load:
    process, url = start_server(kind, callers)
    try:
        load = load_plain if kind == "plain" else load_neuron
        return asyncio.run(load(url, callers, requests, body, process.pid))
    finally:
        stop_server(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--callers", type=int, default=64, help="concurrent callers")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per measure")
    parser.add_argument("--body-bytes", type=int, default=200, help="size of the echoed text")
    parser.add_argument("--serve", choices=["plain", "neuron"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.callers))
        return
    body = {"texts": ["x" * arguments.body_bytes]}
    crypto_rate = measure_crypto_rate(orjson.dumps(body))
    plain = measure("plain", arguments.callers, arguments.requests, body)
    neuron = measure("neuron", arguments.callers, arguments.requests, body)
    crypto_us = 1e6 / crypto_rate
    print(f"{os.cpu_count()} cores; {arguments.callers} callers; {arguments.requests} requests")
    print(f"{'measure':<40}{'req/s':>10}{'server us/req':>15}{'callers us/req':>16}")
    print(f"{'(a) ed25519 sign + verify (CPU)':<40}{crypto_rate:>10,.0f}{crypto_us:>15.1f}")
    for name, load in [("(b) plain aiohttp JSON echo", plain), ("(c) signed neuron echo", neuron)]:
        print(
            f"{name:<40}{load.rate:>10,.0f}{load.server_cpu_us:>15.1f}{load.callers_cpu_us:>16.1f}"
        )
    added_us = neuron.server_cpu_us - plain.server_cpu_us
    print()
    print(f"(c) / (a), requests/s        = {neuron.rate / crypto_rate:.2f}")
    print(f"(c) / (b), requests/s        = {neuron.rate / plain.rate:.2f}")
    print(f"server CPU added per request = {added_us:.0f} us ({added_us / crypto_us:.2f} x (a))")
    print(f"server CPU limit             = {1e6 / neuron.server_cpu_us:,.0f} req/s per core")


if __name__ == "__main__":
    main()

"""The neuron protocol over real HTTP on loopback, with real keys: what gets in, what does not.

Servers and clients run in this process on 127.0.0.1. Hand-made requests (through plain
aiohttp, signed with ``auth``'s functions) show each refusal: its status, its stable code,
an answer signed by the server, and a handler that never ran. The client is shown to refuse
answers not signed by the callee (a tampering proxy, an impostor, a plain web server), and a
stored answer is re-verified later. Limits: a zero-stake caller runs out of allowance before a
staked one; with the one handler slot busy, waiting requests are served by stake (the order
is tested, never timing); timeouts and an unreachable port give their codes; the first call
after the server restarted is answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agora.errors import AgoraError
from agora.neuron.auth import (
    CALLEE_HEADER,
    CALLER_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    UNAUTHENTICATED,
    NonceClock,
    NonceWindow,
    compute_request_message,
    compute_route_digest,
    verify_response,
)
from agora.neuron.client import NeuronClient
from agora.neuron.errors import (
    BadResponseSignature,
    NeuronError,
    NeuronTimeout,
    NeuronUnreachable,
    RemoteError,
    ReplayedNonce,
    StaleNonce,
)
from agora.neuron.metagraph import MetagraphView, NeuronInfo
from agora.neuron.server import Caller, NeuronServer, NeuronServerConfig
from agora.protocol.address import encode_address
from agora.tasks.base import TaskError
from agora.wallet.keys import Keypair


def seed_of(name: str) -> bytes:
    return hashlib.sha256(f"agora-neuron-test:{name}".encode()).digest()


def make_keypair(name: str) -> Keypair:
    return Keypair(seed_of(name))


SERVER = make_keypair("server")
CALLER = make_keypair("caller")
OTHER = make_keypair("other")
SECONDS_US = 1_000_000


def now_us() -> int:
    return time.time_ns() // 1000


def make_neuron(uid: int, key: Keypair, stake: int) -> NeuronInfo:
    return NeuronInfo(
        uid=uid,
        hotkey=key.public_key,
        coldkey=key.public_key,
        stake=stake,
        validator_permit=stake > 0,
        active=True,
        incentive=0,
        dividends=0,
        endpoint="",
    )


async def wait_until(condition: Callable[[], bool], bound_s: float = 10.0) -> None:
    """Poll until ``condition`` holds; the bound only stops a broken test from hanging."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.001)


@dataclass
class Recorder:
    """An echo route that remembers who it served."""

    callers: list[Caller]

    async def echo(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        self.callers.append(caller)
        return {"echo": body}


@asynccontextmanager
async def serving(server: NeuronServer) -> AsyncIterator[str]:
    url = await server.start()
    try:
        yield url
    finally:
        await server.stop()


def make_echo_server(**options: Any) -> tuple[NeuronServer, Recorder]:
    recorder = Recorder([])
    server = NeuronServer(SERVER, None, NeuronServerConfig(**options))
    server.add_route("/echo", recorder.echo)
    return server, recorder


# --- hand-made requests ------------------------------------------------------------------------


def sign_headers(
    key: Keypair, callee: bytes, nonce: int, path: str, body: bytes, method: str = "POST"
) -> dict[str, str]:
    digest = compute_route_digest(method, path)
    message = compute_request_message(key.public_key, callee, nonce, digest, body)
    return {
        CALLER_HEADER: key.address,
        CALLEE_HEADER: encode_address(callee),
        NONCE_HEADER: str(nonce),
        SIGNATURE_HEADER: key.sign(message).hex(),
    }


@dataclass(frozen=True)
class Answer:
    status: int
    raw: bytes
    signature: bytes

    @property
    def code(self) -> int:
        code: int = json.loads(self.raw)["error"]["code"]
        return code


async def send(
    url: str, path: str, headers: dict[str, str], data: bytes, method: str = "POST"
) -> Answer:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, data=data, headers=headers) as response:
            raw = await response.read()
            return Answer(response.status, raw, bytes.fromhex(response.headers[SIGNATURE_HEADER]))


# --- a signed call, and its proof ----------------------------------------------------------------


def test_a_signed_call_is_answered_and_the_answer_is_proof_for_later() -> None:
    async def scenario() -> None:
        server, recorder = make_echo_server()
        async with serving(server) as url, NeuronClient(CALLER) as client:
            response = await client.call(url, SERVER.public_key, "/echo", {"n": 42})
            again = await client.call(url + "/", SERVER.public_key, "/echo", {"n": 43})
        assert response.body == {"echo": {"n": 42}} and response.status == 200
        assert again.nonce > response.nonce
        [first, _] = recorder.callers
        assert first == Caller(hotkey=CALLER.public_key, stake=0, neuron=None, nonce=response.nonce)

        stored = (response.nonce, response.status, response.raw, response.signature)
        assert verify_response(SERVER.public_key, CALLER.public_key, *stored)
        nonce, status, raw, signature = stored
        assert not verify_response(OTHER.public_key, CALLER.public_key, *stored)
        assert not verify_response(SERVER.public_key, OTHER.public_key, *stored)
        assert not verify_response(SERVER.public_key, CALLER.public_key, nonce + 1, *stored[1:])
        assert not verify_response(SERVER.public_key, CALLER.public_key, nonce, 201, raw, signature)
        assert not verify_response(
            SERVER.public_key,
            CALLER.public_key,
            nonce,
            status,
            raw.replace(b"42", b"41"),
            signature,
        )
        assert not verify_response(SERVER.public_key, CALLER.public_key, -1, status, raw, signature)

    asyncio.run(scenario())


def test_concurrent_calls_from_one_caller_all_pass_whatever_order_they_arrive_in() -> None:
    async def scenario() -> None:
        server, recorder = make_echo_server(rate_per_s=1000.0)
        async with serving(server) as url, NeuronClient(CALLER) as client:
            calls = [client.call(url, SERVER.public_key, "/echo", {"i": i}) for i in range(100)]
            responses = await asyncio.gather(*calls)
        assert [r.body["echo"]["i"] for r in responses] == list(range(100))
        assert len({r.nonce for r in responses}) == 100 == len(recorder.callers)

    asyncio.run(scenario())


def test_an_unsigned_get_is_answered_and_signed() -> None:
    async def info() -> dict[str, Any]:
        return {"hotkey": SERVER.address}

    async def scenario() -> None:
        server = NeuronServer(SERVER, None)
        server.add_get("/info", info)
        async with serving(server) as url, NeuronClient(CALLER) as client:
            response = await client.get(url, SERVER.public_key, "/info")
            plain = await send(url, "/info", {}, b"", method="GET")
        assert response.body == {"hotkey": SERVER.address}
        assert verify_response(
            SERVER.public_key,
            UNAUTHENTICATED,
            response.nonce,
            200,
            response.raw,
            response.signature,
        )
        assert verify_response(
            SERVER.public_key, UNAUTHENTICATED, 0, 200, plain.raw, plain.signature
        )

    asyncio.run(scenario())


# --- refusals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A hand-made request, and the refusal it must get."""

    name: str
    build: Callable[[], tuple[str, dict[str, str], bytes]]  # path, headers, body
    status: int
    code: int
    proven: bool  # the answer is bound to the caller (its signature was checked)


BODY = b'{"n": 1}'


def _signed(**changes: Any) -> Callable[[], tuple[str, dict[str, str], bytes]]:
    def build() -> tuple[str, dict[str, str], bytes]:
        path = changes.get("path", "/echo")
        body = changes.get("body", BODY)
        nonce = now_us() + changes.get("shift_us", 0)
        headers = sign_headers(
            changes.get("signer", CALLER),
            changes.get("callee", SERVER.public_key),
            nonce,
            changes.get("signed_path", path),
            changes.get("signed_body", body),
        )
        headers |= changes.get("headers", {})
        for name in changes.get("without", ()):
            del headers[name]
        return path, headers, body

    return build


REFUSALS = [
    Refusal("no headers", lambda: ("/echo", {}, BODY), 401, 3401, False),
    Refusal("no signature", _signed(without=[SIGNATURE_HEADER]), 401, 3401, False),
    Refusal("no caller", _signed(without=[CALLER_HEADER]), 401, 3401, False),
    Refusal("nonce not decimal", _signed(headers={NONCE_HEADER: "+12"}), 401, 3401, False),
    Refusal("nonce over 64 bits", _signed(headers={NONCE_HEADER: str(2**64)}), 401, 3401, False),
    Refusal("signature not hex", _signed(headers={SIGNATURE_HEADER: "zz" * 64}), 401, 3401, False),
    Refusal(
        "caller mistyped",
        _signed(headers={CALLER_HEADER: CALLER.address[:-1] + "q"}),
        401,
        3401,
        False,
    ),
    Refusal(
        "forged: signed by another key",
        _signed(signer=OTHER, headers={CALLER_HEADER: CALLER.address}),
        401,
        3402,
        False,
    ),
    Refusal("signed another body", _signed(signed_body=b'{"n": 2}'), 401, 3402, False),
    Refusal("signed another path", _signed(signed_path="/other"), 401, 3402, False),
    Refusal("for another callee", _signed(callee=OTHER.public_key), 403, 3403, False),
    Refusal("nonce in the past", _signed(shift_us=-120 * SECONDS_US), 401, 3404, True),
    Refusal("nonce in the future", _signed(shift_us=120 * SECONDS_US), 401, 3404, True),
    Refusal("body not JSON", _signed(body=b"{not json"), 400, 3409, True),
    Refusal("body not an object", _signed(body=b"[1, 2]"), 400, 3409, True),
    Refusal("body too large", _signed(body=b'{"x": "' + b"a" * 5000 + b'"}'), 413, 3408, False),
    Refusal("unknown route", _signed(path="/missing"), 404, 3412, False),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name for r in REFUSALS])
def test_a_bad_request_is_refused_with_its_code_and_never_reaches_the_handler(
    refusal: Refusal,
) -> None:
    async def scenario() -> None:
        server, recorder = make_echo_server(max_body_bytes=4096)
        async with serving(server) as url:
            path, headers, body = refusal.build()
            answer = await send(url, path, headers, body)
        assert (answer.status, answer.code) == (refusal.status, refusal.code)
        assert recorder.callers == []
        nonce_text = headers.get(NONCE_HEADER, "")
        claimed = int(nonce_text) if nonce_text.isdigit() and int(nonce_text) < 2**64 else 0
        bound_to = CALLER.public_key if refusal.proven else UNAUTHENTICATED
        assert verify_response(
            SERVER.public_key, bound_to, claimed, answer.status, answer.raw, answer.signature
        )

    asyncio.run(scenario())


def test_a_replayed_request_is_refused_and_the_handler_runs_once() -> None:
    async def scenario() -> None:
        server, recorder = make_echo_server()
        async with serving(server) as url:
            nonce = now_us()
            headers = sign_headers(CALLER, SERVER.public_key, nonce, "/echo", BODY)
            first = await send(url, "/echo", headers, BODY)
            second = await send(url, "/echo", headers, BODY)
        assert first.status == 200
        assert (second.status, second.code) == (401, 3405)
        assert len(recorder.callers) == 1
        assert verify_response(
            SERVER.public_key, CALLER.public_key, nonce, 401, second.raw, second.signature
        )

    asyncio.run(scenario())


def test_the_wrong_method_is_an_unknown_route() -> None:
    async def scenario() -> None:
        server, recorder = make_echo_server()
        async with serving(server) as url, NeuronClient(CALLER) as client:
            answer = await send(url, "/echo", {}, b"", method="GET")
            with pytest.raises(RemoteError) as refused:
                await client.call(url, SERVER.public_key, "/missing", {})
        assert (answer.status, answer.code) == (404, 3412)
        assert (refused.value.code, refused.value.status) == (3412, 404)
        assert refused.value.name == "UnknownRoute" and recorder.callers == []

    asyncio.run(scenario())


# --- the client trusts only the callee --------------------------------------------------------


@asynccontextmanager
async def tampering_proxy(target: str, tamper: Callable[[bytes], bytes]) -> AsyncIterator[str]:
    """Forwards requests to ``target`` and passes answers back through ``tamper``, keeping the
    server's signature header."""

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.startswith("Agora-")}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                target + request.path, data=await request.read(), headers=headers
            ) as answer:
                raw = await answer.read()
                signature = answer.headers[SIGNATURE_HEADER]
                status = answer.status
        return web.Response(body=tamper(raw), status=status, headers={SIGNATURE_HEADER: signature})

    async with serve_app(web.post("/{path:.*}", forward)) as url:
        yield url


@asynccontextmanager
async def serve_app(*routes: web.RouteDef) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def add_field(raw: bytes) -> bytes:
    """Still a JSON object, no longer what the server signed."""
    return raw[:-1] + b', "tampered": true}'


def test_the_client_refuses_an_answer_not_signed_by_the_callee() -> None:
    async def plain(request: web.Request) -> web.Response:
        return web.json_response({"echo": {"n": 42}})

    async def scenario() -> None:
        server, _ = make_echo_server()
        impostor = NeuronServer(OTHER, None)
        async with (
            serving(server) as url,
            serving(impostor) as impostor_url,
            tampering_proxy(url, lambda raw: raw) as honest_proxy,
            tampering_proxy(url, add_field) as tampering,
            serve_app(web.post("/echo", plain)) as plain_url,
            NeuronClient(CALLER) as client,
        ):
            relayed = await client.call(honest_proxy, SERVER.public_key, "/echo", {"n": 42})
            assert relayed.body == {"echo": {"n": 42}}
            for endpoint in (tampering, impostor_url, plain_url):
                with pytest.raises(BadResponseSignature) as refused:
                    await client.call(endpoint, SERVER.public_key, "/echo", {"n": 42})
                assert refused.value.code == 3432
            # A refusal passed through a tampering proxy is no more trusted than an answer.
            with pytest.raises(BadResponseSignature):
                await client.call(tampering, SERVER.public_key, "/missing", {"n": 42})

    asyncio.run(scenario())


# --- handler errors --------------------------------------------------------------------------


class Forbidden(AgoraError):
    code = 3999
    http_status = 403


def test_handler_errors_reach_the_caller_with_their_code() -> None:
    async def task_error(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        raise TaskError("texts must be a list of strings")

    async def forbidden(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        raise Forbidden("not for you")

    async def crash(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug")

    async def not_an_object(caller: Caller, body: dict[str, Any]) -> Any:
        return [1, 2]

    async def scenario() -> list[tuple[int, str, int]]:
        server = NeuronServer(SERVER, None)
        for path, handler in [
            ("/task", task_error),
            ("/forbidden", forbidden),
            ("/crash", crash),
            ("/list", not_an_object),
        ]:
            server.add_route(path, handler)
        seen = []
        async with serving(server) as url, NeuronClient(CALLER) as client:
            for path in ("/task", "/forbidden", "/crash", "/list"):
                with pytest.raises(RemoteError) as refused:
                    await client.call(url, SERVER.public_key, path, {})
                error = refused.value
                seen.append((error.code, error.name, error.status))
                assert error.response is not None
                assert verify_response(
                    SERVER.public_key,
                    CALLER.public_key,
                    error.response.nonce,
                    error.status,
                    error.response.raw,
                    error.response.signature,
                )
        return seen

    assert asyncio.run(scenario()) == [
        (3450, "TaskError", 400),
        (3999, "Forbidden", 403),
        (3413, "HandlerFailed", 500),
        (3413, "HandlerFailed", 500),
    ]


# --- rate, priority, load ----------------------------------------------------------------------


def test_a_zero_stake_caller_runs_out_of_allowance_before_a_staked_one() -> None:
    staked = make_keypair("staked")
    metagraph = MetagraphView.from_neurons(
        1, [make_neuron(0, CALLER, 0), make_neuron(1, staked, 10)]
    )

    async def scenario() -> None:
        # One token per 100 s: nothing refills during the test. Capacity: rate * burst_s.
        recorder = Recorder([])
        server = NeuronServer(
            SERVER, metagraph, NeuronServerConfig(rate_per_s=0.01, rate_stake_unit=1, burst_s=200.0)
        )
        server.add_route("/echo", recorder.echo)
        async with (
            serving(server) as url,
            NeuronClient(CALLER) as poor,
            NeuronClient(staked) as rich,
        ):
            for _ in range(2):  # rate 0.01/s, capacity 2
                await poor.call(url, SERVER.public_key, "/echo", {})
            with pytest.raises(RemoteError) as refused:
                await poor.call(url, SERVER.public_key, "/echo", {})
            assert (refused.value.code, refused.value.status) == (3407, 429)
            for _ in range(10):  # stake 10: rate 0.11/s, capacity 22
                await rich.call(url, SERVER.public_key, "/echo", {})
        assert [c.stake for c in recorder.callers] == [0, 0] + [10] * 10

    asyncio.run(scenario())


def test_waiting_requests_are_served_highest_stake_first() -> None:
    stakes = [5, 50, 1, 30, 0, 30]
    keys = [make_keypair(f"priority-{i}") for i in range(len(stakes))]
    blocker = make_keypair("blocker")
    neurons = [
        make_neuron(i, key, stake) for i, (key, stake) in enumerate(zip(keys, stakes, strict=True))
    ]
    metagraph = MetagraphView.from_neurons(1, [*neurons, make_neuron(9, blocker, 0)])

    async def scenario() -> list[int]:
        started, release = asyncio.Event(), asyncio.Event()
        served: list[int] = []

        async def work(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            if body.get("block"):
                started.set()
                await release.wait()
            else:
                served.append(body["i"])
            return {}

        server = NeuronServer(SERVER, metagraph, NeuronServerConfig(max_concurrency=1))
        server.add_route("/work", work)
        clients = [NeuronClient(key) for key in [blocker, *keys]]
        async with serving(server) as url:
            first = asyncio.create_task(
                clients[0].call(url, SERVER.public_key, "/work", {"block": True})
            )
            await started.wait()
            waiting = []
            for i, client in enumerate(clients[1:]):
                call = client.call(url, SERVER.public_key, "/work", {"i": i})
                waiting.append(asyncio.create_task(call))
                # They join the line one at a time, in this order.
                await wait_until(lambda: server.queue_length == len(waiting))
            release.set()
            await asyncio.gather(first, *waiting)
        for client in clients:
            await client.close()
        return served

    # Highest stake first; equal stakes (the two 30s) in arrival order.
    assert asyncio.run(scenario()) == [1, 3, 5, 0, 2, 4]


def test_beyond_the_waiting_line_requests_are_refused_as_overloaded() -> None:
    async def scenario() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def work(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            started.set()
            await release.wait()
            return {}

        server = NeuronServer(SERVER, None, NeuronServerConfig(max_concurrency=1, max_queue=1))
        server.add_route("/work", work)
        async with serving(server) as url, NeuronClient(CALLER) as client:
            busy = asyncio.create_task(client.call(url, SERVER.public_key, "/work", {}))
            await started.wait()
            queued = asyncio.create_task(client.call(url, SERVER.public_key, "/work", {}))
            await wait_until(lambda: server.queue_length == 1)
            with pytest.raises(RemoteError) as refused:
                await client.call(url, SERVER.public_key, "/work", {})
            assert (refused.value.code, refused.value.status) == (3411, 503)
            release.set()
            await asyncio.gather(busy, queued)

    asyncio.run(scenario())


# --- time ------------------------------------------------------------------------------------


def test_a_handler_over_its_time_is_answered_504_and_a_hanging_server_times_the_client_out() -> (
    None
):
    async def scenario() -> None:
        release = asyncio.Event()

        async def hang(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            await release.wait()
            return {}

        quick = NeuronServer(SERVER, None, NeuronServerConfig(handler_timeout_s=0.05))
        quick.add_route("/hang", hang)
        patient = NeuronServer(SERVER, None)
        patient.add_route("/hang", hang)
        async with (
            serving(quick) as quick_url,
            serving(patient) as patient_url,
            NeuronClient(CALLER) as client,
        ):
            with pytest.raises(RemoteError) as late:
                await client.call(quick_url, SERVER.public_key, "/hang", {})
            assert (late.value.code, late.value.status) == (3410, 504)
            with pytest.raises(NeuronTimeout) as waited:
                await client.call(patient_url, SERVER.public_key, "/hang", {}, timeout_s=0.05)
            assert waited.value.code == 3430
            release.set()

    asyncio.run(scenario())


def test_the_client_timeout_applies_to_every_call_by_default() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def hang(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            await release.wait()
            return {}

        server = NeuronServer(SERVER, None)
        server.add_route("/hang", hang)
        async with serving(server) as url, NeuronClient(CALLER, timeout_s=0.05) as client:
            with pytest.raises(NeuronTimeout):
                await client.call(url, SERVER.public_key, "/hang", {})
            release.set()

    asyncio.run(scenario())


def test_a_caller_that_hangs_up_gives_back_its_slot_and_its_place_in_line() -> None:
    async def scenario() -> None:
        started, cancelled, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def hang(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            started.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return {}

        server = NeuronServer(SERVER, None, NeuronServerConfig(max_concurrency=1))
        server.add_route("/hang", hang)
        server.add_route("/echo", Recorder([]).echo)
        async with serving(server) as url, NeuronClient(CALLER) as client:
            holder = asyncio.create_task(client.call(url, SERVER.public_key, "/hang", {}))
            await started.wait()
            with pytest.raises(NeuronTimeout):  # waits in line, gives up
                await client.call(url, SERVER.public_key, "/echo", {}, timeout_s=0.05)
            await wait_until(lambda: server.queue_length == 0)
            holder.cancel()  # the holder hangs up too
            with pytest.raises(asyncio.CancelledError):
                await holder
            await asyncio.wait_for(cancelled.wait(), 10)  # the server saw the hang-up
            response = await client.call(url, SERVER.public_key, "/echo", {"after": True})
            assert response.body == {"echo": {"after": True}}

    asyncio.run(scenario())


def test_a_body_without_content_length_is_read_within_the_limit() -> None:
    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    async def scenario() -> list[int]:
        server, recorder = make_echo_server(max_body_bytes=4096)
        small = b'{"x": "' + b"a" * 3000 + b'"}'
        large = b'{"x": "' + b"a" * 5000 + b'"}'
        codes = []
        async with serving(server) as url, aiohttp.ClientSession() as session:
            for data, expect in [(small, False), (large, False), (small, True)]:
                headers = sign_headers(CALLER, SERVER.public_key, now_us(), "/echo", data)
                async with session.post(
                    url + "/echo", data=chunks(data), headers=headers, expect100=expect
                ) as answer:
                    raw = await answer.read()
                    codes.append(
                        answer.status if answer.status == 200 else Answer(0, raw, b"").code
                    )
        assert len(recorder.callers) == 2
        return codes

    assert asyncio.run(scenario()) == [200, 3408, 200]


def test_a_port_with_nothing_listening_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        async with NeuronClient(CALLER) as client:
            with pytest.raises(NeuronUnreachable) as refused:
                await client.call(f"http://127.0.0.1:{port}", SERVER.public_key, "/echo", {})
        assert refused.value.code == 3431 and isinstance(refused.value, NeuronError)

    asyncio.run(scenario())


SERVER_SCRIPT = """
import asyncio, sys
from agora.neuron.server import NeuronServer, NeuronServerConfig
from agora.wallet.keys import Keypair

async def main() -> None:
    server = NeuronServer(Keypair(bytes.fromhex(sys.argv[1])), None, NeuronServerConfig())
    async def echo(caller, body):
        return {"echo": body}
    server.add_route("/echo", echo)
    print(await server.start(port=int(sys.argv[2])), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_server_process(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, seed_of("server").hex(), str(port)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline().startswith(b"http://")
    return process


def test_the_first_call_after_the_server_restarted_is_answered() -> None:
    """The client's pooled connection still points at the killed process: the call is sent
    once more on a new connection instead of failing with 3431."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    processes = [start_server_process(port)]

    async def scenario() -> list[Any]:
        async with NeuronClient(CALLER) as client:
            first = await client.call(url, SERVER.public_key, "/echo", {"n": 1})
            # Killed and started again while this loop is busy: the closed connection stays
            # in the pool, as when a miner restarts between two calls of a validator.
            processes[0].kill()
            processes[0].wait()
            processes.append(start_server_process(port))
            second = await client.call(url, SERVER.public_key, "/echo", {"n": 2})
            return [first.body, second.body]

    try:
        assert asyncio.run(scenario()) == [{"echo": {"n": 1}}, {"echo": {"n": 2}}]
    finally:
        for process in processes:
            process.kill()
            process.wait()


# --- nonces, without a network ------------------------------------------------------------------


def test_the_nonce_window_takes_nonces_out_of_order_once_each_and_forgets_old_ones() -> None:
    window = NonceWindow(freshness_us=60 * SECONDS_US)
    caller, other = CALLER.public_key, OTHER.public_key
    now = 1_000 * SECONDS_US
    for nonce in (now + 5, now + 1, now + 3, now - 59 * SECONDS_US):
        window.record(caller, nonce, now)
    window.record(other, now + 1, now)  # each caller has its own nonces
    with pytest.raises(ReplayedNonce):
        window.record(caller, now + 1, now)
    with pytest.raises(StaleNonce):
        window.record(caller, now - 61 * SECONDS_US, now)
    with pytest.raises(StaleNonce):
        window.record(caller, now + 61 * SECONDS_US, now)
    assert len(window) == 5

    later = now + 100 * SECONDS_US  # every nonce above is now outside the window
    window.record(caller, later, later)
    assert len(window) == 1
    with pytest.raises(StaleNonce):
        window.record(caller, now + 1, later)
    # A clock stepped back does not revive a forgotten nonce.
    with pytest.raises(StaleNonce):
        window.record(caller, now + 1, now)


def test_the_client_clock_never_repeats_a_nonce() -> None:
    clock = NonceClock()
    nonces = [clock.next_nonce() for _ in range(10_000)]
    assert all(b > a for a, b in zip(nonces, nonces[1:], strict=False))
    assert abs(nonces[0] - now_us()) < 60 * SECONDS_US


# --- rate limits that count what an attacker cannot mint for free ------------------------------


async def send_from(source: str, url: str, key: Keypair, path: str = "/echo") -> int:
    """One signed call by ``key`` over a connection from the loopback address ``source``."""
    body = b"{}"
    headers = sign_headers(key, SERVER.public_key, now_us(), path, body)
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url + path, data=body, headers=headers) as response:
            raw = await response.read()
            if response.status == 200:
                return 0
            code: int = json.loads(raw)["error"]["code"]
            return code


def test_fresh_keys_from_one_address_share_its_allowance() -> None:
    """Fresh keys are free, an address is not: 200 fresh keys from one address get only that
    address's allowance, a staked caller is not held back by it, and another address has its
    own. (Refill is 1 per 100 s: nothing refills during the test.)"""
    staked = make_keypair("rate-staked")
    metagraph = MetagraphView.from_neurons(1, [make_neuron(0, staked, 10)])

    async def scenario() -> None:
        recorder = Recorder([])
        limits = NeuronServerConfig(
            address_rate_per_s=0.01, unstaked_rate_per_s=1.0, burst_s=1000.0
        )
        server = NeuronServer(SERVER, metagraph, limits)
        server.add_route("/echo", recorder.echo, public=True)
        async with serving(server) as url:
            fresh = [make_keypair(f"fresh-{i}") for i in range(200)]
            codes = [await send_from("127.0.0.1", url, key) for key in fresh]
            assert codes.count(0) == 10  # the address's capacity: 0.01/s * 1000 s
            assert codes.count(3407) == 190
            assert [await send_from("127.0.0.1", url, staked) for _ in range(5)] == [0] * 5
            others = [await send_from("127.0.0.2", url, key) for key in fresh[:12]]
            assert others == [0] * 10 + [3407] * 2
        assert sum(1 for caller in recorder.callers if caller.stake == 0) == 20

    asyncio.run(scenario())


def test_callers_without_stake_share_one_allowance_across_addresses() -> None:
    async def scenario() -> None:
        server, recorder = make_echo_server(
            address_rate_per_s=0.01, unstaked_rate_per_s=0.015, burst_s=1000.0
        )
        async with serving(server) as url:
            codes = []
            for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
                codes += [
                    await send_from(source, url, make_keypair(f"{source}-{i}")) for i in range(10)
                ]
        # 15 in all (0.015/s * 1000 s), however many addresses they come from.
        assert codes.count(0) == 15 == len(recorder.callers)
        assert codes.count(3407) == 15

    asyncio.run(scenario())

"""``NeuronServer``: answers signed requests from other participants (see ``auth`` for the
bytes signed), in the order and at the pace their stake earns.

A signed request (``add_route``: POST, JSON object in, JSON object out) goes through, in order:

1. route: an unknown method and path is refused (3412, 404);
2. headers: the four ``Agora-*`` headers, well formed (3401), naming this server's hotkey as
   the callee (3403);
3. body: at most ``max_body_bytes`` (3408, 413);
4. signature: the caller's, over the request (3402);
5. registration: the caller has a uid in the metagraph, unless the route is public (3406);
6. nonce: within ``freshness_s`` of the server's clock (3404) and new for this caller (3405);
7. rate: the caller's token bucket has a token (3407, 429);
8. body: a JSON object (3409, 400);
9. a handler slot: at most ``max_concurrency`` handlers run at once; other requests wait,
   the highest stake first (ties in arrival order), at most ``max_queue`` of them and at most
   ``handler_timeout_s`` each (3411, 503);
10. the handler, within ``handler_timeout_s`` (3410, 504). An ``AgoraError`` it raises is
    answered in the error envelope of ``agora.errors`` (its code, name, message and any
    details), with status 400 unless its class has an ``http_status``; anything else is
    logged and answered 3413 (500).

Steps 2-4 come first because they are the only ones an impostor can reach: nothing is
recorded and no allowance is spent until the caller is proven; registration comes before the
nonce so that a stranger's requests leave nothing in memory. The handler never runs for a
refused request. Every answer, refusals included, is signed by the server's hotkey.

Rate: limits count what an attacker cannot mint for free. A key costs nothing to make, so
a key alone earns nothing; stake and network addresses cost something. Every bucket below
refills at its rate (requests per second) and holds at most ``max(1, rate * burst_s)``:

- every caller has a bucket per key at
  ``rate = min(max_rate_per_s, rate_per_s * (1 + stake // rate_stake_unit))``: every full
  ``rate_stake_unit`` of stake on its hotkey adds ``rate_per_s`` again, up to the cap.
  Stake is read from the metagraph, so a validator's allowance follows the chain;
- a caller with no stake (no uid on a public route, or a uid with no stake) is counted too
  by the network address it connects from (``address_rate_per_s`` per source address,
  ``rate_per_s`` by default), and all such callers together share ``unstaked_rate_per_s``
  (``UNSTAKED_ADDRESSES * rate_per_s`` by default), so fresh keys from one machine share
  that machine's allowance and a swarm of addresses cannot crowd out staked callers.

All refusals are RateLimited (3407, 429), with a message naming the bucket that is empty.

Without a metagraph (``metagraph=None``) there is no subnet to check against: every route is
treated as public and every caller has stake 0.

``add_get`` serves unsigned GETs (``/info``): no caller to check, but the answer is signed,
bound to the ``Agora-Nonce`` header if the client sent one, so it can be fresh.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from agora.errors import AgoraError, encode_error
from agora.neuron.auth import (
    CALLEE_HEADER,
    CALLER_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    UNAUTHENTICATED,
    AddressCache,
    NonceWindow,
    compute_request_message,
    compute_response_message,
    compute_route_digest,
    is_valid_signature,
    parse_nonce,
    parse_signature,
)
from agora.neuron.errors import (
    BadSignature,
    BodyTooLarge,
    CallerNotRegistered,
    HandlerFailed,
    HandlerTimeout,
    MalformedBody,
    MissingAuth,
    Overloaded,
    RateLimited,
    UnknownRoute,
    WrongCallee,
)
from agora.neuron.metagraph import MetagraphView, NeuronInfo
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.neuron")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_RATE_STAKE_UNIT = 1_000 * BASE_UNITS_PER_AGR
SHUTDOWN_GRACE_S = 5.0  # how long ``stop`` lets running handlers finish
_MAX_TRACKED_BUCKETS = 65_536
# Without settings, callers without stake share as much as this many addresses would have.
UNSTAKED_ADDRESSES = 5


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as proven by its signature and read from the metagraph."""

    hotkey: bytes
    stake: int  # 0 for a caller with no uid (public routes)
    neuron: NeuronInfo | None  # None for a caller with no uid (public routes)
    nonce: int


Handler = Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]
GetHandler = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    public: bool
    digest: bytes  # blake3 of "POST <path>", signed by callers


@dataclass(frozen=True, slots=True, kw_only=True)
class NeuronServerConfig:
    """A server's limits (the module docstring says where each applies)."""

    handler_timeout_s: float = 30.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    freshness_s: float = 60.0
    max_concurrency: int = 64
    max_queue: int = 1024
    rate_per_s: float = 20.0
    rate_stake_unit: int = DEFAULT_RATE_STAKE_UNIT
    max_rate_per_s: float = 10_000.0
    burst_s: float = 2.0
    address_rate_per_s: float | None = None
    unstaked_rate_per_s: float | None = None


class NeuronServer:
    """One participant's HTTP server: signed POST routes, unsigned GET routes, signed answers."""

    def __init__(
        self,
        keypair: Keypair,
        metagraph: MetagraphView | None,
        config: NeuronServerConfig | None = None,
    ) -> None:
        config = NeuronServerConfig() if config is None else config
        self.keypair = keypair
        self.metagraph = metagraph
        self.config = config
        self._routes: dict[str, _Route] = {}
        self._gets: dict[str, GetHandler] = {}
        self._addresses = AddressCache()
        self._nonces = NonceWindow(int(config.freshness_s * 1_000_000))
        self._rates = RateLimiter(
            config.rate_per_s, config.rate_stake_unit, config.max_rate_per_s, config.burst_s
        )
        self._address_rates = TokenBuckets(
            config.address_rate_per_s or config.rate_per_s, config.burst_s
        )
        self._unstaked_rates = TokenBuckets(
            config.unstaked_rate_per_s or UNSTAKED_ADDRESSES * config.rate_per_s, config.burst_s
        )
        self._gate = PriorityGate(config.max_concurrency, config.max_queue)
        self._runner: web.ServerRunner | None = None
        self._url = ""

    # --- set up --------------------------------------------------------------------------

    def add_route(self, path: str, handler: Handler, *, public: bool = False) -> None:
        """Serve signed ``POST path``; ``public`` routes also serve callers with no uid."""
        _check_path(path)
        self._routes[path] = _Route(handler, public, compute_route_digest("POST", path))

    def add_get(self, path: str, handler: GetHandler) -> None:
        """Serve unsigned ``GET path`` (the answer is still signed)."""
        _check_path(path)
        self._gets[path] = handler

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port); returns ``http://host:port``."""
        # aiohttp's low-level server: the routes are one dictionary lookup, no router.
        # Handlers are cancelled when their caller hangs up: nobody is left to answer.
        server = web.Server(self._dispatch, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._url = f"http://{host}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """``http://host:port`` once started, "" before."""
        return self._url

    @property
    def queue_length(self) -> int:
        """Requests waiting for a handler slot."""
        return self._gate.waiting

    # --- serving ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.Response:
        path = request.path
        if request.method == "POST":
            route = self._routes.get(path)
            if route is not None:
                return await self._serve_signed(request, route)
        elif request.method == "GET":
            get = self._gets.get(path)
            if get is not None:
                return await self._serve_get(request, get)
        return self._refuse(request, UnknownRoute(f"no route {request.method} {path}"))

    async def _serve_signed(self, request: web.BaseRequest, route: _Route) -> web.Response:
        try:
            caller_key, nonce, raw = await self._read_signed_request(request, route)
        except AgoraError as error:
            return self._refuse(request, error)
        try:
            caller = self._admit(caller_key, nonce, route, request.remote or "")
            body = _parse_body(raw)
            await self._acquire_slot(caller)
            try:
                result = await self._run_handler(route.handler(caller, body))
            finally:
                self._gate.release()
        except AgoraError as error:
            return self._answer_error(error, caller_key, nonce)
        return self._answer(200, result, caller_key, nonce)

    async def _serve_get(self, request: web.BaseRequest, handler: GetHandler) -> web.Response:
        nonce = _read_claimed_nonce(request)
        try:
            result = await self._run_handler(handler())
        except AgoraError as error:
            return self._answer_error(error, UNAUTHENTICATED, nonce)
        return self._answer(200, result, UNAUTHENTICATED, nonce)

    async def _read_signed_request(
        self, request: web.BaseRequest, route: _Route
    ) -> tuple[bytes, int, bytes]:
        """Steps 2-4: the proven caller, its nonce and the raw body."""
        headers = request.headers
        caller_key = self._addresses.decode(headers.get(CALLER_HEADER), CALLER_HEADER)
        callee_text = headers.get(CALLEE_HEADER)
        if callee_text != self.keypair.address:
            callee = self._addresses.decode(callee_text, CALLEE_HEADER)
            if callee != self.keypair.public_key:
                raise WrongCallee(
                    f"this request was signed for {callee_text}; this server is "
                    f"{self.keypair.address}"
                )
        nonce = parse_nonce(headers.get(NONCE_HEADER))
        signature = parse_signature(headers.get(SIGNATURE_HEADER))
        raw = await self._read_body(request)
        message = compute_request_message(
            caller_key, self.keypair.public_key, nonce, route.digest, raw
        )
        if not is_valid_signature(caller_key, message, signature):
            raise BadSignature(
                "Agora-Signature is not the caller's signature of this method, path and body"
            )
        return caller_key, nonce, raw

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        too_large = BodyTooLarge(f"the request body exceeds {self.config.max_body_bytes} bytes")
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            raise too_large
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        if length is not None:
            try:
                return await request.content.readexactly(length)
            except asyncio.IncompleteReadError:
                raise MalformedBody("the request body ended before its Content-Length") from None
        chunks = []
        size = 0
        while chunk := await request.content.read(1 << 16):
            size += len(chunk)
            if size > self.config.max_body_bytes:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _admit(self, caller_key: bytes, nonce: int, route: _Route, address: str) -> Caller:
        """Steps 5-7: known caller, fresh nonce, allowance left (``address``: the peer's)."""
        neuron = None if self.metagraph is None else self.metagraph.lookup(caller_key)
        if neuron is None and self.metagraph is not None and not route.public:
            raise CallerNotRegistered(
                f"{self._addresses.encode(caller_key)} has no uid on subnet "
                f"{self.metagraph.netuid}; register it, or call a public route"
            )
        self._nonces.record(caller_key, nonce, time.time_ns() // 1000)
        stake = 0 if neuron is None else neuron.stake
        now_s = time.monotonic()
        if stake == 0:
            self._address_rates.take(address, now_s, f"callers without stake from {address}")
            self._unstaked_rates.take("", now_s, "all callers without stake together")
        self._rates.take(caller_key, stake, now_s)
        return Caller(hotkey=caller_key, stake=stake, neuron=neuron, nonce=nonce)

    async def _acquire_slot(self, caller: Caller) -> None:
        if self._gate.try_acquire():
            return
        try:
            async with asyncio.timeout(self.config.handler_timeout_s):
                await self._gate.acquire(caller.stake)
        except TimeoutError:
            raise Overloaded(
                f"no handler slot came free within {self.config.handler_timeout_s} s; retry later"
            ) from None

    async def _run_handler(self, work: Awaitable[dict[str, Any]]) -> bytes:
        """Step 10: the handler's answer, encoded; its failures as neuron errors."""
        try:
            async with asyncio.timeout(self.config.handler_timeout_s) as scope:
                result = await work
        except AgoraError:
            raise
        except TimeoutError:
            if scope.expired():
                raise HandlerTimeout(
                    f"the handler did not answer within {self.config.handler_timeout_s} s"
                ) from None
            log.exception("neuron handler failed")
            raise HandlerFailed("the handler failed: TimeoutError") from None
        except Exception as error:
            log.exception("neuron handler failed")
            raise HandlerFailed(f"the handler failed: {type(error).__name__}") from None
        if not isinstance(result, dict):
            raise HandlerFailed(f"the handler returned {type(result).__name__}, not an object")
        try:
            return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError as error:
            raise HandlerFailed(f"the handler's answer is not JSON: {error}") from None

    # --- answers ---------------------------------------------------------------------------

    def _answer(self, status: int, body: bytes, caller: bytes, nonce: int) -> web.Response:
        message = compute_response_message(self.keypair.public_key, caller, nonce, status, body)
        return web.Response(
            body=body,
            status=status,
            content_type="application/json",
            headers={SIGNATURE_HEADER: self.keypair.sign(message).hex()},
        )

    def _answer_error(self, error: AgoraError, caller: bytes, nonce: int) -> web.Response:
        status = getattr(error, "http_status", 400)
        return self._answer(status, orjson.dumps(encode_error(error)), caller, nonce)

    def _refuse(self, request: web.BaseRequest, error: AgoraError) -> web.Response:
        """A refusal before the caller is proven: bound to no caller, the claimed nonce."""
        return self._answer_error(error, UNAUTHENTICATED, _read_claimed_nonce(request))


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedBody("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedBody(f"the request body is a JSON {type(body).__name__}, not an object")
    return body


def _read_claimed_nonce(request: web.BaseRequest) -> int:
    try:
        return parse_nonce(request.headers.get(NONCE_HEADER))
    except MissingAuth:
        return 0


def _check_path(path: str) -> None:
    if not path.startswith("/") or not path.isascii() or "?" in path or " " in path:
        raise ValueError(f"a route path is ASCII, starts with / and has no query: {path!r}")


# --- admission -----------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per caller, sized by stake (the formula is in the module docstring)."""

    def __init__(
        self, rate_per_s: float, rate_stake_unit: int, max_rate_per_s: float, burst_s: float
    ) -> None:
        self.rate_per_s = rate_per_s
        self.rate_stake_unit = rate_stake_unit
        self.max_rate_per_s = max_rate_per_s
        self.burst_s = burst_s
        self._buckets: dict[bytes, tuple[float, float]] = {}  # caller -> (tokens, at)

    def compute_rate_per_s(self, stake: int) -> float:
        return min(self.max_rate_per_s, self.rate_per_s * (1 + stake // self.rate_stake_unit))

    def take(self, caller: bytes, stake: int, now_s: float) -> None:
        """Spend one of the caller's tokens, or raise ``RateLimited``."""
        rate = self.compute_rate_per_s(stake)
        capacity = max(1.0, rate * self.burst_s)
        bucket = self._buckets.get(caller)
        if bucket is None:
            tokens = capacity
        else:
            tokens = min(capacity, bucket[0] + (now_s - bucket[1]) * rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now_s)
            raise RateLimited(
                f"this caller may send {rate:g} requests/s (bursts of {capacity:g}); "
                f"retry in {(1.0 - tokens) / rate:.2f} s, or stake more"
            )
        self._buckets[caller] = (tokens - 1.0, now_s)
        if len(self._buckets) > _MAX_TRACKED_BUCKETS:
            self._forget_full_buckets(now_s)

    def _forget_full_buckets(self, now_s: float) -> None:
        # A bucket left alone this long is full again, the same as one never created.
        refill_s = max(self.burst_s, 1.0 / self.rate_per_s)
        self._buckets = {
            caller: bucket
            for caller, bucket in self._buckets.items()
            if now_s - bucket[1] < refill_s
        }


class TokenBuckets:
    """A token bucket per key (a network address, or one shared key), all at one rate."""

    def __init__(self, rate_per_s: float, burst_s: float) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = max(1.0, rate_per_s * burst_s)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now_s: float, who: str) -> None:
        """Spend one of ``key``'s tokens, or raise ``RateLimited`` naming ``who``."""
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = self.capacity
        else:
            tokens = min(self.capacity, bucket[0] + (now_s - bucket[1]) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now_s)
            raise RateLimited(
                f"{who} may send {self.rate_per_s:g} requests/s (bursts of "
                f"{self.capacity:g}); retry in {(1.0 - tokens) / self.rate_per_s:.2f} s, or "
                "call with a staked hotkey"
            )
        self._buckets[key] = (tokens - 1.0, now_s)
        if len(self._buckets) > _MAX_TRACKED_BUCKETS:
            # A bucket left alone this long is full again, the same as one never created.
            refill_s = self.capacity / self.rate_per_s
            self._buckets = {
                key: bucket for key, bucket in self._buckets.items() if now_s - bucket[1] < refill_s
            }


class PriorityGate:
    """At most ``slots`` holders at once; the others wait, highest stake first, at most
    ``max_waiting`` of them. A released slot passes straight to the next waiter."""

    def __init__(self, slots: int, max_waiting: int) -> None:
        self._free = slots
        self._max_waiting = max_waiting
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._sequence = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def try_acquire(self) -> bool:
        """Take a free slot if there is one and nobody is waiting for it."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        return False

    async def acquire(self, stake: int) -> None:
        if self.try_acquire():
            return
        if len(self._waiting) >= self._max_waiting:
            raise Overloaded(
                f"all handler slots are busy and {self._max_waiting} requests wait; retry later"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (-stake, self._sequence, future)
        self._sequence += 1
        heapq.heappush(self._waiting, entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as the wait was given up: pass it on
            elif entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

"""``NeuronClient``: signed calls to other participants' neuron servers, with proof of answer.

``call`` signs the request with the client's hotkey (see ``auth`` for the bytes), sends it over
a shared keep-alive connection pool, and checks that the answer is signed by the callee it
meant to call: an answer from anyone else, or altered on the way, raises
``BadResponseSignature`` (3432) even when it is a refusal. A ``NeuronResponse`` keeps the raw
body, the nonce and the callee's signature, so a validator can later show anyone what a
miner answered (``auth.verify_response``). A refusal arrives as ``RemoteError`` with the
callee's code, name, message and HTTP status, and its signed response.

Failures of the client's own: no answer in time (``NeuronTimeout``, 3430), no connection
(``NeuronUnreachable``, 3431), a signed answer that is not a JSON object
(``MalformedResponse``, 3433). A connection the server closed before answering (a pooled
one to a server that has restarted since) is tried once more before it counts as 3431.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from agora.client.client import CLOSED_BEFORE_ANSWERING
from agora.errors import decode_error
from agora.neuron.auth import (
    CALLEE_HEADER,
    CALLER_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    UNAUTHENTICATED,
    AddressCache,
    NonceClock,
    compute_request_message,
    compute_route_digest,
    parse_signature,
    verify_response,
)
from agora.neuron.errors import (
    BadResponseSignature,
    MalformedResponse,
    MissingAuth,
    NeuronTimeout,
    NeuronUnreachable,
    RemoteError,
)
from agora.wallet.keys import Keypair

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a hostile server cannot make the client hold more
_URL_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class NeuronResponse:
    """A signed answer: ``verify_response(callee, caller, nonce, status, raw, signature)``
    holds for it (``caller`` is ``auth.UNAUTHENTICATED`` for GETs and early refusals)."""

    body: dict[str, Any]
    raw: bytes
    status: int
    nonce: int
    signature: bytes
    latency_ms: int  # from sending the request to the last byte of the answer


@dataclass(frozen=True, slots=True)
class _Outgoing:
    method: str
    endpoint: str
    path: str
    headers: dict[str, str]
    data: bytes | None
    callee: bytes
    nonce: int


class NeuronClient:
    """Calls neuron servers as ``keypair``'s hotkey; one per process is enough."""

    def __init__(
        self, keypair: Keypair, *, timeout_s: float = 30.0, max_connections: int = 256
    ) -> None:
        self.keypair = keypair
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._nonces = NonceClock()
        self._addresses = AddressCache()
        self._digests: dict[str, bytes] = {}
        self._urls: dict[tuple[str, str], URL] = {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> NeuronClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        endpoint: str,
        callee: bytes,
        path: str,
        body: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> NeuronResponse:
        """POST ``body`` to ``endpoint + path`` as a signed request to ``callee``."""
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        nonce = self._nonces.next_nonce()
        digest = self._digests.get(path)
        if digest is None:
            digest = self._digests[path] = compute_route_digest("POST", path)
        message = compute_request_message(self.keypair.public_key, callee, nonce, digest, data)
        headers = {
            CALLER_HEADER: self.keypair.address,
            CALLEE_HEADER: self._addresses.encode(callee),
            NONCE_HEADER: str(nonce),
            SIGNATURE_HEADER: self.keypair.sign(message).hex(),
            "Content-Type": "application/json",
        }
        outgoing = _Outgoing("POST", endpoint, path, headers, data, callee, nonce)
        return await self._send(outgoing, timeout_s)

    async def get(
        self, endpoint: str, callee: bytes, path: str, *, timeout_s: float | None = None
    ) -> NeuronResponse:
        """An unsigned GET (``/info``); the answer is still checked to be ``callee``'s."""
        nonce = self._nonces.next_nonce()
        headers = {NONCE_HEADER: str(nonce)}
        outgoing = _Outgoing("GET", endpoint, path, headers, None, callee, nonce)
        return await self._send(outgoing, timeout_s)

    async def _send(self, outgoing: _Outgoing, timeout_s: float | None) -> NeuronResponse:
        where = outgoing.endpoint + outgoing.path
        # Always a ClientTimeout: aiohttp reads timeout=None as "no timeout at all".
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        started_ns = time.perf_counter_ns()
        for attempt in range(2):
            try:
                async with self._get_session().request(
                    outgoing.method,
                    self._get_url(outgoing.endpoint, outgoing.path),
                    data=outgoing.data,
                    headers=outgoing.headers,
                    timeout=timeout,
                ) as answer:
                    raw = await _read_limited(answer)
                    status = answer.status
                    signature_text = answer.headers.get(SIGNATURE_HEADER)
                break
            except CLOSED_BEFORE_ANSWERING as error:
                # Most often a pooled keep-alive connection to a server that has restarted
                # since: send the same signed bytes once more, on a new connection. A server
                # that did read them the first time refuses the copy (its nonce is spent).
                if attempt == 0:
                    continue
                raise NeuronUnreachable(f"{where}: {error}") from None
            except TimeoutError:
                limit = self.timeout_s if timeout_s is None else timeout_s
                raise NeuronTimeout(f"{where}: no answer within {limit} s") from None
            except aiohttp.ClientError as error:
                raise NeuronUnreachable(f"{where}: {error}") from None
        latency_ms = (time.perf_counter_ns() - started_ns) // 1_000_000
        signature = self._check_signature(outgoing, status, raw, signature_text)
        response = NeuronResponse(
            body=_decode_body(raw, where),
            raw=raw,
            status=status,
            nonce=outgoing.nonce,
            signature=signature,
            latency_ms=latency_ms,
        )
        if status >= 400:
            raise _remote_error(response, where)
        return response

    def _check_signature(
        self, outgoing: _Outgoing, status: int, raw: bytes, signature_text: str | None
    ) -> bytes:
        """The callee's signature of this answer to this request, or raise."""
        callee, nonce = outgoing.callee, outgoing.nonce
        try:
            signature = parse_signature(signature_text)
        except MissingAuth:
            signature = b""
        signed = outgoing.method == "POST"
        if signed and verify_response(
            callee, self.keypair.public_key, nonce, status, raw, signature
        ):
            return signature
        # Unsigned GETs, and refusals sent before the server proved who called, are bound
        # to no caller; a success to a signed request never is.
        if (not signed or status >= 400) and verify_response(
            callee, UNAUTHENTICATED, nonce, status, raw, signature
        ):
            return signature
        raise BadResponseSignature(
            f"the answer from {outgoing.endpoint} is not signed by {self._addresses.encode(callee)}"
        )

    def _get_url(self, endpoint: str, path: str) -> URL:
        url = self._urls.get((endpoint, path))
        if url is None:
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            # A published endpoint may carry a #fragment (a miner's price): never sent.
            base = endpoint.split("#", 1)[0].rstrip("/")
            url = self._urls[endpoint, path] = URL(base + path, encoded=True)
        return url

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=self._timeout,
            )
        return self._session


async def _read_limited(answer: aiohttp.ClientResponse) -> bytes:
    length = answer.content_length
    if length is not None and length <= MAX_RESPONSE_BYTES:
        return await answer.read()
    chunks = []
    size = 0
    async for chunk in answer.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise MalformedResponse(f"the answer exceeds {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_body(raw: bytes, endpoint: str) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedResponse(f"the answer from {endpoint} is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedResponse(f"the answer from {endpoint} is not a JSON object")
    return body


def _remote_error(response: NeuronResponse, where: str) -> RemoteError:
    envelope = decode_error(response.body, status=response.status, default=RemoteError)
    return RemoteError(
        f"{where}: {envelope.message}",
        envelope.code,
        envelope.name,
        response.status,
        response,
        envelope.details,
    )

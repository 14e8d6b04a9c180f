"""What a neuron request and its response sign, and how a nonce is judged fresh: no I/O here.

Request. The caller's hotkey signs (ed25519)::

    b"agora-neuron-request-v1" | caller (32) | callee (32) | nonce (u64, big-endian)
        | blake3(METHOD + " " + PATH) | blake3(body bytes)

and sends it in four headers: ``Agora-Caller`` and ``Agora-Callee`` (``agr1...`` addresses),
``Agora-Nonce`` (decimal) and ``Agora-Signature`` (128 hex characters). ``PATH`` is the
route's path (``/embed``), without a query string; an endpoint is an origin
(``http://host:port``), never a URL with a path prefix, so both sides see the same path.
Naming the callee stops a request signed for one miner from being replayed to another.

Nonce. The caller's clock in microseconds, made strictly increasing by the client
(``max(now_us, last + 1)``). The server accepts a nonce within ``freshness`` of its own clock,
past or future, and at most once per caller. Concurrent requests from one caller can arrive
out of order, so instead of the highest nonce seen (which would refuse a request overtaken by
a later one) the server keeps, per caller, the set of nonces it accepted that are still within
the window, and forgets each one as it ages out: a forgotten nonce would be refused as stale
anyway. Memory is bounded by what the rate limits let in during one window (two windows for
nonces from a clock running ahead). Two processes signing with one hotkey may, rarely, pick
the same microsecond; the second request is refused as replayed (3405) and can be retried.

Response. The callee signs every answer, refusals included::

    b"agora-neuron-response-v1" | callee (32) | caller (32) | nonce (u64, big-endian)
        | status (u16, big-endian) | blake3(response body bytes)

in the response's ``Agora-Signature`` header. The caller is the request's caller once its
signature has been checked. An answer to a request whose signature was not (yet) checked
(missing headers, a forged signature, another callee, an unknown route, an oversized body) or
to an unsigned GET is signed with ``UNAUTHENTICATED`` (32 zero bytes) as the caller, with the
nonce the request claimed (0 if none). So a response signed for a real caller and nonce is
always the answer to a request that caller really signed, and holding one (body, nonce,
signature) proves to anyone what the callee answered: ``verify_response`` re-checks it.
"""

from __future__ import annotations

import heapq
import time

import blake3
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from agora.neuron.errors import MissingAuth, ReplayedNonce, StaleNonce
from agora.protocol.address import decode_address, encode_address
from agora.protocol.errors import InvalidAddress

REQUEST_DOMAIN = b"agora-neuron-request-v1"
RESPONSE_DOMAIN = b"agora-neuron-response-v1"
CALLER_HEADER = "Agora-Caller"
CALLEE_HEADER = "Agora-Callee"
NONCE_HEADER = "Agora-Nonce"
SIGNATURE_HEADER = "Agora-Signature"

UNAUTHENTICATED = bytes(32)  # the caller named in answers to requests not proven to be signed
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_NONCE = 2**64 - 1
_MAX_NONCE_DIGITS = 20
_ADDRESS_CACHE_SIZE = 4096


def compute_route_digest(method: str, path: str) -> bytes:
    return blake3.blake3(f"{method} {path}".encode()).digest()


def compute_request_message(
    caller: bytes, callee: bytes, nonce: int, route_digest: bytes, body: bytes
) -> bytes:
    """The bytes a caller signs; ``route_digest`` is ``compute_route_digest(method, path)``."""
    return b"".join(
        (
            REQUEST_DOMAIN,
            caller,
            callee,
            nonce.to_bytes(8, "big"),
            route_digest,
            blake3.blake3(body).digest(),
        )
    )


def compute_response_message(
    callee: bytes, caller: bytes, nonce: int, status: int, body: bytes
) -> bytes:
    """The bytes a callee signs for one answer."""
    return b"".join(
        (
            RESPONSE_DOMAIN,
            callee,
            caller,
            nonce.to_bytes(8, "big"),
            status.to_bytes(2, "big"),
            blake3.blake3(body).digest(),
        )
    )


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


def verify_response(
    callee: bytes, caller: bytes, nonce: int, status: int, raw: bytes, signature: bytes
) -> bool:
    """Whether ``callee`` signed ``raw`` with ``status`` as its answer to ``caller``'s
    request ``nonce``: the check a client makes on arrival, and anyone can repeat later."""
    if not 0 <= nonce <= MAX_NONCE or not 0 <= status < 2**16:
        return False
    message = compute_response_message(callee, caller, nonce, status, raw)
    return is_valid_signature(callee, message, signature)


# --- header values -------------------------------------------------------------------------


def parse_nonce(text: str | None) -> int:
    """A nonce header: 1 to 20 decimal digits, at most 2**64 - 1 (no sign, space or ``_``)."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > _MAX_NONCE_DIGITS:
        raise MissingAuth(f"{NONCE_HEADER} must be a decimal integer (microseconds)")
    nonce = int(text)
    if nonce > MAX_NONCE:
        raise MissingAuth(f"{NONCE_HEADER} must fit in 64 bits")
    return nonce


def parse_signature(text: str | None) -> bytes:
    """A signature header: exactly 128 hexadecimal characters."""
    if text is None or len(text) != 2 * SIGNATURE_SIZE:
        raise MissingAuth(f"{SIGNATURE_HEADER} must be {2 * SIGNATURE_SIZE} hex characters")
    try:
        signature = bytes.fromhex(text)
    except ValueError:
        raise MissingAuth(f"{SIGNATURE_HEADER} is not hexadecimal") from None
    if len(signature) != SIGNATURE_SIZE:
        raise MissingAuth(f"{SIGNATURE_HEADER} is not hexadecimal")
    return signature


class AddressCache:
    """``agr1...`` to public key and back, remembered: bech32 in Python costs more than an
    ed25519 verification, and a server sees the same few callers again and again."""

    __slots__ = ("_keys", "_addresses")

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._addresses: dict[bytes, str] = {}

    def decode(self, text: str | None, header: str) -> bytes:
        """The public key in a header; a missing or mistyped address raises ``MissingAuth``."""
        if text is None:
            raise MissingAuth(f"the {header} header is missing")
        public_key = self._keys.get(text)
        if public_key is None:
            try:
                public_key = bytes(decode_address(text))
            except InvalidAddress as error:
                raise MissingAuth(f"{header}: {error.message}") from None
            if len(self._keys) >= _ADDRESS_CACHE_SIZE:
                self._keys.clear()
            self._keys[text] = public_key
        return public_key

    def encode(self, public_key: bytes) -> str:
        address = self._addresses.get(public_key)
        if address is None:
            address = encode_address(public_key)
            if len(self._addresses) >= _ADDRESS_CACHE_SIZE:
                self._addresses.clear()
            self._addresses[public_key] = address
        return address


# --- nonces --------------------------------------------------------------------------------


class NonceClock:
    """The client's nonces: its clock in microseconds, strictly increasing even within one
    microsecond or when the clock steps back."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next_nonce(self) -> int:
        nonce = max(time.time_ns() // 1000, self._last + 1)
        self._last = nonce
        return nonce


class NonceWindow:
    """The server's memory of accepted nonces: per caller, those still within the window.

    ``record`` raises ``StaleNonce`` for a nonce more than ``freshness_us`` from the server's
    clock and ``ReplayedNonce`` for one this caller already used. The server's clock is made
    monotonic here, so a wall clock stepped back cannot revive a forgotten nonce.
    """

    __slots__ = ("_freshness_us", "_seen", "_expiry", "_now_us")

    def __init__(self, freshness_us: int) -> None:
        self._freshness_us = freshness_us
        self._seen: dict[bytes, set[int]] = {}
        self._expiry: list[tuple[int, bytes]] = []  # (nonce, caller), smallest nonce first
        self._now_us = 0

    def __len__(self) -> int:
        return len(self._expiry)

    def record(self, caller: bytes, nonce: int, now_us: int) -> None:
        now_us = self._now_us = max(now_us, self._now_us)
        self._forget_older_than(now_us - self._freshness_us)
        if abs(nonce - now_us) > self._freshness_us:
            raise StaleNonce(
                f"nonce {nonce} is {abs(nonce - now_us) // 1000} ms from the server's clock; "
                f"the limit is {self._freshness_us // 1000} ms: check the caller's clock"
            )
        seen = self._seen.get(caller)
        if seen is None:
            seen = self._seen[caller] = set()
        elif nonce in seen:
            raise ReplayedNonce(f"nonce {nonce} was already used by this caller")
        seen.add(nonce)
        heapq.heappush(self._expiry, (nonce, caller))

    def _forget_older_than(self, horizon_us: int) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < horizon_us:
            nonce, caller = heapq.heappop(expiry)
            seen = self._seen[caller]
            seen.discard(nonce)
            if not seen:
                del self._seen[caller]

"""What services and buyers exchange, in one place: payment headers and requirements in the
shape of x402, signed answers, and the endpoint proof document.

Payment (x402, scheme ``agora-channel``). An unpaid call is answered ``402`` with
``{"x402Version": 1, "error": {...}, "accepts": [requirements]}``; the requirements name the
payee (the owner hotkey), the price of this call in base units (``maxAmountRequired``), the
chain (``network``), the subnet and service id, and, once the buyer has a channel, what the
service has served on it (``extra.channel``). The buyer pays by sending the header
``X-PAYMENT``: base64 of ``{"x402Version": 1, "scheme": "agora-channel", "network": chain id,
"payload": {"payer": "agr1...", "voucher": {...}}}``, the voucher being a payment channel's
cumulative amount signed by its payer (``protocol.channels``).

Answers. A paid answer is ``{"result", "service_id", "payment": {"channel_id", "cumulative",
"cost"}, "signature"}``; the signature is the owner hotkey's over ``answer_message``: the tag
``AGA1``, the service id, the sha256 of the call's body bytes and of the canonical result,
and the payment. The buyer checks it and keeps the answer as its receipt: what it paid, for
which call, acknowledged by the seller's key.

The endpoint proof (``/.well-known/agora-service.json``): the service id, owner, chain and
each endpoint with the block and signature that the ledger holds (``protocol.services``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from agora.agents.errors import InvalidAnswer, MalformedCall
from agora.agents.schema import canonical_json
from agora.errors import AgoraError
from agora.node.wire import from_hex, to_hex
from agora.payments.vouchers import voucher_to_json
from agora.protocol.address import decode_address, encode_address
from agora.protocol.channels import Voucher
from agora.protocol.errors import ProtocolError
from agora.protocol.services import Endpoint, Service
from agora.protocol.transactions import is_valid_signature

X402_VERSION = 1
SCHEME = "agora-channel"
PAYMENT_HEADER = "X-PAYMENT"
ANSWER_MAGIC = b"AGA1"
PROOF_PATH = "/.well-known/agora-service.json"
CARD_PATH = "/.well-known/agent-card.json"
CALL_PATH = "/call"


# --- payment ---------------------------------------------------------------------------------


def encode_payment_header(chain_id: str, payer: bytes, voucher: Voucher) -> str:
    payment = {
        "x402Version": X402_VERSION,
        "scheme": SCHEME,
        "network": chain_id,
        "payload": {"payer": encode_payer(payer), "voucher": voucher_to_json(voucher)},
    }
    return base64.b64encode(orjson.dumps(payment)).decode()


def decode_payment_header(header: str, chain_id: str) -> tuple[bytes, dict[str, Any]]:
    """(payer, the ``payment`` object the payment gate reads) from an ``X-PAYMENT`` header."""
    try:
        payment = orjson.loads(base64.b64decode(header, validate=True))
        payload = payment["payload"]
        if payment["scheme"] != SCHEME or payment["network"] != chain_id:
            raise MalformedCall(
                f"pay with scheme {SCHEME!r} on network {chain_id!r}, not "
                f"{payment['scheme']!r} on {payment['network']!r}"
            )
        payer = decode_payer(payload["payer"])
        return payer, {"voucher": payload["voucher"]}
    except (ValueError, KeyError, TypeError, ProtocolError):  # non-ASCII, base64, JSON
        raise MalformedCall(
            f"{PAYMENT_HEADER} must be base64 JSON {{x402Version, scheme, network, "
            "payload: {payer, voucher}}"
        ) from None


@functools.lru_cache(maxsize=4096)
def decode_payer(text: str) -> bytes:
    """A payer's address (checksummed, so decoding costs; a buyer sends the same one on every
    call, hence the cache)."""
    return bytes(decode_address(text))


@functools.lru_cache(maxsize=64)
def encode_payer(public_key: bytes) -> str:
    return encode_address(public_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """What a service asks for one call, as the 402 answer states it."""

    service_id: bytes
    payee: bytes
    netuid: int
    chain_id: str
    price: int
    resource: str
    description: str


def payment_requirements(offer: Offer, channel: dict[str, int] | None = None) -> dict[str, Any]:
    """One entry of ``accepts`` in a 402 answer."""
    return {
        "scheme": SCHEME,
        "network": offer.chain_id,
        "maxAmountRequired": str(offer.price),
        "resource": offer.resource,
        "description": offer.description,
        "mimeType": "application/json",
        "payTo": encode_address(offer.payee),
        "maxTimeoutSeconds": 60,
        "asset": "AGR",
        "extra": {
            "service_id": to_hex(offer.service_id),
            "netuid": offer.netuid,
            "price": {"amount": offer.price, "unit": "call"},
            "channel": channel,
            "open": "open a payment channel to payTo on netuid (transaction open_channel), "
            "or top yours up, then send a voucher of its cumulative amount in X-PAYMENT",
        },
    }


# --- signed answers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """A paid call acknowledged by the service's key: the buyer's proof of what it paid."""

    service_id: bytes
    request_hash: bytes
    result_hash: bytes
    channel_id: bytes
    cumulative: int
    cost: int
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "service_id": to_hex(self.service_id),
            "request_hash": to_hex(self.request_hash),
            "result_hash": to_hex(self.result_hash),
            "channel_id": to_hex(self.channel_id),
            "cumulative": self.cumulative,
            "cost": self.cost,
            "signature": to_hex(self.signature),
        }


def answer_message(receipt: Receipt) -> bytes:
    return b"".join(
        (
            ANSWER_MAGIC,
            receipt.service_id,
            receipt.request_hash,
            receipt.result_hash,
            receipt.channel_id,
            receipt.cumulative.to_bytes(8, "big"),
            receipt.cost.to_bytes(8, "big"),
        )
    )


def encode_answer(result_bytes: bytes, receipt: Receipt) -> bytes:
    """The answer's body; ``result_bytes`` is the canonical JSON of the result, spliced in
    verbatim so that the buyer hashes exactly what was signed."""
    head = orjson.dumps(
        {
            "service_id": to_hex(receipt.service_id),
            "payment": {
                "channel_id": to_hex(receipt.channel_id),
                "cumulative": receipt.cumulative,
                "cost": receipt.cost,
            },
            "signature": to_hex(receipt.signature),
        }
    )
    return b'{"result":' + result_bytes + b"," + head[1:]


def decode_answer(
    body: bytes, owner: bytes, service_id: bytes, request_body: bytes, voucher: Voucher, cost: int
) -> tuple[Any, Receipt]:
    """The result and its receipt, or InvalidAnswer unless the owner signed this call, this
    result and this payment."""
    try:
        answer = orjson.loads(body)
        result = answer["result"]
        signature = from_hex(answer["signature"], "signature")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AgoraError) as error:
        raise InvalidAnswer(f"the service's answer is not a signed answer: {error}") from None
    receipt = Receipt(
        service_id=service_id,
        request_hash=hashlib.sha256(request_body).digest(),
        result_hash=hashlib.sha256(canonical_json(result)).digest(),
        channel_id=voucher.channel_id,
        cumulative=voucher.cumulative,
        cost=cost,
        signature=signature,
    )
    if not is_valid_signature(owner, answer_message(receipt), signature):
        raise InvalidAnswer(
            "the answer is not signed by the service's owner for this call, result and payment"
        )
    return result, receipt


# --- endpoint proofs -------------------------------------------------------------------------


def proof_document(
    chain_id: str, service_id: bytes, owner: bytes, endpoints: tuple[Endpoint, ...]
) -> dict[str, Any]:
    return {
        "chain_id": chain_id,
        "service_id": to_hex(service_id),
        "owner": encode_address(owner),
        "endpoints": [endpoint_to_json(e) for e in endpoints],
    }


def endpoint_to_json(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "transport": endpoint.transport,
        "url": endpoint.url,
        "block_height": endpoint.block_height,
        "state_root": to_hex(endpoint.state_root),
        "signature": to_hex(endpoint.signature),
    }


def service_from_json(info: dict[str, Any]) -> Service:
    """A record read back from the node API (``node.wire.service_to_json``)."""
    return Service(
        owner=decode_address(info["owner"]),
        name=info["name"],
        description=info["description"],
        tags=tuple(info["tags"]),
        endpoints=tuple(
            Endpoint(
                transport=e["transport"],
                url=e["url"],
                block_height=int(e["block_height"]),
                state_root=from_hex(e["state_root"], "state_root"),
                signature=from_hex(e["signature"], "signature"),
            )
            for e in info["endpoints"]
        ),
        netuid=int(info["netuid"]),
        price_amount=int(info["price"]["amount"]),
        price_unit=info["price"]["unit"],
        input_schema_hash=from_hex(info["input_schema_hash"], "input_schema_hash"),
        output_schema_hash=from_hex(info["output_schema_hash"], "output_schema_hash"),
        schema_url=info["schema_url"],
        model_hash=from_hex(info["model_hash"] or "0x" + "00" * 32, "model_hash"),
        bond=int(info["bond"]),
        registered_at=int(info["registered_at"]),
        expiry=int(info["expiry"]),
    )

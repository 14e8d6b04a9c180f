"""The A2A agent card of a service (the ``a2a-sdk`` format), signed by the owner's key.

Served at ``/.well-known/agent-card.json``. The card names the service, its skill (name,
description, tags), its interface (the call URL, HTTP+JSON) and, as an extension
(``AGORA_EXTENSION``), what an A2A client needs to pay it: service id, chain, subnet, price,
payee and schema hashes. It is signed with the A2A SDK's own JWS signer (RFC 8785 canonical
JSON, ``EdDSA``, ``kid`` = the owner's ``agr1`` address).

The card is served as the canonical JSON of the signed card, and ``verify_agent_card`` holds
the bytes to that form (and each base64url segment of the signature to its one encoding)
before the SDK's verifier checks the signature: so a card verifies with its owner's key and
fails after a change of any one byte.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from a2a.types import AgentCard
from a2a.utils._jcs import CanonicalizationError, canonicalize
from a2a.utils.signing import (
    ProtectedHeader,
    SignatureVerificationError,
    create_agent_card_signer,
    create_signature_verifier,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from jwt.exceptions import InvalidKeyError

from agora.agents.errors import InvalidAgentCard
from agora.protocol.address import encode_address
from agora.wallet.keys import Keypair

AGORA_EXTENSION = "https://agora.network/extensions/service-payment/v1"


def build_agent_card(
    *, url: str, service: dict[str, Any], owner: bytes, chain_id: str
) -> AgentCard:
    """An unsigned card for ``service`` (the API's JSON of a record, or the same fields)."""
    return AgentCard(
        name=service["name"],
        description=service["description"] or service["name"],
        version="1",
        supported_interfaces=[
            {"url": url, "protocol_binding": "HTTP+JSON", "protocol_version": "1.0"}
        ],
        provider={"organization": encode_address(owner), "url": url},
        capabilities={
            "extensions": [
                {
                    "uri": AGORA_EXTENSION,
                    "description": "Paid per call through an Agora payment channel (HTTP 402, "
                    "scheme agora-channel)",
                    "required": True,
                    "params": {
                        "service_id": service["id"],
                        "chain_id": chain_id,
                        "netuid": str(service["netuid"]),
                        "price": str(service["price"]["amount"]),
                        "unit": service["price"]["unit"],
                        "pay_to": encode_address(owner),
                        "input_schema_hash": service["input_schema_hash"],
                        "output_schema_hash": service["output_schema_hash"],
                    },
                }
            ]
        },
        default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=[
            {
                "id": service["id"],
                "name": service["name"],
                "description": service["description"] or service["name"],
                "tags": list(service["tags"]) or ["agora"],
            }
        ],
    )


def sign_agent_card(card: AgentCard, owner: Keypair) -> bytes:
    """The card signed by ``owner``, as the canonical bytes a service serves."""
    header: ProtectedHeader = {
        "kid": owner.address,
        "alg": "EdDSA",
        "typ": "JOSE",
        "jku": None,
    }
    private_key = Ed25519PrivateKey.from_private_bytes(owner.seed).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    signer = create_agent_card_signer(private_key, header)
    unsigned = AgentCard()
    unsigned.CopyFrom(card)
    signed = signer(unsigned)
    return canonicalize(MessageToDict(signed)).encode()


def verify_agent_card(raw: bytes, owner: bytes) -> AgentCard:
    """The card, if ``owner`` signed exactly these bytes; InvalidAgentCard otherwise."""
    try:
        value = orjson.loads(raw)
        if canonicalize(value).encode() != raw:
            raise InvalidAgentCard("the card is not in the canonical form it was signed in")
        card = AgentCard()
        ParseDict(value, card)
    except (orjson.JSONDecodeError, CanonicalizationError, ParseError, UnicodeError) as error:
        raise InvalidAgentCard(f"the card is not a valid A2A agent card: {error}") from None
    for signature in card.signatures:
        for segment in (signature.protected, signature.signature):
            if not _is_canonical_base64url(segment):
                raise InvalidAgentCard("a signature segment is not canonical base64url")
    owner_address = encode_address(owner)

    public_key = Ed25519PublicKey.from_public_bytes(owner).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )

    def key_provider(kid: str | None, jku: str | None) -> bytes:
        if kid != owner_address:  # another key's signature: the verifier tries the next
            raise InvalidKeyError(f"the card is signed by {kid}, not by {owner_address}")
        return public_key

    try:
        create_signature_verifier(key_provider, ["EdDSA"])(card)
    except SignatureVerificationError as error:
        raise InvalidAgentCard(
            f"the card's signature does not verify with {owner_address}: {error}"
        ) from None
    return card


def _is_canonical_base64url(segment: str) -> bool:
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == segment

"""Services: agents sell work to agents, listed in the ledger with no intermediary.

A service record says who sells (the owner hotkey), what (name, description, tags, the hashes
of its input and output JSON schemas and where to fetch them, optionally the hash of the model
it serves), where (one or more endpoints, each with its transport), at what price (base units
per call, per 1,000 tokens or per second) and under which subnet (whose validators get the
protocol's fee share of its payment-channel claims). Buyers pay it through payment channels
(``channels.py``): a channel may be opened to the owner hotkey of a live service on the
service's subnet, exactly as to a miner of that subnet.

Bond and time to live. Registering locks ``bond`` base units (at least
``MIN_SERVICE_BOND``) and sets ``expiry = height + ttl_blocks``. The owner renews before the
expiry; otherwise the record expires by itself: an end-of-block step removes every service
whose expiry is the current block and gives its bond back (the expiry index, one row per
expiry height, makes that step cost what expires, not the size of the registry). The owner
may also deregister at any time, with the same refund. A listing costs its fee and the time
value of its bond: enough to keep the registry from filling with junk, never a fine.

Endpoint proofs, and the trust model. The ledger does no I/O, so it cannot fetch a URL.
Each endpoint carries a signed statement instead: the owner's signature over
``endpoint_proof_message`` (tag ``AGS1``, the chain id, the service id, the URL and the state
root of a recent block). The ledger checks that the signature is the owner's and that the block
is one of the last ``PROOF_WINDOW_BLOCKS`` (the domain keeps their state roots,
``recent_state_roots``): a proof cannot be made before that block existed, nor lifted onto
another service, URL or chain. A state root, not a block hash: a block hash holds the header's
timestamp, and the state commits to nothing that depends on when a block was sealed, so the
same transactions give the same state roots whether a local node or Ethereum ordered them.

What the ledger cannot check, that the URL is served by whoever holds the key, is checked off
chain: the service serves the very same proof at
``<url>/.well-known/agora-service.json`` and every registry reader (the CLI, the buyer's
client, the MCP bridge) fetches it and compares before it trusts the endpoint. So a record
proves that the owner's key vouched for the URL recently; the URL's answer proves that the
server holds, or is trusted by, that key. A registry that cannot tell who controls a URL
lists anyone's; Agora's lists only what the key's holder claims and the URL confirms.

Reputation is measured, not rated: the amounts settled on chain by claims of channels paying
the owner on the service's subnet, and the owner's incentive there when it is also a miner.
The node computes it from the channel records (``node/api.py``); nothing here stores it.

Its errors are in errors.py (codes 2600-2699).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NewType

from agora.protocol.accounts import decrease_balance, increase_balance
from agora.protocol.address import Address
from agora.protocol.codec import (
    ADDRESS,
    HASH,
    SIGNATURE,
    U16,
    U64,
    ListOf,
    Record,
    Text,
    decode_field,
    encode_field,
)
from agora.protocol.errors import (
    InvalidEndpointProof,
    InvalidServiceRecord,
    InvalidServiceTtl,
    InvariantViolated,
    MissingEndpointProof,
    NotServiceOwner,
    ServiceAlreadyRegistered,
    ServiceBondTooLow,
    ServiceNotFound,
    StaleEndpointProof,
)
from agora.protocol.kinds import (
    CHAIN_ID_FIELD,
    BlockContext,
    Transaction,
    TransactionKind,
    is_valid_signature,
)
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.state import State
from agora.protocol.subnets import get_subnet, get_subnets

ServiceId = NewType("ServiceId", bytes)

SERVICES_TAG = 70
RECENT_STATE_ROOTS_TAG = 71
SERVICE_EXPIRIES_TAG = 72
ENDPOINT_PROOF_MAGIC = b"AGS1"
_SERVICE_ID_TAG = b"agora/service-id/v1"

# Parameters of the domain.
MIN_SERVICE_BOND = BASE_UNITS_PER_AGR
MAX_SERVICE_TTL_BLOCKS = 1_000_000
PROOF_WINDOW_BLOCKS = 256
PRICE_UNITS = ("call", "1k-tokens", "second")
TRANSPORTS = ("http", "mcp", "a2a")
MAX_ENDPOINTS = 4
MAX_TAGS = 8
NO_MODEL = bytes(32)
URL_FIELD = Text(256)


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One transport of a service, with the owner's proof that it vouches for the URL.
    ``state_root`` is the state root of block ``block_height``; only the root is signed."""

    transport: str
    url: str
    block_height: int
    state_root: bytes
    signature: bytes


ENDPOINT_RECORD: Record[Endpoint] = Record(
    Endpoint,
    (
        ("transport", Text(16)),
        ("url", URL_FIELD),
        ("block_height", U64),
        ("state_root", HASH),
        ("signature", SIGNATURE),
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    owner: Address  # hotkey: signs proofs, answers and claims
    name: str
    description: str
    tags: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    netuid: int  # the subnet it is listed under
    price_amount: int  # base units per price_unit
    price_unit: str
    input_schema_hash: bytes  # sha256 of the canonical JSON schema
    output_schema_hash: bytes
    schema_url: str  # where both schemas are served
    model_hash: bytes  # NO_MODEL when it serves none
    bond: int
    registered_at: int
    expiry: int  # block height at which the record expires


_DESCRIPTION_FIELDS = (
    ("name", Text(64)),
    ("description", Text(512)),
    ("tags", ListOf(Text(32), MAX_TAGS)),
    ("endpoints", ListOf(ENDPOINT_RECORD, MAX_ENDPOINTS)),
    ("netuid", U16),
    ("price_amount", U64),
    ("price_unit", Text(16)),
    ("input_schema_hash", HASH),
    ("output_schema_hash", HASH),
    ("schema_url", URL_FIELD),
    ("model_hash", HASH),
    ("bond", U64),
)

SERVICE_RECORD: Record[Service] = Record(
    Service,
    (("owner", ADDRESS), *_DESCRIPTION_FIELDS, ("registered_at", U64), ("expiry", U64)),
)


def register_tables(state: State) -> None:
    state.add_table(
        SERVICES_TAG,
        "services",
        (bytes, lambda raw: ServiceId(bytes(raw))),
        (SERVICE_RECORD.encode, SERVICE_RECORD.decode),
    )
    height_codec = (lambda height: encode_field(U64, height), lambda raw: decode_field(U64, raw))
    state.add_table(
        RECENT_STATE_ROOTS_TAG,
        "recent_state_roots",
        height_codec,
        (bytes, bytes),
    )
    ids = ListOf(HASH, 1 << 16)
    state.add_table(
        SERVICE_EXPIRIES_TAG,
        "service_expiries",
        height_codec,
        (lambda value: encode_field(ids, value), lambda raw: decode_field(ids, raw)),
    )


def compute_service_id(owner: Address, name: str) -> ServiceId:
    """A service's id: its owner and name, so the owner knows it before registering (the
    endpoint proofs sign it) and one owner cannot list two live services of one name."""
    material = _SERVICE_ID_TAG + bytes(owner) + name.encode()
    return ServiceId(hashlib.blake2b(material, digest_size=32).digest())


def get_service(state: State, service_id: bytes) -> Service:
    service: Service | None = state.tables["services"].get(service_id, None)
    if service is None:
        raise ServiceNotFound(f"no live service 0x{service_id.hex()}")
    return service


def get_services(state: State, *, owner: Address | None = None) -> list[tuple[ServiceId, Service]]:
    """Live services, optionally of one owner, in id order."""
    return sorted(
        (service_id, service)
        for service_id, service in state.tables["services"].items()
        if owner is None or service.owner == owner
    )


def is_service_payee(state: State, payee: Address, netuid: int) -> bool:
    """Whether ``payee`` owns a live service listed on ``netuid`` (a channel may pay it)."""
    return any(
        service.owner == payee and service.netuid == netuid
        for _, service in state.tables["services"].items()
    )


def set_service(state: State, service_id: bytes, service: Service) -> None:
    state.tables["services"].set(ServiceId(service_id), service)


def get_recent_state_root(state: State, height: int) -> bytes | None:
    state_root: bytes | None = state.tables["recent_state_roots"].get(height, None)
    return state_root


def _add_expiry(state: State, height: int, service_id: bytes) -> None:
    table = state.tables["service_expiries"]
    table.set(height, tuple(sorted({*table.get(height, ()), service_id})))


def _remove_expiry(state: State, height: int, service_id: bytes) -> None:
    table = state.tables["service_expiries"]
    remaining = tuple(i for i in table.get(height, ()) if i != service_id)
    if remaining:
        table.set(height, remaining)
    else:
        table.delete(height)


def _remove_service(state: State, service_id: bytes, service: Service) -> None:
    """Delete the record and give its bond back to the owner."""
    state.tables["services"].delete(service_id)
    _remove_expiry(state, service.expiry, service_id)
    increase_balance(state, service.owner, service.bond)


# --- endpoint proofs ---------------------------------------------------------------------------


def endpoint_proof_message(chain_id: str, service_id: bytes, url: str, state_root: bytes) -> bytes:
    """The bytes the owner signs to vouch for ``url`` as an endpoint of ``service_id``."""
    out = bytearray(ENDPOINT_PROOF_MAGIC)
    CHAIN_ID_FIELD.write(out, chain_id)
    HASH.write(out, service_id)
    URL_FIELD.write(out, url)
    HASH.write(out, state_root)
    return bytes(out)


def sign_endpoint(
    *,
    chain_id: str,
    service_id: bytes,
    transport: str,
    url: str,
    block: tuple[int, bytes],
    sign: Callable[[bytes], bytes],
) -> Endpoint:
    """An endpoint with its proof, signed by ``sign`` (the owner's detached signer) over the
    block ``(height, state root)``."""
    height, state_root = block
    signature = sign(endpoint_proof_message(chain_id, service_id, url, state_root))
    return Endpoint(
        transport=transport,
        url=url,
        block_height=height,
        state_root=state_root,
        signature=signature,
    )


def validate_endpoint_signature(
    chain_id: str, owner: Address, service_id: bytes, endpoint: Endpoint
) -> None:
    """Raise InvalidEndpointProof unless ``owner`` signed the endpoint's proof."""
    message = endpoint_proof_message(chain_id, service_id, endpoint.url, endpoint.state_root)
    if not is_valid_signature(owner, message, endpoint.signature):
        raise InvalidEndpointProof(
            f"the proof of {endpoint.url} is not the owner's signature over this chain, "
            "service id, URL and state root (a foreign key, or another service or URL)"
        )


def validate_proof_block(state: State, endpoint: Endpoint, context: BlockContext) -> None:
    """The stateful half of the ledger's check of a proof (``validate_register_service``
    checked the signature): the block it signs is recent. The parent block's state root is
    recorded at the end of this block, so it is compared with the context's."""
    recent: bytes | None = context.parent_state_root
    if endpoint.block_height != context.height - 1:
        recent = get_recent_state_root(state, endpoint.block_height)
    if recent != endpoint.state_root:
        raise StaleEndpointProof(
            f"the proof of {endpoint.url} names block {endpoint.block_height}, which is not "
            f"one of the last {PROOF_WINDOW_BLOCKS} blocks (or has another state root): sign a "
            "fresh proof"
        )


def process_recent_state_roots(state: State, context: BlockContext) -> None:
    """Remember the parent block's state root, and forget the one that left the window.

    Only once a subnet exists: every service is listed on one, so before that there is no
    proof to check, and a chain where nothing happens keeps blocks that change nothing."""
    if not get_subnets(state):
        return
    table = state.tables["recent_state_roots"]
    table.set(context.height - 1, context.parent_state_root)
    table.delete(context.height - 1 - PROOF_WINDOW_BLOCKS)


# --- register_service --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterService:
    """Sent by the owner hotkey, which pays the bond."""

    name: str
    description: str
    tags: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    netuid: int
    price_amount: int
    price_unit: str
    input_schema_hash: bytes
    output_schema_hash: bytes
    schema_url: str
    model_hash: bytes
    bond: int
    ttl_blocks: int


def _is_web_url(url: str) -> bool:
    return url.startswith(("http://", "https://")) and len(url) > len("https://")


def validate_register_service(tx: Transaction) -> None:
    body: RegisterService = tx.body
    if not body.name.strip():
        raise InvalidServiceRecord("a service needs a name")
    if body.price_unit not in PRICE_UNITS:
        raise InvalidServiceRecord(f"a price is per {', '.join(PRICE_UNITS)}")
    if body.price_amount <= 0:
        raise InvalidServiceRecord("a price is a positive number of base units")
    if any(not tag.strip() for tag in body.tags):
        raise InvalidServiceRecord("a tag cannot be empty")
    if body.schema_url and not _is_web_url(body.schema_url):
        raise InvalidServiceRecord("the schema URL must be http:// or https://")
    if not body.endpoints or any(not e.signature.strip(b"\0") for e in body.endpoints):
        raise MissingEndpointProof(
            "every endpoint needs the owner's proof: a signature over (service id, URL, "
            "recent state root), also served at <url>/.well-known/agora-service.json"
        )
    for endpoint in body.endpoints:
        if endpoint.transport not in TRANSPORTS:
            raise InvalidServiceRecord(f"a transport is one of {', '.join(TRANSPORTS)}")
        if not _is_web_url(endpoint.url):
            raise InvalidServiceRecord(f"endpoint {endpoint.url!r} is not an http(s) URL")
    validate_ttl(body.ttl_blocks)
    if body.bond < MIN_SERVICE_BOND:
        raise ServiceBondTooLow(f"a service's bond is at least {MIN_SERVICE_BOND} base units")
    service_id = compute_service_id(tx.sender, body.name)
    for endpoint in body.endpoints:
        validate_endpoint_signature(tx.chain_id, tx.sender, service_id, endpoint)


def validate_ttl(ttl_blocks: int) -> None:
    if not 0 < ttl_blocks <= MAX_SERVICE_TTL_BLOCKS:
        raise InvalidServiceTtl(
            f"a time to live is 1 to {MAX_SERVICE_TTL_BLOCKS} blocks, not {ttl_blocks}"
        )


def process_register_service(state: State, tx: Transaction, context: BlockContext) -> None:
    body: RegisterService = tx.body
    service_id = compute_service_id(tx.sender, body.name)
    if service_id in state.tables["services"]:
        raise ServiceAlreadyRegistered(
            f"service {body.name!r} (0x{service_id.hex()}) is live: renew it instead"
        )
    get_subnet(state, body.netuid)
    for endpoint in body.endpoints:
        validate_proof_block(state, endpoint, context)
    decrease_balance(state, tx.sender, body.bond)
    expiry = context.height + body.ttl_blocks
    service = Service(
        owner=tx.sender,
        name=body.name,
        description=body.description,
        tags=body.tags,
        endpoints=body.endpoints,
        netuid=body.netuid,
        price_amount=body.price_amount,
        price_unit=body.price_unit,
        input_schema_hash=body.input_schema_hash,
        output_schema_hash=body.output_schema_hash,
        schema_url=body.schema_url,
        model_hash=body.model_hash,
        bond=body.bond,
        registered_at=context.height,
        expiry=expiry,
    )
    set_service(state, service_id, service)
    _add_expiry(state, expiry, service_id)


# --- renew_service -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewService:
    service_id: bytes
    ttl_blocks: int  # the new expiry is the current block plus this


def validate_renew_service(tx: Transaction) -> None:
    validate_ttl(tx.body.ttl_blocks)


def _get_owned_service(state: State, tx: Transaction, service_id: bytes) -> Service:
    service = get_service(state, service_id)
    if service.owner != tx.sender:
        raise NotServiceOwner(f"service 0x{service_id.hex()} belongs to another hotkey")
    return service


def process_renew_service(state: State, tx: Transaction, context: BlockContext) -> None:
    body: RenewService = tx.body
    service = _get_owned_service(state, tx, body.service_id)
    expiry = context.height + body.ttl_blocks
    if expiry < service.expiry:
        raise InvalidServiceTtl(
            f"the service expires at block {service.expiry}; a renewal never brings it "
            f"earlier (this one gives {expiry})"
        )
    _remove_expiry(state, service.expiry, body.service_id)
    _add_expiry(state, expiry, body.service_id)
    set_service(state, body.service_id, replace(service, expiry=expiry))


# --- deregister_service ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DeregisterService:
    service_id: bytes


def validate_deregister_service(tx: Transaction) -> None:
    """Deregistering needs the record: every check is in the handler."""


def process_deregister_service(state: State, tx: Transaction, context: BlockContext) -> None:
    service_id: bytes = tx.body.service_id
    _remove_service(state, service_id, _get_owned_service(state, tx, service_id))


# --- end of block ------------------------------------------------------------------------------


def process_service_expiries(state: State, context: BlockContext) -> None:
    """Remove the services whose expiry is this block, bonds back to their owners."""
    for service_id in state.tables["service_expiries"].get(context.height, ()):
        _remove_service(state, service_id, get_service(state, service_id))


KINDS = (
    TransactionKind(
        kind=70,
        name="register_service",
        body=Record(RegisterService, (*_DESCRIPTION_FIELDS, ("ttl_blocks", U64))),
        validate=validate_register_service,
        process=process_register_service,
    ),
    TransactionKind(
        kind=71,
        name="renew_service",
        body=Record(RenewService, (("service_id", HASH), ("ttl_blocks", U64))),
        validate=validate_renew_service,
        process=process_renew_service,
    ),
    TransactionKind(
        kind=72,
        name="deregister_service",
        body=Record(DeregisterService, (("service_id", HASH),)),
        validate=validate_deregister_service,
        process=process_deregister_service,
    ),
)


def compute_supply_held(state: State) -> int:
    """The bonds of live services."""
    return sum(service.bond for _, service in state.tables["services"].items())


def check_invariants(state: State) -> None:
    """Every live service is indexed at its expiry, which is in the future; nothing else is."""
    indexed = {
        (height, service_id)
        for height, ids in state.tables["service_expiries"].items()
        for service_id in ids
    }
    live = {(service.expiry, service_id) for service_id, service in get_services(state)}
    if indexed != live:
        raise InvariantViolated("the service expiry index does not match the live services")
    if any(expiry <= state.head.height for expiry, _ in live):
        raise InvariantViolated("a service outlived its expiry")

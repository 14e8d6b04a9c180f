"""The service registry on real ledger state: register with endpoint proofs, renew, expire,
deregister, and pay a service through a payment channel.

Every refusal carries its stable code and changes nothing but the sender's nonce and fee (or
nothing at all when the check is stateless); bonds come back on expiry and deregistration;
the supply invariant holds after every block and the same blocks replay to the same root.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from protocol_helpers import (
    CHAIN_ID,
    MIN_FEE,
    Chain,
    KeyPair,
    assert_refused,
    create_subnet,
    make_genesis_state,
    make_keys,
)

from agora.protocol.accounts import get_account, get_balance
from agora.protocol.channels import (
    ClaimChannel,
    OpenChannel,
    compute_channel_id,
    get_channel,
    sign_voucher,
)
from agora.protocol.errors import (
    InvalidEndpointProof,
    InvalidServiceRecord,
    InvalidServiceTtl,
    MissingEndpointProof,
    NotServiceOwner,
    PayeeNotRegistered,
    ServiceAlreadyRegistered,
    ServiceBondTooLow,
    ServiceNotFound,
    StaleEndpointProof,
    SubnetNotFound,
)
from agora.protocol.invariants import check_invariants
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.services import (
    MAX_SERVICE_TTL_BLOCKS,
    MIN_SERVICE_BOND,
    NO_MODEL,
    PROOF_WINDOW_BLOCKS,
    DeregisterService,
    Endpoint,
    RegisterService,
    RenewService,
    compute_service_id,
    get_recent_state_root,
    get_service,
    get_services,
    is_service_payee,
    sign_endpoint,
)
from agora.protocol.transition import apply_block, build_block

AGR = BASE_UNITS_PER_AGR
KEYS = make_keys(5, seed=7_070)
SUBNET_OWNER, AGENT, BUYER, STRANGER, OTHER = KEYS
URL = "http://127.0.0.1:8900"


def new_chain() -> tuple[Chain, int]:
    chain = Chain(make_genesis_state(KEYS))
    netuid = create_subnet(chain, SUBNET_OWNER)
    chain.advance(2)
    return chain, netuid


def endpoint_for(
    chain: Chain,
    owner: KeyPair,
    name: str,
    *,
    signer: KeyPair | None = None,
    url: str = URL,
    blocks_ago: int = 0,
) -> Endpoint:
    height = chain.height - blocks_ago
    state_root = get_recent_state_root(chain.state, height) if blocks_ago else None
    if state_root is None:
        state_root = chain.state.state_root
    return sign_endpoint(
        chain_id=CHAIN_ID,
        service_id=compute_service_id(owner.address, name),
        transport="http",
        url=url,
        block=(height, state_root),
        sign=(signer or owner).sign,
    )


def registration(chain: Chain, netuid: int, name: str = "search", **fields: Any) -> Any:
    body = RegisterService(
        name=name,
        description="semantic search over a corpus",
        tags=("search", "embedding"),
        endpoints=(endpoint_for(chain, AGENT, name),),
        netuid=netuid,
        price_amount=1_000,
        price_unit="call",
        input_schema_hash=bytes(range(32)),
        output_schema_hash=bytes(32),
        schema_url=URL + "/schema",
        model_hash=NO_MODEL,
        bond=MIN_SERVICE_BOND,
        ttl_blocks=100,
    )
    return replace(body, **fields)


def register(chain: Chain, netuid: int, name: str = "search", **fields: Any) -> bytes:
    receipt = chain.send(AGENT, registration(chain, netuid, name, **fields))
    assert receipt.success, receipt.message
    check_invariants(chain.state)
    return compute_service_id(AGENT.address, name)


def test_register_locks_the_bond_and_lists_the_service() -> None:
    chain, netuid = new_chain()
    before = get_balance(chain.state, AGENT.address)
    service_id = register(chain, netuid)
    service = get_service(chain.state, service_id)
    assert service.owner == AGENT.address
    assert (service.registered_at, service.expiry) == (chain.height, chain.height + 100)
    assert service.endpoints[0].url == URL
    assert get_balance(chain.state, AGENT.address) == before - MIN_SERVICE_BOND - MIN_FEE
    assert get_services(chain.state, owner=AGENT.address) == [(service_id, service)]
    assert is_service_payee(chain.state, AGENT.address, netuid)


def test_a_proof_over_any_block_of_the_window_is_accepted() -> None:
    chain, netuid = new_chain()
    chain.advance(10)
    body = registration(
        chain, netuid, endpoints=(endpoint_for(chain, AGENT, "search", blocks_ago=9),)
    )
    assert chain.send(AGENT, body).success


def test_a_channel_pays_a_service_and_the_claim_settles() -> None:
    chain, netuid = new_chain()
    assert_refused(
        chain,
        BUYER,
        OpenChannel(payee=AGENT.address, netuid=netuid, deposit=AGR, expiry=chain.height + 50),
        PayeeNotRegistered.code,
    )
    register(chain, netuid)
    nonce = get_account(chain.state, BUYER.address).nonce
    opened = chain.send(
        BUYER,
        OpenChannel(payee=AGENT.address, netuid=netuid, deposit=AGR, expiry=chain.height + 50),
    )
    assert opened.success, opened.message
    channel_id = compute_channel_id(BUYER.address, nonce)
    before = get_balance(chain.state, AGENT.address)
    voucher = sign_voucher(CHAIN_ID, channel_id, 1_000_000, BUYER.sign)
    claim = chain.send(AGENT, ClaimChannel(voucher=voucher))
    assert claim.success, claim.message
    assert get_channel(chain.state, channel_id).claimed == 1_000_000
    assert get_balance(chain.state, AGENT.address) > before
    check_invariants(chain.state)


def test_renew_moves_the_expiry_and_the_service_outlives_its_first_ttl() -> None:
    chain, netuid = new_chain()
    service_id = register(chain, netuid, ttl_blocks=5)
    assert chain.send(AGENT, RenewService(service_id=service_id, ttl_blocks=20)).success
    renewed_expiry = chain.height + 20
    chain.advance(10)
    assert get_service(chain.state, service_id).expiry == renewed_expiry
    check_invariants(chain.state)


def test_a_service_expires_by_itself_and_its_bond_comes_back() -> None:
    chain, netuid = new_chain()
    service_id = register(chain, netuid, ttl_blocks=3)
    balance = get_balance(chain.state, AGENT.address)
    expiry = get_service(chain.state, service_id).expiry
    chain.advance_to(expiry)
    assert get_service(chain.state, service_id)
    chain.advance(1)  # block ``expiry`` removes it
    with pytest.raises(ServiceNotFound):
        get_service(chain.state, service_id)
    assert get_balance(chain.state, AGENT.address) == balance + MIN_SERVICE_BOND
    assert not is_service_payee(chain.state, AGENT.address, netuid)
    check_invariants(chain.state)
    assert_refused(chain, AGENT, RenewService(service_id=service_id, ttl_blocks=5), 2601)
    # the name is free again
    register(chain, netuid)


def test_deregister_gives_the_bond_back() -> None:
    chain, netuid = new_chain()
    service_id = register(chain, netuid)
    balance = get_balance(chain.state, AGENT.address)
    assert chain.send(AGENT, DeregisterService(service_id=service_id)).success
    assert get_balance(chain.state, AGENT.address) == balance + MIN_SERVICE_BOND - MIN_FEE
    assert get_services(chain.state) == []
    check_invariants(chain.state)


def test_state_roots_do_not_depend_on_when_blocks_were_sealed() -> None:
    """Proofs sign state roots, never block hashes (which hold timestamps): the same
    transactions sealed at other times, as by another sequencer, give the same state roots."""
    chain, netuid = new_chain()
    chain.advance(3)
    register(chain, netuid)
    chain.block((AGENT, registration(chain, netuid, "translate")))
    chain.advance(PROOF_WINDOW_BLOCKS + 2)
    other = make_genesis_state(KEYS)
    for block in chain.blocks:
        later = block.header.timestamp + 1_000 + 7 * block.header.height
        resealed = build_block(other, later, list(block.transactions))
        assert resealed.block.header.timestamp != block.header.timestamp
        assert resealed.block.header.state_root == block.header.state_root
    assert other.state_root == chain.state.state_root


def test_recent_state_roots_keep_a_bounded_window() -> None:
    chain, _ = new_chain()
    chain.advance(PROOF_WINDOW_BLOCKS + 5)
    table = chain.state.tables["recent_state_roots"]
    assert len(table) == PROOF_WINDOW_BLOCKS
    assert get_recent_state_root(chain.state, chain.height - 1) is not None
    assert get_recent_state_root(chain.state, chain.height - PROOF_WINDOW_BLOCKS) is not None
    assert get_recent_state_root(chain.state, chain.height - PROOF_WINDOW_BLOCKS - 1) is None


# --- refusals: each with its code, nothing moved -----------------------------------------------


def test_registration_refusals() -> None:
    chain, netuid = new_chain()
    no_proof = replace(endpoint_for(chain, AGENT, "search"), signature=bytes(64))
    stateless = [
        (registration(chain, netuid, endpoints=()), MissingEndpointProof.code),
        (registration(chain, netuid, endpoints=(no_proof,)), MissingEndpointProof.code),
        (
            registration(
                chain, netuid, endpoints=(endpoint_for(chain, AGENT, "search", signer=STRANGER),)
            ),
            InvalidEndpointProof.code,
        ),
        (
            registration(chain, netuid, endpoints=(endpoint_for(chain, AGENT, "other-name"),)),
            InvalidEndpointProof.code,
        ),
        (
            registration(
                chain,
                netuid,
                endpoints=(replace(endpoint_for(chain, AGENT, "search"), url=URL + "/x"),),
            ),
            InvalidEndpointProof.code,
        ),
        (registration(chain, netuid, bond=MIN_SERVICE_BOND - 1), ServiceBondTooLow.code),
        (registration(chain, netuid, ttl_blocks=0), InvalidServiceTtl.code),
        (
            registration(chain, netuid, ttl_blocks=MAX_SERVICE_TTL_BLOCKS + 1),
            InvalidServiceTtl.code,
        ),
        (registration(chain, netuid, name=" "), InvalidServiceRecord.code),
        (registration(chain, netuid, price_unit="hour"), InvalidServiceRecord.code),
        (registration(chain, netuid, price_amount=0), InvalidServiceRecord.code),
        (registration(chain, netuid, tags=("",)), InvalidServiceRecord.code),
        (registration(chain, netuid, schema_url="ftp://x"), InvalidServiceRecord.code),
        (
            registration(
                chain,
                netuid,
                endpoints=(replace(endpoint_for(chain, AGENT, "search"), transport="smtp"),),
            ),
            InvalidServiceRecord.code,
        ),
        (
            registration(
                chain,
                netuid,
                endpoints=(endpoint_for(chain, AGENT, "search", url="file:///etc/passwd"),),
            ),
            InvalidServiceRecord.code,
        ),
    ]
    for body, code in stateless:
        assert_refused(chain, AGENT, body, code, charged=False)


def test_a_proof_over_an_unknown_or_old_block_is_stale() -> None:
    chain, netuid = new_chain()
    forged_block = replace(
        endpoint_for(chain, AGENT, "search"), state_root=bytes(32), signature=b""
    )
    forged = sign_endpoint(
        chain_id=CHAIN_ID,
        service_id=compute_service_id(AGENT.address, "search"),
        transport="http",
        url=URL,
        block=(forged_block.block_height, bytes(32)),
        sign=AGENT.sign,
    )
    assert_refused(
        chain, AGENT, registration(chain, netuid, endpoints=(forged,)), StaleEndpointProof.code
    )
    old = endpoint_for(chain, AGENT, "search")
    chain.advance(PROOF_WINDOW_BLOCKS + 2)
    assert_refused(
        chain, AGENT, registration(chain, netuid, endpoints=(old,)), StaleEndpointProof.code
    )


def test_stateful_refusals() -> None:
    chain, netuid = new_chain()
    assert_refused(chain, AGENT, registration(chain, netuid + 7), SubnetNotFound.code)
    service_id = register(chain, netuid)
    assert_refused(chain, AGENT, registration(chain, netuid), ServiceAlreadyRegistered.code)
    assert_refused(
        chain, STRANGER, RenewService(service_id=service_id, ttl_blocks=50), NotServiceOwner.code
    )
    assert_refused(chain, STRANGER, DeregisterService(service_id=service_id), NotServiceOwner.code)
    assert_refused(
        chain, AGENT, RenewService(service_id=service_id, ttl_blocks=1), InvalidServiceTtl.code
    )
    assert_refused(chain, AGENT, DeregisterService(service_id=bytes(32)), ServiceNotFound.code)
    assert_refused(
        chain, AGENT, RenewService(service_id=service_id, ttl_blocks=0), 2608, charged=False
    )


def test_the_same_blocks_replay_to_the_same_state_root() -> None:
    chain, netuid = new_chain()
    service_id = register(chain, netuid, ttl_blocks=4)
    register(chain, netuid, name="second")
    chain.send(AGENT, RenewService(service_id=service_id, ttl_blocks=6))
    chain.advance(8)
    replica = make_genesis_state(KEYS)
    for block in chain.blocks:
        apply_block(replica, block)
    assert replica.state_root == chain.state.state_root
    check_invariants(replica)

"""Agents sell to agents: a decorated function served, found by tag, paid per call through a
payment channel, its answers signed; and every way to call it wrongly refused.

A dev node runs in its own process; the service and the buyer run in the test's event loop
and talk over real HTTP on loopback. Shown:
- a buyer finds the service by tag, makes 1,000 paid calls (one channel open), the seller
  claims once on shutdown; balances reconcile to the base unit and receipts equal the claim;
- an unpaid call gets 402 with x402 requirements; replayed, non-increasing, underpaid,
  forged and expiring-channel vouchers, and arguments that break the schema, are refused
  with their codes: the function never runs and nothing is earned or claimed;
- a service whose owner stops renewing refuses calls once past its time to live, and leaves
  the registry by itself;
- a registration without an endpoint proof, or with a foreign one, is refused by the node;
  a URL that does not serve the ledger's proof is refused by the buyer.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from agent_helpers import (
    AGR,
    BUYER,
    advance,
    create_subnet,
    fund,
    get_balance,
    get_nonce,
    make_keypair,
    send,
    serving,
)
from node_helpers import NodeProcesses

from agora.agents import Client, service
from agora.agents.decorator import get_definition
from agora.agents.errors import (
    ArgumentsInvalid,
    CallRefused,
    EndpointProofMismatch,
    MalformedCall,
    NoServiceFound,
    ServiceNotLive,
)
from agora.agents.wire import CALL_PATH, PAYMENT_HEADER, encode_payment_header
from agora.client.client import NodeApiError, NodeClient
from agora.node.devchain import DEV_CHAIN_ID
from agora.payments.errors import (
    ChannelExpiring,
    InsufficientPayment,
    InvalidVoucher,
    PaymentRequired,
    VoucherReplayed,
)
from agora.protocol.address import Address
from agora.protocol.channels import (
    OpenChannel,
    compute_channel_id,
    compute_claim_split,
    sign_voucher,
)
from agora.protocol.errors import InvalidEndpointProof, MissingEndpointProof
from agora.protocol.params import Params
from agora.protocol.services import (
    MIN_SERVICE_BOND,
    NO_MODEL,
    RegisterService,
    compute_service_id,
    sign_endpoint,
)

PRICE = 1_000_000  # 0.001 AGR per call
CALLS: list[str] = []


@service(name="shout", price="0.001", tags=("text", "test"))
def shout(text: str, times: int = 1) -> str:
    """Upper-case a text, ``times`` times over."""
    CALLS.append(text)
    return " ".join([text.upper()] * times)


@dataclass
class Chain:
    url: str
    netuid: int


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        node = processes.run(tmp_path_factory.mktemp("node"))

        async def prepare() -> Chain:
            async with NodeClient(node.url) as client:
                netuid = await create_subnet(client)
                for name in ("seller", "refusals", "mortal", "impostor"):
                    await fund(client, make_keypair(name))
                return Chain(url=node.url, netuid=netuid)

        yield asyncio.run(prepare())
    finally:
        processes.stop_all()


def test_a_thousand_paid_calls_cost_one_open_and_one_claim(chain: Chain) -> None:
    seller = make_keypair("seller")
    params = Params()

    async def scenario() -> None:
        async with NodeClient(chain.url) as node:
            async with serving(
                get_definition(shout), seller, chain.url, chain.netuid, claim_interval_s=3600
            ) as server:
                buyer_before = await get_balance(node, BUYER)
                seller_before = await get_balance(node, seller)
                seller_nonce = await get_nonce(node, seller)
                async with Client(node_url=chain.url, payer=BUYER, deposit_calls=1000) as client:
                    found = await client.find(tag="test")
                    assert await node.list_services(tag="test", max_price=PRICE - 1) == []
                    assert await node.list_services(tag="test", unit="second") == []
                    listed = await node.list_services(owner=seller.address, max_price=PRICE)
                    assert [s["id"] for s in listed] == ["0x" + server.service_id.hex()]
                    assert found.service_id == server.service_id
                    assert found.price == PRICE
                    CALLS.clear()
                    for start in range(0, 1000, 50):
                        answers = await asyncio.gather(
                            *(
                                client.call(found, {"text": f"call {i}", "times": 2})
                                for i in range(start, start + 50)
                            )
                        )
                        assert answers[0] == f"CALL {start} CALL {start}"
                    receipts = list(client.receipts)
                    (channel_id,) = client.get_channel_ids()
                assert len(CALLS) == 1000 and len(receipts) == 1000
                assert server.get_earned()["served"] == 1000 * PRICE
            # the server stopped: its one claim is in
            assert await get_nonce(node, seller) == seller_nonce + 1
            channel = await node.get_channel(channel_id)
            assert channel["claimed"] == sum(r.cost for r in receipts) == 1000 * PRICE
            assert max(r.cumulative for r in receipts) == channel["claimed"]
            assert channel["deposit"] == 1000 * PRICE
            buyer_after = await get_balance(node, BUYER)
            assert buyer_before - buyer_after == channel["deposit"] + params.min_fee
            payee, _, _ = compute_claim_split(
                channel["claimed"], params.channel_fee_u16, params.channel_fee_validators_u16
            )
            assert await get_balance(node, seller) - seller_before == payee - params.min_fee
            record = await node.get_service(server.service_id)
            assert record["reputation"]["settled"] == 1000 * PRICE
            assert record["reputation"]["payers"] == 1

    asyncio.run(scenario())


def test_bad_calls_are_refused_and_nothing_moves(chain: Chain) -> None:
    seller = make_keypair("refusals")

    async def scenario() -> None:
        async with (
            NodeClient(chain.url) as node,
            serving(get_definition(shout), seller, chain.url, chain.netuid) as server,
            aiohttp.ClientSession() as http,
        ):
            url = server.url + CALL_PATH

            async def post(arguments: Any, header: str | None = None) -> tuple[int, Any]:
                headers = {} if header is None else {PAYMENT_HEADER: header}
                body = arguments if isinstance(arguments, bytes) else orjson.dumps(arguments)
                async with http.post(url, data=body, headers=headers) as response:
                    return response.status, orjson.loads(await response.read())

            def pay(channel_id: bytes, cumulative: int, key: Any = BUYER) -> str:
                voucher = sign_voucher(DEV_CHAIN_ID, channel_id, cumulative, key.sign)
                return encode_payment_header(DEV_CHAIN_ID, BUYER.public_key, voucher)

            async def open_channel(blocks: int) -> bytes:
                nonce = await get_nonce(node, BUYER)
                head = (await node.get_head())["height"]
                body = OpenChannel(
                    payee=Address(seller.public_key),
                    netuid=chain.netuid,
                    deposit=10 * PRICE,
                    expiry=head + blocks,
                )
                await send(node, BUYER, body)
                return compute_channel_id(Address(BUYER.public_key), nonce)

            CALLS.clear()
            status, answer = await post({"text": "hi"})
            assert (status, answer["error"]["code"]) == (402, PaymentRequired.code)
            (offer,) = answer["accepts"]
            assert answer["x402Version"] == 1 and offer["scheme"] == "agora-channel"
            assert offer["payTo"] == seller.address
            assert offer["maxAmountRequired"] == str(PRICE)
            assert offer["network"] == DEV_CHAIN_ID
            assert offer["extra"]["netuid"] == chain.netuid

            channel = await open_channel(1_000)
            short = await open_channel(9)  # within the seller's expiry margin at once
            refusals = [
                ({"text": 5}, None, 422, ArgumentsInvalid.code),
                ({"text": "x", "loud": True}, pay(channel, PRICE), 422, ArgumentsInvalid.code),
                ({"times": 2}, pay(channel, PRICE), 422, ArgumentsInvalid.code),
                (b"[1, 2]", pay(channel, PRICE), 400, MalformedCall.code),
                ({"text": "x"}, "not base64 json", 400, MalformedCall.code),
                ({"text": "x"}, pay(channel, PRICE - 1), 402, InsufficientPayment.code),
                ({"text": "x"}, pay(channel, PRICE, key=seller), 402, InvalidVoucher.code),
                ({"text": "x"}, pay(short, PRICE), 402, ChannelExpiring.code),
            ]
            for arguments, header, expected_status, code in refusals:
                status, answer = await post(arguments, header)
                assert (status, answer.get("error", {}).get("code")) == (expected_status, code), (
                    arguments,
                    answer,
                )
            assert CALLS == [] and server.get_earned()["served"] == 0

            status, answer = await post({"text": "paid"}, pay(channel, PRICE))
            assert status == 200 and answer["result"] == "PAID"
            for cumulative in (PRICE, PRICE - 1):  # replayed, then non-increasing
                status, answer = await post({"text": "again"}, pay(channel, cumulative))
                assert (status, answer["error"]["code"]) == (402, VoucherReplayed.code)
                assert answer["error"]["details"] == {"served": PRICE, "required": 2 * PRICE}
            assert CALLS == ["paid"]
            assert server.get_earned() == {
                "served": PRICE,
                "claimable": PRICE,
                "claimed": 0,
                "held": 0,
            }
            claimed = await node.get_channel(channel)
            assert claimed["claimed"] == 0

    asyncio.run(scenario())


def test_a_service_past_its_time_to_live_refuses_calls_and_leaves_the_registry(
    chain: Chain,
) -> None:
    seller = make_keypair("mortal")

    async def scenario() -> None:
        async with (
            NodeClient(chain.url) as node,
            serving(
                get_definition(shout), seller, chain.url, chain.netuid, ttl_blocks=40, renew=False
            ) as server,
            Client(node_url=chain.url, payer=BUYER, deposit_calls=10) as client,
        ):
            found = await client.find(service_id=server.service_id)
            assert await client.call(found, {"text": "alive"}) == "ALIVE"
            await advance(node, server.expiry - (await node.get_head())["height"])
            with pytest.raises(NoServiceFound):
                await client.find(service_id=server.service_id)
            CALLS.clear()
            await asyncio.sleep(1.1)  # the server's last reading of the head is now too old
            with pytest.raises(CallRefused) as caught:
                await client.call(found, {"text": "late"})
            assert caught.value.remote_code == ServiceNotLive.code
            assert CALLS == []
            assert server.get_earned()["served"] == PRICE

    asyncio.run(scenario())


def test_registration_needs_the_owners_endpoint_proof(chain: Chain) -> None:
    owner, stranger = make_keypair("impostor"), make_keypair("stranger")

    async def scenario() -> None:
        async with NodeClient(chain.url) as node:
            head = await node.get_head()
            block = (int(head["height"]), bytes.fromhex(head["hash"][2:]))
            service_id = compute_service_id(Address(owner.public_key), "fake")

            def endpoint(signer: Any) -> Any:
                return sign_endpoint(
                    chain_id=DEV_CHAIN_ID,
                    service_id=service_id,
                    transport="http",
                    url="http://127.0.0.1:9",
                    block=block,
                    sign=signer.sign,
                )

            def body(endpoints: tuple[Any, ...]) -> RegisterService:
                return RegisterService(
                    name="fake",
                    description="",
                    tags=("test",),
                    endpoints=endpoints,
                    netuid=chain.netuid,
                    price_amount=1,
                    price_unit="call",
                    input_schema_hash=bytes(32),
                    output_schema_hash=bytes(32),
                    schema_url="",
                    model_hash=NO_MODEL,
                    bond=MIN_SERVICE_BOND,
                    ttl_blocks=100,
                )

            before = await node.get_account(owner.address)
            for endpoints, code in (
                ((), MissingEndpointProof.code),
                ((endpoint(stranger),), InvalidEndpointProof.code),
            ):
                with pytest.raises(NodeApiError) as caught:
                    await send(node, owner, body(endpoints))
                assert caught.value.code == code
            assert await node.get_account(owner.address) == before
            assert await node.list_services(owner=owner.address) == []

    asyncio.run(scenario())


def test_a_url_that_does_not_serve_the_ledgers_proof_is_refused(chain: Chain) -> None:
    owner = make_keypair("impostor")

    async def scenario() -> None:
        async with NodeClient(chain.url) as node:
            async with serving(get_definition(shout), owner, chain.url, chain.netuid) as server:
                entry = await node.get_service(server.service_id)
                port = int(server.url.rsplit(":", 1)[1])
            # another process now answers on the registered URL, with another proof
            other = service(name="other-shout", price=PRICE, tags=("x",))(_other)
            async with serving(
                get_definition(other), owner, chain.url, chain.netuid, port=port
            ) as impostor:
                assert impostor.url == server.url
                async with Client(node_url=chain.url, payer=BUYER) as client:
                    with pytest.raises(EndpointProofMismatch):
                        await client.check_endpoint(entry)
                    assert (await client.find(service_id=impostor.service_id)).url == server.url

    asyncio.run(scenario())


def _other(text: str) -> str:
    return text


def test_the_payment_header_is_x402_shaped() -> None:
    voucher = sign_voucher(DEV_CHAIN_ID, bytes(32), 7, BUYER.sign)
    header = orjson.loads(
        base64.b64decode(encode_payment_header(DEV_CHAIN_ID, BUYER.public_key, voucher))
    )
    assert header["x402Version"] == 1 and header["scheme"] == "agora-channel"
    assert header["network"] == DEV_CHAIN_ID
    assert header["payload"]["payer"] == BUYER.address
    assert header["payload"]["voucher"]["cumulative"] == 7
    assert AGR == 10**9

"""Serving a decorated function: the HTTP app, its registration in the ledger, renewals and
claims.

``ServiceServer`` runs one service on aiohttp:
- ``POST /call``: a JSON object of arguments. They are checked against the input schema
  (422, ``ArgumentsInvalid``), the record must be live (410, ``ServiceNotLive``), the
  ``X-PAYMENT`` voucher must pay the call (402 with x402 payment requirements, see ``wire``),
  then the function runs and the answer is signed by the owner hotkey. A call that fails
  costs nothing: its voucher is released, never claimed.
- ``GET /.well-known/agora-service.json``: the endpoint proof the ledger holds;
- ``GET /.well-known/agent-card.json``: the A2A agent card, signed by the owner (``card``);
- ``GET /schema/input.json``, ``/schema/output.json``: the schemas whose hashes are on chain.

``start`` listens, signs the endpoint proof over the head block, serves it, and registers the
service (or, when a live record of this owner and name already lists this URL, keeps it);
``run`` renews the record when half its time to live is spent and claims vouchers through
the payment gate (``agora.payments``); ``stop`` claims everything earned and closes. Payment
is checked before the function runs and the voucher kept only after it succeeded, so a buyer
never pays for a failure and a seller is never owed for work it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from agora.agents.card import build_agent_card, sign_agent_card
from agora.agents.decorator import ServiceDefinition
from agora.agents.errors import AgentError, MalformedCall, ServiceFailed, ServiceNotLive
from agora.agents.schema import canonical_json
from agora.agents.wire import (
    CALL_PATH,
    CARD_PATH,
    PAYMENT_HEADER,
    PROOF_PATH,
    X402_VERSION,
    Offer,
    Receipt,
    answer_message,
    decode_payment_header,
    encode_answer,
    payment_requirements,
    proof_document,
    service_from_json,
)
from agora.client.client import NodeApiError, NodeClient, NodeUnreachable
from agora.client.participant import ensure_fee_balance, submit_and_wait
from agora.errors import AgoraError, encode_error
from agora.node.errors import NotFound
from agora.node.wire import from_hex
from agora.payments.books import EXPIRY_MARGIN_BLOCKS
from agora.payments.errors import ChainUnavailable, PaymentError, PaymentRequired
from agora.payments.gate import PaymentGate, PaymentGateConfig
from agora.payments.prices import Price
from agora.process import run_until_signal
from agora.protocol.address import Address
from agora.protocol.services import (
    MIN_SERVICE_BOND,
    DeregisterService,
    Endpoint,
    RegisterService,
    RenewService,
    Service,
    compute_service_id,
    sign_endpoint,
)
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.agents")
SERVICE_TASK_KIND = "custom"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    node_url: str
    netuid: int
    host: str = "127.0.0.1"
    port: int = 0
    public_url: str | None = None  # what goes on chain, if not the listening address
    ttl_blocks: int = 600
    bond: int = MIN_SERVICE_BOND
    renew: bool = True
    claim_interval_s: float = 30.0
    poll_interval_s: float = 1.0


class ServiceServer:
    def __init__(
        self,
        definition: ServiceDefinition,
        hotkey: Keypair,
        config: ServeConfig,
        client: NodeClient,
    ) -> None:
        self.definition = definition
        self.hotkey = hotkey
        self.config = config
        self.client = client
        self.service_id = compute_service_id(Address(hotkey.public_key), definition.name)
        self.chain_id = ""
        self.url = ""
        self.endpoints: tuple[Endpoint, ...] = ()
        self.expiry = 0
        self.calls = 0
        self.gate: PaymentGate | None = None
        self._card = b""
        self._runner: web.AppRunner | None = None
        self._offer: Offer | None = None
        self._stopped = False

    # --- HTTP ------------------------------------------------------------------------------

    def create_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.add_routes(
            [
                web.post(CALL_PATH, self.handle_call),
                web.get(PROOF_PATH, self.handle_proof),
                web.get(CARD_PATH, self.handle_card),
                web.get("/schema/input.json", self.handle_input_schema),
                web.get("/schema/output.json", self.handle_output_schema),
            ]
        )
        return app

    async def handle_call(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            return await self._call(body, request.headers.get(PAYMENT_HEADER))
        except PaymentError as error:
            return self._payment_refusal(error)
        except AgentError as error:
            return _json(encode_error(error), error.http_status)

    async def _call(self, body: bytes, header: str | None) -> web.Response:
        try:
            arguments = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise MalformedCall("the body must be a JSON object of arguments") from None
        if not isinstance(arguments, dict):
            raise MalformedCall("the body must be a JSON object of arguments")
        self.definition.validate_arguments(arguments)
        gate = self._get_gate()
        await self._check_live(gate)
        if header is None:
            raise PaymentRequired(
                f"{self.definition.name} costs {self.definition.price} base units per call: "
                f"pay with a payment-channel voucher in {PAYMENT_HEADER}"
            )
        payer, payment = decode_payment_header(header, self.chain_id)
        reservation = await gate.reserve(payer, payment, arguments)
        try:
            result = await self.definition.invoke(arguments)
            result_bytes = canonical_json(result)
        except Exception as error:
            gate.release(reservation)
            log.warning("service %s failed: %r", self.definition.name, error)
            raise ServiceFailed(f"{self.definition.name} failed: {type(error).__name__}") from None
        await gate.settle(reservation)
        self.calls += 1
        receipt = Receipt(
            service_id=self.service_id,
            request_hash=hashlib.sha256(body).digest(),
            result_hash=hashlib.sha256(result_bytes).digest(),
            channel_id=reservation.channel_id,
            cumulative=reservation.cumulative,
            cost=reservation.cost,
            signature=b"",
        )
        signature = self.hotkey.sign(answer_message(receipt))
        answer = encode_answer(result_bytes, replace(receipt, signature=signature))
        return web.Response(body=answer, content_type="application/json")

    async def _check_live(self, gate: PaymentGate) -> None:
        """Refuse calls once the record expired. A head read within the last second is good
        enough far from the expiry; within ``EXPIRY_MARGIN_BLOCKS`` of it the node is asked,
        so that no call is served past the time to live on a stale reading."""
        head = await gate.head.get(fresh=True)
        if head + EXPIRY_MARGIN_BLOCKS >= self.expiry:
            try:
                head = int((await self.client.get_head())["height"])
            except (NodeUnreachable, NodeApiError) as error:
                raise ChainUnavailable(f"cannot read the chain's head: {error.message}") from None
        if head >= self.expiry:
            raise ServiceNotLive(
                f"service {self.definition.name} expired at block {self.expiry}; its owner "
                "has not renewed it"
            )

    def _payment_refusal(self, error: PaymentError) -> web.Response:
        """402 (or the error's own status) with the x402 requirements to pay."""
        body = {
            "x402Version": X402_VERSION,
            **encode_error(error),
            "accepts": [payment_requirements(self._get_offer(), error.details or None)],
        }
        return _json(body, error.http_status)

    async def handle_proof(self, request: web.Request) -> web.Response:
        return _json(
            proof_document(self.chain_id, self.service_id, self.hotkey.public_key, self.endpoints)
        )

    async def handle_card(self, request: web.Request) -> web.Response:
        return web.Response(body=self._card, content_type="application/json")

    async def handle_input_schema(self, request: web.Request) -> web.Response:
        return web.Response(
            body=canonical_json(self.definition.input_schema), content_type="application/json"
        )

    async def handle_output_schema(self, request: web.Request) -> web.Response:
        return web.Response(
            body=canonical_json(self.definition.output_schema), content_type="application/json"
        )

    def get_earned(self) -> dict[str, int]:
        """Base units served (settled calls), claimable and claimed, over every channel."""
        return self._get_gate().get_earned()

    def _get_gate(self) -> PaymentGate:
        if self.gate is None:
            raise ServiceNotLive("the service is starting")
        return self.gate

    def _get_offer(self) -> Offer:
        if self._offer is None:
            self._offer = Offer(
                service_id=self.service_id,
                payee=self.hotkey.public_key,
                netuid=self.config.netuid,
                chain_id=self.chain_id,
                price=self.definition.price,
                resource=self.url + CALL_PATH,
                description=self.definition.description,
            )
        return self._offer

    # --- life cycle ------------------------------------------------------------------------

    async def listen(self) -> str:
        """Listen on the configured address; returns the service's public URL."""
        self._runner = web.AppRunner(self.create_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = self.config.public_url or f"http://{self.config.host}:{port}"
        return self.url

    async def start(self) -> str:
        """Listen, register (or keep a live registration of this URL); the public URL."""
        chain = await self.client.get_chain()
        self.chain_id = chain["chain_id"]
        await self.listen()
        self.gate = PaymentGate(
            PaymentGateConfig(
                hotkey=self.hotkey,
                netuid=self.config.netuid,
                task_kind=SERVICE_TASK_KIND,
                price=Price(amount=self.definition.price, per="request"),
                chain_id=self.chain_id,
                claim_interval_s=self.config.claim_interval_s,
                poll_interval_s=self.config.poll_interval_s,
            ),
            self.client,
        )
        await self.register()
        return self.url

    async def register(self) -> None:
        existing = await self._read_record()
        if existing is not None and any(e.url == self.url for e in existing.endpoints):
            self.endpoints, self.expiry = existing.endpoints, existing.expiry
        else:
            if existing is not None:
                await submit_and_wait(
                    self.client,
                    self.hotkey,
                    DeregisterService(service_id=self.service_id),
                    "deregistering the old endpoints",
                )
            await self._register_new()
        self._card = sign_agent_card(
            build_agent_card(
                url=self.url + CALL_PATH,
                service=await self.client.get_service(self.service_id),
                owner=self.hotkey.public_key,
                chain_id=self.chain_id,
            ),
            self.hotkey,
        )

    async def _register_new(self) -> None:
        head = await self.client.get_head()
        endpoint = sign_endpoint(
            chain_id=self.chain_id,
            service_id=self.service_id,
            transport="http",
            url=self.url,
            block=(int(head["height"]), from_hex(head["state_root"], "state_root")),
            sign=self.hotkey.sign,
        )
        self.endpoints = (endpoint,)  # served before the ledger sees it
        body = RegisterService(
            name=self.definition.name,
            description=self.definition.description[:512],
            tags=self.definition.tags,
            endpoints=self.endpoints,
            netuid=self.config.netuid,
            price_amount=self.definition.price,
            price_unit=self.definition.price_unit,
            input_schema_hash=self.definition.input_schema_hash,
            output_schema_hash=self.definition.output_schema_hash,
            schema_url=self.url + "/schema",
            model_hash=self.definition.model_hash,
            bond=self.config.bond,
            ttl_blocks=self.config.ttl_blocks,
        )
        await submit_and_wait(self.client, self.hotkey, body, "registering the service")
        record = await self._read_record()
        self.expiry = 0 if record is None else record.expiry

    async def _read_record(self) -> Service | None:
        try:
            info = await self.client.get_service(self.service_id)
        except NodeApiError as error:
            if error.code == NotFound.code:
                return None
            raise
        return service_from_json(info)

    async def renew_due(self) -> bool:
        """Renew when half the time to live is spent; whether it did."""
        head = int((await self.client.get_head())["height"])
        if self.expiry - head > self.config.ttl_blocks // 2:
            return False
        await submit_and_wait(
            self.client,
            self.hotkey,
            RenewService(service_id=self.service_id, ttl_blocks=self.config.ttl_blocks),
            "renewing the service",
        )
        record = await self._read_record()
        self.expiry = 0 if record is None else record.expiry
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Renew and claim until ``stop``; then claim what was earned and stop serving."""
        gate = self._get_gate()
        claims = asyncio.create_task(gate.run(stop))
        try:
            while not stop.is_set():
                if self.config.renew:
                    try:
                        await self.renew_due()
                    except AgoraError as error:
                        log.warning(
                            "renewing %s: error[%d] %s", self.url, error.code, error.message
                        )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)
        finally:
            claims.cancel()
            await asyncio.gather(claims, return_exceptions=True)
            await self.stop()

    async def stop(self) -> None:
        """Stop serving, then claim what was earned (once)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.gate is not None and not self._stopped:
            self._stopped = True
            await self.gate.claim_all()


async def serve_until_stopped(
    definition: ServiceDefinition,
    hotkey: Keypair,
    config: ServeConfig,
    on_started: Callable[[str, bytes], None],
) -> None:
    """Serve until SIGINT or SIGTERM; then claim what was earned and stop (``agora service
    serve``)."""
    async with NodeClient(config.node_url) as client:
        server = ServiceServer(definition, hotkey, config, client)

        async def main(stop: asyncio.Event) -> None:
            try:
                url = await server.start()
                on_started(url, server.service_id)
                await server.run(stop)
            finally:
                await server.stop()

        await run_until_signal(main)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def fund_hotkey(
    client: NodeClient, hotkey: Keypair, load_coldkey: Callable[[], Keypair], bond: int
) -> None:
    """Top the hotkey up from its coldkey so it can lock the bond and pay its fees."""
    await ensure_fee_balance(client, hotkey, load_coldkey, bond + bond // 2)

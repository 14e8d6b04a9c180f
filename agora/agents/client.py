"""``Client``: the buyer's side. Find a service, pay it per call through a payment channel,
check its signed answers and keep the receipts.

    async with Client(node_url=..., payer=keypair) as client:
        search = await client.find(tag="search")
        result = await client.call(search, {"query": "..."})

``find`` reads the registry (``/v1/services``) and checks that the service's URL serves the
very proof the ledger holds (``EndpointProofMismatch`` otherwise): the ledger vouches for
the owner's key, the URL for the server. ``call`` sends the arguments; the first call to a
service gets ``402`` with the payment requirements (x402, scheme ``agora-channel``), opens a
channel to the payee for ``deposit_calls`` calls and retries with a voucher; later calls
carry their voucher at once, and the channel is topped up or extended when it runs short. A
thousand calls cost one channel open on chain, and the seller one claim.

Channels and vouchers are ``channels.BuyerChannels``: concurrent calls are admitted in any
order, and a call that fails is simply paid again by the next voucher. Every answer's
signature is checked against the owner hotkey before its cost is committed; ``receipts``
holds one signed ``Receipt`` per paid call (and ``receipts_path``, if given, gets one JSON
line each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agora.agents.channels import BuyerChannel, BuyerChannels
from agora.agents.errors import (
    CallRefused,
    EndpointProofMismatch,
    MalformedCall,
    NoServiceFound,
)
from agora.agents.wire import (
    CALL_PATH,
    PAYMENT_HEADER,
    PROOF_PATH,
    Receipt,
    decode_answer,
    encode_payment_header,
    endpoint_to_json,
    service_from_json,
)
from agora.client.client import NodeApiError, NodeClient
from agora.errors import decode_error
from agora.node.errors import NotFound
from agora.node.wire import to_hex
from agora.payments.errors import InsufficientPayment, VoucherReplayed
from agora.protocol.errors import ProtocolError
from agora.protocol.services import Service, validate_endpoint_signature
from agora.wallet.keys import Keypair

PAYMENT_REQUIRED = 402


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """A live service as the registry lists it, its endpoint checked."""

    service_id: bytes
    record: Service
    url: str
    reputation: dict[str, int]

    @property
    def price(self) -> int:
        return self.record.price_amount


class Client:
    def __init__(
        self,
        *,
        node_url: str,
        payer: Keypair,
        deposit_calls: int = 1000,
        channel_blocks: int = 2000,
        receipts_path: Path | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.node = NodeClient(node_url)
        self.payer = payer
        self.payments = BuyerChannels(
            self.node, payer, deposit_calls=deposit_calls, channel_blocks=channel_blocks
        )
        self.receipts_path = receipts_path
        self.receipts: list[Receipt] = []
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.node.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    # --- discovery ---------------------------------------------------------------------------

    async def find(
        self,
        *,
        tag: str | None = None,
        service_id: str | bytes | None = None,
        max_price: int | None = None,
    ) -> ServiceInfo:
        """The cheapest live service with ``tag`` (or the one with ``service_id``), its
        endpoint proof checked against what its URL serves."""
        if service_id is not None:
            try:
                entries = [await self.node.get_service(service_id)]
            except NodeApiError as error:
                if error.code != NotFound.code:
                    raise
                raise NoServiceFound(error.message) from None
        else:
            entries = await self.node.list_services(tag=tag, max_price=max_price)
        if not entries:
            raise NoServiceFound(f"no live service with tag {tag!r}")
        return await self.check_endpoint(entries[0])

    async def check_endpoint(self, entry: dict[str, Any]) -> ServiceInfo:
        """The service, if its HTTP endpoint serves the proof the ledger holds."""
        record = service_from_json(entry)
        service_id = bytes.fromhex(entry["id"].removeprefix("0x"))
        endpoint = next((e for e in record.endpoints if e.transport == "http"), None)
        if endpoint is None:
            raise NoServiceFound(f"service {entry['name']} has no http endpoint")
        try:
            validate_endpoint_signature(
                await self.payments.get_chain_id(), record.owner, service_id, endpoint
            )
        except ProtocolError as error:
            raise EndpointProofMismatch(error.message) from None
        try:
            async with self._session().get(endpoint.url + PROOF_PATH) as response:
                document = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
            raise EndpointProofMismatch(f"{endpoint.url}{PROOF_PATH}: {error}") from None
        served = document.get("endpoints", []) if isinstance(document, dict) else []
        if (
            document.get("service_id") != entry["id"]
            or document.get("owner") != entry["owner"]
            or endpoint_to_json(endpoint) not in served
        ):
            raise EndpointProofMismatch(
                f"{endpoint.url} does not serve the proof the ledger holds for "
                f"service {entry['id']}"
            )
        return ServiceInfo(
            service_id=service_id,
            record=record,
            url=endpoint.url,
            reputation=entry.get("reputation", {}),
        )

    # --- calls -------------------------------------------------------------------------------

    async def call(self, service: ServiceInfo, arguments: dict[str, Any]) -> Any:
        """Call ``service`` with ``arguments`` and pay for it; the result, its answer checked."""
        body = orjson.dumps(arguments)
        owner, netuid = bytes(service.record.owner), service.record.netuid
        channel = self.payments.channels.get((owner, netuid))
        if channel is None:
            status, answer = await self._post(service.url, body, None)
            if status != PAYMENT_REQUIRED:
                raise _refusal(status, answer)
            channel = await self.payments.open(owner, netuid, service.price)
        try:
            return await self._paid_call(service, channel, body)
        except CallRefused as error:
            refused = error.remote_code in (InsufficientPayment.code, VoucherReplayed.code)
            served = error.remote_details.get("served")
            if not (refused and self.payments.adopt_served(channel, served)):
                raise
        return await self._paid_call(service, channel, body)

    async def _paid_call(self, service: ServiceInfo, channel: BuyerChannel, body: bytes) -> Any:
        ticket = await self.payments.issue(channel, service.price)
        try:
            header = encode_payment_header(
                self.payments.chain_id, self.payer.public_key, ticket.voucher
            )
            status, answer = await self._post(service.url, body, header)
            if status != 200:
                raise _refusal(status, answer)
            result, receipt = decode_answer(
                answer,
                bytes(service.record.owner),
                service.service_id,
                body,
                ticket.voucher,
                ticket.cost,
            )
        except BaseException:
            self.payments.release(ticket)
            raise
        self.payments.settle(ticket)
        self._keep(receipt)
        return result

    async def _post(self, url: str, body: bytes, header: str | None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers[PAYMENT_HEADER] = header
        async with self._session().post(url + CALL_PATH, data=body, headers=headers) as response:
            return response.status, await response.read()

    def _keep(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        if self.receipts_path is not None:
            with self.receipts_path.open("ab") as out:
                out.write(orjson.dumps(receipt.to_json()) + b"\n")

    def get_channel_ids(self) -> list[str]:
        return [to_hex(channel.channel_id) for channel in self.payments.channels.values()]


def _refusal(status: int, body: bytes) -> CallRefused:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    error = decode_error(decoded, status=status, default=MalformedCall)
    return CallRefused(
        f"the service refused the call: error[{error.code}] {error.message}",
        error.code,
        error.details,
    )

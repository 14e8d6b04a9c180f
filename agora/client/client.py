"""``NodeClient``: the node API from Python, async only (one API, never a sync copy).

One method per route of ``agora/node/api.py``; callers never build a path themselves. Blocks
come back as protocol ``Block`` values where the API carries their raw transactions; other
answers are the API's JSON objects, as ``agora/node/openapi.py`` describes them. A request
whose connection the node closed before answering (a pooled one to a node that has restarted
since) is sent once more before it counts as ``NodeUnreachable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from agora.errors import AgoraError, decode_error
from agora.node.errors import MalformedBlock
from agora.node.wire import block_from_json, from_hex, to_hex
from agora.protocol.blocks import Block

# The server closed the connection before any answer, most often a pooled one to a server
# that has restarted since: this client and the neuron client send the request once more.
CLOSED_BEFORE_ANSWERING = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError)


class NodeApiError(AgoraError):
    """The node refused a request; ``code`` is the node's stable error code."""

    code = 3090

    def __init__(self, message: str, code: int | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.code = type(self).code if code is None else code
        self.status = status

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.code, self.status))


class TransactionStillPending(NodeApiError):
    """A transaction was not in a block when ``wait_for_transaction`` gave up waiting."""

    code = 3092


class NodeUnreachable(AgoraError):
    """No answer from the node at that URL (not running, wrong port, timed out)."""

    code = 3091


class NodeClient:
    def __init__(self, base_url: str, timeout_seconds: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _fetch(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """The status and the body of one request; an unreachable node raises."""
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        for attempt in range(2):
            try:
                async with self._get_session().request(
                    method, self.base_url + path, data=data, headers=headers
                ) as response:
                    return response.status, await response.read()
            except CLOSED_BEFORE_ANSWERING as error:
                # Most often a pooled connection to a node that has restarted since: asked
                # once more on a new one. Safe to repeat: the node acknowledges a
                # transaction it already holds as known; the other requests only read, but
                # the dev faucet's, which may then grant twice.
                if attempt == 0:
                    continue
                raise self._unreachable(error) from None
            except (TimeoutError, aiohttp.ClientError) as error:
                raise self._unreachable(error) from None
        raise AssertionError("unreachable")

    def _unreachable(self, error: BaseException) -> NodeUnreachable:
        return NodeUnreachable(f"cannot reach the node at {self.base_url}: {error}")

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; an error answer raises ``NodeApiError`` with the node's code."""
        status, payload = await self._fetch(method, path, body)
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise NodeApiError(f"{path}: the node answered {status} with non-JSON") from None
        if status >= 400:
            envelope = decode_error(decoded, status=status, default=NodeApiError)
            raise NodeApiError(envelope.message, envelope.code, status)
        return decoded

    # --- routes ------------------------------------------------------------------------

    async def submit(self, raws: list[bytes]) -> list[bytes]:
        body = {"transactions": [{"raw": to_hex(raw)} for raw in raws]}
        answer = await self.request("POST", "/v1/transactions", body)
        return [from_hex(h, "hash") for h in answer["hashes"]]

    async def get_transaction(self, tx_hash: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", f"/v1/transactions/{to_hex(tx_hash)}")
        return answer

    async def wait_for_transaction(
        self, tx_hash: bytes, timeout_seconds: float = 30.0, poll_seconds: float = 0.05
    ) -> dict[str, Any]:
        """Poll until a block includes (or refuses) the transaction; its status and receipt.

        A refused transaction (status ``refused``) could not pay its fee: its receipt says
        why, with ``success`` false, as a failed one in a block does.
        """
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while True:
            status = await self.get_transaction(tx_hash)
            if status["status"] in ("included", "refused"):
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise TransactionStillPending(f"transaction {to_hex(tx_hash)} still pending")
            await asyncio.sleep(poll_seconds)

    async def get_account(self, address: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", f"/v1/accounts/{address}")
        return answer

    async def get_block(self, ident: int | str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", f"/v1/blocks/{ident}")
        return answer

    async def list_blocks(self, start: int, limit: int = 100) -> list[Block]:
        """The blocks from ``start``; an answer that is not a list of blocks raises
        ``MalformedBlock``."""
        answer = await self.request("GET", f"/v1/blocks?from={start}&limit={limit}")
        blocks = answer.get("blocks") if isinstance(answer, dict) else None
        if not isinstance(blocks, list):
            raise MalformedBlock(f"{self.base_url}: the answer for blocks from {start} has none")
        try:
            return [block_from_json(block) for block in blocks]
        except AgoraError as error:
            raise MalformedBlock(
                f"{self.base_url}: a block from {start} cannot be decoded: {error.message}"
            ) from None

    async def get_head(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", "/v1/head")
        return answer

    async def get_chain(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", "/v1/chain")
        return answer

    async def get_genesis(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", "/v1/genesis")
        return answer

    async def faucet(self, address: str, amount: int | None = None) -> bytes:
        body: dict[str, Any] = {"address": address}
        if amount is not None:
            body["amount"] = amount
        answer = await self.request("POST", "/v1/faucet", body)
        return from_hex(answer["hash"], "hash")

    async def list_subnets(self) -> list[dict[str, Any]]:
        """Every subnet's record (``netuid``, ``task_kind``, ``hyperparameters``, ``burn``...)."""
        answer = await self.request("GET", "/v1/subnets")
        subnets: list[dict[str, Any]] = answer["subnets"]
        return subnets

    async def get_subnet(self, netuid: int) -> dict[str, Any]:
        """One subnet's record; NodeApiError if there is none."""
        answer: dict[str, Any] = await self.request("GET", f"/v1/subnets/{netuid}")
        return answer

    async def get_metagraph(self, netuid: int, *, matrices: bool = False) -> dict[str, Any]:
        """The subnet's neurons, one per uid (with their weights and bonds if ``matrices``)."""
        query = "?matrices=1" if matrices else ""
        answer: dict[str, Any] = await self.request("GET", f"/v1/subnets/{netuid}/metagraph{query}")
        return answer

    async def get_hotkey(self, address: str) -> dict[str, Any]:
        """A hotkey's owner, take, stake and stakers, and its uid on each subnet."""
        answer: dict[str, Any] = await self.request("GET", f"/v1/hotkeys/{address}")
        return answer

    async def get_channel(self, channel_id: bytes | str) -> dict[str, Any]:
        """A payment channel by id (bytes, or 0x-hex); a ``NodeApiError`` (``NotFound``) if none."""
        ident = to_hex(channel_id) if isinstance(channel_id, bytes) else channel_id
        answer: dict[str, Any] = await self.request("GET", f"/v1/channels/{ident}")
        return answer

    async def list_channels(
        self, *, payer: str | None = None, payee: str | None = None
    ) -> list[dict[str, Any]]:
        """Channels of a payer and/or a payee (``agr1...``), closed ones included."""
        query = "&".join(
            f"{name}={value}" for name, value in (("payer", payer), ("payee", payee)) if value
        )
        answer = await self.request("GET", f"/v1/channels?{query}")
        channels: list[dict[str, Any]] = answer["channels"]
        return channels

    async def get_openapi(self) -> dict[str, Any]:
        """The OpenAPI description of the API the node serves."""
        answer: dict[str, Any] = await self.request("GET", "/v1/openapi.json")
        return answer

    async def get_health(self) -> dict[str, Any]:
        """``{"status": "ok" | "halted", "height": H}`` (and ``error`` when halted)."""
        status, payload = await self._fetch("GET", "/health")
        try:
            answer: dict[str, Any] = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise NodeApiError(f"/health: the node answered {status} with non-JSON") from None
        return answer

    async def get_metrics(self) -> str:
        """The node's metrics in the Prometheus text format."""
        status, payload = await self._fetch("GET", "/metrics")
        if status >= 400:
            raise NodeApiError(f"/metrics: HTTP {status}", status=status)
        return payload.decode()

    async def stream_blocks(self) -> AsyncIterator[dict[str, Any]]:
        """Each block the node applies from now on: ``{"header": ..., "receipts": [...]}``.

        Server-sent events over one long-lived response; the stream ends when the node stops.
        """
        url = self.base_url + "/v1/stream/blocks"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with self._get_session().get(url, timeout=timeout) as response:
                if response.status >= 400:
                    raise NodeApiError(f"/v1/stream/blocks: HTTP {response.status}")
                async for line in response.content:
                    if line.startswith(b"data: "):
                        event: dict[str, Any] = orjson.loads(line[len(b"data: ") :])
                        yield event
        except (TimeoutError, aiohttp.ClientError) as error:
            raise NodeUnreachable(f"cannot reach the node at {self.base_url}: {error}") from None

    async def list_services(
        self,
        *,
        tag: str | None = None,
        owner: str | None = None,
        netuid: int | None = None,
        max_price: int | None = None,
        unit: str | None = None,
    ) -> list[dict[str, Any]]:
        """Live services matching every filter given, cheapest first."""
        filters = {"tag": tag, "owner": owner, "netuid": netuid, "max_price": max_price}
        filters["unit"] = unit
        query = urlencode({name: value for name, value in filters.items() if value is not None})
        answer = await self.request("GET", f"/v1/services?{query}")
        services: list[dict[str, Any]] = answer["services"]
        return services

    async def get_service(self, service_id: bytes | str) -> dict[str, Any]:
        """A live service by id (bytes, or 0x-hex); NodeApiError 3004 if there is none."""
        ident = to_hex(service_id) if isinstance(service_id, bytes) else service_id
        answer: dict[str, Any] = await self.request("GET", f"/v1/services/{ident}")
        return answer

    async def list_proposals(
        self, *, status: str | None = None, track: str | None = None
    ) -> list[dict[str, Any]]:
        """Governance proposals, newest first, filtered by status and/or track."""
        filters = {"status": status, "track": track}
        query = urlencode({name: value for name, value in filters.items() if value is not None})
        answer = await self.request("GET", f"/v1/governance/proposals?{query}")
        proposals: list[dict[str, Any]] = answer["proposals"]
        return proposals

    async def get_proposal(self, proposal_id: int) -> dict[str, Any]:
        """One proposal with its tally, every vote and its timeline; NodeApiError if none."""
        answer: dict[str, Any] = await self.request(
            "GET", f"/v1/governance/proposals/{proposal_id}"
        )
        return answer

    async def get_governance_params(self) -> dict[str, Any]:
        """Every governable number with its bounds, the tracks and hyperparameter bounds."""
        answer: dict[str, Any] = await self.request("GET", "/v1/governance/params")
        return answer

    async def get_treasury(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", "/v1/treasury")
        return answer

    async def get_lineage(self) -> dict[str, Any]:
        """Every lineage record: data commitments, rounds, models and who serves them."""
        answer: dict[str, Any] = await self.request("GET", "/v1/lineage")
        return answer

    async def get_federated_model(self, model_hash: bytes | str) -> dict[str, Any]:
        ident = model_hash if isinstance(model_hash, str) else "0x" + model_hash.hex()
        answer: dict[str, Any] = await self.request("GET", f"/v1/models/{ident}")
        return answer

    async def get_federation(self, netuid: int) -> dict[str, Any]:
        """A federated subnet's current round, its commitments and revealed updates."""
        answer: dict[str, Any] = await self.request("GET", f"/v1/federations/{netuid}")
        return answer

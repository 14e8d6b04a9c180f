"""``NodeClient``: the node API from Python, async only (one API, never a sync copy)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from agora.errors import AgoraError
from agora.node.wire import block_from_json, from_hex, to_hex
from agora.protocol.blocks import Block


class NodeApiError(AgoraError):
    """The node refused a request; ``code`` is the node's stable error code."""

    code = 3090

    def __init__(self, message: str, code: int = 3090, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.code, self.status))


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

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                payload = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            raise NodeUnreachable(f"cannot reach the node at {self.base_url}: {error}") from None
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise NodeApiError(f"{path}: the node answered {status} with non-JSON") from None
        if status >= 400:
            error = decoded.get("error", {}) if isinstance(decoded, dict) else {}
            raise NodeApiError(
                error.get("message", f"HTTP {status}"), error.get("code", 3090), status
            )
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
                raise NodeApiError(f"transaction {to_hex(tx_hash)} still pending", 3092)
            await asyncio.sleep(poll_seconds)

    async def get_account(self, address: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", f"/v1/accounts/{address}")
        return answer

    async def get_block(self, ident: int | str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", f"/v1/blocks/{ident}")
        return answer

    async def list_blocks(self, start: int, limit: int = 100) -> list[Block]:
        answer = await self.request("GET", f"/v1/blocks?from={start}&limit={limit}")
        return [block_from_json(block) for block in answer["blocks"]]

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

    async def get_channel(self, channel_id: bytes | str) -> dict[str, Any]:
        """A payment channel by id (bytes, or 0x-hex); NodeApiError 3004 if there is none."""
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

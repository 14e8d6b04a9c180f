"""A small async Ethereum JSON-RPC client over aiohttp: only the calls the Inbox needs.

Failures come in two kinds. A connection error, a timeout, or an HTTP 429/5xx means the
node is (perhaps briefly) unreachable: the request is retried with exponential backoff,
then ``RpcUnavailable`` is raised. A JSON-RPC error object is the node's answer, not an
outage: ``RpcError`` is raised at once with the node's code and message, and the caller
decides (the poster re-reads its nonce, the reader halves a log range). Every request is
idempotent for the node (a repeated ``eth_sendRawTransaction`` answers "already known"), so
retrying one whose answer was lost is safe.

Batch requests (a JSON array of calls in one POST) fetch block headers during catch-up; a
node that refuses batches is asked call by call instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from agora.sequencer.base import SequencerError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 5.0
BATCH_SIZE = 100
CONCURRENT_BATCHES = 4


class RpcError(SequencerError):
    """The EVM node answered a JSON-RPC error (the message is the node's own)."""

    code = 3203

    def __init__(self, message: str, rpc_code: int = 0) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code

    def __reduce__(self) -> tuple[type[RpcError], tuple[str, int]]:  # type: ignore[override]
        return (type(self), (self.message, self.rpc_code))


class RpcUnavailable(SequencerError):
    """The EVM node could not be reached, or kept failing, after every retry."""

    code = 3204


class RpcClient:
    """One EVM node's JSON-RPC endpoint; create it anywhere, use it inside an event loop."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 10.0,
        attempts: int = 5,
        backoff_seconds: float = 0.2,
    ) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._session: aiohttp.ClientSession | None = None
        self._next_id = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- generic calls -----------------------------------------------------------------

    async def request(self, method: str, params: list[Any]) -> Any:
        """One call's result; raises RpcError or RpcUnavailable."""
        reply = await self._post(self._make_call(method, params))
        if not isinstance(reply, dict):
            raise RpcError(f"{method}: the node answered {type(reply).__name__}, not an object")
        return _take_result(method, reply)

    async def request_batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """The results of ``calls`` in order (one POST per BATCH_SIZE calls)."""
        chunks = [calls[i : i + BATCH_SIZE] for i in range(0, len(calls), BATCH_SIZE)]
        limit = asyncio.Semaphore(CONCURRENT_BATCHES)

        async def run(chunk: Sequence[tuple[str, list[Any]]]) -> list[Any]:
            async with limit:
                return await self._request_chunk(chunk)

        results: list[Any] = []
        for part in await asyncio.gather(*(run(chunk) for chunk in chunks)):
            results.extend(part)
        return results

    # --- typed calls ---------------------------------------------------------------------

    async def get_chain_id(self) -> int:
        return _to_int(await self.request("eth_chainId", []))

    async def get_block_number(self) -> int:
        return _to_int(await self.request("eth_blockNumber", []))

    async def get_block(self, number: int | str) -> dict[str, Any]:
        """A block header (transaction hashes only); ``number`` may be "latest"."""
        tag = hex(number) if isinstance(number, int) else number
        block = await self.request("eth_getBlockByNumber", [tag, False])
        if not isinstance(block, dict):
            raise RpcError(f"block {number} is not known to the node yet")
        return block

    async def get_blocks(self, numbers: Sequence[int]) -> list[dict[str, Any]]:
        blocks = await self.request_batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        )
        for number, block in zip(numbers, blocks, strict=True):
            if not isinstance(block, dict):
                raise RpcError(f"block {number} is not known to the node yet")
        return blocks

    async def get_logs(
        self, address: str, from_block: int, to_block: int, topics: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {
            "address": address,
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        if topics is not None:
            query["topics"] = topics
        logs = await self.request("eth_getLogs", [query])
        if not isinstance(logs, list):
            raise RpcError("eth_getLogs: the node answered something other than a list")
        return logs

    async def get_code(self, address: str) -> bytes:
        code = await self.request("eth_getCode", [address, "latest"])
        if not isinstance(code, str) or not code.startswith("0x"):
            raise RpcError(f"eth_getCode: expected 0x-hex, got {code!r}")
        try:
            return bytes.fromhex(code[2:])
        except ValueError:
            raise RpcError(f"eth_getCode: not valid hex: {code[:80]!r}") from None

    async def get_transaction_count(self, address: str, block: str = "pending") -> int:
        return _to_int(await self.request("eth_getTransactionCount", [address, block]))

    async def get_gas_price(self) -> int:
        return _to_int(await self.request("eth_gasPrice", []))

    async def estimate_gas(self, transaction: dict[str, Any]) -> int:
        return _to_int(await self.request("eth_estimateGas", [transaction]))

    async def send_raw_transaction(self, raw: bytes) -> str:
        return str(await self.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

    async def get_transaction_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        receipt = await self.request("eth_getTransactionReceipt", [tx_hash])
        return receipt if isinstance(receipt, dict) else None

    # --- transport -----------------------------------------------------------------------

    def _make_call(self, method: str, params: list[Any]) -> dict[str, Any]:
        self._next_id += 1
        return {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}

    async def _request_chunk(self, chunk: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        calls = [self._make_call(method, params) for method, params in chunk]
        reply = await self._post(calls)
        if not isinstance(reply, list):
            # Some nodes refuse batches with one error object: ask call by call.
            return list(await asyncio.gather(*(self.request(m, p) for m, p in chunk)))
        by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
        results = []
        for call in calls:
            item = by_id.get(call["id"])
            if item is None:
                raise RpcError(f"{call['method']}: the batch answer lacks call {call['id']}")
            results.append(_take_result(call["method"], item))
        return results

    async def _post(self, body: Any) -> Any:
        """POST one JSON body, retrying outages; the parsed JSON answer."""
        data = orjson.dumps(body)
        failure = ""
        for attempt in range(self.attempts):
            if attempt:
                delay = min(self.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                log.debug("retrying %s in %.2fs after: %s", self.url, delay, failure)
                await asyncio.sleep(delay)
            try:
                status, text = await self._send(data)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                failure = f"{type(error).__name__}: {error}"
                continue
            if status in RETRY_STATUSES:
                failure = f"HTTP {status}"
                continue
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                raise RpcError(
                    f"HTTP {status}: the node answered non-JSON: {text[:200]!r}"
                ) from None
        raise RpcUnavailable(
            f"the EVM node at {self.url} did not answer after {self.attempts} attempts "
            f"({failure}); check the URL and that the node is running"
        )

    async def _send(self, data: bytes) -> tuple[int, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
                headers={"Content-Type": "application/json"},
            )
        async with self._session.post(self.url, data=data) as response:
            return response.status, await response.read()


def _take_result(method: str, reply: dict[str, Any]) -> Any:
    error = reply.get("error")
    if error is not None:
        if isinstance(error, dict):
            message = str(error.get("message", error))
            data = error.get("data")
            if isinstance(data, str) and data and data not in message:
                message = f"{message} ({data})"
            code = error.get("code", 0)
            raise RpcError(f"{method}: {message}", code if isinstance(code, int) else 0)
        raise RpcError(f"{method}: {error}")
    if "result" not in reply:
        raise RpcError(f"{method}: the answer has neither a result nor an error")
    return reply["result"]


def _to_int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(f"expected a 0x-hex quantity, got {value!r}")
    return int(value, 16)

"""Deploying the Inbox contract and posting batches to it from one EVM account.

``deploy_inbox`` sends the shipped bytecode (artifacts/Inbox.json, compiled from
contracts/Inbox.vy) and waits for its receipt; the EVM block that holds the deployment is
what the operator uses as Agora's ``genesis_block``.

``InboxPoster`` signs and sends ``post(payload)`` transactions. It keeps the account's nonce
locally (one post after another, without a round trip per nonce) and reads it again from
the chain after any error. Fees come from the node with a margin: EIP-1559 fields where the
chain has a base fee (max fee = 2 x base fee + tip), a legacy gas price otherwise; a fee
the node calls underpriced is raised by half and the post retried. The gas limit is the
node's estimate plus a margin, since calldata pricing changes between forks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from agora.sequencer.base import SequencerError
from agora.sequencer.ethereum.rpc import RpcClient, RpcError, RpcUnavailable

log = logging.getLogger(__name__)

# keccak256("post(bytes)")[:4]
POST_SELECTOR = bytes.fromhex("baf9b369")
GAS_MARGIN_PERCENT = 120
FEE_MARGIN_PERCENT = 125
FEE_BUMP_PERCENT = 150
MAX_FEE_PERCENT = 1_000
RECEIPT_POLL_SECONDS = 0.2


class PostFailed(SequencerError):
    """A transaction to the Inbox could not be sent (the message says what the node said)."""

    code = 3205


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxArtifact:
    compiler: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    runtime_bytecode: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxDeployment:
    """Where the Inbox lives: ``block_number`` is the genesis block for Agora."""

    address: str
    block_number: int
    tx_hash: str
    chain_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PostedBatch:
    tx_hash: str
    nonce: int
    # The latest EVM block when the post was sent: it lands in a later block.
    head_block: int


@cache
def load_artifact() -> InboxArtifact:
    text = resources.files("agora.sequencer.ethereum").joinpath("artifacts/Inbox.json")
    value = json.loads(text.read_text())
    return InboxArtifact(
        compiler=value["compiler"],
        abi=value["abi"],
        bytecode=bytes.fromhex(value["bytecode"].removeprefix("0x")),
        runtime_bytecode=bytes.fromhex(value["bytecode_runtime"].removeprefix("0x")),
    )


def encode_post_call(payload: bytes) -> bytes:
    """ABI calldata of ``post(payload)``: selector, offset 32, length, padded bytes."""
    padding = -len(payload) % 32
    return (
        POST_SELECTOR
        + (32).to_bytes(32, "big")
        + len(payload).to_bytes(32, "big")
        + payload
        + bytes(padding)
    )


async def deploy_inbox(
    rpc_url: str, private_key: str, *, timeout_seconds: float = 120.0
) -> InboxDeployment:
    """Deploy the Inbox from ``private_key``'s account and wait until it is mined."""
    from eth_utils.address import to_checksum_address

    rpc = RpcClient(rpc_url)
    try:
        sender = InboxPoster(rpc, inbox_address="", private_key=private_key)
        sent = await sender.send(to=None, data=load_artifact().bytecode)
        receipt = await sender.wait_for_receipt(sent.tx_hash, timeout_seconds)
        return InboxDeployment(
            address=to_checksum_address(receipt["contractAddress"]),
            block_number=int(receipt["blockNumber"], 16),
            tx_hash=sent.tx_hash,
            chain_id=await rpc.get_chain_id(),
        )
    finally:
        await rpc.close()


class InboxPoster:
    """Sends ``post`` transactions from one account; one caller at a time."""

    def __init__(
        self, rpc: RpcClient, inbox_address: str, private_key: str, *, attempts: int = 5
    ) -> None:
        self.rpc = rpc
        self.inbox_address = inbox_address
        self.attempts = attempts
        # Imported here: eth_account takes ~0.6 s to import, which a reading node never needs.
        from eth_account import Account

        self._sign = Account.sign_transaction
        try:
            self._account = Account.from_key(private_key)
        except (ValueError, TypeError) as error:
            raise PostFailed(f"the poster key is not a secp256k1 private key: {error}") from None
        self._chain_id: int | None = None
        self._nonce: int | None = None
        self._nonce_source = "pending"
        self._fee_percent = FEE_MARGIN_PERCENT

    @property
    def address(self) -> str:
        return str(self._account.address)

    @property
    def next_nonce(self) -> int | None:
        """The nonce the next post will use, or None until it is read from the chain."""
        return self._nonce

    def resync(self, *, replace_stuck: bool) -> None:
        """Forget the local nonce; the next post reads it from the chain again.

        With ``replace_stuck`` it reads the mined count ("latest"): the next post then
        reuses the lowest unmined nonce and, with fresh fees, replaces a post stuck in the
        mempool. Otherwise it reads the count including the mempool ("pending").
        """
        self._nonce = None
        self._nonce_source = "latest" if replace_stuck else "pending"

    async def post(self, payload: bytes) -> PostedBatch:
        """Send ``post(payload)`` to the Inbox; returns once the node has accepted it."""
        return await self.send(to=self.inbox_address, data=encode_post_call(payload))

    async def send(self, *, to: str | None, data: bytes) -> PostedBatch:
        """Sign and send one transaction, retrying on errors; raises PostFailed."""
        failure = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
            try:
                return await self._send_once(to, data)
            except RpcUnavailable as error:
                failure = error.message
                self._nonce = None
            except RpcError as error:
                failure = error.message
                self._handle_rejection(error)
        raise PostFailed(f"sending to the Inbox failed {self.attempts} times; last: {failure}")

    async def wait_for_receipt(self, tx_hash: str, timeout_seconds: float) -> dict[str, Any]:
        """The receipt of a mined transaction; raises PostFailed on revert or timeout."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            receipt = await self.rpc.get_transaction_receipt(tx_hash)
            if receipt is not None:
                if int(receipt.get("status", "0x1"), 16) != 1:
                    raise PostFailed(f"transaction {tx_hash} was mined but reverted")
                return receipt
            await asyncio.sleep(RECEIPT_POLL_SECONDS)
        raise PostFailed(
            f"transaction {tx_hash} was not mined within {timeout_seconds:.0f}s; "
            "check that the chain is producing blocks"
        )

    # --- steps ---------------------------------------------------------------------------

    async def _send_once(self, to: str | None, data: bytes) -> PostedBatch:
        if self._chain_id is None:
            self._chain_id = await self.rpc.get_chain_id()
        if self._nonce is None:
            self._nonce = await self.rpc.get_transaction_count(self.address, self._nonce_source)
        call: dict[str, str] = {"from": self.address, "data": "0x" + data.hex()}
        if to is not None:
            call["to"] = to
        latest, gas_price, gas = await self.rpc.request_batch(
            [
                ("eth_getBlockByNumber", ["latest", False]),
                ("eth_gasPrice", []),
                ("eth_estimateGas", [call]),
            ]
        )
        if not isinstance(latest, dict):
            raise RpcError("eth_getBlockByNumber: the node has no latest block")
        transaction = {
            "chainId": self._chain_id,
            "nonce": self._nonce,
            "to": to,
            "value": 0,
            "data": data,
            "gas": _quantity(gas, "eth_estimateGas") * GAS_MARGIN_PERCENT // 100,
            **self._compute_fees(latest, _quantity(gas_price, "eth_gasPrice")),
        }
        signed = self._sign(transaction, self._account.key)
        tx_hash = "0x" + bytes(signed.hash).hex()
        try:
            await self.rpc.send_raw_transaction(bytes(signed.raw_transaction))
        except RpcError as error:
            if not _is_already_known(error):
                raise
        posted = PostedBatch(
            tx_hash=tx_hash, nonce=self._nonce, head_block=_quantity(latest.get("number"), "number")
        )
        self._nonce += 1
        self._nonce_source = "pending"
        self._fee_percent = FEE_MARGIN_PERCENT
        return posted

    def _compute_fees(self, latest: dict[str, Any], gas_price: int) -> dict[str, int]:
        base_fee = latest.get("baseFeePerGas")
        if base_fee is None:
            return {"gasPrice": gas_price * self._fee_percent // 100}
        base = _quantity(base_fee, "baseFeePerGas")
        # eth_gasPrice is base fee + suggested tip on EIP-1559 nodes; keep at least 1 wei.
        tip = max(gas_price - base, 1) * self._fee_percent // 100
        return {
            "maxFeePerGas": 2 * base * self._fee_percent // 100 + tip,
            "maxPriorityFeePerGas": tip,
        }

    def _handle_rejection(self, error: RpcError) -> None:
        message = error.message.lower()
        if "insufficient funds" in message:
            raise PostFailed(
                f"the poster account {self.address} cannot pay for gas: fund it ({error.message})"
            )
        if "execution reverted" in message or "revert" in message:
            raise PostFailed(f"the Inbox refused the post: {error.message}")
        if "underpriced" in message or "fee too low" in message or "base fee" in message:
            self._fee_percent = min(self._fee_percent * FEE_BUMP_PERCENT // 100, MAX_FEE_PERCENT)
        log.warning("the EVM node refused a post (%s); reading the nonce again", error.message)
        self._nonce = None


def _is_already_known(error: RpcError) -> bool:
    message = error.message.lower()
    return "already known" in message or "known transaction" in message


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(f"{what}: expected a 0x-hex quantity, got {value!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcError(f"{what}: not a hex quantity: {value!r}") from None

"""What a miner or validator does on chain before it works: join a subnet, fund its hotkey,
publish its endpoint. Every step reads state through the node API and waits for its receipt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agora.client.client import NodeClient
from agora.client.transactions import send_transaction
from agora.errors import AgoraError
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, decode_address
from agora.protocol.staking import AddStake
from agora.protocol.subnets import Register, Serve
from agora.wallet.keys import Keypair


class ParticipantError(AgoraError):
    """A miner or validator could not take its place on the subnet."""

    code = 3500


class RegistrationDeclined(ParticipantError):
    """The operator did not confirm paying the registration price."""

    code = 3501


class TransactionFailed(ParticipantError):
    """A transaction the process sent was included but failed; its receipt says why."""

    code = 3502


@dataclass(frozen=True, slots=True)
class SubnetInfo:
    netuid: int
    task_kind: str
    task_config: dict[str, Any]
    burn: int
    tempo: int
    raw: dict[str, Any]


async def get_subnet_info(client: NodeClient, netuid: int) -> SubnetInfo:
    import json

    subnet = await client.get_subnet(netuid)
    config = json.loads(subnet["task_config"] or "{}")
    return SubnetInfo(
        netuid=netuid,
        task_kind=subnet["task_kind"],
        task_config=config if isinstance(config, dict) else {},
        burn=subnet["burn"],
        tempo=subnet["hyperparameters"]["tempo"],
        raw=subnet,
    )


async def submit_and_wait(
    client: NodeClient, key: Keypair, body: Any, what: str, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Sign with ``key``, submit, wait for the block; a failed receipt raises."""
    tx_hash = await send_transaction(client, public_key=key.public_key, sign=key.sign, body=body)
    status = await client.wait_for_transaction(tx_hash, timeout_seconds=timeout_s)
    receipt = status["receipt"]
    if not receipt["success"]:
        raise TransactionFailed(f"{what} failed: error[{receipt['code']}] {receipt['message']}")
    return status


async def find_uid(client: NodeClient, netuid: int, hotkey: bytes) -> int | None:
    metagraph = await client.get_metagraph(netuid)
    for neuron in metagraph["neurons"]:
        if decode_address(neuron["hotkey"]) == hotkey:
            return int(neuron["uid"])
    return None


async def ensure_registered(
    client: NodeClient,
    netuid: int,
    hotkey: Keypair,
    load_coldkey: Callable[[], Keypair],
    confirm: Callable[[int], Awaitable[bool] | bool],
) -> int:
    """The hotkey's uid on the subnet, registering it first (paid by the coldkey) if needed.

    ``confirm`` sees the registration price in base units and may decline.
    """
    uid = await find_uid(client, netuid, hotkey.public_key)
    if uid is not None:
        return uid
    subnet = await get_subnet_info(client, netuid)
    answer = confirm(subnet.burn)
    if not (await answer if isinstance(answer, Awaitable) else answer):
        raise RegistrationDeclined(f"registration on subnet {netuid} declined")
    coldkey = load_coldkey()
    body = Register(netuid=netuid, hotkey=Address(hotkey.public_key))
    await submit_and_wait(client, coldkey, body, f"registration on subnet {netuid}")
    uid = await find_uid(client, netuid, hotkey.public_key)
    if uid is None:
        raise ParticipantError(f"registered on subnet {netuid}, but the hotkey has no uid")
    return uid


async def ensure_fee_balance(
    client: NodeClient, hotkey: Keypair, load_coldkey: Callable[[], Keypair], minimum: int
) -> None:
    """Top the hotkey up from its coldkey so it can pay fees (weights, endpoints)."""
    account = await client.get_account(hotkey.address)
    if account["balance"] >= minimum:
        return
    coldkey = load_coldkey()
    body = Transfer(recipient=Address(hotkey.public_key), amount=2 * minimum)
    await submit_and_wait(client, coldkey, body, "funding the hotkey")


async def ensure_stake(
    client: NodeClient, hotkey: Keypair, load_coldkey: Callable[[], Keypair], amount: int
) -> None:
    """Stake from the coldkey until the hotkey holds at least ``amount``."""
    info = await client.get_hotkey(hotkey.address)
    missing = amount - int(info.get("total_stake", 0))
    if missing > 0:
        body = AddStake(hotkey=Address(hotkey.public_key), amount=missing)
        await submit_and_wait(client, load_coldkey(), body, "staking")


async def publish_endpoint(client: NodeClient, netuid: int, hotkey: Keypair, url: str) -> None:
    metagraph = await client.get_metagraph(netuid)
    for neuron in metagraph["neurons"]:
        if decode_address(neuron["hotkey"]) == hotkey.public_key and neuron["endpoint"] == url:
            return
    await submit_and_wait(client, hotkey, Serve(netuid=netuid, endpoint=url), "serving")

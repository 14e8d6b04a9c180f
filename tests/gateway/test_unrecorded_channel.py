"""A channel the gateway opened on chain but did not live to record (killed between sending
the opening and writing it down) is found again when the gateway starts, so its deposit comes
back when it expires instead of staying locked and forgotten.

One dev node process on loopback (a block as soon as a transaction waits), an embedding subnet
with a registered miner hotkey, and the payer's opening sent straight to the node: what a
killed gateway leaves behind. A fresh store stands for the one that never got the record.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from node_helpers import NodeProcesses

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.gateway.channels import ChannelManager
from agora.gateway.store import ChannelRecord, GatewayStore
from agora.node.devchain import compute_dev_seed
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.channels import OpenChannel
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register
from agora.wallet.keys import Keypair

OWNER = Keypair(compute_dev_seed("dev0"))
COLDKEY = Keypair(compute_dev_seed("dev1"))
PAYER = Keypair(compute_dev_seed("dev2"))
MINER = Keypair(hashlib.sha256(b"agora-unrecorded-channel-test:miner").digest())
NETUID = 1
DEPOSIT = BASE_UNITS_PER_AGR
LIFETIME_BLOCKS = 4


async def send(client: NodeClient, key: Keypair, body: Any) -> None:
    await submit_and_wait(client, key, body, type(body).__name__)


async def open_without_recording(client: NodeClient) -> None:
    """A subnet, the miner registered, and the payer's channel to it opened on chain only."""
    await send(
        client, OWNER, CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
    )
    await send(client, COLDKEY, Register(netuid=NETUID, hotkey=Address(MINER.public_key)))
    head = (await client.get_head())["height"]
    opening = OpenChannel(
        payee=Address(MINER.public_key),
        netuid=NETUID,
        deposit=DEPOSIT,
        expiry=head + LIFETIME_BLOCKS,
    )
    await send(client, PAYER, opening)


async def restart_and_close(
    url: str, store: GatewayStore
) -> tuple[list[ChannelRecord], list[ChannelRecord]]:
    """The gateway's channels once started on the empty store, and those it closes after
    the channel's expiry."""
    async with NodeClient(url) as client:
        await open_without_recording(client)
        channels = ChannelManager(
            client=client, payer=PAYER, store=store, deposit=DEPOSIT, channel_blocks=100
        )
        await channels.start()
        known = store.list_channels(PAYER.address)
        for _ in range(LIFETIME_BLOCKS):
            await send(client, COLDKEY, Transfer(recipient=Address(MINER.public_key), amount=1))
        closed = await channels.close_expired()
        await channels.close()
    return known, closed


def test_a_channel_opened_but_not_recorded_is_found_and_closed_at_expiry(tmp_path: Path) -> None:
    processes = NodeProcesses(tmp_path / "logs")
    store = GatewayStore(tmp_path / "gateway" / "gateway.db")
    try:
        node = processes.run(tmp_path / "node")
        known, closed = asyncio.run(restart_and_close(node.url, store))
    finally:
        store.close()
        processes.stop_all()
    assert [(r.payee, r.netuid, r.deposit, r.committed, r.closed) for r in known] == [
        (MINER.address, NETUID, DEPOSIT, 0, False)
    ]
    assert [(r.channel_id, r.closed, r.refund) for r in closed] == [
        (known[0].channel_id, True, DEPOSIT)
    ]

"""A miner's earnings survive a kill: every voucher it answered for is claimed after a restart.

A dev node and an `agora miner run` process (selling at 0.001/request, claiming only once an
hour, answering noise so no model is loaded: the payment path is the same). A payer opens a
channel and buys requests, each answered; the miner is SIGKILLed before any claim. Restarted
on the same data folder, it claims on chain exactly what was paid, refuses the last voucher
again (it was served already) and serves the next one. The voucher store itself keeps the
highest voucher per channel across reopening.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from node_helpers import NodeProcess, NodeProcesses, wait_for

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.neuron.client import NeuronClient
from agora.neuron.errors import RemoteError
from agora.node.devchain import DEV_CHAIN_ID, compute_dev_seed
from agora.payments.errors import VoucherReplayed
from agora.payments.store import VoucherStore
from agora.payments.vouchers import make_payment
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.channels import OpenChannel, compute_channel_id, sign_voucher
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet
from agora.tasks.embedding import ROUTE
from agora.wallet.keys import Keypair
from agora.wallet.keystore import KDF_PRESETS, Keystore

AGR = BASE_UNITS_PER_AGR
PRICE = 1_000_000  # 0.001 AGR a request
PASSWORD = "agora-miner-test"
OWNER = Keypair(compute_dev_seed("dev0"))
PAYER = Keypair(compute_dev_seed("dev1"))
REQUEST = {"model": "all-MiniLM-L6-v2", "texts": ["a text", "another"]}
PAID_REQUESTS = 5


@dataclass
class Network:
    node: NodeProcess
    root: Path
    netuid: int = 0
    hotkey: Keypair | None = None
    miners: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_miner(self, run: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "agora", "miner", "run", "--node", self.node.url]
        argv += ["--netuid", str(self.netuid), "--wallet", "miner", "--hotkey", "default"]
        argv += ["--wallet-dir", str(self.root / "wallets"), "--price", "0.001/request"]
        argv += ["--data-dir", str(self.root / "miner-data"), "--claim-interval", "3600"]
        argv += ["--behaviour", "random", "--yes"]
        with (self.root / f"miner-{run}.log").open("wb") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=os.environ | {"AGORA_WALLET_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"},
            )
        self.miners.append(popen)
        return popen

    def wait_serving(self, popen: subprocess.Popen[bytes], run: int, previous: str) -> str:
        """The endpoint the miner publishes (a new one after a restart)."""
        assert self.hotkey is not None
        hotkey = self.hotkey.address

        def published() -> str | None:
            log = (self.root / f"miner-{run}.log").read_text(errors="replace")
            assert popen.poll() is None, log
            if "serving" not in log:
                return None
            graph = self.node.get_json(f"/v1/subnets/{self.netuid}/metagraph")
            for neuron in graph["neurons"]:
                if neuron["hotkey"] == hotkey and neuron["endpoint"] not in ("", previous):
                    return str(neuron["endpoint"]).split("#", 1)[0]
            return None

        return str(wait_for(published, 120, "the miner to publish its endpoint", poll=0.2))

    def claimed(self, channel_id: bytes) -> int:
        return int(self.node.get_json(f"/v1/channels/0x{channel_id.hex()}")["claimed"])


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    processes = NodeProcesses(tmp_path / "node-logs")
    network = None
    try:
        network = Network(node=processes.run(tmp_path / "node"), root=tmp_path)
        yield network
    finally:
        if network is not None:
            for popen in network.miners:
                if popen.poll() is None:
                    popen.kill()
                popen.wait()
        processes.stop_all()


async def prepare(network: Network, coldkey: Keypair) -> None:
    async with NodeClient(network.node.url) as client:
        body = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
        await submit_and_wait(client, OWNER, body, "creating")
        subnets = (await client.request("GET", "/v1/subnets"))["subnets"]
        network.netuid = max(s["netuid"] for s in subnets)
        transfer = Transfer(recipient=Address(coldkey.public_key), amount=100 * AGR)
        await submit_and_wait(client, OWNER, transfer, "funding")


async def open_channel(network: Network) -> bytes:
    assert network.hotkey is not None
    async with NodeClient(network.node.url) as client:
        nonce = (await client.get_account(PAYER.address))["next_nonce"]
        head = (await client.get_head())["height"]
        body = OpenChannel(
            payee=Address(network.hotkey.public_key),
            netuid=network.netuid,
            deposit=AGR,
            expiry=head + 10_000,
        )
        await submit_and_wait(client, PAYER, body, "opening")
        return bytes(compute_channel_id(Address(PAYER.public_key), nonce))


async def buy(endpoint: str, miner: bytes, channel_id: bytes, cumulative: int) -> dict[str, Any]:
    voucher = sign_voucher(DEV_CHAIN_ID, channel_id, cumulative, PAYER.sign)
    async with NeuronClient(PAYER, timeout_s=30.0) as neurons:
        body = {**REQUEST, "payment": make_payment(voucher)}
        response = await neurons.call(endpoint, miner, ROUTE, body)
        answer: dict[str, Any] = response.body
        return answer


def test_vouchers_answered_for_are_claimed_after_a_kill(network: Network) -> None:
    keystore = Keystore(network.root / "wallets")
    coldkey = keystore.create_wallet("miner", PASSWORD, kdf=KDF_PRESETS["minimum"])
    network.hotkey = hotkey = keystore.create_hotkey("miner", "default")
    asyncio.run(prepare(network, coldkey))

    first = network.start_miner(1)
    endpoint = network.wait_serving(first, 1, "")
    channel_id = asyncio.run(open_channel(network))
    for request in range(1, PAID_REQUESTS + 1):
        answer = asyncio.run(buy(endpoint, hotkey.public_key, channel_id, request * PRICE))
        assert len(answer["embeddings"]) == len(REQUEST["texts"])
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert network.claimed(channel_id) == 0  # killed before its hourly claim

    second = network.start_miner(2)
    endpoint = network.wait_serving(second, 2, endpoint)
    paid = PAID_REQUESTS * PRICE
    wait_for(lambda: network.claimed(channel_id) == paid, 60, "the restarted miner's claim")

    # The last voucher was served before the kill: the restarted miner knows it.
    with pytest.raises(RemoteError) as replay:
        asyncio.run(buy(endpoint, hotkey.public_key, channel_id, paid))
    assert replay.value.code == VoucherReplayed.code
    answer = asyncio.run(buy(endpoint, hotkey.public_key, channel_id, paid + PRICE))
    assert len(answer["embeddings"]) == len(REQUEST["texts"])
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0
    assert network.claimed(channel_id) == paid + PRICE  # a clean stop claims the rest


def test_the_store_keeps_the_highest_voucher_per_channel(tmp_path: Path) -> None:
    path = tmp_path / "vouchers.sqlite"
    one, two = b"\x01" * 32, b"\x02" * 32
    store = VoucherStore(path)
    for channel_id, cumulative in ((one, 5), (one, 9), (one, 7), (two, 3)):
        store.save(sign_voucher(DEV_CHAIN_ID, channel_id, cumulative, PAYER.sign))
    store.close()

    reopened = VoucherStore(path)
    kept = reopened.load()
    assert [(v.channel_id, v.cumulative) for v in kept] == [(one, 9), (two, 3)]
    assert kept[0] == sign_voucher(DEV_CHAIN_ID, one, 9, PAYER.sign)
    reopened.forget(one)
    assert [v.channel_id for v in reopened.load()] == [two]
    reopened.close()

"""The Inbox contract, the JSON-RPC client and the Ethereum sequencer, on a real anvil.

Run ``python tests/sequencer/test_ethereum_inbox.py --write-artifact`` to rebuild
``agora/sequencer/ethereum/artifacts/Inbox.json`` after changing ``contracts/Inbox.vy``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from nacl.signing import SigningKey

from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.transactions import Transaction, encode_transaction, sign_transaction
from agora.sequencer.base import MemoryPendingPool, OrderedBatch
from agora.sequencer.ethereum.derive import BATCH_EVENT_TOPIC, MAX_PAYLOAD_BYTES, encode_payload
from agora.sequencer.ethereum.inbox import (
    POST_SELECTOR,
    InboxPoster,
    PostFailed,
    deploy_inbox,
    encode_post_call,
    load_artifact,
)
from agora.sequencer.ethereum.rpc import RpcClient, RpcError, RpcUnavailable
from agora.sequencer.ethereum.sequencer import (
    EthereumConfig,
    EthereumSequencer,
    InboxNotFound,
    InvalidEthereumConfig,
    ReadOnlySequencer,
    TransactionTooLargeForBatch,
)

sys.path.insert(0, str(Path(__file__).parents[1]))
from anvil import Anvil, find_anvil, start_anvil  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "contracts" / "Inbox.vy"
ARTIFACT = REPO / "agora" / "sequencer" / "ethereum" / "artifacts" / "Inbox.json"
ANY_ADDRESS = "0x" + "42" * 20
SCENARIO_TIMEOUT_SECONDS = 60.0

# `make test` installs anvil and vyper; only a hand-run pytest may lack them. In CI a missing
# tool is a failure, never a skip.
IN_CI = bool(os.environ.get("CI"))
needs_anvil = pytest.mark.skipif(
    find_anvil() is None and not IN_CI,
    reason="anvil is not installed: npm install --prefix . --no-save @foundry-rs/anvil-linux-amd64",
)


def make_transfers(count: int, seed: int = 1) -> list[bytes]:
    """Real signed Agora transfers, from a few senders with consecutive nonces."""
    keys = [SigningKey(bytes([seed, index]) * 16) for index in range(4)]
    recipient = Address(bytes(SigningKey(bytes([seed, 99]) * 16).verify_key))
    transfers = []
    for number in range(count):
        key = keys[number % len(keys)]
        unsigned = Transaction(
            chain_id="agora-test",
            sender=Address(bytes(key.verify_key)),
            nonce=number // len(keys),
            fee=1_000,
            body=Transfer(recipient=recipient, amount=1 + number),
        )
        signed = sign_transaction(unsigned, lambda message, key=key: key.sign(message).signature)
        transfers.append(encode_transaction(signed))
    return transfers


def run(scenario: Awaitable[None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario, SCENARIO_TIMEOUT_SECONDS)

    asyncio.run(bounded())


async def follow(
    sequencer: EthereumSequencer, done: Callable[[list[OrderedBatch]], bool]
) -> list[OrderedBatch]:
    """Act as the node: take batches in order and confirm each, until ``done``."""
    batches: list[OrderedBatch] = []
    while not done(batches):
        batch = await sequencer.next_batch()
        if batches:
            assert batch.height == batches[-1].height + 1
        batches.append(batch)
        sequencer.confirm(batch.height, batch.transactions)
    return batches


def holds_all(expected: list[bytes]) -> Callable[[list[OrderedBatch]], bool]:
    wanted = set(expected)

    def done(batches: list[OrderedBatch]) -> bool:
        return wanted <= {raw for batch in batches for raw in batch.transactions}

    return done


def count_transactions(batches: list[OrderedBatch]) -> Counter[bytes]:
    return Counter(raw for batch in batches for raw in batch.transactions)


def config(anvil: Anvil, inbox: str, genesis_block: int, **settings: Any) -> EthereumConfig:
    defaults: dict[str, Any] = {"confirmations": 0, "poll_interval_seconds": 0.05}
    return EthereumConfig(
        rpc_url=anvil.url,
        inbox_address=inbox,
        genesis_block=genesis_block,
        **(defaults | settings),
    )


async def deploy_with_manual_mining(anvil: Anvil) -> tuple[str, int]:
    """Deploy on an anvil that mines only when asked, mining until the receipt arrives."""
    rpc = RpcClient(anvil.url)
    task = asyncio.create_task(deploy_inbox(anvil.url, anvil.private_keys[0]))
    while not task.done():
        await rpc.request("evm_mine", [])
        await asyncio.sleep(0.05)
    await rpc.close()
    deployment = task.result()
    return deployment.address, deployment.block_number


# --- the contract --------------------------------------------------------------------------


def compile_inbox() -> dict[str, Any]:
    import vyper

    output = vyper.compile_code(
        SOURCE.read_text(), output_formats=["abi", "bytecode", "bytecode_runtime"]
    )
    return {
        "contract": "Inbox",
        "source": "contracts/Inbox.vy",
        "compiler": f"vyper {vyper.__version__}",
        "abi": output["abi"],
        "bytecode": output["bytecode"],
        "bytecode_runtime": output["bytecode_runtime"],
    }


def test_shipped_artifact_is_the_compiled_source() -> None:
    if not IN_CI:
        pytest.importorskip("vyper", reason="vyper is not installed (pip install vyper==0.4.3)")
    shipped = json.loads(ARTIFACT.read_text())
    compiled = compile_inbox()
    hint = "rebuild it: python tests/sequencer/test_ethereum_inbox.py --write-artifact"
    assert compiled["compiler"] == shipped["compiler"], f"compiler differs; {hint}"
    assert compiled["abi"] == shipped["abi"], f"ABI differs; {hint}"
    assert compiled["bytecode"] == shipped["bytecode"], f"bytecode differs; {hint}"
    assert compiled["bytecode_runtime"] == shipped["bytecode_runtime"], hint
    assert load_artifact().bytecode.hex() == shipped["bytecode"].removeprefix("0x")


def test_constants_match_the_contract_abi() -> None:
    from eth_abi import encode
    from eth_utils import keccak

    assert BATCH_EVENT_TOPIC == "0x" + keccak(b"Batch(address,bytes)").hex()
    assert POST_SELECTOR == keccak(b"post(bytes)")[:4]
    payload = bytes(range(70))
    assert encode_post_call(payload) == POST_SELECTOR + encode(["bytes"], [payload])
    assert f"MAX_BATCH_BYTES: constant(uint256) = {MAX_PAYLOAD_BYTES}" in SOURCE.read_text()


# --- configuration and submit (no network) ------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inbox_address": "0x1234"}, "inbox_address"),
        ({"genesis_block": -1}, "genesis_block"),
        ({"confirmations": -1}, "confirmations"),
        ({"max_batch_bytes": MAX_PAYLOAD_BYTES + 1}, "max_batch_bytes"),
        ({"max_batch_bytes": 5}, "max_batch_bytes"),
        ({"poll_interval_seconds": 0}, "poll_interval_seconds"),
        ({"logs_range_blocks": 0}, "logs_range_blocks"),
        ({"repost_after_blocks": 0}, "repost_after_blocks"),
    ],
)
def test_config_out_of_range_names_the_field(change: dict[str, Any], field: str) -> None:
    settings: dict[str, Any] = {
        "rpc_url": "http://127.0.0.1:1",
        "inbox_address": ANY_ADDRESS,
        "genesis_block": 10,
        "confirmations": 2,
    }
    with pytest.raises(InvalidEthereumConfig, match=field):
        EthereumConfig(**(settings | change))


def test_submit_records_durably_or_refuses_before_recording() -> None:
    async def scenario() -> None:
        settings = {"rpc_url": "http://127.0.0.1:1", "inbox_address": ANY_ADDRESS}
        pool = MemoryPendingPool()
        reader = EthereumSequencer(
            EthereumConfig(**settings, genesis_block=0, confirmations=0), pool
        )
        with pytest.raises(ReadOnlySequencer):
            await reader.submit([b"tx"])
        poster = EthereumSequencer(
            EthereumConfig(
                **settings,
                genesis_block=0,
                confirmations=0,
                poster_key="0x" + "01" * 32,
                max_batch_bytes=100,
            ),
            pool,
        )
        with pytest.raises(TransactionTooLargeForBatch):
            await poster.submit([b"small", b"x" * 96])
        assert pool.list_pending() == []
        await poster.submit([b"a", b"b", b"a"])
        await poster.submit([b"b", b"c"])
        assert pool.list_pending() == [b"a", b"b", b"c"]
        assert poster.pending_count == 3
        poster.confirm(1, (b"b", b"someone else's"))
        assert pool.list_pending() == [b"a", b"c"]
        await poster.close()
        await reader.close()

    run(scenario())


# --- the JSON-RPC client -----------------------------------------------------------------


class FlakyNode:
    """A loopback JSON-RPC server that fails its first requests, and refuses batches."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.failures:
            return web.Response(status=503)
        body = await request.json()
        if isinstance(body, list):
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32600}})
        if body["method"] == "eth_chainId":
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"})
        error = {"code": -32601, "message": f"method {body['method']} does not exist"}
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})


async def serve(node: FlakyNode) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/", node.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/"


def test_rpc_retries_outages_then_answers() -> None:
    async def scenario() -> None:
        node = FlakyNode(failures=2)
        runner, url = await serve(node)
        rpc = RpcClient(url, backoff_seconds=0.01)
        try:
            assert await rpc.get_chain_id() == 31337
            assert node.requests == 3
            assert await rpc.request_batch([("eth_chainId", []), ("eth_chainId", [])]) == [
                "0x7a69",
                "0x7a69",
            ]
            with pytest.raises(RpcError, match="eth_foo does not exist") as raised:
                await rpc.request("eth_foo", [])
            assert raised.value.rpc_code == -32601
            assert raised.value.code == 3203
        finally:
            await rpc.close()
            await runner.cleanup()

    run(scenario())


def test_rpc_unreachable_node_gives_a_clear_error() -> None:
    async def scenario() -> None:
        runner, url = await serve(FlakyNode(failures=0))
        await runner.cleanup()  # the port is now closed
        rpc = RpcClient(url, attempts=3, backoff_seconds=0.01)
        with pytest.raises(RpcUnavailable, match="did not answer after 3 attempts"):
            await rpc.get_block_number()
        await rpc.close()

    run(scenario())


# --- on anvil ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain() -> Iterator[Anvil]:
    if find_anvil() is None and not IN_CI:
        pytest.skip("anvil is not installed: npm install @foundry-rs/anvil-linux-amd64")
    with start_anvil(block_time=0.25) as anvil:
        yield anvil


@needs_anvil
def test_deploy_and_refusals(chain: Anvil) -> None:
    async def scenario() -> None:
        deployment = await deploy_inbox(chain.url, chain.private_keys[0])
        rpc = RpcClient(chain.url)
        receipt = await rpc.get_transaction_receipt(deployment.tx_hash)
        assert receipt is not None
        assert int(receipt["blockNumber"], 16) == deployment.block_number
        assert deployment.chain_id == 31337
        assert await rpc.get_code(deployment.address) == load_artifact().runtime_bytecode
        poster = InboxPoster(rpc, deployment.address, chain.private_keys[1])
        with pytest.raises(PostFailed, match="refused"):
            await poster.post(b"")
        with pytest.raises(RpcError):
            await rpc.request("eth_noSuchMethod", [])
        not_an_inbox = config(chain, poster.address, deployment.block_number)
        with pytest.raises(InboxNotFound, match="no contract"):
            await EthereumSequencer(not_an_inbox, MemoryPendingPool()).start(1)
        await rpc.close()

    run(scenario())


@needs_anvil
def test_two_readers_derive_the_posted_batches_and_skip_garbage_alike(chain: Anvil) -> None:
    async def scenario() -> None:
        deployment = await deploy_inbox(chain.url, chain.private_keys[0])
        inbox, genesis = deployment.address, deployment.block_number
        pool = MemoryPendingPool()
        node = EthereumSequencer(
            config(
                chain,
                inbox,
                genesis,
                poster_key=chain.private_keys[0],
                max_batch_bytes=5_000,
                max_batch_delay_seconds=0.05,
            ),
            pool,
        )
        reader = EthereumSequencer(
            config(chain, inbox, genesis, confirmations=2), MemoryPendingPool()
        )
        await node.start(1)
        await reader.start(1)

        transfers = make_transfers(240)
        for start in range(0, len(transfers), 60):
            await node.submit(transfers[start : start + 60])
        rpc = RpcClient(chain.url)
        stranger = InboxPoster(rpc, inbox, chain.private_keys[1])
        garbage = [
            b"\x02" + encode_payload([b"wrong version"])[1:],
            encode_payload([b"cut", b"short"])[:-1],
            b"\x01\x00\x00\x00\x00",
            b"\xff" * 300,
        ]
        foreign = [b"foreign-1", b"foreign-2"]
        for payload in [*garbage, encode_payload(foreign)]:
            await stranger.post(payload)

        expected = transfers + foreign
        applied = await follow(node, holds_all(expected))
        top = applied[-1].height
        first_read = await follow(reader, lambda batches: len(batches) == top)
        late = EthereumSequencer(
            config(chain, inbox, genesis, confirmations=2, logs_range_blocks=7),
            MemoryPendingPool(),
        )
        await late.start(1)
        late_read = await follow(late, lambda batches: len(batches) == top)

        assert first_read == late_read == applied
        assert count_transactions(applied) == Counter(expected)
        assert pool.list_pending() == []
        for batch in (applied[0], applied[-1]):
            block = await rpc.get_block(genesis + batch.height)
            assert batch.timestamp == int(block["timestamp"], 16)
        for sequencer in (node, reader, late):
            await sequencer.close()
        await rpc.close()

    run(scenario())


@needs_anvil
def test_pending_transactions_survive_a_restart(chain: Anvil) -> None:
    async def scenario() -> None:
        deployment = await deploy_inbox(chain.url, chain.private_keys[2])
        inbox, genesis = deployment.address, deployment.block_number
        pool = MemoryPendingPool()
        settings = {"poster_key": chain.private_keys[2]}
        first = EthereumSequencer(
            config(chain, inbox, genesis, max_batch_delay_seconds=3600, **settings), pool
        )
        await first.start(1)
        transfers = make_transfers(30, seed=2)
        await first.submit(transfers)
        await asyncio.sleep(0.5)
        await first.close()
        assert pool.list_pending() == transfers

        second = EthereumSequencer(
            config(chain, inbox, genesis, max_batch_delay_seconds=0.05, **settings), pool
        )
        await second.start(1)
        applied = await follow(second, holds_all(transfers))
        assert count_transactions(applied) == Counter(transfers)
        assert pool.list_pending() == []
        await second.close()

    run(scenario())


@needs_anvil
def test_reader_waits_for_confirmations() -> None:
    async def scenario(anvil: Anvil) -> None:
        inbox, genesis = await deploy_with_manual_mining(anvil)
        rpc = RpcClient(anvil.url)
        head = await rpc.get_block_number()
        confirmations = 3
        reader = EthereumSequencer(
            config(anvil, inbox, genesis, confirmations=confirmations), MemoryPendingPool()
        )
        height = head + 1 - genesis
        await reader.start(height)
        poster = InboxPoster(rpc, inbox, anvil.private_keys[1])
        await poster.post(encode_payload([b"first", b"second"]))
        for _ in range(confirmations):  # head + 1 holds the post, 2 blocks are built on it
            await rpc.request("evm_mine", [])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.next_batch(), 0.5)
        await rpc.request("evm_mine", [])
        batch = await asyncio.wait_for(reader.next_batch(), 5)
        block = await rpc.get_block(head + 1)
        assert batch == OrderedBatch(
            height=height, timestamp=int(block["timestamp"], 16), transactions=(b"first", b"second")
        )
        await reader.close()
        await rpc.close()

    with start_anvil(block_time=None) as anvil:
        run(scenario(anvil))


async def start_posting_node(anvil: Anvil, repost_after_blocks: int) -> EthereumSequencer:
    inbox, genesis = await deploy_with_manual_mining(anvil)
    settings = config(
        anvil,
        inbox,
        genesis,
        poster_key=anvil.private_keys[0],
        max_batch_delay_seconds=0.05,
        repost_after_blocks=repost_after_blocks,
    )
    node = EthereumSequencer(settings, MemoryPendingPool())
    await node.start(1)
    return node


async def wait_until_posted(rpc: RpcClient, account: str) -> int:
    """Wait for a post in the mempool; returns the account's mined transaction count."""
    mined = await rpc.get_transaction_count(account, "latest")
    while await rpc.get_transaction_count(account, "pending") == mined:
        await asyncio.sleep(0.02)
    return mined


async def follow_while_mining(
    node: EthereumSequencer, rpc: RpcClient, transfers: list[bytes]
) -> list[OrderedBatch]:
    async def mine() -> None:
        while True:
            await rpc.request("evm_mine", [])
            await asyncio.sleep(0.05)

    miner = asyncio.create_task(mine())
    try:
        return await follow(node, holds_all(transfers))
    finally:
        miner.cancel()


@needs_anvil
def test_a_post_the_evm_node_forgot_is_posted_again(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(anvil: Anvil) -> None:
        node = await start_posting_node(anvil, repost_after_blocks=1_000)
        rpc = RpcClient(anvil.url)
        transfers = make_transfers(8, seed=3)
        await node.submit(transfers)
        assert node.poster is not None
        mined = await wait_until_posted(rpc, node.poster.address)
        await rpc.request("anvil_dropAllTransactions", [])
        assert await rpc.get_transaction_count(node.poster.address, "pending") == mined

        applied = await follow_while_mining(node, rpc, transfers)
        assert count_transactions(applied) == Counter(transfers)
        assert node.pending_count == 0
        await node.close()
        await rpc.close()

    with (
        caplog.at_level("INFO", logger="agora.sequencer.ethereum"),
        start_anvil(block_time=None) as anvil,
    ):
        run(scenario(anvil))
    assert "the EVM node forgot 1 posts" in caplog.text
    assert "not included in time" not in caplog.text


@needs_anvil
def test_transactions_cut_from_their_block_are_posted_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(anvil: Anvil) -> None:
        node = await start_posting_node(anvil, repost_after_blocks=3)
        rpc = RpcClient(anvil.url)
        transfers = make_transfers(8, seed=4)
        await node.submit(transfers)

        async def mine() -> None:
            while True:
                await rpc.request("evm_mine", [])
                await asyncio.sleep(0.05)

        # A node whose blocks hold at most 3 transactions (max_block_transactions): the
        # rest of each batch is cut, and only what it applied is confirmed.
        miner = asyncio.create_task(mine())
        included: list[bytes] = []
        while set(included) != set(transfers):
            batch = await node.next_batch()
            applied = batch.transactions[:3]
            node.confirm(batch.height, applied)
            included.extend(applied)
        miner.cancel()
        assert sorted(included) == sorted(transfers)
        assert node.pending_count == 0
        await node.close()
        await rpc.close()

    with (
        caplog.at_level("INFO", logger="agora.sequencer.ethereum"),
        start_anvil(block_time=None) as anvil,
    ):
        run(scenario(anvil))
    assert "re-posting 5 transactions not included in time" in caplog.text
    assert "re-posting 2 transactions not included in time" in caplog.text
    assert "forgot" not in caplog.text


if __name__ == "__main__" and sys.argv[1:] == ["--write-artifact"]:
    ARTIFACT.write_text(json.dumps(compile_inbox(), indent=2) + "\n")
    print(f"wrote {ARTIFACT}")

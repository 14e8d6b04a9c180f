"""Agora transactions per EVM block through the Inbox, and derivation catch-up speed.

    .venv/bin/python -m bench.bench_inbox [--transactions N] [--block-time S] [--empty-blocks N]

Runs a real anvil (interval mining) on loopback, deploys the Inbox, then:

(a) throughput: N signed Agora transfers are submitted at once to an EthereumSequencer that
    posts them; a node loop reads the batches back and confirms them. Reported: transfers
    per EVM block (the best block and the mean over the blocks the burst spans; goal at
    least 1,000), against the block's gas capacity measured in the same run (block gas
    limit / gas of one full post x transfers per post);
(b) dense derivation: a fresh reader derives the burst's blocks again (transactions/s);
(c) catch-up: ``--empty-blocks`` empty blocks are added, then a fresh reader derives every
    batch from genesis. Reported: batches/s and transactions/s, against the raw JSON-RPC
    reads it cannot avoid (one eth_getLogs over the range plus the headers), timed alone.

anvil (1.7) drops a small post queued behind posts that did not fit in a full block; the
sequencer notices within two polls and posts it again (the warnings printed in (a)).

Figures only; no assertion. Inputs are seeded, so every run posts the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path

from nacl.signing import SigningKey

from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.transactions import Transaction, encode_transaction, sign_transaction
from agora.sequencer.base import MemoryPendingPool, OrderedBatch
from agora.sequencer.ethereum.derive import (
    BATCH_EVENT_TOPIC,
    MAX_PAYLOAD_BYTES,
    compute_item_bytes,
    encode_payload,
)
from agora.sequencer.ethereum.inbox import deploy_inbox, encode_post_call
from agora.sequencer.ethereum.rpc import RpcClient
from agora.sequencer.ethereum.sequencer import EthereumConfig, EthereumSequencer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from anvil import Anvil, start_anvil  # noqa: E402

CHAIN_ID = "agora-bench"
SENDERS = 50


def make_transfers(count: int) -> list[bytes]:
    keys = [
        SigningKey(hashlib.sha256(f"agora-bench-inbox:{index}".encode()).digest())
        for index in range(SENDERS)
    ]
    recipient = Address(bytes(keys[0].verify_key))
    transfers = []
    for number in range(count):
        key = keys[1 + number % (SENDERS - 1)]
        unsigned = Transaction(
            chain_id=CHAIN_ID,
            sender=Address(bytes(key.verify_key)),
            nonce=number // (SENDERS - 1),
            fee=1_000,
            body=Transfer(recipient=recipient, amount=1_000_000 + number),
        )
        signed = sign_transaction(unsigned, lambda message, key=key: key.sign(message).signature)
        transfers.append(encode_transaction(signed))
    return transfers


async def measure_capacity(anvil: Anvil, inbox: str, transfers: list[bytes]) -> tuple[int, int]:
    """(transfers one EVM block can hold, block gas limit), from a full post's gas estimate."""
    per_post: list[bytes] = []
    size = 1
    for raw in transfers:
        if size + compute_item_bytes(raw) > MAX_PAYLOAD_BYTES:
            break
        per_post.append(raw)
        size += compute_item_bytes(raw)
    rpc = RpcClient(anvil.url)
    call = {"to": inbox, "data": "0x" + encode_post_call(encode_payload(per_post)).hex()}
    gas = await rpc.estimate_gas(call)
    gas_limit = int((await rpc.get_block("latest"))["gasLimit"], 16)
    await rpc.close()
    return gas_limit // gas * len(per_post), gas_limit


async def bench_throughput(anvil: Anvil, inbox: str, genesis: int, count: int) -> range:
    """Print figures (a); returns the Agora heights the burst spans."""
    transfers = make_transfers(count)
    capacity, gas_limit = await measure_capacity(anvil, inbox, transfers)
    pool = MemoryPendingPool()
    node = EthereumSequencer(
        EthereumConfig(
            rpc_url=anvil.url,
            inbox_address=inbox,
            genesis_block=genesis,
            confirmations=0,
            poster_key=anvil.private_keys[0],
            max_batch_delay_seconds=0.2,
            poll_interval_seconds=0.05,
        ),
        pool,
    )
    await node.start(1)
    started = time.perf_counter()
    await node.submit(transfers)
    wanted = set(transfers)
    batches: list[OrderedBatch] = []
    seen = 0
    while seen < len(wanted):
        batch = await node.next_batch()
        node.confirm(batch.height, batch.transactions)
        batches.append(batch)
        seen += sum(1 for raw in batch.transactions if raw in wanted)
    elapsed = time.perf_counter() - started
    await node.close()
    counts = [len(batch.transactions) for batch in batches]
    first = next(index for index, n in enumerate(counts) if n)
    span = counts[first:]
    print(f"(a) {count} transfers of ~{sum(map(len, transfers)) // count} bytes, posted and read")
    print(f"    in {elapsed:.2f}s over {len(span)} EVM blocks: {count / elapsed:,.0f} transfers/s")
    print(f"    transfers per EVM block: best {max(span):,}, mean {sum(span) / len(span):,.0f}")
    print(f"    transfers in each EVM block of the burst: {span}")
    print(f"    capacity at gas limit {gas_limit:,}: {capacity:,} per block")
    print(f"    best block / capacity: {max(span) / capacity:.2f}; goal >= 1,000 per block")
    return range(batches[first].height, batches[-1].height + 1)


def make_reader(anvil: Anvil, inbox: str, genesis: int) -> EthereumSequencer:
    settings = EthereumConfig(
        rpc_url=anvil.url,
        inbox_address=inbox,
        genesis_block=genesis,
        confirmations=0,
        poll_interval_seconds=0.05,
    )
    return EthereumSequencer(settings, MemoryPendingPool())


async def bench_dense_blocks(anvil: Anvil, inbox: str, genesis: int, heights: range) -> None:
    reader = make_reader(anvil, inbox, genesis)
    await reader.start(heights.start)
    started = time.perf_counter()
    transactions = 0
    for _ in heights:
        transactions += len((await reader.next_batch()).transactions)
    seconds = time.perf_counter() - started
    await reader.close()
    print(f"(b) the burst's {len(heights)} blocks derived again: {transactions:,} transactions")
    print(f"    in {seconds:.3f}s: {transactions / seconds:,.0f} transactions/s")


async def bench_catch_up(anvil: Anvil, inbox: str, genesis: int, empty_blocks: int) -> None:
    rpc = RpcClient(anvil.url, timeout_seconds=60, attempts=1)
    for _ in range(0, empty_blocks, 500):
        await rpc.request("anvil_mine", [hex(500)])
    head = await rpc.get_block_number()
    started = time.perf_counter()
    logs = await rpc.get_logs(inbox, genesis + 1, head, topics=[BATCH_EVENT_TOPIC])
    await rpc.get_blocks(range(genesis + 1, head + 1))
    raw_seconds = time.perf_counter() - started
    await rpc.close()

    reader = make_reader(anvil, inbox, genesis)
    await reader.start(1)
    started = time.perf_counter()
    transactions = 0
    for _ in range(head - genesis):
        transactions += len((await reader.next_batch()).transactions)
    seconds = time.perf_counter() - started
    await reader.close()
    batches = head - genesis
    print(f"(c) catch-up from genesis: {batches:,} batches, {transactions:,} transactions")
    print(
        f"    in {seconds:.2f}s: {batches / seconds:,.0f} batches/s, "
        f"{transactions / seconds:,.0f} transactions/s"
    )
    print(f"    raw reads alone ({len(logs)} logs + {batches:,} headers): {raw_seconds:.2f}s;")
    print(f"    derivation / raw reads: {raw_seconds / seconds:.2f} of the raw speed")


async def main(arguments: argparse.Namespace) -> None:
    with start_anvil(block_time=arguments.block_time) as anvil:
        deployment = await deploy_inbox(anvil.url, anvil.private_keys[0])
        print(f"anvil, block time {arguments.block_time}s; Inbox at {deployment.address}")
        inbox, genesis = deployment.address, deployment.block_number
        burst = await bench_throughput(anvil, inbox, genesis, arguments.transactions)
        await bench_dense_blocks(anvil, inbox, genesis, burst)
        await bench_catch_up(anvil, inbox, genesis, arguments.empty_blocks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--block-time", type=float, default=1.0)
    parser.add_argument("--empty-blocks", type=int, default=5_000)
    asyncio.run(main(parser.parse_args()))

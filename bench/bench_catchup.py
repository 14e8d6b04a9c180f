"""A fresh Ethereum-sequenced node catching up from genesis, against in-process execution.

    .venv/bin/python -m bench.bench_catchup [--transfers N] [--blocks N] [--senders N]

Builds a chain on a real anvil (mining only when told, so that the layout is exact): the
Inbox is deployed, then ``--blocks`` EVM blocks are mined, two of every three holding one
post of signed dev transfers (``--transfers`` in all), every third one empty. Then:

(a) catch-up: a fresh ``agora node run --dev --sequencer ethereum --confirmations 1``
    process reads the Inbox from genesis; its ``/v1/head`` is polled until it reaches the
    last height. Reported: Agora blocks and transactions per second, from the node's first
    answer (the API is up, reading starts) to the target, and from process start; the part
    spent inside ``build_block`` and the store (the node's ``agora_block_apply_seconds``),
    the rest being reading the EVM node and waiting;
(b) local execution: ``build_block`` on the same batches with the same timestamps, in this
    process, on a fresh dev genesis (best of two runs): no reading, no store. Also shown:
    the same with the node's SQLite ``Store`` committing every block, which is the part of
    the node's work that (b) leaves out;
(c) the ratio (a)/(b) in transactions per second; goal at least 0.5. The node's final
    header must equal the in-process one (printed as a check).

Figures only, no assertion. Inputs are seeded: every run posts the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from agora.client.transactions import make_transaction
from agora.node.devchain import DEV_CHAIN_ID, create_dev_genesis, get_dev_accounts
from agora.node.store import Store
from agora.node.wire import header_to_json
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.params import Params
from agora.protocol.transition import build_block
from agora.sequencer.ethereum.derive import encode_payload
from agora.sequencer.ethereum.inbox import deploy_inbox, encode_post_call
from agora.sequencer.ethereum.rpc import RpcClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from anvil import Anvil, rpc_call, start_anvil  # noqa: E402

CONFIRMATIONS = 1
EMPTY_EVERY = 3  # every third EVM block holds no post
POSTER = 1  # anvil's unlocked account that posts the batches
_URL_PATTERN = re.compile(r"API\s+(http://[0-9.]+:[0-9]+)/v1")


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltChain:
    inbox: str
    genesis_block: int
    # Per Agora height 1..N: the EVM block's timestamp and the transactions derived from it.
    batches: list[tuple[int, list[bytes]]]

    @property
    def transactions(self) -> int:
        return sum(len(txs) for _, txs in self.batches)


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUp:
    from_start_seconds: float
    from_ready_seconds: float
    ready_height: int
    apply_seconds: float
    head: dict[str, Any]


# --- building the chain --------------------------------------------------------------------


def make_signer(key: SigningKey) -> Callable[[bytes], bytes]:
    return lambda message: key.sign(message).signature


def sign_transfers(count: int, senders: int) -> list[bytes]:
    """``count`` dev transfers, round-robin over ``senders`` accounts, nonces in order."""
    keys = [SigningKey(account.seed) for account in get_dev_accounts(senders)]
    fee = Params().min_fee
    transfers = []
    for number in range(count):
        key = keys[number % senders]
        recipient = Address(bytes(keys[(number * 7 + 3) % senders].verify_key))
        transfers.append(
            make_transaction(
                chain_id=DEV_CHAIN_ID,
                public_key=bytes(key.verify_key),
                sign=make_signer(key),
                nonce=number // senders,
                fee=fee,
                body=Transfer(recipient=recipient, amount=1 + number % 1_000),
            )
        )
    return transfers


def split_into_blocks(transfers: list[bytes], blocks: int) -> list[list[bytes]]:
    """One list per EVM block after genesis; every EMPTY_EVERY-th is empty."""
    posting = [b for b in range(1, blocks + 1) if b % EMPTY_EVERY != 0]
    per_block = -(-len(transfers) // len(posting))  # ceiling: the last block takes the rest
    layout: list[list[bytes]] = [[] for _ in range(blocks)]
    for index, block in enumerate(posting):
        layout[block - 1] = transfers[index * per_block : (index + 1) * per_block]
    return layout


async def deploy(anvil: Anvil) -> tuple[str, int]:
    """The Inbox, mined alone in the block that becomes Agora's genesis."""
    deployer = _account(anvil, 0)
    rpc = RpcClient(anvil.url)
    task = asyncio.create_task(deploy_inbox(anvil.url, anvil.private_keys[0]))
    try:
        while not task.done():
            pending = await rpc.get_transaction_count(deployer, "pending")
            if pending > await rpc.get_transaction_count(deployer, "latest"):
                await rpc.request("evm_mine", [])
            await asyncio.sleep(0.02)
    finally:
        await rpc.close()
    deployment = task.result()
    return deployment.address, deployment.block_number


def _account(anvil: Anvil, index: int) -> str:
    accounts = rpc_call(anvil.url, "eth_accounts", [])
    assert isinstance(accounts, list)
    return str(accounts[index])


def build_chain(anvil: Anvil, layout: list[list[bytes]]) -> BuiltChain:
    inbox, genesis_block = asyncio.run(deploy(anvil))
    poster = _account(anvil, POSTER)
    for transactions in layout:
        if transactions:
            call = encode_post_call(encode_payload(transactions))
            rpc_call(
                anvil.url,
                "eth_sendTransaction",
                [{"from": poster, "to": inbox, "data": "0x" + call.hex()}],
            )
        rpc_call(anvil.url, "evm_mine", [])
    for _ in range(CONFIRMATIONS):
        rpc_call(anvil.url, "evm_mine", [])
    batches = []
    for height, transactions in enumerate(layout, start=1):
        block = rpc_call(anvil.url, "eth_getBlockByNumber", [hex(genesis_block + height), False])
        assert isinstance(block, dict)
        if len(block["transactions"]) != (1 if transactions else 0):
            raise RuntimeError(f"EVM block {genesis_block + height} does not hold one post")
        batches.append((int(block["timestamp"], 16), transactions))
    return BuiltChain(inbox=inbox, genesis_block=genesis_block, batches=batches)


# --- (a) the node catching up ----------------------------------------------------------------


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.loads(answer.read())


def read_metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=60) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise RuntimeError(f"no metric {name}")


def catch_up(anvil: Anvil, chain: BuiltChain, senders: int, directory: Path) -> CatchUp:
    target = len(chain.batches)
    log = directory / "node.log"
    command = [sys.executable, "-m", "agora", "node", "run", "--dev", "--dev-accounts"]
    command += [str(senders), "--sequencer", "ethereum", "--rpc", anvil.url]
    command += ["--inbox", chain.inbox, "--genesis-block", str(chain.genesis_block)]
    command += ["--confirmations", str(CONFIRMATIONS), "--port", "0"]
    command += ["--data-dir", str(directory / "node")]
    env = {k: v for k, v in os.environ.items() if k != "AGORA_EVM_KEY"}
    env |= {"COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        while (match := _URL_PATTERN.search(log.read_text(errors="replace"))) is None:
            if process.poll() is not None or time.perf_counter() - started > 60:
                raise RuntimeError(f"the node did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.01)
        url = match.group(1)
        ready_at, ready_height = 0.0, -1
        while True:
            try:
                head = get_json(url + "/v1/head")
            except OSError:
                time.sleep(0.01)
                continue
            if ready_height < 0:
                ready_at, ready_height = time.perf_counter(), head["height"]
            if head["height"] >= target:
                break
            time.sleep(0.01)
        done = time.perf_counter()
        final = get_json(f"{url}/v1/blocks/{target}")["header"]
        return CatchUp(
            from_start_seconds=done - started,
            from_ready_seconds=done - ready_at,
            ready_height=ready_height,
            apply_seconds=read_metric(url, "agora_block_apply_seconds_sum"),
            head=final,
        )
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


# --- (b) local execution ----------------------------------------------------------------------


def execute_locally(chain: BuiltChain, senders: int) -> tuple[float, dict[str, Any]]:
    """Seconds inside ``build_block`` for every batch (best of two), and the last header."""
    best, header = float("inf"), {}
    for _ in range(2):
        state = create_genesis_state(create_dev_genesis(senders, 0))
        elapsed = 0.0
        for timestamp, transactions in chain.batches:
            began = time.perf_counter()
            applied = build_block(state, timestamp, transactions)
            elapsed += time.perf_counter() - began
        best, header = min(best, elapsed), header_to_json(applied.block.header)
    return best, header


def execute_with_store(chain: BuiltChain, senders: int, directory: Path) -> float:
    """Seconds inside ``build_block`` and ``Store.commit_block``: what the node does per
    block, without reading the EVM node or serving its API."""
    store = Store(directory / "local.db")
    try:
        state = store.initialize(create_dev_genesis(senders, 0))
        began = time.perf_counter()
        for timestamp, transactions in chain.batches:
            store.commit_block(build_block(state, timestamp, transactions))
        return time.perf_counter() - began
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--blocks", type=int, default=300, help="EVM blocks after genesis")
    parser.add_argument("--senders", type=int, default=64, help="dev accounts that send")
    arguments = parser.parse_args()

    began = time.perf_counter()
    transfers = sign_transfers(arguments.transfers, arguments.senders)
    layout = split_into_blocks(transfers, arguments.blocks)
    print(f"signed {len(transfers)} transfers in {time.perf_counter() - began:.1f}s")
    with start_anvil(block_time=None) as anvil, tempfile.TemporaryDirectory() as directory:
        began = time.perf_counter()
        chain = build_chain(anvil, layout)
        posts = sum(1 for _, txs in chain.batches if txs)
        print(
            f"chain: {len(chain.batches)} EVM blocks ({posts} posts, "
            f"{chain.transactions} transfers) built in {time.perf_counter() - began:.1f}s"
        )
        caught = catch_up(anvil, chain, arguments.senders, Path(directory))
        stored_seconds = execute_with_store(chain, arguments.senders, Path(directory))
    local_seconds, local_header = execute_locally(chain, arguments.senders)

    blocks, transactions = len(chain.batches), chain.transactions
    behind = blocks - caught.ready_height
    share = sum(len(txs) for _, txs in chain.batches[caught.ready_height :])
    node_rate = share / caught.from_ready_seconds
    local_rate = transactions / local_seconds
    print(f"{'measure':<52}{'blocks/s':>10}{'tx/s':>10}{'seconds':>9}")
    rows = (
        (f"(a) node catch-up, API up -> head ({behind} blocks)", behind, share,
         caught.from_ready_seconds),
        ("    node catch-up, process start -> head", blocks, transactions,
         caught.from_start_seconds),
        ("    of which inside build_block + store (node)", blocks, transactions,
         caught.apply_seconds),
        ("(b) build_block in this process (best of 2)", blocks, transactions, local_seconds),
        ("    build_block + Store.commit_block in this process", blocks, transactions,
         stored_seconds),
    )  # fmt: skip
    for name, count, txs, seconds in rows:
        print(f"{name:<52}{count / seconds:>10,.0f}{txs / seconds:>10,.0f}{seconds:>9.2f}")
    reading = caught.from_ready_seconds - caught.apply_seconds
    print(f"node time outside execution (reading the EVM node, waiting): {reading:.2f}s")
    ratio = node_rate / local_rate
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    print(f"ratio (a)/(b) in tx/s = {ratio:.2f}  ({verdict} goal >= 0.5)")
    same = caught.head == local_header
    print(f"node's block {blocks} equals the in-process one: {same}")


if __name__ == "__main__":
    main()

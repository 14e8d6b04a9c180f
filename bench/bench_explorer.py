"""The explorer: page latency on a large index, and index rebuild time against node replay.

    .venv/bin/python -m bench.bench_explorer [--uids 256] [--epochs 2000] [--requests 40]

(a) A real chain, built in this process through the protocol (``build_block``) and committed
    to a real node ``Store``: 4 subnets of ``--uids`` uids each (16 staked validators per
    subnet setting weights over every uid, tempo 10), run for 12 epochs per subnet.
    - node replay: ``apply_block`` of every block on a fresh genesis state (what a node does
      catching up), best of two;
    - index rebuild: ``Index.add_blocks`` of the same blocks into a fresh index file, best of
      two. Reported: both times and their ratio (the index replays the blocks too, reads the
      epoch inputs, and writes its rows).
(b) The index is then grown to ``--epochs`` epochs per subnet by writing rows directly (not by
    replaying blocks, which would take hours): each synthetic epoch repeats the inputs and the
    ledger outputs of a real epoch of the same subnet, so the "why" pages still recompute equal
    to the ledger. 4 x 256 x 2,000 gives 2,048,000 neuron-epoch rows. The node's real app
    with the explorer installed serves it on loopback; each page kind is requested
    ``--requests`` times (seeded choice of uid and epoch) by a client in this process, one
    request at a time. Reported: p50 and p95 per page kind; goal p95 <= 300 ms.

Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agora.client.transactions import make_transaction
from agora.node.api import create_app
from agora.node.node import Node, NodeConfig
from agora.node.store import Store
from agora.protocol.address import Address, encode_address
from agora.protocol.blocks import Block
from agora.protocol.genesis import create_genesis_state
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import AddStake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register, SetHyperparameter
from agora.protocol.transition import apply_block, build_block
from agora.protocol.weights import SetWeights
from agora.wallet.keys import Keypair
from agora.web.index import Index
from agora.web.server import INDEX_FILE, install

CHAIN_ID = "agora-bench"
TIMESTAMP = 1_763_700_000
SUBNETS = 4
VALIDATORS = 16
TEMPO = 10
REAL_EPOCHS = 12
AGR = BASE_UNITS_PER_AGR


class Builder:
    def __init__(self, genesis: dict[str, Any], keys: list[Keypair]) -> None:
        self.state = create_genesis_state(genesis)
        self.nonces = {key.public_key: 0 for key in keys}
        self.blocks: list[Block] = []
        self.fee = Params().min_fee

    def sign(self, key: Keypair, body: Any) -> bytes:
        nonce = self.nonces[key.public_key]
        self.nonces[key.public_key] = nonce + 1
        return make_transaction(
            chain_id=CHAIN_ID,
            public_key=key.public_key,
            sign=key.sign,
            nonce=nonce,
            fee=self.fee,
            body=body,
        )

    def seal(self, raws: list[bytes]) -> None:
        applied = build_block(self.state, TIMESTAMP + 12 * (self.state.head.height + 1), raws)
        failed = [r.message for r in applied.outcomes if not r.success]
        assert not failed, failed[:3]
        self.blocks.append(applied.block)


def build_chain(uids: int, seed: int) -> tuple[dict[str, Any], list[Block]]:
    rng = random.Random(seed)
    owner = Keypair(bytes([1]) * 32)
    validators = [
        Keypair(bytes([2, s, v]) + bytes(29)) for s in range(SUBNETS) for v in range(VALIDATORS)
    ]
    keys = [owner, *validators]
    genesis = {
        "chain_id": CHAIN_ID,
        "timestamp": TIMESTAMP,
        "params": {},
        "balances": {encode_address(Address(k.public_key)): 1_000_000 * AGR for k in keys},
    }
    chain = Builder(genesis, keys)
    chain.seal(
        [
            chain.sign(
                owner, CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
            )
            for _ in range(SUBNETS)
        ]
    )
    settings = (
        ("tempo", TEMPO),
        ("commit_reveal", 0),
        ("weights_rate_limit", 0),
        ("burn_increase_u64f64", 0),
        ("max_uids", uids),
        ("immunity_period", 10_000),
    )
    chain.seal(
        [
            chain.sign(owner, SetHyperparameter(netuid=n, name=k, value=v))
            for n in range(1, SUBNETS + 1)
            for k, v in settings
        ]
    )
    for netuid in range(1, SUBNETS + 1):
        mine = validators[(netuid - 1) * VALIDATORS : netuid * VALIDATORS]
        raws = [chain.sign(v, Register(netuid=netuid, hotkey=Address(v.public_key))) for v in mine]
        raws += [
            chain.sign(
                owner,
                Register(
                    netuid=netuid,
                    hotkey=Address(bytes([9, netuid]) + i.to_bytes(4, "big") + bytes(26)),
                ),
            )
            for i in range(uids - VALIDATORS)
        ]
        raws += [
            chain.sign(v, AddStake(hotkey=Address(v.public_key), amount=(100 + 10 * i) * AGR))
            for i, v in enumerate(mine)
        ]
        chain.seal(raws)
    all_uids = tuple(range(uids))
    while chain.state.head.height < TEMPO * (REAL_EPOCHS + 2):
        raws = []
        if chain.state.head.height % TEMPO == 3:
            for v in validators:
                netuid = validators.index(v) // VALIDATORS + 1
                values = tuple(rng.randint(1, 65_535) for _ in all_uids)
                raws.append(
                    chain.sign(
                        v, SetWeights(netuid=netuid, uids=all_uids, values=values, version_key=0)
                    )
                )
        chain.seal(raws)
    return genesis, chain.blocks


def best_of_two(work: Any) -> float:
    times = []
    for _ in range(2):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def grow(index_path: Path, epochs: int) -> int:
    """Synthetic epochs up to ``epochs`` per subnet, each a copy of a real one (see above)."""
    db = sqlite3.connect(index_path, isolation_level=None)
    db.execute("BEGIN")
    written = 0
    for netuid in range(1, SUBNETS + 1):
        real = db.execute(
            "SELECT epoch, height, emission, n, inputs FROM epochs WHERE netuid = ? ORDER BY epoch",
            (netuid,),
        ).fetchall()
        model = real[-1]
        rows = db.execute(
            "SELECT * FROM neuron_epochs WHERE netuid = ? AND epoch = ?", (netuid, model[0])
        ).fetchall()
        last = real[-1][0]
        for epoch in range(last + 1, epochs + 1):
            height = model[1] + (epoch - last) * TEMPO
            db.execute(
                "INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?)",
                (netuid, epoch, height, model[2], model[3], model[4]),
            )
            db.executemany(
                "INSERT INTO neuron_epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r[0], epoch, r[2], height, *r[4:]) for r in rows],
            )
            written += len(rows)
    db.execute("COMMIT")
    db.close()
    return written


async def measure_pages(
    data_dir: Path, uids: int, epochs: int, requests: int
) -> dict[str, list[float]]:
    store = Store(data_dir / "node.db")
    node = Node(NodeConfig(data_dir=data_dir), store, store.load_state())
    app = create_app(node)
    install(app, node)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rng = random.Random(5)
    kinds = {
        "overview": lambda: "/",
        "blocks": lambda: "/blocks",
        "block": lambda: f"/blocks/{rng.randrange(1, node.state.head.height)}",
        "transactions": lambda: "/transactions",
        "subnet (metagraph)": lambda: f"/subnets/{rng.randrange(1, SUBNETS + 1)}",
        "validators": lambda: f"/subnets/{rng.randrange(1, SUBNETS + 1)}/validators",
        "neuron (charts)": lambda: (
            f"/subnets/{rng.randrange(1, SUBNETS + 1)}/uids/{rng.randrange(uids)}"
        ),
        "why": lambda: (
            f"/subnets/{rng.randrange(1, SUBNETS + 1)}/epochs/{rng.randrange(1, epochs + 1)}"
            f"/uids/{rng.randrange(uids)}"
        ),
        "search hotkey": lambda: (
            "/search?q=" + encode_address(Address(Keypair(bytes([2, 0, 3]) + bytes(29)).public_key))
        ),
    }
    found: dict[str, list[float]] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for kind, make in kinds.items():
                times = []
                for _ in range(requests):
                    path = make()
                    started = time.perf_counter()
                    async with session.get(url + path) as response:
                        await response.read()
                        assert response.status == 200, (path, response.status)
                    times.append(time.perf_counter() - started)
                found[kind] = times
    finally:
        await runner.cleanup()
        node.close()
        store.close()
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uids", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    started = time.perf_counter()
    genesis, blocks = build_chain(args.uids, seed=11)
    print(
        f"chain: {len(blocks)} blocks, {SUBNETS} subnets x {args.uids} uids, "
        f"built in {time.perf_counter() - started:.1f} s"
    )

    def replay() -> None:
        state = create_genesis_state(genesis)
        for block in blocks:
            apply_block(state, block)

    with tempfile.TemporaryDirectory() as scratch:
        paths = iter(Path(scratch) / f"index-{i}.db" for i in range(2))

        def rebuild() -> None:
            index = Index(next(paths), genesis)
            index.add_blocks(blocks)
            index.close()

        replay_s = best_of_two(replay)
        rebuild_s = best_of_two(rebuild)
        print(
            f"(a) node replay {replay_s:.2f} s; index rebuild from genesis {rebuild_s:.2f} s; "
            f"ratio {rebuild_s / replay_s:.2f}"
        )

        data_dir = Path(scratch) / "node"
        data_dir.mkdir()
        store = Store(data_dir / "node.db")
        state = store.initialize(genesis)
        for block in blocks:
            store.commit_block(apply_block(state, block))
        store.close()
        index = Index(data_dir / INDEX_FILE, genesis)
        index.add_blocks(blocks)
        index.close()
        written = grow(data_dir / INDEX_FILE, args.epochs)
        size = (data_dir / INDEX_FILE).stat().st_size
        print(
            f"(b) index grown to {args.epochs} epochs per subnet "
            f"({written:,} synthetic neuron-epoch rows), {size / 1e6:.0f} MB"
        )
        found = asyncio.run(measure_pages(data_dir, args.uids, args.epochs, args.requests))
    for kind, times in found.items():
        print(
            f"    {kind:20s} p50 {percentile(times, 0.5) * 1000:7.1f} ms   "
            f"p95 {percentile(times, 0.95) * 1000:7.1f} ms"
        )
    every = [t for times in found.values() for t in times]
    print(f"    all pages            p95 {percentile(every, 0.95) * 1000:7.1f} ms (goal <= 300 ms)")


if __name__ == "__main__":
    main()

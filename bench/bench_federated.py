"""One federated round of 12 contributors end to end, against central training on pooled data.

    .venv/bin/python -m bench.bench_federated [--contributors 12] [--repeats 3]

In one run, on scikit-learn's digits split into Dirichlet(0.5) shards (seeded):

(a) baseline: the same model (logistic regression, 650 fixed-point parameters) trained
    centrally on the pooled rows of every shard, for as many gradient steps as one round
    gives each contributor (``local_steps``), then quantized to fixed point;
(b) one round on a real in-memory ledger: every contributor trains on its shard (train); the
    contributors' commit and reveal transactions are signed and applied by ``build_block``,
    two validators score every revealed update by leave-one-out on their own held-out rows and
    set weights (score); the subnet's epoch runs and the protocol's integer aggregate is
    computed (aggregate); the round record is signed and applied, the state transition
    recomputing the aggregate to check it (record).

Reported: the median time of each phase over ``--repeats`` rounds, the round's total, and
the ratio of the total to (a). Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from agora.client.transactions import make_transaction
from agora.protocol.address import Address, encode_address
from agora.protocol.data import (
    CommitData,
    CommitUpdate,
    RevealUpdate,
    StartFederation,
    compute_round_record,
    get_federation,
)
from agora.protocol.federation import (
    compute_commitment,
    compute_update_hash,
    decode_vector,
    encode_vector,
)
from agora.protocol.genesis import create_genesis_state
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import AddStake
from agora.protocol.state import State
from agora.protocol.subnets import (
    NO_HOTKEY,
    CreateSubnet,
    Register,
    SetHyperparameter,
    get_neurons,
    is_epoch_block,
)
from agora.protocol.transition import build_block
from agora.protocol.weights import SetWeights
from agora.tasks import federated

CHAIN_ID = "agora-bench"
TEMPO = 4
FEE = Params().min_fee


class Ledger:
    """An in-memory chain: signs with each sender's next nonce and seals blocks."""

    def __init__(self, keys: list[SigningKey]) -> None:
        balances = {
            encode_address(Address(bytes(k.verify_key))): 10**6 * BASE_UNITS_PER_AGR for k in keys
        }
        self.state: State = create_genesis_state(
            {"chain_id": CHAIN_ID, "timestamp": 1_700_000_000, "params": {}, "balances": balances}
        )
        self.nonces: dict[bytes, int] = {}

    def seal(self, *items: tuple[SigningKey, Any]) -> None:
        raws = []
        for key, body in items:
            public = bytes(key.verify_key)
            nonce = self.nonces.get(public, 0)
            self.nonces[public] = nonce + 1
            raws.append(
                make_transaction(
                    chain_id=CHAIN_ID,
                    public_key=public,
                    sign=lambda m, key=key: key.sign(m).signature,
                    nonce=nonce,
                    fee=FEE,
                    body=body,
                )
            )
        applied = build_block(self.state, self.state.head.timestamp + 12, raws)
        failed = [r.message for r in applied.receipts if not r.success]
        if failed:
            raise RuntimeError(f"transactions failed: {failed}")

    def advance_to(self, height: int) -> None:
        while self.state.head.height + 1 < height:
            self.seal()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


class Round:
    def __init__(self, contributors: int, seed: int) -> None:
        keys = [SigningKey(bytes([i + 1]) * 32) for i in range(contributors + 3)]
        self.owner, self.validators, self.contributor_keys = keys[0], keys[1:3], keys[3:]
        self.ledger = Ledger(keys)
        pools = federated.load_pools()
        self.shards = federated.split_dirichlet(pools.contributors, contributors, 0.5, seed)
        self.memories = [federated.ScoreMemory() for _ in self.validators]
        self.netuid = self.set_up()

    def set_up(self) -> int:
        ledger = self.ledger
        ledger.seal(
            (
                self.owner,
                CreateSubnet(task_kind="federated", task_config="{}", owner_hotkey=NO_HOTKEY),
            )
        )
        netuid = 1
        ledger.seal(
            *(
                (self.owner, SetHyperparameter(netuid=netuid, name=name, value=value))
                for name, value in (
                    ("tempo", TEMPO),
                    ("commit_reveal", 0),
                    ("weights_rate_limit", 0),
                )
            )
        )
        ledger.seal(
            *(
                (self.owner, Register(netuid=netuid, hotkey=Address(bytes(k.verify_key))))
                for k in self.validators + self.contributor_keys
            )
        )
        ledger.seal(
            *(
                (
                    self.owner,
                    AddStake(hotkey=Address(bytes(k.verify_key)), amount=100 * BASE_UNITS_PER_AGR),
                )
                for k in self.validators
            )
        )
        ledger.seal(
            *(
                (
                    key,
                    CommitData(
                        netuid=netuid,
                        merkle_root=federated.compute_data_root(shard),
                        rows=max(1, len(shard)),
                        schema=federated.DATA_SCHEMA,
                        allow_training=True,
                        allow_inference=True,
                    ),
                )
                for key, shard in zip(self.contributor_keys, self.shards, strict=True)
            )
        )
        while not is_epoch_block(netuid, TEMPO, ledger.state.head.height):
            ledger.seal()
        start = StartFederation(
            netuid=netuid,
            model=encode_vector(federated.make_initial_model()),
            commit_blocks=2,
            reveal_blocks=1,
        )
        ledger.seal((self.owner, start))
        return netuid

    def train(self) -> list[tuple[int, ...]]:
        model = decode_vector(get_federation(self.ledger.state, self.netuid).model)
        return [federated.compute_local_update(model, shard) for shard in self.shards]

    def commit_and_reveal(self, updates: list[tuple[int, ...]]) -> None:
        ledger, netuid = self.ledger, self.netuid
        federation = get_federation(ledger.state, netuid)
        number = federation.round_number
        ledger.advance_to(federation.round_start + 1)
        ledger.seal(
            *(
                (
                    key,
                    CommitUpdate(
                        netuid=netuid,
                        round_number=number,
                        commitment=compute_commitment(
                            bytes(key.verify_key), netuid, number, compute_update_hash(update)
                        ),
                    ),
                )
                for key, update in zip(self.contributor_keys, updates, strict=True)
            )
        )
        ledger.advance_to(federation.reveal_start)
        ledger.seal(
            *(
                (key, RevealUpdate(netuid=netuid, round_number=number, update=encode_vector(u)))
                for key, u in zip(self.contributor_keys, updates, strict=True)
            )
        )

    def score(self, updates: list[tuple[int, ...]]) -> None:
        state, netuid = self.ledger.state, self.netuid
        federation = get_federation(state, netuid)
        model = decode_vector(federation.model)
        hotkeys = [bytes(k.verify_key) for k in self.contributor_keys]
        uids = {n.hotkey: uid for uid, n in enumerate(get_neurons(state, netuid))}
        items = []
        for validator, memory in zip(self.validators, self.memories, strict=True):
            held_out = federated.draw_held_out(
                federation.model_hash, bytes(validator.verify_key), 300
            )
            scores = federated.compute_leave_one_out(model, updates, held_out)
            for hotkey, score in zip(hotkeys, scores, strict=True):
                memory.update(hotkey, score)
            chosen = [
                (uids[h], w)
                for h, w in zip(hotkeys, memory.compute_weights_u16(hotkeys), strict=True)
                if w
            ]
            body = SetWeights(
                netuid=netuid,
                uids=tuple(u for u, _ in chosen),
                values=tuple(w for _, w in chosen),
                version_key=0,
            )
            items.append((validator, body))
        self.ledger.seal(*items)

    def aggregate(self) -> None:
        """The epoch that turns weights into incentive, and the integer aggregate."""
        ledger, netuid = self.ledger, self.netuid
        federation = get_federation(ledger.state, netuid)
        ledger.advance_to(federation.reveal_end)
        while not is_epoch_block(netuid, TEMPO, ledger.state.head.height):
            ledger.seal()
        self.record_body, _ = compute_round_record(ledger.state, netuid)

    def record(self) -> None:
        self.ledger.seal((self.owner, self.record_body))


def run(contributors: int, repeats: int) -> None:
    pools = federated.load_pools()
    shards = federated.split_dirichlet(pools.contributors, contributors, 0.5, 0)
    pooled = federated.Dataset(
        np.concatenate([s.features for s in shards]), np.concatenate([s.labels for s in shards])
    )
    baseline_times = []
    for _ in range(repeats):
        _, seconds = timed(lambda: federated.train_pooled(pooled, 1))
        baseline_times.append(seconds)
    baseline = statistics.median(baseline_times)
    network = Round(contributors, 0)
    phases: dict[str, list[float]] = {"train": [], "score": [], "aggregate": [], "record": []}
    for _ in range(repeats):
        updates, seconds = timed(network.train)
        phases["train"].append(seconds)
        network.commit_and_reveal(updates)
        _, seconds = timed(lambda updates=updates: network.score(updates))
        phases["score"].append(seconds)
        _, seconds = timed(network.aggregate)
        phases["aggregate"].append(seconds)
        _, seconds = timed(network.record)
        phases["record"].append(seconds)
    federation = get_federation(network.ledger.state, network.netuid)
    accuracy = federated.compute_accuracy(decode_vector(federation.model), pools.test)
    medians = {name: statistics.median(times) for name, times in phases.items()}
    total = sum(medians.values())
    print(f"contributors {contributors}, rows {len(pooled)}, repeats {repeats}")
    print(
        f"(a) central training, {federated.DEFAULT_CONFIG['local_steps']} steps on pooled rows: "
        f"{baseline * 1000:.1f} ms"
    )
    for name, seconds in medians.items():
        print(f"(b) {name:<9} {seconds * 1000:8.1f} ms")
    print(f"(b) round     {total * 1000:8.1f} ms   ratio to (a): {total / baseline:.1f}x")
    print(
        f"model after {repeats} rounds: {accuracy:.3f} test accuracy, "
        f"round {federation.round_number}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contributors", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run(args.contributors, args.repeats)


if __name__ == "__main__":
    main()

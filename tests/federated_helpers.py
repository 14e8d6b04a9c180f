"""A federated subnet on a real in-memory chain, driven round by round (protocol, lineage and
CLI tests share it): contributors commit to data, commit and reveal real updates trained on
digits shards, two validators score them on their own held-out rows and set weights, and
after the subnet's epoch anyone posts the round record, which the ledger recomputes."""

from __future__ import annotations

from typing import Any

from protocol_helpers import Chain, KeyPair, make_genesis_state, make_keys

from agora.protocol.data import (
    CommitData,
    CommitUpdate,
    RecordRound,
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
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake
from agora.protocol.subnets import (
    NO_HOTKEY,
    CreateSubnet,
    Register,
    SetHyperparameter,
    get_neurons,
    get_subnets,
    is_epoch_block,
)
from agora.protocol.weights import SetWeights
from agora.tasks import federated
from agora.tasks.federated import Contributor, ScoreMemory

AGR = BASE_UNITS_PER_AGR
TEMPO = 9
COMMIT_BLOCKS = 2
REVEAL_BLOCKS = 2
KEYS = make_keys(16, seed=6_060)
OWNER, VALIDATOR_COLD, CONTRIBUTOR_COLD, PAYER, STRANGER = KEYS[:5]
VALIDATORS = KEYS[5:7]
CONTRIBUTORS = KEYS[7:13]  # the last is a label flipper, the one before a free rider
SERVER = KEYS[13]


def behaviours() -> list[str]:
    return ["honest", "honest", "honest", "honest", "free_rider", "label_flip"]


class FederatedChain:
    """A federated subnet on a real chain, driven round by round."""

    def __init__(self) -> None:
        self.chain = Chain(make_genesis_state(KEYS))
        self.netuid = self.create_subnet()
        shards = federated.split_dirichlet(federated.load_pools().contributors, 6, 1.0, 11)
        self.contributors = [
            Contributor(hotkey=key.address, data=shard, behaviour=behaviour)
            for key, shard, behaviour in zip(CONTRIBUTORS, shards, behaviours(), strict=True)
        ]
        self.memories = [ScoreMemory() for _ in VALIDATORS]
        self.previous: list[tuple[int, ...]] = []

    def ok(self, *items: tuple[KeyPair, Any]) -> None:
        receipts = self.chain.block(*items)
        assert all(r.success for r in receipts), [r.message for r in receipts]

    def create_subnet(self) -> int:
        body = CreateSubnet(task_kind="federated", task_config="{}", owner_hotkey=NO_HOTKEY)
        self.ok((OWNER, body))
        netuid = max(subnet.netuid for subnet in get_subnets(self.chain.state))
        settings = {"tempo": TEMPO, "commit_reveal": 0, "weights_rate_limit": 0}
        self.ok(
            *(
                (OWNER, SetHyperparameter(netuid=netuid, name=name, value=value))
                for name, value in settings.items()
            )
        )
        registrations = [
            (VALIDATOR_COLD, Register(netuid=netuid, hotkey=key.address)) for key in VALIDATORS
        ]
        registrations += [
            (CONTRIBUTOR_COLD, Register(netuid=netuid, hotkey=key.address))
            for key in CONTRIBUTORS + [SERVER]
        ]
        self.ok(*registrations)
        self.ok(
            (VALIDATOR_COLD, AddStake(hotkey=VALIDATORS[0].address, amount=300 * AGR)),
            (VALIDATOR_COLD, AddStake(hotkey=VALIDATORS[1].address, amount=200 * AGR)),
        )
        while not is_epoch_block(netuid, TEMPO, self.chain.height):  # validator permits
            self.chain.advance(1)
        return netuid

    def commit_data(self, allow_inference: bool = True) -> None:
        self.ok(
            *(
                (
                    key,
                    CommitData(
                        netuid=self.netuid,
                        merkle_root=federated.compute_data_root(contributor.data),
                        rows=max(1, len(contributor.data)),
                        schema=federated.DATA_SCHEMA,
                        allow_training=True,
                        allow_inference=allow_inference,
                    ),
                )
                for key, contributor in zip(CONTRIBUTORS, self.contributors, strict=True)
            )
        )

    def start(self, commit_blocks: int = COMMIT_BLOCKS, reveal_blocks: int = REVEAL_BLOCKS) -> None:
        model = encode_vector(federated.make_initial_model())
        body = StartFederation(
            netuid=self.netuid,
            model=model,
            commit_blocks=commit_blocks,
            reveal_blocks=reveal_blocks,
        )
        self.ok((OWNER, body))

    @property
    def model(self) -> tuple[int, ...]:
        return decode_vector(get_federation(self.chain.state, self.netuid).model)

    def uids(self) -> dict[bytes, int]:
        return {
            neuron.hotkey: uid
            for uid, neuron in enumerate(get_neurons(self.chain.state, self.netuid))
        }

    def commit_and_reveal(self) -> list[tuple[int, ...]]:
        federation = get_federation(self.chain.state, self.netuid)
        model = self.model
        updates = [
            federated.compute_behaviour_update(c, model, self.previous, federated.DEFAULT_CONFIG)
            for c in self.contributors
        ]
        self.previous = [u for u in updates if any(u)]
        self.ok(
            *(
                (
                    key,
                    CommitUpdate(
                        netuid=self.netuid,
                        round_number=federation.round_number,
                        commitment=compute_commitment(
                            key.address,
                            self.netuid,
                            federation.round_number,
                            compute_update_hash(update),
                        ),
                    ),
                )
                for key, update in zip(CONTRIBUTORS, updates, strict=True)
            )
        )
        self.chain.advance_to(federation.reveal_start)
        self.ok(
            *(
                (
                    key,
                    RevealUpdate(
                        netuid=self.netuid,
                        round_number=federation.round_number,
                        update=encode_vector(update),
                    ),
                )
                for key, update in zip(CONTRIBUTORS, updates, strict=True)
            )
        )
        return updates

    def score_and_set_weights(self, updates: list[tuple[int, ...]]) -> None:
        """Each validator scores the revealed updates on its own held-out rows."""
        federation = get_federation(self.chain.state, self.netuid)
        seed = federation.model_hash  # any seed the validators agree on per round
        uids = self.uids()
        hotkeys = [key.address for key in CONTRIBUTORS]
        items = []
        for validator, memory in zip(VALIDATORS, self.memories, strict=True):
            held_out = federated.draw_held_out(seed, validator.address, 300)
            scores = federated.compute_leave_one_out(self.model, updates, held_out)
            for hotkey, score in zip(hotkeys, scores, strict=True):
                memory.update(hotkey, score)
            weights = memory.compute_weights_u16(hotkeys)
            chosen = [(uids[h], w) for h, w in zip(hotkeys, weights, strict=True) if w > 0]
            body = SetWeights(
                netuid=self.netuid,
                uids=tuple(u for u, _ in chosen),
                values=tuple(w for _, w in chosen),
                version_key=0,
            )
            items.append((validator, body))
        self.ok(*items)

    def wait_for_record(self) -> None:
        federation = get_federation(self.chain.state, self.netuid)
        self.chain.advance_to(federation.reveal_end)
        while not is_epoch_block(self.netuid, TEMPO, self.chain.height):
            self.chain.advance(1)

    def run_rounds(self, rounds: int) -> None:
        for _ in range(rounds):
            self.run_round()

    def record(self) -> RecordRound:
        expected, _ = compute_round_record(self.chain.state, self.netuid)
        self.ok((STRANGER, expected))
        return expected

    def run_round(self) -> RecordRound:
        updates = self.commit_and_reveal()
        self.score_and_set_weights(updates)
        self.wait_for_record()
        return self.record()

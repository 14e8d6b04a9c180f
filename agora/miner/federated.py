"""A data contributor's part in a federated subnet's rounds, beside the miner's server.

The contributor commits to its data once (the Merkle root of its row hashes, the row count,
the schema and its consent), then follows the subnet's rounds through the node API: in each
round's commit window it fetches the current model by hash, trains on its own rows and
commits to the update's hash; in the reveal window it reveals the update. Training is
deterministic (full-batch gradient descent from the model), so the update a validator gets
over the neuron protocol for the same model is the very one committed on chain. Only the
commitment, the update's integers and the data's root ever leave the process.

A miner that serves the trained model instead (``--serve-model``) fetches the subnet's
current model by hash, checks the bytes against the hash, puts that hash on chain for its
hotkey (``ServeModel``) and answers prediction requests (``PREDICTION_TASK``); it follows
training, serving (and declaring) each new model once a round records it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.protocol.address import Address
from agora.protocol.data import CommitData, CommitUpdate, RevealUpdate, ServeModel
from agora.protocol.federation import (
    Vector,
    compute_commitment,
    compute_update_hash,
    encode_vector,
)
from agora.tasks.base import ModelNotServedError
from agora.tasks.federated import (
    DATA_SCHEMA,
    MODEL_NAME,
    PREDICT_ROUTE,
    ContributorBackend,
    ServedModel,
    compute_data_root,
    compute_local_update,
    handle_predict,
    load_served_model,
    make_random_prediction,
    parse_vector,
)
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.miner.federated")


@dataclass(slots=True, kw_only=True)
class FederatedContributor:
    client: NodeClient
    netuid: int
    hotkey: Keypair
    backend: ContributorBackend
    allow_inference: bool = True
    committed: dict[int, Vector] = field(default_factory=dict)  # round -> update
    revealed: set[int] = field(default_factory=set)

    async def commit_data(self) -> None:
        body = CommitData(
            netuid=self.netuid,
            merkle_root=compute_data_root(self.backend.data),
            rows=len(self.backend.data),
            schema=DATA_SCHEMA,
            allow_training=True,
            allow_inference=self.allow_inference,
        )
        await submit_and_wait(self.client, self.hotkey, body, "data commitment")

    async def run(self, stop: asyncio.Event, interval_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except Exception as error:  # a missed window is retried at the next round
                log.warning("federated round step failed: %s", error)
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass

    async def step(self) -> None:
        lineage = await self.client.get_lineage()
        federation = next((f for f in lineage["federations"] if f["netuid"] == self.netuid), None)
        if federation is None:
            return
        height = (await self.client.get_head())["height"] + 1  # the next block's height
        number = federation["round"]
        reveal_start = federation["round_start"] + federation["commit_blocks"]
        if height < reveal_start and number not in self.committed:
            await self.commit_update(number, federation["model_hash"])
        elif (
            reveal_start <= height < reveal_start + federation["reveal_blocks"]
            and number in self.committed
            and number not in self.revealed
        ):
            body = RevealUpdate(
                netuid=self.netuid,
                round_number=number,
                update=encode_vector(self.committed[number]),
            )
            await submit_and_wait(self.client, self.hotkey, body, f"reveal of round {number}")
            self.revealed.add(number)

    async def commit_update(self, number: int, model_hash: str) -> None:
        answer = await self.client.get_federated_model(model_hash)
        model = parse_vector(answer["parameters"])
        self.backend.models[bytes.fromhex(model_hash.removeprefix("0x"))] = model
        update = await asyncio.to_thread(
            compute_local_update, model, self.backend.data, self.backend.config
        )
        commitment = compute_commitment(
            Address(self.hotkey.public_key), self.netuid, number, compute_update_hash(update)
        )
        body = CommitUpdate(netuid=self.netuid, round_number=number, commitment=commitment)
        await submit_and_wait(self.client, self.hotkey, body, f"commitment of round {number}")
        self.committed[number] = update


@dataclass(slots=True)
class ModelHolder:
    """The model a miner serves now; ``follow_model`` swaps in each new one."""

    current: ServedModel | None  # None until the subnet has a model

    @property
    def model(self) -> str:
        return MODEL_NAME


class PredictionTask:
    """A served model's face to the miner: its route, its handler and its noise."""

    ROUTE = PREDICT_ROUTE

    @staticmethod
    async def handle(backend: ModelHolder, request: dict[str, Any]) -> dict[str, Any]:
        if backend.current is None:
            raise ModelNotServedError("this miner serves no trained model yet")
        return await handle_predict(backend.current, request)

    @staticmethod
    def make_random_response(request: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        return make_random_prediction(request, rng)


PREDICTION_TASK = PredictionTask()


async def serve_current_model(client: NodeClient, netuid: int, hotkey: Keypair) -> ServedModel:
    """The subnet's current model, checked against its hash and declared on chain as the
    model this hotkey serves."""
    federation = await client.get_federation(netuid)
    model_hash = bytes.fromhex(federation["model_hash"].removeprefix("0x"))
    answer = await client.get_federated_model(model_hash)
    served = load_served_model(answer["parameters"], model_hash)
    await submit_and_wait(client, hotkey, ServeModel(netuid=netuid, model_hash=model_hash), "serve")
    return served


async def follow_model(
    client: NodeClient,
    netuid: int,
    hotkey: Keypair,
    holder: ModelHolder,
    stop: asyncio.Event,
    interval_s: float = 2.0,
) -> None:
    """Serve each new model of the subnet once a round records it: checked, declared on
    chain, then answered with."""
    while not stop.is_set():
        try:
            federation = await client.get_federation(netuid)
            served = None if holder.current is None else holder.current.model_hash.hex()
            if federation["model_hash"].removeprefix("0x") != served:
                holder.current = await serve_current_model(client, netuid, hotkey)
                log.info("serving model 0x%s", holder.current.model_hash.hex())
        except Exception as error:  # the next look retries
            log.warning("following the subnet's model failed: %s", error)
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass

"""A validator of a federated subnet: score each round's revealed updates, set weights, and
post the round record once the subnet's epoch has turned the weights into incentive.

Each round, once its reveal window has closed, the validator reads the revealed updates from
the ledger (every validator scores the very same updates), draws held-out rows from its own
pool with a secret seed of its own (so no contributor knows them), scores every update by
leave-one-out improvement (``tasks.federated.compute_leave_one_out``), folds the scores into
its moving averages and sets weights. After the subnet's first epoch from the end of the
reveal window, it computes the record the ledger expects (the revealed updates, each
contributor's incentive as credit, the integer aggregate of the paid updates) and posts it;
when another validator was first, its record is refused as a stale round and nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from agora.client.client import NodeClient
from agora.client.participant import TransactionFailed, submit_and_wait
from agora.protocol.address import Address, decode_address
from agora.protocol.data import RecordRound
from agora.protocol.federation import Vector, compute_aggregate, compute_model_hash
from agora.protocol.weights import SetWeights
from agora.tasks.federated import (
    DEFAULT_CONFIG,
    ScoreMemory,
    compute_leave_one_out,
    draw_held_out,
    parse_vector,
)
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.validator.federated")


@dataclass(slots=True, kw_only=True)
class FederatedValidator:
    client: NodeClient
    netuid: int
    hotkey: Keypair
    memory: ScoreMemory = field(default_factory=ScoreMemory)
    scored: set[int] = field(default_factory=set)
    held_out_rows: int = DEFAULT_CONFIG["held_out"]

    async def step(self) -> None:
        federation = await self.client.get_federation(self.netuid)
        number = federation["round"]
        height = (await self.client.get_head())["height"]
        if height < federation["reveal_end"]:
            return
        if number not in self.scored:
            await self.score_round(federation)
            self.scored.add(number)
        elif federation["last_epoch_block"] >= federation["reveal_end"]:
            await self.record_round(federation)

    async def score_round(self, federation: dict[str, Any]) -> None:
        model = parse_vector(
            (await self.client.get_federated_model(federation["model_hash"]))["parameters"]
        )
        revealed = [u for u in federation["updates"] if u["update"] is not None]
        if not revealed:
            return
        updates = [parse_vector(u["update"]) for u in revealed]
        held_out = draw_held_out(
            secrets.token_bytes(32), self.hotkey.public_key, self.held_out_rows
        )
        scores = await asyncio.to_thread(compute_leave_one_out, model, updates, held_out)
        hotkeys = [decode_address(u["hotkey"]) for u in revealed]
        for hotkey, score in zip(hotkeys, scores, strict=True):
            self.memory.update(hotkey, score)
        metagraph = await self.client.get_metagraph(self.netuid)
        uids: dict[bytes, int] = {
            decode_address(n["hotkey"]): n["uid"] for n in metagraph["neurons"]
        }
        known = [h for h in self.memory.averages if h in uids]
        chosen = [
            (uids[h], w)
            for h, w in zip(known, self.memory.compute_weights_u16(known), strict=True)
            if w
        ]
        if not chosen:
            return
        chosen.sort()
        body = SetWeights(
            netuid=self.netuid,
            uids=tuple(u for u, _ in chosen),
            values=tuple(w for _, w in chosen),
            version_key=0,
        )
        await submit_and_wait(
            self.client, self.hotkey, body, f"weights for round {federation['round']}"
        )
        log.info(
            "round %s: scores %s",
            federation["round"],
            dict(zip([u["hotkey"][-8:] for u in revealed], scores, strict=True)),
        )

    async def record_round(self, federation: dict[str, Any]) -> None:
        body = await self.compute_record(federation)
        try:
            await submit_and_wait(
                self.client, self.hotkey, body, f"record of round {body.round_number}"
            )
        except TransactionFailed as error:
            log.info("round %s: %s", body.round_number, error.message)

    async def compute_record(self, federation: dict[str, Any]) -> RecordRound:
        """The record, from what the ledger holds: revealed updates and the incentive."""
        metagraph = await self.client.get_metagraph(self.netuid)
        incentive = {decode_address(n["hotkey"]): n["incentive"] for n in metagraph["neurons"]}
        model = parse_vector(
            (await self.client.get_federated_model(federation["model_hash"]))["parameters"]
        )
        contributions: list[tuple[Address, bytes, int]] = []
        included: list[Vector] = []
        for update in federation["updates"]:
            if update["update"] is None:
                continue
            hotkey = Address(decode_address(update["hotkey"]))
            credit = incentive.get(hotkey, 0)
            contributions.append((hotkey, bytes.fromhex(update["update_hash"][2:]), credit))
            if credit > 0:
                included.append(parse_vector(update["update"]))
        new_model = compute_aggregate(model, included) if included else model
        return RecordRound(
            netuid=self.netuid,
            round_number=federation["round"],
            parent_hash=bytes.fromhex(federation["model_hash"][2:]),
            model_hash=compute_model_hash(new_model),
            contributions=tuple(contributions),
        )

    async def run(self, stop: asyncio.Event, interval_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except Exception as error:  # the next poll retries; a missed round is skipped
                log.warning("federated step failed: %s", error)
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass

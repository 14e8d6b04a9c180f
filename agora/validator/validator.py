"""The validator process: challenge every miner, score, average, commit and reveal weights.

Each round it syncs the metagraph (the last one serves while the node does not answer, as
when it restarts), sends every miner with an endpoint its own challenge (from a fresh secret
seed), recomputes a sample of the answer (the sample drawn after the answer arrives), scores
it with the task's pure function, and updates a moving average per miner. A separate loop
follows the chain block by block and commits the averages as weights once per epoch, then
reveals them in the epoch the subnet's schedule names.

Nothing a miner does can stop a round: every call has a timeout, and a hang, a crash, an error
or garbage scores 0 with the reason logged. Latency is scored against the round's median
answer, not a wall clock (``tasks.base.scale_to_round``), so honest miners on a busy machine
are paid from the first round. The validator's memory (averages, commits waiting
to be revealed, the epoch of its last commit) is a JSON file written atomically before each
transaction is sent, so a restarted validator reveals what it committed and never commits
twice in one epoch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agora.client.client import NodeApiError, NodeClient
from agora.client.participant import (
    ensure_fee_balance,
    ensure_registered,
    ensure_stake,
    get_subnet_info,
)
from agora.client.transactions import sign_next_transaction
from agora.errors import AgoraError
from agora.neuron.client import NeuronClient
from agora.neuron.metagraph import MetagraphView, NeuronInfo, parse_metagraph
from agora.process import run_until_signal, wait_for_stop
from agora.protocol.address import encode_address
from agora.protocol.consensus.errors import RevealTooEarly
from agora.protocol.consensus.weights import compute_commit_hash
from agora.protocol.data import FEDERATED_TASK
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.transactions import compute_transaction_hash
from agora.protocol.weights import CommitWeights, RevealWeights, SetWeights
from agora.tasks.base import Challenge, compute_round_latency_ms, scale_to_round
from agora.tasks.registry import get_task, load_reference_backend
from agora.validator.federated import FederatedValidator
from agora.validator.schedule import epoch_of_block, is_safe_to_send
from agora.validator.scores import MinerRecord, compute_weights, format_score, update_average
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.validator")

HOTKEY_FEE_FLOAT = BASE_UNITS_PER_AGR
SEND_MARGIN_BLOCKS = 2
# A miner gets this many times its challenge's timeout to answer: on a machine busy loading
# models every answer is slow, and latency is scored against the round, so a late answer
# still earns credit where no answer earns none.
ANSWER_PATIENCE = 3
# Weights count an epoch after they are committed, so a first commit that leaves out a miner
# still loading its model costs that miner an epoch of pay: the first commit waits this long,
# at most, for registered miners that do not serve yet.
FIRST_COMMIT_PATIENCE_S = 120.0


@dataclass(slots=True, kw_only=True)
class ValidatorConfig:
    node_url: str
    netuid: int
    hotkey: Keypair
    load_coldkey: Callable[[], Keypair]
    confirm: Callable[[int], Awaitable[bool] | bool]
    data_dir: Path
    stake: int = 0  # stake the coldkey keeps on the hotkey (0: leave as is)
    round_interval_s: float = 5.0
    chain_poll_s: float = 0.5
    alpha_ppm: int = 300_000  # weight of the newest score in the moving average
    cache_dir: Path | None = None
    on_status: Callable[[str], None] = field(default=lambda message: None)


@dataclass(frozen=True, slots=True)
class Outcome:
    uid: int
    hotkey: bytes
    score: int
    latency_ms: int
    reason: str


class ValidatorMemory:
    """The state that must survive a restart, in one JSON file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[bytes, MinerRecord] = {}
        self.pending: list[dict[str, Any]] = []  # commits sent, not yet revealed
        self.last_commit_epoch = -1
        if path.exists():
            data = json.loads(path.read_text())
            self.records = {bytes.fromhex(h): MinerRecord(**r) for h, r in data["records"].items()}
            self.pending = data["pending"]
            self.last_commit_epoch = data["last_commit_epoch"]

    def save(self) -> None:
        data = {
            "records": {h.hex(): _record_json(r) for h, r in self.records.items()},
            "pending": self.pending,
            "last_commit_epoch": self.last_commit_epoch,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def _record_json(record: MinerRecord) -> dict[str, Any]:
    return {
        "uid": record.uid,
        "average": record.average,
        "rounds": record.rounds,
        "last_score": record.last_score,
        "last_reason": record.last_reason,
    }


class Validator:
    def __init__(self, config: ValidatorConfig, client: NodeClient) -> None:
        self.config = config
        self.client = client
        self.hotkey = config.hotkey
        name = f"validator-{config.netuid}-{self.hotkey.address[-12:]}.json"
        self.memory = ValidatorMemory(config.data_dir / name)
        self.metagraph = MetagraphView(config.node_url, config.netuid, client=client)
        self.neurons = NeuronClient(self.hotkey, timeout_s=60.0)
        self.task: Any = None
        self.task_config: dict[str, Any] = {}
        self.reference: Any = None
        self.started = time.monotonic()

    async def prepare(self) -> None:
        config = self.config
        subnet = await get_subnet_info(self.client, config.netuid)
        self.task = get_task(subnet.task_kind)
        self.task_config = subnet.task_config
        uid = await ensure_registered(
            self.client, config.netuid, self.hotkey, config.load_coldkey, config.confirm
        )
        await ensure_fee_balance(self.client, self.hotkey, config.load_coldkey, HOTKEY_FEE_FLOAT)
        if config.stake > 0:
            await ensure_stake(self.client, self.hotkey, config.load_coldkey, config.stake)
        config.on_status(f"validating subnet {config.netuid} ({subnet.task_kind}) as uid {uid}")
        config.on_status(f"loading the {subnet.task_kind} reference model")
        self.reference = await load_reference_backend(subnet.task_kind, config.cache_dir)
        await self.metagraph.refresh()

    async def close(self) -> None:
        await self.neurons.close()
        close = getattr(self.reference, "close", None)
        if close is not None:
            await close()

    # --- scoring -----------------------------------------------------------------------------

    def _targets(self) -> list[NeuronInfo]:
        return [
            n for n in self.metagraph.neurons if n.endpoint and n.hotkey != self.hotkey.public_key
        ]

    async def run_round(self) -> list[Outcome]:
        """Challenge every miner at once; score the answers one by one (the reference model
        is one process-wide resource)."""
        await self._refresh_metagraph()
        targets = self._targets()
        challenges = [
            self.task.make_challenge(secrets.token_bytes(32), n.hotkey, self.task_config)
            for n in targets
        ]
        answers = await asyncio.gather(
            *(self._ask(n, c) for n, c in zip(targets, challenges, strict=True))
        )
        round_latency_ms = compute_round_latency_ms(
            [latency_ms for response, latency_ms, _ in answers if response is not None]
        )
        outcomes = []
        for neuron, challenge, (response, latency_ms, reason) in zip(
            targets, challenges, answers, strict=True
        ):
            score = 0
            if response is not None:
                scaled = scale_to_round(challenge, round_latency_ms)
                score, reason = await self._score(scaled, response, latency_ms)
            outcomes.append(Outcome(neuron.uid, neuron.hotkey, score, latency_ms, reason))
        self._remember(outcomes)
        return outcomes

    async def _refresh_metagraph(self) -> None:
        """A node that does not answer (restarting, say) leaves the last view in use: the
        miners are challenged all the same, and the round does not stop the validator."""
        try:
            await self.metagraph.refresh()
        except AgoraError as error:
            log.warning(
                "metagraph not refreshed, the last one is used: error[%d] %s",
                error.code,
                error.message,
            )

    async def _ask(
        self, neuron: NeuronInfo, challenge: Challenge
    ) -> tuple[dict[str, Any] | None, int, str]:
        try:
            response = await self.neurons.call(
                neuron.endpoint,
                neuron.hotkey,
                self.task.ROUTE,
                challenge.request,
                timeout_s=ANSWER_PATIENCE * challenge.timeout_ms / 1000,
            )
        except AgoraError as error:
            return None, challenge.timeout_ms, f"error[{error.code}] {error.message}"[:120]
        return response.body, response.latency_ms, "answered"

    async def _score(
        self, challenge: Challenge, response: dict[str, Any], latency_ms: int
    ) -> tuple[int, str]:
        try:
            reference = await self.task.compute_reference(
                self.reference, challenge, response, secrets.token_bytes(32)
            )
            score = int(self.task.compute_score(challenge, response, reference, latency_ms))
        except Exception as error:  # a miner's garbage must never stop a round
            return 0, f"unscorable answer: {type(error).__name__}: {error}"[:120]
        return score, "scored"

    def _remember(self, outcomes: list[Outcome]) -> None:
        current = {n.hotkey for n in self.metagraph.neurons}
        records = self.memory.records
        for hotkey in [h for h in records if h not in current]:
            del records[hotkey]
        for outcome in outcomes:
            record = records.get(outcome.hotkey)
            if record is None or record.uid != outcome.uid:
                record = records[outcome.hotkey] = MinerRecord(uid=outcome.uid)
            record.average = update_average(
                record.average, outcome.score, self.config.alpha_ppm, record.rounds == 0
            )
            record.rounds += 1
            record.last_score = outcome.score
            record.last_reason = outcome.reason
        self.memory.save()

    # --- weights -----------------------------------------------------------------------------

    def _chain_view(self, graph: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
        """(head block, the subnet's JSON, this hotkey's ``last_update``) from one metagraph."""
        last_update = next(
            (int(n["last_update"]) for n in graph["neurons"] if n["hotkey"] == self.hotkey.address),
            0,
        )
        return int(graph["block"]), graph["subnet"], last_update

    async def step_weights(self) -> None:
        """One look at the chain: reveal what is due, then commit if this epoch has none."""
        graph = await self.client.get_metagraph(self.config.netuid)
        head, subnet, last_update = self._chain_view(graph)
        h = subnet["hyperparameters"]
        netuid, tempo, epoch = self.config.netuid, h["tempo"], subnet["epoch_index"]
        if not h["commit_reveal"]:
            await self._set_directly(head, last_update, h)
            return
        await self._settle_sent(head, tempo, epoch)
        safe = is_safe_to_send(netuid, tempo, head, SEND_MARGIN_BLOCKS)
        for record in [r for r in self.memory.pending if r["state"] == "committed"]:
            due = record["epoch"] + h["reveal_period_epochs"]
            if epoch > due:
                log.warning("commit %s missed its reveal epoch %d", record["hash"][:18], due)
                self._drop(record)
            elif epoch == due and safe:
                await self._reveal(record)
        rate_ok = head - last_update >= h["weights_rate_limit"]
        if safe and rate_ok and self.memory.last_commit_epoch < epoch:
            if not any(r["state"] == "sent" for r in self.memory.pending):
                if self.rates_every_miner(graph):
                    await self._commit(epoch, h["weights_version_key"])

    def rates_every_miner(self, graph: dict[str, Any]) -> bool:
        """Whether weights committed now rate every miner of ``graph`` (the node's metagraph
        JSON): each one that serves has been challenged at least once (an answer that failed
        counts). Before its first commit the validator also waits, up to
        ``FIRST_COMMIT_PATIENCE_S``, for registered neurons with neither an endpoint nor stake:
        miners still loading their model."""
        neurons, _, _ = parse_metagraph(graph)
        others = [n for n in neurons if n.hotkey != self.hotkey.public_key]
        if any(n.endpoint and n.hotkey not in self.memory.records for n in others):
            return False
        first = self.memory.last_commit_epoch < 0 and not self.memory.pending
        if first and time.monotonic() - self.started < FIRST_COMMIT_PATIENCE_S:
            return not any(not n.endpoint and n.stake == 0 for n in others)
        return True

    async def _settle_sent(self, head: int, tempo: int, epoch: int) -> None:
        """Commits sent before (maybe before a restart): learn their block, or forget them."""
        for record in [r for r in self.memory.pending if r["state"] == "sent"]:
            try:
                status = await self.client.get_transaction(bytes.fromhex(record["tx"]))
            except NodeApiError:
                status = {"status": "unknown"}
            if status["status"] == "pending":
                continue
            if status["status"] != "included" or not status["receipt"]["success"]:
                log.warning("commit %s was not accepted: %s", record["hash"][:18], status)
                self._drop(record)
                self.memory.last_commit_epoch = -1
                continue
            record["state"] = "committed"
            record["epoch"] = epoch_of_block(
                self.config.netuid, tempo, status["height"], head, epoch
            )
            self.memory.last_commit_epoch = max(self.memory.last_commit_epoch, record["epoch"])
            self.memory.save()

    def _drop(self, record: dict[str, Any]) -> None:
        self.memory.pending.remove(record)
        self.memory.save()

    async def _commit(self, epoch: int, version_key: int) -> None:
        uids, values = compute_weights(self.memory.records)
        if not uids:
            return
        salt = [secrets.randbelow(65_536) for _ in range(8)]
        commit_hash = compute_commit_hash(
            hotkey=self.hotkey.public_key,
            netuid=self.config.netuid,
            uids=uids,
            values=values,
            salt=salt,
            version_key=version_key,
        )
        raw = await self._sign(CommitWeights(netuid=self.config.netuid, commit_hash=commit_hash))
        record = {
            "state": "sent",
            "tx": compute_transaction_hash(raw).hex(),
            "hash": "0x" + commit_hash.hex(),
            "uids": uids,
            "values": values,
            "salt": salt,
            "version_key": version_key,
        }
        # Written before sending: after a crash, the record says what may be on chain.
        self.memory.pending.append(record)
        self.memory.last_commit_epoch = epoch
        self.memory.save()
        await self.client.submit([raw])
        self.config.on_status(f"committed weights for {len(uids)} miners in epoch {epoch}")

    async def _reveal(self, record: dict[str, Any]) -> None:
        body = RevealWeights(
            netuid=self.config.netuid,
            uids=tuple(record["uids"]),
            values=tuple(record["values"]),
            salt=tuple(record["salt"]),
            version_key=record["version_key"],
        )
        raw = await self._sign(body)
        (tx_hash,) = await self.client.submit([raw])
        status = await self.client.wait_for_transaction(tx_hash)
        receipt = status["receipt"]
        if receipt["success"]:
            self.config.on_status(f"revealed weights {record['hash'][:18]}")
            self._drop(record)
        else:
            log.warning("reveal failed: error[%s] %s", receipt["code"], receipt["message"])
            if receipt["code"] != RevealTooEarly.code:  # anything else cannot succeed later
                self._drop(record)

    async def _set_directly(self, head: int, last_update: int, h: dict[str, Any]) -> None:
        if head - last_update < h["weights_rate_limit"]:
            return
        uids, values = compute_weights(self.memory.records)
        if not uids:
            return
        body = SetWeights(
            netuid=self.config.netuid,
            uids=tuple(uids),
            values=tuple(values),
            version_key=h["weights_version_key"],
        )
        (tx_hash,) = await self.client.submit([await self._sign(body)])
        await self.client.wait_for_transaction(tx_hash)

    async def _sign(self, body: Any) -> bytes:
        return await sign_next_transaction(
            self.client, public_key=self.hotkey.public_key, sign=self.hotkey.sign, body=body
        )


def log_round(outcomes: list[Outcome], memory: ValidatorMemory) -> None:
    for o in sorted(outcomes, key=lambda o: o.uid):
        record = memory.records.get(o.hotkey)
        average = format_score(record.average) if record else "-"
        log.info(
            "uid %3d %s score %s avg %s %5d ms %s",
            o.uid,
            encode_address(o.hotkey)[:14],
            format_score(o.score),
            average,
            o.latency_ms,
            o.reason,
        )


async def run_validator(config: ValidatorConfig, stop: asyncio.Event | None = None) -> None:
    """Validate until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    if stop is None:
        return await run_until_signal(lambda signalled: run_validator(config, signalled))
    async with NodeClient(config.node_url) as client:
        validator = Validator(config, client)
        try:
            await validator.prepare()
            if (await get_subnet_info(client, config.netuid)).task_kind == FEDERATED_TASK:
                # Rounds, updates and records follow the ledger: no challenges to send.
                federated = FederatedValidator(
                    client=client, netuid=config.netuid, hotkey=config.hotkey
                )
                await federated.run(stop, config.chain_poll_s)
                return
            weights = asyncio.create_task(_follow_chain(validator, stop))
            try:
                while not stop.is_set():
                    outcomes = await validator.run_round()
                    log_round(outcomes, validator.memory)
                    await wait_for_stop(stop, config.round_interval_s)
            finally:
                stop.set()
                await weights
        finally:
            await validator.close()
    config.on_status("stopped")


async def _follow_chain(validator: Validator, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await validator.step_weights()
        except AgoraError as error:
            log.warning("weights: error[%s] %s", error.code, error.message)
        await wait_for_stop(stop, validator.config.chain_poll_s)

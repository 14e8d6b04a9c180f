"""The miner process: join a subnet, load the task's backend, serve it over the neuron protocol.

Who is served: callers with stake on the subnet (validators) for free, and anyone else who
attaches a payment-channel voucher covering the miner's price (the gateway, other agents).
An unstaked caller without a voucher is refused, so nobody uses an honest miner as a free
oracle: a miner that relays its own challenges to a peer has nothing to answer with.

What a paid request earns is on disk before it is answered (``payments.store``, in
``data_dir``), and a restarted miner claims it: work done is paid even if the process was
killed before its periodic claim. A buyer that compares answers (the gateway's spot and
redundant verification) pays only the ones it accepts: such a request comes with a hold, not
a voucher, and its verdict later on ``VERDICT_ROUTE``; the miner risks at most ``credit`` base
units of such work per payer, under way, rejected or never resolved (``payments.books``).

``behaviour`` other than ``honest`` exists to show the network at work (``agora devnet``) and
to test that validators catch cheats: ``random`` answers noise of the right shape; ``copycat``
never runs a model: it relays to a peer and, refused, replays the last answer it saw.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agora.client.client import NodeClient
from agora.client.participant import (
    ensure_fee_balance,
    ensure_registered,
    get_subnet_info,
    publish_endpoint,
)
from agora.errors import AgoraError
from agora.miner.federated import (
    PREDICTION_TASK,
    FederatedContributor,
    ModelHolder,
    follow_model,
    serve_current_model,
)
from agora.neuron.client import NeuronClient
from agora.neuron.metagraph import MetagraphView
from agora.neuron.server import Caller, NeuronServer, NeuronServerConfig
from agora.payments.gate import PaymentGate, PaymentGateConfig
from agora.payments.prices import Price
from agora.payments.store import VoucherStore
from agora.payments.vouchers import VERDICT_ROUTE
from agora.process import run_until_signal
from agora.protocol.data import FEDERATED_TASK
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.tasks.federated import ContributorBackend, load_data_file
from agora.tasks.registry import get_task, load_backend
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.miner")

BEHAVIOURS = ("honest", "random", "copycat")
HOTKEY_FEE_FLOAT = BASE_UNITS_PER_AGR  # what the hotkey keeps for its own fees
DEFAULT_CALLER_RATE = 20.0  # requests/s for a caller with no stake
PAYING_CALLER_RATE = 200.0


class CallerNotStaked(AgoraError):
    """Only callers with stake on the subnet (validators) are served."""

    code = 3503
    http_status = 403


@dataclass(slots=True, kw_only=True)
class MinerConfig:
    node_url: str
    netuid: int
    hotkey: Keypair
    load_coldkey: Callable[[], Keypair]
    confirm: Callable[[int], Awaitable[bool] | bool]
    backend: str = "local"  # or "openai:<base url>#<model>"
    behaviour: str = "honest"
    host: str = "127.0.0.1"
    port: int = 0
    advertise_url: str | None = None  # what goes on chain, if not the listening address
    cache_dir: Path | None = None
    min_caller_stake: int = 1
    price: str | None = None  # e.g. "0.001/request"; None: serve staked callers only
    data_dir: Path = Path(".agora/miner")  # the vouchers earned and not yet claimed
    claim_interval_s: float = 60.0
    credit: int = 0  # base units of unpaid work on holds per payer; 0 refuses holds
    metagraph_interval_s: float = 2.0
    data_file: Path | None = None  # a federated subnet's contributor: its private rows
    serve_model: bool = False  # a federated subnet's server: sells its current trained model
    on_status: Callable[[str], None] = field(default=lambda message: None)


async def run_miner(config: MinerConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    if config.behaviour not in BEHAVIOURS:
        raise AgoraError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
    if stop is None:
        return await run_until_signal(lambda signalled: run_miner(config, signalled))
    async with NodeClient(config.node_url) as client:
        subnet = await get_subnet_info(client, config.netuid)
        task: Any = get_task(subnet.task_kind)
        contributor_backend = None
        if subnet.task_kind == FEDERATED_TASK and config.serve_model:
            if config.data_file is not None:
                raise AgoraError("a miner either contributes data (--data) or serves the model")
            task = PREDICTION_TASK
        elif subnet.task_kind == FEDERATED_TASK:
            # The data file is checked before anything is registered or sent.
            contributor_backend = load_contributor_backend(config.data_file)
        elif config.serve_model:
            raise AgoraError("only a federated subnet's miner serves a trained model")
        uid = await ensure_registered(
            client, config.netuid, config.hotkey, config.load_coldkey, config.confirm
        )
        await ensure_fee_balance(client, config.hotkey, config.load_coldkey, HOTKEY_FEE_FLOAT)
        config.on_status(f"registered on subnet {config.netuid} ({subnet.task_kind}) as uid {uid}")
        backend: Any = contributor_backend
        if config.serve_model:
            # Its hash goes on chain with the endpoint: whoever pays this miner on this
            # subnet pays the model's contributors their royalty.
            backend = ModelHolder(None)
            try:
                backend.current = await serve_current_model(client, config.netuid, config.hotkey)
                config.on_status(f"serving model 0x{backend.current.model_hash.hex()}")
            except AgoraError as error:  # no federation yet: its first model is followed
                config.on_status(f"no model to serve yet ({error.message}); following the subnet")
        elif config.behaviour == "honest" and backend is None:
            config.on_status(f"loading the {subnet.task_kind} backend ({config.backend})")
            backend = await load_backend(subnet.task_kind, config.backend, config.cache_dir)
        metagraph = MetagraphView(config.node_url, config.netuid)
        await metagraph.refresh()
        # Paying callers (a gateway) have no stake: a miner that sells gives them more room.
        rate = PAYING_CALLER_RATE if config.price is not None else DEFAULT_CALLER_RATE
        server = NeuronServer(config.hotkey, metagraph, NeuronServerConfig(rate_per_s=rate))
        peers = NeuronClient(config.hotkey, timeout_s=10.0)
        gate = None
        if config.price is not None:
            gate = await open_gate(config, client, subnet.task_kind, config.price)
        handler = _make_handler(config, task, backend, metagraph, peers, gate)
        server.add_route(task.ROUTE, handler, public=True)
        server.add_get("/info", _make_info(config, subnet.task_kind, backend, gate))
        if gate is not None:
            server.add_route(VERDICT_ROUTE, _make_verdict_handler(gate), public=True)
        url = await server.start(config.host, config.port)
        try:
            endpoint = config.advertise_url or url
            if gate is not None:
                endpoint = gate.price.attach(endpoint)
            await publish_endpoint(client, config.netuid, config.hotkey, endpoint)
            config.on_status(f"serving {subnet.task_kind} at {url} as uid {uid}")
            background = [asyncio.create_task(metagraph.run(config.metagraph_interval_s))]
            if contributor_backend is not None:
                contributor = FederatedContributor(
                    client=client,
                    netuid=config.netuid,
                    hotkey=config.hotkey,
                    backend=contributor_backend,
                )
                await contributor.commit_data()
                config.on_status(f"committed {len(contributor_backend.data)} rows of data")
                background.append(asyncio.create_task(contributor.run(stop)))
            if isinstance(backend, ModelHolder):
                follow = follow_model(client, config.netuid, config.hotkey, backend, stop)
                background.append(asyncio.create_task(follow))
            if gate is not None:
                background.append(asyncio.create_task(gate.run(stop)))
            try:
                await stop.wait()
            finally:
                for job in background:
                    job.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                if gate is not None:
                    await gate.claim_all()  # what was earned is claimed before leaving
        finally:
            await server.stop()
            await peers.close()
            close = getattr(backend, "close", None)
            if close is not None:
                await close()
            if gate is not None and gate.store is not None:
                gate.store.close()
    config.on_status("stopped")


async def open_gate(
    config: MinerConfig, client: NodeClient, task_kind: str, price: str
) -> PaymentGate:
    """The payment gate, its vouchers kept in ``data_dir``; those a previous run earned and
    did not claim are read back, to be claimed as soon as the gate runs."""
    chain = await client.get_chain()
    gate_config = PaymentGateConfig(
        hotkey=config.hotkey,
        netuid=config.netuid,
        task_kind=task_kind,
        price=Price.parse(price),
        chain_id=chain["chain_id"],
        claim_interval_s=config.claim_interval_s,
        credit=config.credit,
    )
    name = f"vouchers-{config.netuid}-{config.hotkey.address}.sqlite"
    gate = PaymentGate(gate_config, client, VoucherStore(config.data_dir / name))
    unclaimed = await gate.recover()
    if unclaimed > 0:
        config.on_status(f"claiming {unclaimed} base units earned before a restart")
    return gate


def load_contributor_backend(data_file: Path | None) -> ContributorBackend:
    if data_file is None:
        raise AgoraError("a federated subnet's miner contributes data: give it --data FILE")
    return ContributorBackend(data=load_data_file(data_file))


def _make_handler(
    config: MinerConfig,
    task: Any,
    backend: Any,
    metagraph: MetagraphView,
    peers: NeuronClient,
    gate: PaymentGate | None,
) -> Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]:
    rng = random.Random()
    seen: list[dict[str, Any]] = []

    async def handle(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        payment = body.pop("payment", None)
        if payment is None and caller.stake >= config.min_caller_stake:
            return await serve(body)
        if gate is None:
            raise CallerNotStaked(f"this miner serves callers with stake on subnet {config.netuid}")
        # Paid only for an answer: a voucher is kept (and claimable) once the work succeeded.
        reservation = await gate.reserve(caller.hotkey, payment, body)
        try:
            answer = await serve(body)
        except BaseException:
            gate.release(reservation)
            raise
        await gate.settle(reservation)
        return answer

    async def serve(body: dict[str, Any]) -> dict[str, Any]:
        if config.behaviour == "random":
            answer: dict[str, Any] = task.make_random_response(body, rng)
            return answer
        if config.behaviour == "copycat":
            return await _copy(task, body, metagraph, peers, config, seen, rng)
        answer = await task.handle(backend, body)
        return answer

    return handle


async def _copy(
    task: Any,
    body: dict[str, Any],
    metagraph: MetagraphView,
    peers: NeuronClient,
    config: MinerConfig,
    seen: list[dict[str, Any]],
    rng: random.Random,
) -> dict[str, Any]:
    """Relay to a peer; refused (peers serve only staked callers), replay an old answer."""
    others = [
        n
        for n in metagraph.neurons
        if n.endpoint and n.hotkey != config.hotkey.public_key and n.stake == 0
    ]
    if others:
        peer = rng.choice(others)
        try:
            response = await peers.call(peer.endpoint, peer.hotkey, task.ROUTE, body)
            seen[:] = [response.body]
            return response.body
        except AgoraError as error:
            log.info("copycat: peer %s refused: %s", peer.uid, error.message)
    if seen:
        return seen[-1]
    answer: dict[str, Any] = task.make_random_response(body, rng)
    seen.append(answer)
    return answer


def _make_verdict_handler(
    gate: PaymentGate,
) -> Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]:
    async def handle(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        return await gate.resolve(caller.hotkey, body)

    return handle


def _make_info(
    config: MinerConfig, task_kind: str, backend: Any, gate: PaymentGate | None
) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def info() -> dict[str, Any]:
        return {
            "hotkey": config.hotkey.address,
            "netuid": config.netuid,
            "task": task_kind,
            "model": getattr(backend, "model", None),
            "model_hash": (
                backend.current.model_hash.hex()
                if isinstance(backend, ModelHolder) and backend.current is not None
                else None
            ),
            "price": None if gate is None else gate.price.to_json(),
        }

    return info

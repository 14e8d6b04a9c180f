"""Run a node process: open its store, start its block source and its HTTP API, stop cleanly.

``run_node`` is what ``agora node run`` and ``agora node follow`` call. It returns when the
process receives SIGINT or SIGTERM (after closing the API, the sequencer and the store), and
raises when the node halts (a follower that saw a mismatching state root).

A follower's genesis is pinned: the one it was given (``--genesis``), else the one its store
recorded, else, on its first start only, its leader's. Before it reads blocks from a leader
(and again after the leader was unreachable) it checks that the leader's genesis is that
one, and refuses another chain's (``GenesisMismatch``). A block it cannot decode halts it
(``MalformedBlock``): asking again would only get the same bytes. An unreachable leader, or
one that refuses for a while, is waited for.

What lives above the node in Agora's layers is handed in by the command that runs it: a
follower's leader (a ``NodeClient``; ``Leader`` says what the node needs of it), and
``extensions`` that add routes to the node's HTTP app (the explorer's pages, for one).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from agora.errors import AgoraError
from agora.node.api import create_app
from agora.node.errors import GenesisMismatch, MalformedBlock
from agora.node.node import Node, NodeConfig
from agora.node.store import Store
from agora.node.worker import GroupCommitPool, Worker
from agora.process import run_until_signal, run_until_stopped
from agora.protocol.blocks import Block
from agora.sequencer.base import PendingPool, Sequencer

log = logging.getLogger("agora.node")
SWITCH_INTERVAL_SECONDS = 0.001


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningNode:
    node: Node
    url: str


class Leader(Protocol):
    """The node a follower pulls blocks from and forwards transactions to."""

    base_url: str

    async def get_genesis(self) -> dict[str, Any]: ...

    async def list_blocks(self, start: int, limit: int = 100) -> list[Block]: ...

    async def submit(self, raws: list[bytes]) -> list[bytes]: ...


async def run_node(
    config: NodeConfig,
    genesis: dict[str, Any] | None,
    make_sequencer: Callable[[PendingPool], Sequencer] | None,
    on_ready: Callable[[RunningNode], None] | None = None,
    *,
    leader: Leader | None = None,
    extensions: Sequence[Callable[[web.Application, Node], None]] = (),
) -> None:
    """Serve until a stop signal. Exactly one of ``make_sequencer``/``leader``."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    # The builder and checker threads hold the interpreter lock for up to a switch interval
    # at a time; 1 ms instead of 5 lets the loop answer between their slices.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    store = Store(config.data_dir / "node.db")
    try:
        if genesis is None and leader is not None and store.get_genesis() is None:
            genesis = await leader.get_genesis()
        state = store.initialize(genesis) if genesis is not None else store.load_state()
        writer = Worker("agora-write")
        node = Node(config, store, state, writer)
        app = create_app(node)
        for extend in extensions:
            extend(app, node)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1]
        if on_ready is not None:
            on_ready(RunningNode(node=node, url=f"http://{config.host}:{port}"))
        pool = GroupCommitPool(store, writer)
        sequencer = make_sequencer(pool) if make_sequencer is not None else None
        try:
            await _serve_until_stopped(node, sequencer, leader)
        finally:
            if sequencer is not None:
                await sequencer.close()
            await runner.cleanup()
            node.close()
    finally:
        store.close()


def validate_leader_genesis(pinned: dict[str, Any], theirs: dict[str, Any], url: str) -> None:
    if theirs != pinned:
        raise GenesisMismatch(
            f"the leader {url} serves chain {theirs.get('chain_id')!r} from another genesis "
            f"than this follower's (chain {pinned.get('chain_id')!r}); follow a node of this "
            "chain, or start from another data directory"
        )


def _block_fetcher(leader: Leader, genesis: dict[str, Any]) -> Callable[[int], Any]:
    """Blocks from the leader, once its genesis is checked; an unreachable leader is waited
    for, and its genesis checked again when it answers."""
    checked = False

    async def fetch(height: int) -> list[Any]:
        nonlocal checked
        try:
            if not checked:
                validate_leader_genesis(genesis, await leader.get_genesis(), leader.base_url)
                checked = True
            return await leader.list_blocks(height, 100)
        except (GenesisMismatch, MalformedBlock):
            raise
        except AgoraError as error:
            log.warning("leader %s: %s; retrying", leader.base_url, error.message)
            checked = False
            return []

    return fetch


async def _serve_until_stopped(
    node: Node, sequencer: Sequencer | None, leader: Leader | None
) -> None:
    if sequencer is not None:
        work = node.run_sequenced(sequencer)
    else:
        if leader is None:
            raise ValueError("a node needs a sequencer or a leader to follow")
        genesis = node.store.get_genesis()
        if genesis is None:
            raise ValueError("a follower's store holds its genesis before it follows")
        node.set_forwarder(leader.submit)
        work = node.run_following(_block_fetcher(leader, genesis))
    await run_until_signal(lambda stop: run_until_stopped(stop, work))

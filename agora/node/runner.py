"""Run a node process: open its store, start its block source and its HTTP API, stop cleanly.

``run_node`` is what ``agora node run`` and ``agora node follow`` call. It returns when the
process receives SIGINT or SIGTERM (after closing the API, the sequencer and the store), and
raises when the node halts (a follower that saw a mismatching state root).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agora.client.client import NodeClient
from agora.errors import AgoraError
from agora.node.api import create_app
from agora.node.node import Node, NodeConfig
from agora.node.store import Store
from agora.node.worker import GroupCommitPool, Worker
from agora.sequencer.base import PendingPool, Sequencer

log = logging.getLogger("agora.node")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningNode:
    node: Node
    url: str


async def run_node(
    config: NodeConfig,
    genesis: dict[str, Any] | None,
    make_sequencer: Callable[[PendingPool], Sequencer] | None,
    on_ready: Callable[[RunningNode], None] | None = None,
) -> None:
    """Serve until a stop signal. Exactly one of ``make_sequencer``/``config.leader_url``."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    leader = NodeClient(config.leader_url) if config.leader_url else None
    if genesis is None and leader is not None:
        genesis = await leader.get_genesis()
    store = Store(config.data_dir / "node.db")
    try:
        state = store.initialize(genesis) if genesis is not None else store.load_state()
        writer = Worker("agora-write")
        node = Node(config, store, state, writer)
        runner = web.AppRunner(create_app(node), access_log=None)
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
        if leader is not None:
            await leader.close()
        store.close()


def _block_fetcher(leader: NodeClient) -> Callable[[int], Any]:
    """Blocks from the leader; an unreachable leader is waited for, not fatal."""

    async def fetch(height: int) -> list[Any]:
        try:
            return await leader.list_blocks(height, 100)
        except AgoraError as error:
            log.warning("leader %s: %s; retrying", leader.base_url, error.message)
            return []

    return fetch


async def _serve_until_stopped(
    node: Node, sequencer: Sequencer | None, leader: NodeClient | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if sequencer is not None:
        work = asyncio.ensure_future(node.run_sequenced(sequencer))
    else:
        assert leader is not None
        node.set_forwarder(leader.submit)
        work = asyncio.ensure_future(node.run_following(_block_fetcher(leader)))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        stopper.cancel()
        if not work.done():
            work.cancel()
            try:
                await work
            except asyncio.CancelledError:
                pass
    if work.done() and not work.cancelled() and work.exception() is not None:
        raise work.exception()  # type: ignore[misc]

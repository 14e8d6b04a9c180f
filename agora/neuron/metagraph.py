"""``MetagraphView``: a process's copy of one subnet's metagraph, read from the node API.

Servers look callers up here on every request (a dictionary lookup, never an HTTP call), so
the view is refreshed in the background by ``run``; validators and the gateway read miners'
endpoints and scores from it. The chain is the only source of truth: nothing a peer says
changes the view. A refresh replaces the whole view at once, so a reader never sees half of
one block and half of another; a failed refresh keeps the last good view.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from agora.client.client import NodeClient
from agora.errors import AgoraError
from agora.neuron.errors import MalformedMetagraph
from agora.protocol.address import decode_address
from agora.protocol.errors import InvalidAddress

log = logging.getLogger("agora.neuron")


@dataclass(frozen=True, slots=True)
class NeuronInfo:
    """One uid of the subnet as the node reports it (``incentive``, ``dividends``: u16)."""

    uid: int
    hotkey: bytes
    coldkey: bytes
    stake: int  # base units staked on the hotkey, its own and delegated
    validator_permit: bool
    active: bool
    incentive: int
    dividends: int
    endpoint: str  # where its neuron server listens, "" if it never served


class MetagraphView:
    """The last metagraph read from ``node_url`` for ``netuid``.

    Without ``client``, each refresh opens and closes its own connection to the node, so the
    view holds nothing that needs closing.
    """

    def __init__(self, node_url: str, netuid: int, *, client: NodeClient | None = None) -> None:
        self.node_url = node_url
        self.netuid = netuid
        self._client = client
        self._neurons: list[NeuronInfo] = []
        self._by_hotkey: dict[bytes, NeuronInfo] = {}
        self._block = -1
        self._subnet: dict[str, Any] = {}

    @classmethod
    def from_neurons(cls, netuid: int, neurons: list[NeuronInfo]) -> MetagraphView:
        """A fixed view that never talks to a node (for tests and tools): refresh keeps it."""
        view = cls("", netuid)
        view._set(neurons, block=0, subnet={"netuid": netuid})
        return view

    @property
    def neurons(self) -> list[NeuronInfo]:
        return self._neurons

    @property
    def block(self) -> int:
        """The height the view was read at; -1 before the first refresh."""
        return self._block

    @property
    def subnet(self) -> dict[str, Any]:
        """The subnet's record as the node serves it (``task_kind``, ``hyperparameters``...)."""
        return self._subnet

    def lookup(self, hotkey: bytes) -> NeuronInfo | None:
        return self._by_hotkey.get(hotkey)

    async def refresh(self) -> None:
        """Read ``GET /v1/subnets/{netuid}/metagraph`` and replace the view with it."""
        if not self.node_url and self._client is None:
            return  # a fixed view
        if self._client is not None:
            answer = await self._client.get_metagraph(self.netuid)
        else:
            async with NodeClient(self.node_url) as client:
                answer = await client.get_metagraph(self.netuid)
        neurons, block, subnet = parse_metagraph(answer)
        self._set(neurons, block, subnet)

    async def run(self, interval_s: float) -> None:
        """Refresh now and every ``interval_s`` until cancelled; a failure is logged and the
        last good view kept."""
        while True:
            try:
                await self.refresh()
            except AgoraError as error:
                log.warning(
                    "metagraph of subnet %d not refreshed: error[%d] %s",
                    self.netuid,
                    error.code,
                    error.message,
                )
            await asyncio.sleep(interval_s)

    def _set(self, neurons: list[NeuronInfo], block: int, subnet: dict[str, Any]) -> None:
        # One assignment each, no await in between: readers see the old view or the new one.
        self._by_hotkey = {neuron.hotkey: neuron for neuron in neurons}
        self._neurons = neurons
        self._block = block
        self._subnet = subnet


def parse_metagraph(answer: Any) -> tuple[list[NeuronInfo], int, dict[str, Any]]:
    """The node's metagraph JSON as (neurons, block, subnet record)."""
    try:
        neurons = [_parse_neuron(entry) for entry in answer["neurons"]]
        block = answer["block"]
        subnet = answer["subnet"]
    except (KeyError, TypeError, ValueError, InvalidAddress) as error:
        raise MalformedMetagraph(f"the node's metagraph is malformed: {error!r}") from None
    if not isinstance(block, int) or not isinstance(subnet, dict):
        raise MalformedMetagraph("the node's metagraph is malformed: block or subnet")
    return neurons, block, subnet


def _parse_neuron(entry: dict[str, Any]) -> NeuronInfo:
    return NeuronInfo(
        uid=int(entry["uid"]),
        hotkey=bytes(decode_address(entry["hotkey"])),
        coldkey=bytes(decode_address(entry["coldkey"])),
        stake=int(entry["stake"]),
        validator_permit=bool(entry["validator_permit"]),
        active=bool(entry["active"]),
        incentive=int(entry["incentive"]),
        dividends=int(entry["dividends"]),
        endpoint=str(entry["endpoint"]),
    )

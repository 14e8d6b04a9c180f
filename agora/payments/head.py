"""``HeadCache``: the chain's head height, read through the node API at most so often.

Sellers and payers both judge expiries against the head; margins around expiries are many
blocks wide, so a head a few seconds old is enough and a request rarely waits on the node.
"""

from __future__ import annotations

import asyncio
import logging

from agora.client.client import NodeApiError, NodeClient, NodeUnreachable
from agora.payments.errors import ChainUnavailable

log = logging.getLogger("agora.payments")


class HeadCache:
    """The chain's head height through the node API, read at most every ``max_age_s``. A
    reading at most ``stale_s`` old is answered at once while a fresh one is fetched in the
    background: a request waits on the node only for the first reading or after a long idle."""

    def __init__(
        self, client: NodeClient, *, max_age_s: float = 1.0, stale_s: float = 10.0
    ) -> None:
        self.client = client
        self.max_age_s = max_age_s
        self.stale_s = stale_s
        self._height = -1
        self._read_at = float("-inf")
        self._reading: asyncio.Task[None] | None = None

    async def get(self, *, fresh: bool = False) -> int:
        """The head height; ``fresh`` waits for a reading younger than ``max_age_s``."""
        age = asyncio.get_running_loop().time() - self._read_at
        if age <= self.max_age_s:
            return self._height
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read())
        if age <= self.stale_s and not fresh:
            return self._height
        await asyncio.shield(self._reading)
        return self._height

    async def _read(self) -> None:
        try:
            head = await self.client.get_head()
        except (NodeUnreachable, NodeApiError) as error:
            if asyncio.get_running_loop().time() - self._read_at > self.stale_s:
                raise ChainUnavailable(f"cannot read the chain's head: {error.message}") from None
            log.warning("payments: the head was not refreshed: %s", error.message)
            return
        self._height, self._read_at = int(head["height"]), asyncio.get_running_loop().time()

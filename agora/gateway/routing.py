"""Which miner answers: chosen by incentive and measured latency, with load spread and
failing miners rested.

``choose`` draws one miner at random among those not excluded, with a weight of

    weight = incentive / (latency_ms + LATENCY_FLOOR_MS) / (1 + in_flight) ** 2

- incentive is the chain's verdict on quality: when any candidate has some, the ones with
  none are left out (validators found nothing worth paying them for); when none has any (a
  young subnet), all count the same;
- latency is this gateway's own moving average of the miner's answers (``LATENCY_ALPHA``);
  a miner not measured yet counts as the median of those measured, so it gets tried;
- requests under way at a miner make it less likely, so a burst spreads.

A miner whose call failed (no answer, a timeout, a refusal that is not the developer's fault)
rests ``2 ** failures`` seconds, at most ``MAX_REST_S``; a success resets it. When every
candidate rests, they are tried anyway: a tired miner beats no answer.

Randomness comes from the ``random.Random`` handed in, the clock likewise, so tests replay.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from agora.gateway.catalog import Offer

LATENCY_ALPHA = 0.2
LATENCY_FLOOR_MS = 5.0
DEFAULT_LATENCY_MS = 100.0
MAX_REST_S = 60.0


@dataclass(slots=True)
class MinerStats:
    latency_ms: float | None = None
    in_flight: int = 0
    successes: int = 0
    failures: int = 0
    failures_in_a_row: int = 0
    rest_until: float = 0.0


class Router:
    def __init__(self, rng: random.Random, clock: Callable[[], float] = time.monotonic) -> None:
        self.rng = rng
        self.clock = clock
        self.stats: dict[bytes, MinerStats] = {}

    def choose(
        self,
        offers: Sequence[Offer],
        *,
        exclude: Collection[bytes] = (),
        prefer: Sequence[int] = (),
    ) -> Offer | None:
        """One miner for the next call, or None when every one is excluded. ``prefer`` (uids)
        are taken first, in order, when available."""
        candidates = [offer for offer in offers if offer.hotkey not in exclude]
        for uid in prefer:
            for offer in candidates:
                if offer.uid == uid:
                    return offer
        if not candidates:
            return None
        now = self.clock()
        rested = [o for o in candidates if self._get(o.hotkey).rest_until <= now]
        pool = rested or candidates
        if any(offer.incentive > 0 for offer in pool):
            pool = [offer for offer in pool if offer.incentive > 0]
        weights = self._weights(pool)
        return self.rng.choices(pool, weights=weights, k=1)[0]

    def _weights(self, pool: list[Offer]) -> list[float]:
        measured = [
            stats.latency_ms
            for stats in (self._get(o.hotkey) for o in pool)
            if stats.latency_ms is not None
        ]
        typical = statistics.median(measured) if measured else DEFAULT_LATENCY_MS
        weights = []
        for offer in pool:
            stats = self._get(offer.hotkey)
            latency = typical if stats.latency_ms is None else stats.latency_ms
            weights.append(
                max(offer.incentive, 1) / (latency + LATENCY_FLOOR_MS) / (1 + stats.in_flight) ** 2
            )
        return weights

    def begin(self, offer: Offer) -> None:
        self._get(offer.hotkey).in_flight += 1

    def succeed(self, offer: Offer, latency_ms: float) -> None:
        stats = self._get(offer.hotkey)
        stats.in_flight -= 1
        stats.successes += 1
        stats.failures_in_a_row = 0
        stats.rest_until = 0.0
        if stats.latency_ms is None:
            stats.latency_ms = latency_ms
        else:
            stats.latency_ms += LATENCY_ALPHA * (latency_ms - stats.latency_ms)

    def fail(self, offer: Offer, *, blame: bool = True) -> None:
        """The call failed; ``blame`` rests the miner (not for the developer's own errors)."""
        stats = self._get(offer.hotkey)
        stats.in_flight -= 1
        if blame:
            self.penalize(offer)

    def penalize(self, offer: Offer) -> None:
        """Rest a miner: it failed, or its answer lost a verification."""
        stats = self._get(offer.hotkey)
        stats.failures += 1
        stats.failures_in_a_row += 1
        rest = min(MAX_REST_S, 2.0**stats.failures_in_a_row)
        stats.rest_until = self.clock() + rest

    def snapshot(self, offer: Offer) -> dict[str, Any]:
        stats = self._get(offer.hotkey)
        return {
            "latency_ms": None if stats.latency_ms is None else round(stats.latency_ms, 2),
            "in_flight": stats.in_flight,
            "successes": stats.successes,
            "failures": stats.failures,
            "resting": stats.rest_until > self.clock(),
        }

    def _get(self, hotkey: bytes) -> MinerStats:
        stats = self.stats.get(hotkey)
        if stats is None:
            stats = self.stats[hotkey] = MinerStats()
        return stats

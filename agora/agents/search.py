"""An agent that composes: semantic search, selling results and buying embeddings from the
embedding subnet's miners.

``MinerBuyer`` buys a subnet's task directly from its miners, as a gateway does but from the
agent's own wallet: it picks the miner with a published price and the best incentive, opens
a payment channel to it (``channels.BuyerChannels``), and sends each request with a voucher
through the signed neuron protocol; the miner's signed answer and the voucher it was paid
with are kept as a ``MinerReceipt``.

``create_search_service`` is the service: a fixed corpus (embedded once, bought like any
query) searched by cosine similarity with the query's embedding, bought per call. Its answer
carries the upstream receipt, so a developer's one call is paid and receipted at each hop:
developer -> agent (a voucher on the developer's channel, the agent's signed answer) ->
miner (a voucher on the agent's channel, the miner's signed answer). ``run_search_agent``
serves it (``agora service search-agent``; ``agora devnet`` runs one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from agora.agents.channels import BuyerChannels
from agora.agents.decorator import ServiceDefinition, define_service
from agora.agents.errors import NoServiceFound
from agora.agents.server import ServeConfig, serve_until_stopped
from agora.client.client import NodeClient
from agora.neuron.client import NeuronClient
from agora.node.wire import to_hex
from agora.payments.prices import Price, parse_endpoint
from agora.payments.vouchers import make_payment
from agora.protocol.address import decode_address, encode_address
from agora.tasks import embedding
from agora.wallet.keys import Keypair

CORPUS = (
    "Agora pays miners per request through payment channels settled on chain.",
    "Validators score miners and Yuma consensus turns their weights into incentive.",
    "A developer calls any model through one OpenAI-compatible gateway.",
    "Data owners train on their own data and share only model updates.",
    "Agents sell services to other agents and are paid with channel vouchers.",
    "The ledger is pure, deterministic and uses integers only.",
    "Ethereum can order the transactions through an Inbox contract.",
    "Governance proposals change parameters when enough stake votes for them.",
    "Paris is the capital of France and a city on the Seine.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The mitochondria produce most of the cell's chemical energy.",
    "A sourdough starter is a culture of wild yeast and lactic acid bacteria.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MinerReceipt:
    """One paid miner call: the voucher that paid it and the miner's signed answer."""

    miner: bytes
    channel_id: bytes
    cumulative: int
    cost: int
    nonce: int
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "miner": encode_address(self.miner),
            "channel_id": to_hex(self.channel_id),
            "cumulative": self.cumulative,
            "cost": self.cost,
            "nonce": self.nonce,
            "signature": to_hex(self.signature),
        }


class MinerBuyer:
    """Buys one subnet's task from its miners, paid from ``payer`` (module docstring)."""

    def __init__(
        self,
        node: NodeClient,
        payer: Keypair,
        netuid: int,
        *,
        task_kind: str = "embedding",
        deposit_calls: int = 1000,
    ) -> None:
        self.node = node
        self.netuid = netuid
        self.task_kind = task_kind
        self.neurons = NeuronClient(payer, timeout_s=60.0)
        self.payments = BuyerChannels(node, payer, deposit_calls=deposit_calls, channel_blocks=2000)
        self.receipts: list[MinerReceipt] = []
        self._miner: tuple[bytes, str, Price] | None = None

    async def close(self) -> None:
        await self.neurons.close()

    async def pick_miner(self) -> tuple[bytes, str, Price]:
        """(hotkey, URL, price) of the priced miner with the best incentive."""
        if self._miner is None:
            graph = await self.node.get_metagraph(self.netuid)
            offers = []
            for neuron in graph["neurons"]:
                url, price = parse_endpoint(neuron["endpoint"])
                if price is not None and url:
                    hotkey = bytes(decode_address(neuron["hotkey"]))
                    offers.append((-int(neuron["incentive"]), neuron["uid"], hotkey, url, price))
            if not offers:
                raise NoServiceFound(f"no miner of subnet {self.netuid} sells to paying callers")
            _, _, hotkey, url, price = min(offers)
            self._miner = (hotkey, url, price)
        return self._miner

    async def call(self, route: str, request: dict[str, Any]) -> dict[str, Any]:
        """One paid request to a miner; its answer's body."""
        hotkey, url, price = await self.pick_miner()
        channel = await self.payments.open(hotkey, self.netuid, price.amount)
        cost = price.compute_cost(self.task_kind, request)
        ticket = await self.payments.issue(channel, cost)
        body = {**request, "payment": make_payment(ticket.voucher)}
        try:
            response = await self.neurons.call(url, hotkey, route, body)
        except BaseException:
            self.payments.release(ticket)  # a refused or failed call costs nothing
            raise
        self.payments.settle(ticket)
        self.receipts.append(
            MinerReceipt(
                miner=hotkey,
                channel_id=channel.channel_id,
                cumulative=ticket.voucher.cumulative,
                cost=cost,
                nonce=response.nonce,
                signature=response.signature,
            )
        )
        return response.body

    async def embed(self, texts: list[str]) -> list[list[float]]:
        answer = await self.call(embedding.ROUTE, {"model": embedding.MODEL, "texts": texts})
        vectors: list[list[float]] = answer["embeddings"]
        return vectors


class Hit(TypedDict):
    text: str
    score: float


class SearchAnswer(TypedDict):
    hits: list[Hit]
    upstream: dict[str, Any]


def compute_cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def create_search_service(
    buyer: MinerBuyer, corpus: tuple[str, ...] = CORPUS, price: str = "0.002"
) -> ServiceDefinition:
    """The semantic search service over ``corpus``, buying its embeddings from ``buyer``."""
    vectors: list[list[float]] = []

    async def semantic_search(query: str, top_k: int = 3) -> SearchAnswer:
        """The corpus texts closest in meaning to a query (embeddings bought from the
        embedding subnet's miners; the answer carries that purchase's receipt)."""
        if not vectors:
            vectors.extend(await buyer.embed(list(corpus)))
        (vector,) = await buyer.embed([query])
        scored = sorted(
            ((compute_cosine(vector, v), text) for v, text in zip(vectors, corpus, strict=True)),
            reverse=True,
        )
        hits: list[Hit] = [
            {"text": text, "score": round(score, 4)} for score, text in scored[: max(1, top_k)]
        ]
        return {"hits": hits, "upstream": buyer.receipts[-1].to_json()}

    return define_service(
        semantic_search, name="semantic-search", price=price, tags=("search", "agent")
    )


async def run_search_agent(
    hotkey: Keypair,
    config: ServeConfig,
    embedding_netuid: int,
    on_started: Callable[[str, bytes], None],
) -> None:
    """Serve the search agent until SIGINT or SIGTERM."""
    async with NodeClient(config.node_url) as node:
        buyer = MinerBuyer(node, hotkey, embedding_netuid)
        try:
            definition = create_search_service(buyer)
            await serve_until_stopped(definition, hotkey, config, on_started)
        finally:
            await buyer.close()

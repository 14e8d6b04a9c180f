"""What the network sells, read from the chain: the gateway's models and their miners.

Each subnet whose task kind the gateway speaks (``MODELS``) is a ``Market``: its model, and
the miners that publish an endpoint with a price (``payments.prices.parse_endpoint``); a miner
without a price serves validators only and is not listed. A model's id is the task's model
name (``all-MiniLM-L6-v2``); when several subnets serve one task, the plain id names the one
with the most miners for sale and ``model@netuid`` names each. Nothing a miner says is
believed: endpoints, prices, stake and incentive all come from the node.

A federated subnet's market (``federated-digits-logistic``, sold through the
``/v1/agora/predictions`` extension) lists the miners that declared on chain the trained
model they serve (``ServeModel``); each offer carries that model's hash, so a receipt names
the model that answered and a paid request pays the model's contributors their royalty.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from agora.client.client import NodeClient
from agora.errors import AgoraError
from agora.gateway.errors import ChainUnavailable, UnknownModel
from agora.neuron.metagraph import parse_metagraph
from agora.payments.prices import Price, parse_endpoint
from agora.protocol.address import encode_address
from agora.tasks import embedding, federated, generation

log = logging.getLogger("agora.gateway")

MODELS = {
    "embedding": embedding.MODEL,
    "generation": generation.MODEL_NAME,
    "federated": federated.MODEL_NAME,
}
ROUTES = {
    "embedding": embedding.ROUTE,
    "generation": generation.ROUTE,
    "federated": federated.PREDICT_ROUTE,
}


@dataclass(frozen=True, slots=True)
class Offer:
    """One miner's work for sale."""

    uid: int
    hotkey: bytes
    address: str  # agr1... of the hotkey
    url: str  # the endpoint without its price fragment
    price: Price
    incentive: int  # u16, from the last epoch
    stake: int
    model_hash: str = ""  # hex: the trained model it declared on chain (federated subnets)


@dataclass(frozen=True, slots=True)
class Market:
    """One subnet's task, and who sells it."""

    netuid: int
    task: str
    model: str
    offers: tuple[Offer, ...]
    block: int

    @property
    def route(self) -> str:
        return ROUTES[self.task]


class Catalog:
    """The markets as of the last ``refresh``; ``run`` keeps them fresh."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client
        self.markets: list[Market] = []
        self._by_model: dict[str, Market] = {}

    def find(self, model: str) -> Market:
        market = self._by_model.get(model)
        if market is None:
            known = ", ".join(sorted(self._by_model)) or "none yet"
            raise UnknownModel(
                f"the model {model!r} does not exist on this network (served: {known})",
                param="model",
            )
        return market

    @property
    def model_ids(self) -> dict[str, Market]:
        return dict(self._by_model)

    async def refresh(self) -> None:
        try:
            subnets = await self.client.list_subnets()
            markets = []
            for subnet in subnets:
                if subnet["task_kind"] in MODELS:
                    markets.append(await self._read_market(subnet["netuid"], subnet["task_kind"]))
        except AgoraError as error:
            raise ChainUnavailable(f"cannot read the subnets: {error.message}") from None
        self._set(markets)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except AgoraError as error:
                log.warning("catalog not refreshed: error[%d] %s", error.code, error.message)

    async def _read_market(self, netuid: int, task: str) -> Market:
        answer = await self.client.get_metagraph(netuid)
        neurons, block, _ = parse_metagraph(answer)
        served: dict[str, str] = {}
        if task == "federated":
            lineage = await self.client.get_lineage()
            served = {
                s["hotkey"]: s["model_hash"].removeprefix("0x")
                for s in lineage["served"]
                if s["netuid"] == netuid
            }
        offers = []
        for neuron in neurons:
            url, price = parse_endpoint(neuron.endpoint)
            if price is None or not url:
                continue
            address = encode_address(neuron.hotkey)
            if task == "federated" and address not in served:
                continue  # a contributor, or a miner serving no trained model
            offers.append(
                Offer(
                    uid=neuron.uid,
                    hotkey=neuron.hotkey,
                    address=address,
                    url=url,
                    price=price,
                    incentive=neuron.incentive,
                    stake=neuron.stake,
                    model_hash=served.get(address, ""),
                )
            )
        return Market(
            netuid=netuid, task=task, model=MODELS[task], offers=tuple(offers), block=block
        )

    def _set(self, markets: list[Market]) -> None:
        by_model: dict[str, Market] = {}
        for market in sorted(markets, key=lambda m: (-len(m.offers), m.netuid)):
            by_model.setdefault(market.model, market)
            by_model[f"{market.model}@{market.netuid}"] = market
        self.markets = sorted(markets, key=lambda m: m.netuid)
        self._by_model = by_model

"""The gateway's HTTP server (aiohttp): thin handlers over ``Gateway``, and ``run_gateway``,
which builds everything from a ``GatewayConfig`` and the payer's key and serves until stopped.

Routes:
- ``GET /v1/models``, ``GET /v1/models/{id}``: the network's models, their miners and prices;
- ``POST /v1/embeddings``, ``POST /v1/chat/completions``: the OpenAI API;
- ``POST /v1/agora/predictions``: an Agora extension: predictions of a trained federated
  model (``federated-digits-logistic``); each paid request pays the model's contributors;
- ``GET /v1/agora/openapi.json``: the OpenAPI 3.1 description of these routes (``openapi``);
- ``GET /v1/agora/receipts?limit=&day=&request_id=``: the receipts, newest first;
- ``GET /v1/agora/channels``: the gateway's payment channels;
- ``GET /health``.
Every error answers the OpenAI error shape (``openai_wire.encode_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from agora.client.client import NodeClient
from agora.errors import AgoraError
from agora.gateway import openai_wire as wire
from agora.gateway.catalog import Catalog
from agora.gateway.channels import ChannelManager
from agora.gateway.config import GatewayConfig
from agora.gateway.errors import BadRequest, GatewayError, UnknownRoute
from agora.gateway.openapi import make_openapi
from agora.gateway.routing import Router
from agora.gateway.service import Gateway, GatewayParts, Job
from agora.gateway.store import GatewayStore
from agora.neuron.client import NeuronClient
from agora.wallet.keys import Keypair

log = logging.getLogger("agora.gateway")

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_RECEIPTS = 1_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[GATEWAY] = gateway
    app.add_routes(
        [
            web.get("/v1/models", list_models),
            web.get("/v1/models/{model}", get_model),
            web.post("/v1/embeddings", create_embeddings),
            web.post("/v1/chat/completions", create_chat_completion),
            web.post("/v1/agora/predictions", create_predictions),
            web.get("/v1/agora/openapi.json", get_openapi),
            web.get("/v1/agora/receipts", list_receipts),
            web.get("/v1/agora/channels", list_channels),
            web.get("/health", health),
        ]
    )
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AgoraError as error:
        return _error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return _error_response(BadRequest(f"the request body exceeds {MAX_BODY_BYTES} bytes"))
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return _error_response(UnknownRoute(f"no route {request.method} {request.path}"))
    except Exception:  # a bug: logged, and answered in the API's shape all the same
        log.exception("gateway: %s %s failed", request.method, request.path)
        return _error_response(GatewayError("the gateway failed on this request (see its log)"))


def _error_response(error: AgoraError) -> web.Response:
    status, body = wire.encode_error(error)
    return _json(body, status)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def _id_headers(request_id: str) -> dict[str, str]:
    return {wire.REQUEST_ID_HEADER: request_id, "x-request-id": request_id}


# --- handlers ----------------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    data = [
        wire.encode_model(model_id, market, gateway.compute_level_prices(market), _stats(gateway))
        for model_id, market in sorted(gateway.catalog.model_ids.items())
    ]
    return _json({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    model_id = request.match_info["model"]
    market = gateway.catalog.find(model_id)
    prices = gateway.compute_level_prices(market)
    return _json(wire.encode_model(model_id, market, prices, _stats(gateway)))


def _stats(gateway: Gateway) -> Callable[[Any], dict[str, Any]]:
    return gateway.router.snapshot


async def create_embeddings(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    body = wire.parse_body(await request.read())
    parsed = wire.parse_embedding_request(body)
    job = Job(
        request_id=_new_request_id(),
        model=parsed.model,
        request=parsed.request,
        verification=wire.read_verification(request.headers, body, gateway.config.verification),
        prefer=wire.read_prefer(request.headers),
    )
    outcome = await gateway.serve(job)
    tokens = wire.count_embedding_tokens(parsed.request["texts"])
    prices = gateway.compute_level_prices(gateway.catalog.find(parsed.model))
    answer = wire.encode_embedding_response(outcome, parsed.encoding_format, tokens, prices)
    return _json(answer, headers=_id_headers(job.request_id))


async def create_chat_completion(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    body = wire.parse_body(await request.read())
    parsed = wire.parse_chat_request(body)
    job = Job(
        request_id=_new_request_id(),
        model=parsed.model,
        request=parsed.request,
        verification=wire.read_verification(request.headers, body, gateway.config.verification),
        prefer=wire.read_prefer(request.headers),
    )
    outcome = await gateway.serve(job)
    created = int(gateway.clock())
    prices = gateway.compute_level_prices(gateway.catalog.find(parsed.model))
    if not parsed.stream:
        answer = wire.encode_chat_response(outcome, created, prices)
        return _json(answer, headers=_id_headers(job.request_id))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **_id_headers(job.request_id),
        }
    )
    await response.prepare(request)
    try:
        for event in wire.encode_chat_stream(outcome, created, parsed.include_usage, prices):
            await response.write(event)
        await response.write_eof()
    except ConnectionResetError:  # the developer hung up; the answer was paid and recorded
        pass
    return response


async def create_predictions(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    body = wire.parse_body(await request.read())
    model, task_request = wire.parse_prediction_request(body)
    market = gateway.catalog.find(model)
    if market.task != "federated":
        raise BadRequest(
            f"{model} is not a trained federated model: /agora/predictions serves those",
            param="model",
        )
    job = Job(
        request_id=_new_request_id(),
        model=model,
        request=task_request,
        verification=wire.read_verification(request.headers, body, gateway.config.verification),
        prefer=wire.read_prefer(request.headers),
    )
    outcome = await gateway.serve(job)
    answer = wire.encode_prediction_response(outcome, gateway.compute_level_prices(market))
    return _json(answer, headers=_id_headers(job.request_id))


async def get_openapi(request: web.Request) -> web.Response:
    return _json(make_openapi())


async def list_receipts(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    query = request.query
    try:
        limit = min(int(query.get("limit", "50")), MAX_RECEIPTS)
    except ValueError:
        raise BadRequest("limit must be an integer", param="limit") from None
    receipts = gateway.store.list_receipts(
        limit=limit, day=query.get("day"), request_id=query.get("request_id")
    )
    return _json({"object": "list", "data": [receipt.to_json() for receipt in receipts]})


async def list_channels(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    records = gateway.store.list_channels(gateway.channels.payer.address)
    return _json({"object": "list", "data": [record.to_json() for record in records]})


async def health(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    return _json({"status": "ok", "models": sorted(gateway.catalog.model_ids)})


# --- the process -------------------------------------------------------------------------------


async def run_gateway(
    config: GatewayConfig,
    payer: Keypair,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve the OpenAI API until ``stop`` is set; ``on_ready`` gets the base URL."""
    store = GatewayStore(config.database_path)
    client = NodeClient(config.node_url)
    neurons = NeuronClient(payer, timeout_s=60.0)
    channels = ChannelManager(
        client=client,
        payer=payer,
        store=store,
        deposit=config.deposit,
        channel_blocks=config.channel_blocks,
    )
    catalog = Catalog(client)
    background: list[asyncio.Task[None]] = []
    runner: web.AppRunner | None = None
    gateway: Gateway | None = None
    try:
        await catalog.refresh()
        await channels.start()
        parts = GatewayParts(
            catalog=catalog,
            router=Router(random.Random()),
            channels=channels,
            store=store,
            neurons=neurons,
            rng=random.Random(),
            clock=time.time,
        )
        gateway = Gateway(config, parts)
        runner = web.AppRunner(make_app(gateway), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        await web.TCPSite(runner, config.host, config.port).start()
        port = runner.addresses[0][1]
        background.append(asyncio.create_task(catalog.run(config.catalog_interval_s)))
        background.append(asyncio.create_task(channels.run(config.maintenance_interval_s)))
        on_ready(f"http://{config.host}:{port}/v1")
        await stop.wait()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        if gateway is not None:
            await gateway.close()
        await channels.close()
        await neurons.close()
        await client.close()
        with contextlib.suppress(Exception):
            store.close()

"""The node's HTTP API under /v1: thin handlers that decode, make one call, encode.

Every error is JSON ``{"error": {"code", "name", "message"}}`` (``agora.errors.encode_error``)
with a 4xx/5xx status; the OpenAPI description is served at /v1/openapi.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from agora.errors import AgoraError, encode_error
from agora.node.errors import (
    BodyTooLarge,
    MalformedRequest,
    MethodNotAllowed,
    NodeError,
    NotFound,
    ParameterOutOfRange,
    StreamTooFarBehind,
)
from agora.node.node import Node
from agora.node.openapi import MAX_BLOCKS_PER_PAGE, OPENAPI
from agora.node.wire import (
    block_to_json,
    channel_id_from_text,
    channel_to_json,
    federated_model_to_json,
    federation_to_json,
    from_hex,
    governance_params_to_json,
    header_to_json,
    lineage_to_json,
    metagraph_to_json,
    proposal_to_json,
    receipt_to_json,
    service_id_from_text,
    service_to_json,
    subnet_to_json,
    to_hex,
    transaction_from_json,
    treasury_to_json,
)
from agora.protocol.accounts import get_account
from agora.protocol.address import decode_address, encode_address
from agora.protocol.channels import get_channel, get_channels
from agora.protocol.codec import U16, U64
from agora.protocol.errors import (
    ChannelNotFound,
    HotkeyNotFound,
    NeuronNotFound,
    ProposalNotFound,
    ProtocolError,
    ServiceNotFound,
    SubnetNotFound,
)
from agora.protocol.governance import STATUSES, TRACK_NAMES, get_proposal, get_proposals
from agora.protocol.services import Service, get_service, get_services
from agora.protocol.staking import get_hotkey, get_stakers
from agora.protocol.subnets import (
    get_neuron,
    get_subnet,
    get_subnets,
    get_uid,
    iterate_subnet_ids,
)
from agora.protocol.transactions import encode_transaction
from agora.protocol.transition import AppliedBlock

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NODE = web.AppKey("node", Node)
# The open block streams' tasks, ended when the node stops.
STREAMS = web.AppKey("streams", set[asyncio.Task[Any]])


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


# Protocol errors that mean "no such thing": answered 404 with their own code.
MISSING_RESOURCE_ERRORS = (
    SubnetNotFound,
    HotkeyNotFound,
    NeuronNotFound,
    ChannelNotFound,
    ProposalNotFound,
    ServiceNotFound,
)


def error_response(error: AgoraError) -> web.Response:
    if isinstance(error, NodeError):
        status = error.http_status
    elif isinstance(error, MISSING_RESOURCE_ERRORS):
        status = 404
    else:
        status = 400
    return json_response(encode_error(error), status)


def create_app(node: Node) -> web.Application:
    app = web.Application(
        middlewares=[_errors_middleware(node)], client_max_size=node.config.max_body_bytes
    )
    app[NODE] = node
    app[STREAMS] = set()
    app.on_shutdown.append(_end_streams)
    routes = [
        web.post("/v1/transactions", submit_transactions),
        web.get("/v1/transactions/{hash}", get_transaction),
        web.get("/v1/accounts/{address}", get_account_route),
        web.get("/v1/blocks", list_blocks),
        web.get("/v1/blocks/{id}", get_block),
        web.get("/v1/head", get_head),
        web.get("/v1/chain", get_chain),
        web.get("/v1/genesis", get_genesis),
        web.get("/v1/stream/blocks", stream_blocks),
        web.post("/v1/faucet", faucet),
        web.get("/v1/subnets", list_subnets),
        web.get("/v1/subnets/{netuid}", get_subnet_route),
        web.get("/v1/subnets/{netuid}/metagraph", get_metagraph),
        web.get("/v1/hotkeys/{address}", get_hotkey_route),
        web.get("/v1/channels", list_channels),
        web.get("/v1/channels/{id}", get_channel_route),
        web.get("/v1/services", list_services),
        web.get("/v1/services/{id}", get_service_route),
        web.get("/v1/lineage", get_lineage),
        web.get("/v1/models/{hash}", get_federated_model),
        web.get("/v1/federations/{netuid}", get_federation_route),
        web.get("/v1/governance/proposals", list_proposals),
        web.get("/v1/governance/proposals/{id}", get_proposal_route),
        web.get("/v1/governance/params", get_governance_params),
        web.get("/v1/treasury", get_treasury),
        web.get("/v1/openapi.json", openapi),
        web.get("/health", health),
        web.get("/metrics", metrics),
    ]
    app.add_routes(routes)
    return app


def _errors_middleware(node: Node) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.match_info.handler not in SERVED_DURING_BLOCKS:
                await node.wait_state_settled()
            response = await handler(request)
        except AgoraError as error:
            response = error_response(error)
        except web.HTTPRequestEntityTooLarge:
            response = error_response(
                BodyTooLarge(f"request body exceeds {node.config.max_body_bytes} bytes")
            )
        except web.HTTPNotFound:
            response = error_response(NotFound(f"no route {request.method} {request.path}"))
        except web.HTTPMethodNotAllowed as refused:
            allowed = ", ".join(sorted(refused.allowed_methods))
            response = error_response(
                MethodNotAllowed(f"{request.path} answers {allowed}, not {request.method}")
            )
            response.headers["Allow"] = allowed
        key = (
            request.match_info.route.resource.canonical
            if request.match_info.route.resource
            else "unmatched",
            response.status,
        )
        node.metrics.http_requests[key] = node.metrics.http_requests.get(key, 0) + 1
        return response

    return middleware


async def _read_json(request: web.Request) -> Any:
    limit = request.app[NODE].config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"request body exceeds {limit} bytes")
    data = await request.read()
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedRequest("request body is not valid JSON") from None
    if _contains_float(body):
        # No field of the API is a float, but orjson reads an integer beyond 64 bits as one;
        # the standard parser keeps it exact, so it is refused as out of range (1003).
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise MalformedRequest("request body is not valid JSON") from None
    return body


def _contains_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _parse_raw_or_json(item: Any, path: str) -> bytes:
    """A transaction is given either as canonical bytes (``raw``) or in JSON form."""
    if isinstance(item, dict) and set(item) == {"raw"}:
        return from_hex(item["raw"], f"{path}.raw")
    try:
        return encode_transaction(transaction_from_json(item))
    except ProtocolError as error:
        raise type(error)(f"{path}: {error.message}") from None


async def submit_transactions(request: web.Request) -> web.Response:
    """Body: ``{"transaction": T}`` or ``{"transactions": [T, ...]}`` (all or nothing)."""
    body = await _read_json(request)
    if isinstance(body, dict) and "transaction" in body and len(body) == 1:
        items = [body["transaction"]]
    elif isinstance(body, dict) and isinstance(body.get("transactions"), list) and len(body) == 1:
        items = body["transactions"]
    else:
        raise MalformedRequest('expected {"transaction": ...} or {"transactions": [...]}')
    raws = [_parse_raw_or_json(item, f"transactions[{i}]") for i, item in enumerate(items)]
    hashes = await request.app[NODE].submit(raws)
    return json_response({"hashes": [to_hex(h) for h in hashes]}, status=202)


async def get_transaction(request: web.Request) -> web.Response:
    node: Node = request.app[NODE]
    tx_hash = from_hex(request.match_info["hash"], "hash")
    stored = node.store.get_receipt(tx_hash)
    if stored is not None:
        return json_response(
            {
                "status": "included",
                "height": stored.height,
                "position": stored.position,
                "receipt": receipt_to_json(stored.receipt),
            }
        )
    if tx_hash in node.mempool or tx_hash in node.forwarded or node.store.is_pending(tx_hash):
        return json_response({"status": "pending", "hash": to_hex(tx_hash)})
    refusal = node.store.get_refusal(tx_hash)
    if refusal is not None:
        # Left out of a block: it could not pay its fee, so it changed nothing and never will.
        return json_response(
            {
                "status": "refused",
                "height": refusal.height,
                "receipt": receipt_to_json(refusal.receipt),
            }
        )
    raise NotFound(f"no transaction {to_hex(tx_hash)} in a block or waiting")


async def get_account_route(request: web.Request) -> web.Response:
    node: Node = request.app[NODE]
    address = decode_address(request.match_info["address"])
    account = get_account(node.state, address)
    return json_response(
        {
            "address": request.match_info["address"],
            "balance": account.balance,
            "nonce": account.nonce,
            "next_nonce": node.mempool.get_next_nonce(node.state, address),
            "height": node.state.head.height,
        }
    )


def _parse_height(text: str, path: str) -> int:
    try:
        return U64.from_json(int(text), path)
    except (ValueError, ProtocolError):
        raise MalformedRequest(f"{path}: expected a block height") from None


async def get_block(request: web.Request) -> web.Response:
    node: Node = request.app[NODE]
    ident = request.match_info["id"]
    if ident.startswith("0x"):
        height = node.store.get_height_of(from_hex(ident, "id"))
        if height is None:
            raise NotFound(f"no block with hash {ident}")
    else:
        height = _parse_height(ident, "id")
    block = node.store.get_block(height)
    if block is None:
        raise NotFound(f"no block {ident}; the head is {node.state.head.height}")
    return json_response(block_to_json(block, node.store.get_receipts(height)))


async def list_blocks(request: web.Request) -> web.Response:
    """``?from=H&limit=N``: consecutive blocks with raw transactions (followers catch up)."""
    node: Node = request.app[NODE]
    start = _parse_height(request.query.get("from", "0"), "from")
    limit = _parse_height(request.query.get("limit", "20"), "limit")
    if limit > MAX_BLOCKS_PER_PAGE:
        raise ParameterOutOfRange(f"limit is {limit}; at most {MAX_BLOCKS_PER_PAGE} blocks a page")
    blocks = []
    for height in range(start, start + limit):
        block = node.store.get_block(height)
        if block is None:
            break
        blocks.append(block_to_json(block, None))
    return json_response({"blocks": blocks})


async def get_head(request: web.Request) -> web.Response:
    node: Node = request.app[NODE]
    header = node.store.get_head_header()
    return json_response(header_to_json(header))


async def get_chain(request: web.Request) -> web.Response:
    node: Node = request.app[NODE]
    params = node.state.params
    return json_response(
        {
            "chain_id": node.state.chain_id,
            "height": node.state.head.height,
            "params": {name: getattr(params, name) for name in params.__dataclass_fields__},
            "faucet": node.config.faucet_seed is not None and node.config.faucet_amount > 0,
        }
    )


async def get_genesis(request: web.Request) -> web.Response:
    return json_response(request.app[NODE].store.get_genesis())


async def stream_blocks(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``block`` event per applied block, header and receipts.

    Each event's id is its block's height. A reader that reconnects with ``Last-Event-ID: H``
    (or asks ``?from=H``, the first height it wants) gets every block after it, read from
    the store, then the live ones: a block is never skipped, however slowly the reader
    reads. Without either it starts at the next block. A reader more than
    ``stream_backlog_blocks`` behind gets one ``behind`` event (code 3041, with
    ``resume_from`` and ``head``) and the stream ends: it pages the gap with
    ``GET /v1/blocks?from=H`` and reconnects from the last block it has.
    """
    node: Node = request.app[NODE]
    next_height = _parse_stream_start(request, node.state.head.height)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    # Subscribed before the headers go out: a client that has them misses no later block.
    queue = node.subscribe()
    streams = request.app[STREAMS]
    task = asyncio.current_task()
    if task is not None:
        streams.add(task)
    try:
        await response.prepare(request)
        while True:
            head = node.state.head.height
            if next_height <= head:
                if head - next_height + 1 > node.config.stream_backlog_blocks:
                    await _write_behind(response, next_height, head, node)
                    break
                # Behind the head (resumed, or live notices dropped): read from the store.
                for height in range(next_height, head + 1):
                    await _write_block_event(response, height, node)
                next_height = head + 1
                continue
            try:
                applied = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if applied.block.header.height == next_height:
                await _write_block_event(response, next_height, node, applied)
                next_height += 1
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        streams.discard(task)
        node.unsubscribe(queue)
    return response


def _parse_stream_start(request: web.Request, head: int) -> int:
    """The first height a stream sends: after ``Last-Event-ID``, else ``from``, else next."""
    start = _parse_height(request.query["from"], "from") if "from" in request.query else None
    last = request.headers.get("Last-Event-ID", "").strip()
    if last:
        return _parse_height(last, "Last-Event-ID") + 1
    return head + 1 if start is None else start


async def _write_block_event(
    response: web.StreamResponse, height: int, node: Node, applied: AppliedBlock | None = None
) -> None:
    if applied is not None:
        header, receipts = applied.block.header, applied.receipts
    else:
        block = node.store.get_block(height)
        assert block is not None, f"block {height} is below the head but not stored"
        header, receipts = block.header, node.store.get_receipts(height)
    event = {"header": header_to_json(header), "receipts": [receipt_to_json(r) for r in receipts]}
    await response.write(b"id: %d\nevent: block\ndata: " % height + orjson.dumps(event) + b"\n\n")


async def _write_behind(
    response: web.StreamResponse, resume_from: int, head: int, node: Node
) -> None:
    error = StreamTooFarBehind(
        f"the stream replays at most {node.config.stream_backlog_blocks} blocks and this "
        f"reader is {head - resume_from + 1} behind; read blocks from {resume_from} with "
        f"GET /v1/blocks?from={resume_from}, then reconnect with the last one's height as "
        "Last-Event-ID"
    )
    body = {
        "code": error.code,
        "name": type(error).__name__,
        "message": error.message,
        "resume_from": resume_from,
        "head": head,
    }
    await response.write(b"event: behind\ndata: " + orjson.dumps(body) + b"\n\n")


async def _end_streams(app: web.Application) -> None:
    """A stopping node ends its open streams; aiohttp would otherwise wait up to 60 s."""
    streams: set[asyncio.Task[Any]] = app[STREAMS]
    for task in list(streams):
        task.cancel()


def _parse_netuid(request: web.Request) -> int:
    try:
        return U16.from_json(int(request.match_info["netuid"]), "netuid")
    except (ValueError, ProtocolError):
        raise MalformedRequest("netuid: expected an integer from 0 to 65535") from None


async def list_subnets(request: web.Request) -> web.Response:
    state = request.app[NODE].state
    return json_response({"subnets": [subnet_to_json(s) for s in get_subnets(state)]})


async def get_subnet_route(request: web.Request) -> web.Response:
    state = request.app[NODE].state
    return json_response(subnet_to_json(get_subnet(state, _parse_netuid(request))))


async def get_metagraph(request: web.Request) -> web.Response:
    """``?matrices=1`` adds each uid's weights and bonds."""
    state = request.app[NODE].state
    include = request.query.get("matrices", "0") in ("1", "true")
    return json_response(metagraph_to_json(state, _parse_netuid(request), include))


async def get_hotkey_route(request: web.Request) -> web.Response:
    state = request.app[NODE].state
    hotkey = decode_address(request.match_info["address"])
    info = get_hotkey(state, hotkey)
    return json_response(
        {
            "hotkey": request.match_info["address"],
            "owner": encode_address(info.owner),
            "take": info.take_u16,
            "total_stake": info.total_stake,
            "stakers": [
                {"coldkey": encode_address(coldkey), "stake": amount}
                for coldkey, amount in get_stakers(state, hotkey)
            ],
            "subnets": [
                {"netuid": netuid, "uid": uid}
                for netuid in iterate_subnet_ids(state)
                if (uid := get_uid(state, netuid, hotkey)) is not None
            ],
        }
    )


async def list_channels(request: web.Request) -> web.Response:
    """``?payer=agr1...`` and/or ``?payee=agr1...``: their channels, closed ones included."""
    state = request.app[NODE].state
    payer, payee = request.query.get("payer"), request.query.get("payee")
    if payer is None and payee is None:
        raise MalformedRequest("give ?payer=agr1... or ?payee=agr1... (or both)")
    channels = get_channels(
        state,
        payer=None if payer is None else decode_address(payer),
        payee=None if payee is None else decode_address(payee),
    )
    return json_response({"channels": [channel_to_json(i, c) for i, c in channels]})


async def get_channel_route(request: web.Request) -> web.Response:
    state = request.app[NODE].state
    channel_id = channel_id_from_text(request.match_info["id"])
    try:
        channel = get_channel(state, channel_id)
    except ChannelNotFound as error:
        raise NotFound(error.message) from None
    return json_response(channel_to_json(channel_id, channel))


def compute_service_reputation(state: Any, service: Service) -> dict[str, int]:
    """What the ledger measured of a service: the amounts settled by claims of channels that
    pay its owner on its subnet, from how many payers, and the owner's incentive there when
    it is also a miner of the subnet (u16, 0 otherwise)."""
    channels = [
        channel
        for _, channel in get_channels(state, payee=service.owner)
        if channel.netuid == service.netuid
    ]
    uid = get_uid(state, service.netuid, service.owner)
    incentive = 0 if uid is None else get_neuron(state, service.netuid, uid).incentive_u16
    return {
        "settled": sum(channel.claimed for channel in channels),
        "channels": len(channels),
        "payers": len({channel.payer for channel in channels}),
        "incentive_u16": incentive,
    }


def _parse_query_int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return U64.from_json(int(text), name)
    except (ValueError, ProtocolError):
        raise MalformedRequest(f"{name}: expected a non-negative integer") from None


async def list_services(request: web.Request) -> web.Response:
    """Live services: ``?tag=``, ``?owner=agr1...``, ``?netuid=``, ``?max_price=`` (base
    units) with ``?unit=`` (call, 1k-tokens, second) filter them; cheapest first."""
    state = request.app[NODE].state
    owner = request.query.get("owner")
    tag, unit = request.query.get("tag"), request.query.get("unit")
    netuid, max_price = _parse_query_int(request, "netuid"), _parse_query_int(request, "max_price")
    services = [
        (service_id, service)
        for service_id, service in get_services(
            state, owner=None if owner is None else decode_address(owner)
        )
        if (tag is None or tag in service.tags)
        and (unit is None or service.price_unit == unit)
        and (netuid is None or service.netuid == netuid)
        and (max_price is None or service.price_amount <= max_price)
    ]
    services.sort(key=lambda item: (item[1].price_amount, item[0]))
    return json_response(
        {
            "services": [
                service_to_json(i, s, compute_service_reputation(state, s)) for i, s in services
            ]
        }
    )


async def get_service_route(request: web.Request) -> web.Response:
    state = request.app[NODE].state
    service_id = service_id_from_text(request.match_info["id"])
    try:
        service = get_service(state, service_id)
    except ServiceNotFound as error:
        raise NotFound(error.message) from None
    return json_response(
        service_to_json(service_id, service, compute_service_reputation(state, service))
    )


async def list_proposals(request: web.Request) -> web.Response:
    """``?status=voting|queued|...`` and ``?track=parameters|...`` filter; newest first."""
    state = request.app[NODE].state
    status, track = request.query.get("status"), request.query.get("track")
    if status is not None and status not in STATUSES:
        raise MalformedRequest(f"status: one of {', '.join(STATUSES)}")
    if track is not None and track not in TRACK_NAMES:
        raise MalformedRequest(f"track: one of {', '.join(TRACK_NAMES)}")
    proposals = [
        proposal_to_json(state, proposal, include_votes=False)
        for proposal in reversed(get_proposals(state))
        if (status is None or STATUSES[proposal.status] == status)
        and (track is None or TRACK_NAMES[proposal.track] == track)
    ]
    return json_response({"proposals": proposals, "height": state.head.height})


async def get_proposal_route(request: web.Request) -> web.Response:
    state = request.app[NODE].state
    try:
        proposal_id = U64.from_json(int(request.match_info["id"]), "id")
    except (ValueError, ProtocolError):
        raise MalformedRequest("id: expected a proposal number") from None
    try:
        proposal = get_proposal(state, proposal_id)
    except ProposalNotFound as error:
        raise NotFound(error.message) from None
    return json_response(proposal_to_json(state, proposal, include_votes=True))


async def get_governance_params(request: web.Request) -> web.Response:
    return json_response(governance_params_to_json(request.app[NODE].state))


async def get_treasury(request: web.Request) -> web.Response:
    return json_response(treasury_to_json(request.app[NODE].state))


async def get_lineage(request: web.Request) -> web.Response:
    return json_response(lineage_to_json(request.app[NODE].state))


async def get_federated_model(request: web.Request) -> web.Response:
    """A federated subnet's current model, served by its content address."""
    model_hash = from_hex(request.match_info["hash"], "hash")
    answer = federated_model_to_json(request.app[NODE].state, model_hash)
    if answer is None:
        raise NotFound(f"no federated subnet's current model is {to_hex(model_hash)}")
    return json_response(answer)


async def get_federation_route(request: web.Request) -> web.Response:
    """A federated subnet's current round, with its commitments and revealed updates."""
    netuid = _parse_netuid(request)
    answer = federation_to_json(request.app[NODE].state, netuid)
    if answer is None:
        raise NotFound(f"subnet {netuid} has no federation")
    return json_response(answer)


async def faucet(request: web.Request) -> web.Response:
    body = await _read_json(request)
    if not isinstance(body, dict) or "address" not in body:
        raise MalformedRequest('expected {"address": "agr1...", "amount": N (optional)}')
    amount = body.get("amount")
    if amount is not None:
        amount = U64.from_json(amount, "amount")
    tx_hash = await request.app[NODE].grant_from_faucet(decode_address(body["address"]), amount)
    return json_response({"hash": to_hex(tx_hash)}, status=202)


async def openapi(request: web.Request) -> web.Response:
    return json_response(OPENAPI)


async def health(request: web.Request) -> web.Response:
    node: Node = request.app[NODE]
    ok = node.halted is None
    body = {"status": "ok" if ok else "halted", "height": node.state.head.height}
    if not ok:
        body["error"] = node.halted.message if node.halted else ""
    return json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    node: Node = request.app[NODE]
    m = node.metrics
    lines = [
        "# HELP agora_head_height Height of the last applied block.",
        "# TYPE agora_head_height gauge",
        f"agora_head_height {node.state.head.height}",
        "# HELP agora_blocks_applied_total Blocks applied since the node started.",
        "# TYPE agora_blocks_applied_total counter",
        f"agora_blocks_applied_total {m.blocks_applied}",
        "# HELP agora_transactions_total Transactions applied, by outcome.",
        "# TYPE agora_transactions_total counter",
        f'agora_transactions_total{{outcome="success"}} '
        f"{m.transactions_applied - m.transactions_failed}",
        f'agora_transactions_total{{outcome="failed"}} {m.transactions_failed}',
        "# HELP agora_pending_transactions Transactions accepted and not yet in a block.",
        "# TYPE agora_pending_transactions gauge",
        f"agora_pending_transactions {len(node.mempool)}",
        "# HELP agora_block_apply_seconds Time spent executing and storing blocks.",
        "# TYPE agora_block_apply_seconds summary",
        f"agora_block_apply_seconds_sum {m.block_seconds_total:.6f}",
        f"agora_block_apply_seconds_count {m.blocks_applied}",
        "# HELP agora_http_requests_total HTTP requests served, by route and status.",
        "# TYPE agora_http_requests_total counter",
    ]
    for (route, status), count in sorted(m.http_requests.items()):
        lines.append(f'agora_http_requests_total{{route="{route}",status="{status}"}} {count}')
    lines += [
        "# HELP agora_up_seconds Seconds since the node started.",
        "# TYPE agora_up_seconds gauge",
        f"agora_up_seconds {time.monotonic() - m.started_monotonic:.0f}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


# Routes that never walk the in-memory state (they read the store, the mempool, a counter or
# one account), served while the builder thread changes the state. Every other route, routes
# a command adds included, waits for the block in progress (see ``agora/node/worker.py``).
SERVED_DURING_BLOCKS: frozenset[Handler] = frozenset(
    {
        submit_transactions,
        get_transaction,
        list_blocks,
        get_block,
        get_head,
        get_genesis,
        stream_blocks,
        faucet,
        openapi,
        health,
        metrics,
    }
)

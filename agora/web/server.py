"""The explorer's pages and their JSON twins, added to a node's HTTP app by ``install``.

``agora node run`` hands ``install`` to ``node.runner.run_node`` as an extension: the node
never imports this package. ``install`` opens the index beside the node's store
(``explorer.db``), starts the task that indexes each new block, and adds the routes: HTML pages
at ``/``, their JSON under ``/v1/explorer`` (pages whose data an existing ``/v1`` route
already answers link to that route instead), and the page's own script and style under
``/static``. Nothing is loaded from another host.

A page answers bad input (an unknown hash, a uid out of range, a height in the future, a
malformed address) with a short HTML page carrying the error's code and an HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from agora.errors import AgoraError, encode_error
from agora.node import api
from agora.node.errors import NodeError
from agora.node.node import Node
from agora.node.wire import block_to_json, to_hex, transaction_to_json
from agora.protocol.accounts import get_account
from agora.protocol.address import Address, decode_address, encode_address
from agora.protocol.channels import get_channels, get_fee_pool
from agora.protocol.consensus.registration import compute_immortal_owner_uids, is_immune
from agora.protocol.emission import compute_block_emission
from agora.protocol.errors import ProtocolError
from agora.protocol.staking import get_hotkey, get_stakers, get_total_stake
from agora.protocol.subnets import (
    IMMUNE_OWNER_UIDS_LIMIT,
    get_neurons,
    get_owner_uid,
    get_subnet,
    get_subnets,
)
from agora.protocol.transactions import decode_transaction
from agora.web.errors import BadParameter, ExplorerError, PageNotFound
from agora.web.html import (
    Html,
    bar_chart,
    definitions,
    e,
    join,
    json_table,
    json_value,
    line_chart,
    lineage_graph,
    link,
    page,
    short,
    table,
    tag,
)
from agora.web.index import Index, IndexedTransaction, NodeBlocks
from agora.web.openapi import OPENAPI
from agora.web.why import explain_epoch, explain_uid

log = logging.getLogger("agora.web")
STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"
INDEX_FILE = "explorer.db"
INDEX_BATCH = 200
INDEX_POLL_SECONDS = 0.2
INDEX_IDLE_FACTOR = 3  # after each block, idle 3 times as long as it took
CHANNEL_KINDS = ("open_channel", "top_up_channel", "claim_channel", "close_channel")
MAX_UINT64 = 2**63 - 1  # SQLite integers are signed 64-bit


@dataclass(slots=True, kw_only=True)
class Explorer:
    node: Node
    index: Index
    blocks: NodeBlocks
    task: asyncio.Task[None] | None = None
    failure: str = ""
    stopping: bool = False
    # Held by the indexing thread while it works: closing waits for it (a task's cancellation
    # does not stop a thread, and its connections must not close under it).
    busy: threading.Lock = field(default_factory=threading.Lock)


EXPLORER = web.AppKey("explorer", Explorer)


def install(app: web.Application, node: Node) -> None:
    """Add the explorer to a node's app: its index, its indexing task, its routes."""
    genesis = node.store.get_genesis()
    if genesis is None:
        raise ExplorerError("the node's store holds no genesis")
    explorer = Explorer(
        node=node,
        index=Index(node.config.data_dir / INDEX_FILE, genesis),
        blocks=NodeBlocks(node.store.path),
    )
    app[EXPLORER] = explorer
    app.on_startup.append(_start_indexing)
    app.on_cleanup.append(_stop_indexing)
    app.add_routes(ROUTES)


async def _start_indexing(app: web.Application) -> None:
    explorer = app[EXPLORER]
    explorer.task = asyncio.create_task(_follow(explorer), name="explorer-index")


async def _stop_indexing(app: web.Application) -> None:
    explorer = app[EXPLORER]
    explorer.stopping = True
    if explorer.task is not None:
        explorer.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await explorer.task
    await asyncio.to_thread(explorer.busy.acquire)
    explorer.blocks.close()
    explorer.index.close()


def _index_next(explorer: Explorer) -> int:
    with explorer.busy:
        if explorer.stopping:
            return 0
        blocks = explorer.blocks.read(explorer.index.height + 1, INDEX_BATCH)
        for block in blocks:
            if explorer.stopping:
                break
            started = time.perf_counter()
            explorer.index.add_block(block)
            # The node comes first: the index takes at most a share of one core.
            time.sleep((time.perf_counter() - started) * INDEX_IDLE_FACTOR)
        return len(blocks)


async def _follow(explorer: Explorer) -> None:
    """Index every block the node has, then each new one, in a thread of its own."""
    while True:
        try:
            added = await asyncio.to_thread(_index_next, explorer)
        except AgoraError as error:
            explorer.failure = f"error[{error.code}] {error.message}"
            log.error("explorer index stopped: %s", explorer.failure)
            return
        if not added:
            await asyncio.sleep(INDEX_POLL_SECONDS)


# --- answering -----------------------------------------------------------------------------

PageHandler = Callable[[web.Request], Awaitable[tuple[str, Html, str | None]]]
JsonHandler = Callable[[web.Request], Awaitable[Any]]


def _status_of(error: AgoraError) -> int:
    if isinstance(error, ExplorerError | NodeError):
        return error.http_status
    if isinstance(error, api.MISSING_RESOURCE_ERRORS):
        return 404
    return 400


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:"},
    )


def html_page(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        explorer = request.app[EXPLORER]
        try:
            title, body, twin = await handler(request)
        except AgoraError as error:
            status = _status_of(error)
            body = definitions(
                [("code", error.code), ("error", type(error).__name__), ("message", error.message)]
            )
            text = page(f"{status}: {type(error).__name__}", body, status_line=_status(explorer))
            return _html(text, status)
        return _html(page(title, body, twin=twin, status_line=_status(explorer)))

    return answer


def json_twin(handler: JsonHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        try:
            data = await handler(request)
        except AgoraError as error:
            return api.json_response(encode_error(error), _status_of(error))
        return api.json_response(data)

    return answer


def _status(explorer: Explorer) -> str:
    indexed = explorer.index.head()
    text = f" · indexed to block {indexed} of {explorer.node.state.head.height}"
    return text + (f" · index stopped: {explorer.failure}" if explorer.failure else "")


async def _reuse(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], request: web.Request
) -> Any:
    """The JSON an existing ``/v1`` route answers to this request (same match names)."""
    response = await handler(request)
    assert isinstance(response, web.Response) and response.body is not None
    return orjson.loads(response.body)  # type: ignore[arg-type]


# --- parsing -------------------------------------------------------------------------------


def parse_int(text: str, what: str, maximum: int = MAX_UINT64) -> int:
    if not re.fullmatch(r"[0-9]{1,20}", text) or int(text) > maximum:
        raise BadParameter(
            f"{what}: expected a whole number from 0 to {maximum}, got {text[:80]!r}"
        )
    return int(text)


def parse_address(text: str) -> Address:
    try:
        return decode_address(text)
    except ProtocolError as error:
        raise BadParameter(f"{text[:80]!r} is not an address: {error.message}") from None


def parse_hash(text: str, what: str) -> bytes:
    if not re.fullmatch(r"0x[0-9a-fA-F]{64}", text):
        raise BadParameter(f"{what}: expected 0x and 64 hex digits, got {text[:80]!r}")
    return bytes.fromhex(text[2:])


def _netuid(request: web.Request) -> int:
    netuid = parse_int(request.match_info["netuid"], "netuid", 65_535)
    get_subnet(request.app[EXPLORER].node.state, netuid)  # SubnetNotFound: 404
    return netuid


def _query_int(request: web.Request, name: str, default: int, maximum: int = MAX_UINT64) -> int:
    text = request.query.get(name)
    return default if text is None else parse_int(text, name, maximum)


# --- overview, blocks, transactions --------------------------------------------------------


def overview_data(explorer: Explorer) -> dict[str, Any]:
    node, index = explorer.node, explorer.index
    state = node.state
    head = node.store.get_head_header()
    recent = index.query(
        "SELECT height, timestamp, transactions, supply, treasury FROM blocks "
        "ORDER BY height DESC LIMIT 200"
    )
    window = recent[:61]
    span = window[0][1] - window[-1][1] if len(window) > 1 else 0
    per_minute_milli = (len(window) - 1) * 60_000 // span if span > 0 else 0
    channels = [channel for _, channel in get_channels(state)]
    ledger = state.get_ledger
    params = state.params
    return {
        "height": head.height,
        "indexed_height": index.head(),
        "blocks_per_minute_milli": per_minute_milli,
        "supply": ledger("genesis_supply") + ledger("minted") - ledger("burned"),
        "minted": ledger("minted"),
        "treasury": ledger("treasury"),
        "block_emission": compute_block_emission(
            params.initial_block_emission, params.halving_interval_blocks, head.height + 1
        ),
        "subnets": len(get_subnets(state)),
        "gateway_volume": sum(channel.claimed for channel in channels),
        "channels": len(channels),
        "recent_blocks": [
            {"height": h, "timestamp": t, "transactions": n} for h, t, n, _, _ in recent[:20]
        ],
        "supply_series": [[h, s] for h, _, _, s, _ in reversed(recent)],
        "treasury_series": [[h, t] for h, _, _, _, t in reversed(recent)],
    }


async def overview_json(request: web.Request) -> Any:
    return overview_data(request.app[EXPLORER])


async def overview_page(request: web.Request) -> tuple[str, Html, str | None]:
    data = overview_data(request.app[EXPLORER])
    per_minute = data["blocks_per_minute_milli"]
    cards = [
        ("head block", tag("span", data["height"], id="head-height")),
        ("blocks per minute", f"{per_minute // 1000}.{per_minute % 1000:03d}"),
        ("supply", data["supply"]),
        ("treasury", data["treasury"]),
        ("emission per block", data["block_emission"]),
        ("gateway volume (claimed)", data["gateway_volume"]),
        ("subnets", data["subnets"]),
    ]
    body = join(
        [
            tag(
                "div",
                join(
                    tag("div", Html(e(label) + tag("b", value)), class_="card")
                    for label, value in cards
                ),
                class_="cards",
            ),
            tag("h2", "Supply and treasury"),
            line_chart(
                {
                    "supply": [tuple(p) for p in data["supply_series"]],
                    "treasury": [tuple(p) for p in data["treasury_series"]],
                },
                id_="supply-chart",
            ),
            tag("h2", "Live blocks"),
            table(
                ["height", "transactions", "timestamp"],
                [
                    [link(f"/blocks/{b['height']}", b["height"]), b["transactions"], b["timestamp"]]
                    for b in data["recent_blocks"]
                ],
                id_="live",
                numeric=[True, True, True],
            ),
        ]
    )
    return "Overview", body, "/v1/explorer/overview"


def _block_rows(index: Index, before: int, limit: int) -> list[dict[str, Any]]:
    rows = index.query(
        "SELECT height, hash, timestamp, transactions, failed FROM blocks WHERE height < ? "
        "ORDER BY height DESC LIMIT ?",
        (before, limit),
    )
    return [
        {"height": h, "hash": to_hex(bytes(x)), "timestamp": t, "transactions": n, "failed": f}
        for h, x, t, n, f in rows
    ]


async def blocks_json(request: web.Request) -> Any:
    explorer = request.app[EXPLORER]
    before = _query_int(request, "before", MAX_UINT64)
    return {"blocks": _block_rows(explorer.index, before, _query_int(request, "limit", 50, 500))}


async def blocks_page(request: web.Request) -> tuple[str, Html, str | None]:
    explorer = request.app[EXPLORER]
    before = _query_int(request, "before", MAX_UINT64)
    rows = _block_rows(explorer.index, before, 50)
    body = table(
        ["height", "hash", "timestamp", "transactions", "failed"],
        [
            [
                link(f"/blocks/{r['height']}", r["height"]),
                link(f"/blocks/{r['hash']}", short(r["hash"])),
                r["timestamp"],
                r["transactions"],
                r["failed"],
            ]
            for r in rows
        ],
        numeric=[True, False, True, True, True],
    )
    if rows and rows[-1]["height"] > 0:
        body = Html(body + link(f"/blocks?before={rows[-1]['height']}", "older blocks"))
    return "Blocks", body, "/v1/explorer/blocks"


def _find_height(explorer: Explorer, ident: str) -> int:
    node = explorer.node
    if ident.startswith("0x"):
        height = node.store.get_height_of(parse_hash(ident, "block hash"))
        if height is None:
            raise PageNotFound(f"no block with hash {ident}")
        return height
    height = parse_int(ident, "height")
    if height > node.state.head.height:
        raise PageNotFound(f"block {height} is in the future: the head is {node.state.head.height}")
    return height


def _transactions_table(transactions: list[IndexedTransaction]) -> Html:
    return table(
        ["block", "hash", "kind", "sender", "result", "fee"],
        [
            [
                link(f"/blocks/{t.height}", t.height),
                link(f"/transactions/{to_hex(t.hash)}", short(to_hex(t.hash))),
                t.kind,
                link(f"/accounts/{t.sender}", short(t.sender)),
                tag("span", "ok", class_="ok")
                if t.success
                else tag("span", f"error {t.code}: {t.message}", class_="bad"),
                t.fee,
            ]
            for t in transactions
        ],
        numeric=[True, False, False, False, False, True],
    )


async def block_page(request: web.Request) -> tuple[str, Html, str | None]:
    explorer = request.app[EXPLORER]
    height = _find_height(explorer, request.match_info["id"])
    block = explorer.node.store.get_block(height)
    if block is None:
        raise PageNotFound(f"no block {height}")
    data = block_to_json(block, explorer.node.store.get_receipts(height))
    header = data["header"]
    items: list[tuple[str, Any]] = [(key, value) for key, value in header.items()]
    items[2] = (
        ("parent_hash", link(f"/blocks/{header['parent_hash']}", header["parent_hash"]))
        if height
        else items[2]
    )
    nav = join(
        [
            link(f"/blocks/{height - 1}", "previous") if height else "",
            " ",
            link(f"/blocks/{height + 1}", "next")
            if height < explorer.node.state.head.height
            else "",
        ]
    )
    body = join(
        [
            definitions(items),
            nav,
            tag("h2", "Transactions"),
            _transactions_table(explorer.index.block_transactions(height)),
        ]
    )
    return f"Block {height}", body, f"/v1/blocks/{height}"


async def transactions_json(request: web.Request) -> Any:
    explorer = request.app[EXPLORER]
    kind = request.query.get("kind")
    found = explorer.index.recent_transactions(
        _query_int(request, "limit", 100, 1000), (kind,) if kind else ()
    )
    return {"transactions": [_indexed_to_json(t) for t in found]}


def _indexed_to_json(t: IndexedTransaction) -> dict[str, Any]:
    return {
        "height": t.height,
        "position": t.position,
        "hash": to_hex(t.hash),
        "kind": t.kind,
        "sender": t.sender,
        "success": t.success,
        "code": t.code,
        "message": t.message,
        "fee": t.fee,
    }


async def transactions_page(request: web.Request) -> tuple[str, Html, str | None]:
    explorer = request.app[EXPLORER]
    kind = request.query.get("kind")
    found = explorer.index.recent_transactions(100, (kind,) if kind else ())
    title = f"Transactions: {kind}" if kind else "Transactions"
    twin = "/v1/explorer/transactions" + (f"?kind={kind}" if kind else "")
    return title, _transactions_table(found), twin


async def transaction_page(request: web.Request) -> tuple[str, Html, str | None]:
    explorer = request.app[EXPLORER]
    text = request.match_info["hash"]
    found = explorer.index.transaction(parse_hash(text, "transaction hash"))
    if found is None:
        raise PageNotFound(f"no indexed transaction {text}")
    block = explorer.node.store.get_block(found.height)
    assert block is not None
    decoded = transaction_to_json(decode_transaction(block.transactions[found.position]))
    receipt = [
        ("block", link(f"/blocks/{found.height}", found.height)),
        ("position", found.position),
        ("result", "success" if found.success else "failed"),
        ("error code", found.code),
        ("message", found.message),
        ("fee paid", found.fee),
    ]
    body = join(
        [tag("h2", "Receipt"), definitions(receipt), tag("h2", "Decoded"), json_value(decoded)]
    )
    return f"Transaction {short(text)}", body, f"/v1/transactions/{text}"


# --- accounts ------------------------------------------------------------------------------


def account_data(explorer: Explorer, text: str) -> dict[str, Any]:
    address = parse_address(text)
    state = explorer.node.state
    account = get_account(state, address)
    delegations = [
        {"hotkey": encode_address(hotkey), "amount": amount}
        for (hotkey, coldkey), amount in sorted(state.tables["stakes"].items())
        if coldkey == address and amount
    ]
    registrations = [
        {
            "netuid": subnet.netuid,
            "uid": uid,
            "role": "hotkey" if neuron.hotkey == address else "coldkey",
            "hotkey": encode_address(neuron.hotkey),
        }
        for subnet in get_subnets(state)
        for uid, neuron in enumerate(get_neurons(state, subnet.netuid))
        if address in (neuron.hotkey, neuron.coldkey)
    ]
    hotkey = state.tables["hotkeys"].get(address, None)
    channels = [
        {
            "id": to_hex(i),
            "payer": encode_address(c.payer),
            "payee": encode_address(c.payee),
            "deposit": c.deposit,
            "claimed": c.claimed,
            "closed": c.closed,
        }
        for i, c in get_channels(state)
        if address in (c.payer, c.payee)
    ]
    earned = explorer.index.query(
        "SELECT COALESCE(SUM(emission), 0) FROM neuron_epochs WHERE coldkey = ? OR hotkey = ?",
        (text, text),
    )[0][0]
    return {
        "address": text,
        "balance": account.balance,
        "nonce": account.nonce,
        "stake_delegated": sum(d["amount"] for d in delegations),
        "delegations": delegations,
        "hotkey": None
        if hotkey is None
        else {
            "owner": encode_address(hotkey.owner),
            "take_u16": hotkey.take_u16,
            "total_stake": hotkey.total_stake,
            "stakers": [
                {"coldkey": encode_address(c), "amount": a} for c, a in get_stakers(state, address)
            ],
        },
        "registrations": registrations,
        "channels": channels,
        "epoch_emission_earned": earned,
        "history": [_indexed_to_json(t) for t in explorer.index.account_history(text, 100)],
    }


async def account_json(request: web.Request) -> Any:
    return account_data(request.app[EXPLORER], request.match_info["address"])


async def account_page(request: web.Request) -> tuple[str, Html, str | None]:
    explorer = request.app[EXPLORER]
    text = request.match_info["address"]
    data = account_data(explorer, text)
    summary = definitions(
        [
            ("balance", data["balance"]),
            ("nonce", data["nonce"]),
            ("stake delegated", data["stake_delegated"]),
            ("emission earned at epochs (as hotkey or coldkey)", data["epoch_emission_earned"]),
        ]
    )
    regs = table(
        ["subnet", "uid", "role", "hotkey"],
        [
            [
                link(f"/subnets/{r['netuid']}", r["netuid"]),
                link(f"/subnets/{r['netuid']}/uids/{r['uid']}", r["uid"]),
                r["role"],
                link(f"/accounts/{r['hotkey']}", short(r["hotkey"])),
            ]
            for r in data["registrations"]
        ],
        numeric=[True, True, False, False],
    )
    history = explorer.index.account_history(text, 100)
    parts = [
        summary,
        tag("h2", "Registrations"),
        regs,
        tag("h2", "Delegations"),
        json_table(data["delegations"]),
    ]
    if data["hotkey"] is not None:
        parts += [tag("h2", "As a hotkey"), json_value(data["hotkey"])]
    parts += [
        tag("h2", "Channels"),
        json_table(data["channels"]),
        tag("h2", "History"),
        _transactions_table(history),
    ]
    return f"Account {short(text)}", join(parts), f"/v1/explorer/accounts/{text}"


# --- subnets, neurons, validators, why -----------------------------------------------------


def metagraph_data(explorer: Explorer, netuid: int) -> dict[str, Any]:
    state = explorer.node.state
    subnet = get_subnet(state, netuid)
    neurons = get_neurons(state, netuid)
    block = state.head.height
    h = subnet.hyperparameters
    owner_coldkey_uids = [
        (uid, n.registered_at) for uid, n in enumerate(neurons) if n.coldkey == subnet.owner
    ]
    immortal = set(
        compute_immortal_owner_uids(
            get_owner_uid(state, subnet), owner_coldkey_uids, IMMUNE_OWNER_UIDS_LIMIT
        )
    )
    free: list[tuple[int, int, int]] = []
    immune: list[tuple[int, int, int]] = []
    for uid, n in enumerate(neurons):
        if uid in immortal:
            continue
        key = (n.emission, n.registered_at, uid)
        (immune if is_immune(n.registered_at, block, h.immunity_period) else free).append(key)
    order = (
        sorted(free) + sorted(immune)
        if len(free) > h.min_non_immune_uids
        else sorted(immune) + sorted(free)
    )
    rank = {uid: position + 1 for position, (_, _, uid) in enumerate(order)}
    rows = []
    for uid, n in enumerate(neurons):
        rows.append(
            {
                "uid": uid,
                "hotkey": encode_address(n.hotkey),
                "coldkey": encode_address(n.coldkey),
                "stake": get_total_stake(state, n.hotkey),
                "trust": n.validator_trust_u16,
                "consensus": n.consensus_u16,
                "incentive": n.incentive_u16,
                "dividends": n.dividends_u16,
                "emission": n.emission,
                "validator_permit": n.validator_permit,
                "last_update": n.last_update,
                "active": n.active,
                "endpoint": n.endpoint,
                "pruning_rank": rank.get(uid),
                "immunity_left": max(n.registered_at + h.immunity_period - block, 0),
            }
        )
    return {
        "netuid": netuid,
        "block": block,
        "owner": encode_address(subnet.owner),
        "task_kind": subnet.task_kind,
        "task_config": subnet.task_config,
        "tempo": h.tempo,
        "epoch_index": subnet.epoch_index,
        "pending_emission": subnet.pending_emission,
        "fee_pool": get_fee_pool(state, netuid),
        "fee_revenue_claimed": sum(c.claimed for _, c in get_channels(state) if c.netuid == netuid),
        "neurons": rows,
        "epochs": [
            {"epoch": ep, "height": ht, "emission": em, "n": n}
            for ep, ht, em, n in explorer.index.epochs(netuid, 30)
        ],
    }


async def subnet_json(request: web.Request) -> Any:
    return metagraph_data(request.app[EXPLORER], _netuid(request))


async def subnets_page(request: web.Request) -> tuple[str, Html, str | None]:
    state = request.app[EXPLORER].node.state
    rows = [
        [
            link(f"/subnets/{s.netuid}", s.netuid),
            s.task_kind,
            s.n,
            s.hyperparameters.tempo,
            s.epoch_index,
            s.pending_emission,
            s.emission_share,
            link(f"/accounts/{encode_address(s.owner)}", short(encode_address(s.owner))),
        ]
        for s in get_subnets(state)
    ]
    body = table(
        ["netuid", "task", "uids", "tempo", "epochs", "pending emission", "share", "owner"],
        rows,
        numeric=[True, False, True, True, True, True, True, False],
    )
    return "Subnets", body, "/v1/subnets"


async def subnet_page(request: web.Request) -> tuple[str, Html, str | None]:
    explorer = request.app[EXPLORER]
    netuid = _netuid(request)
    data = metagraph_data(explorer, netuid)
    columns = [
        "uid",
        "hotkey",
        "coldkey",
        "stake",
        "trust",
        "consensus",
        "incentive",
        "dividends",
        "emission",
        "validator_permit",
        "last_update",
        "active",
        "endpoint",
        "pruning_rank",
        "immunity_left",
    ]
    numeric = [
        c
        in (
            "uid",
            "stake",
            "trust",
            "consensus",
            "incentive",
            "dividends",
            "emission",
            "last_update",
            "pruning_rank",
            "immunity_left",
        )
        for c in columns
    ]
    rows = []
    for n in data["neurons"]:
        row: list[Any] = [n[c] for c in columns]
        row[0] = link(f"/subnets/{netuid}/uids/{n['uid']}", n["uid"])
        row[1] = link(f"/accounts/{n['hotkey']}", short(n["hotkey"]))
        row[2] = link(f"/accounts/{n['coldkey']}", short(n["coldkey"]))
        rows.append(row)
    summary = definitions(
        [
            ("task", data["task_kind"]),
            ("task config", data["task_config"]),
            ("tempo", data["tempo"]),
            ("epochs run", data["epoch_index"]),
            ("pending emission", data["pending_emission"]),
            ("channel fee pool (to validators next epoch)", data["fee_pool"]),
            ("fee revenue claimed through channels", data["fee_revenue_claimed"]),
            ("owner", link(f"/accounts/{data['owner']}", data["owner"])),
        ]
    )
    epochs = table(
        ["epoch", "block", "emission", "uids"],
        [
            [ep["epoch"], link(f"/blocks/{ep['height']}", ep["height"]), ep["emission"], ep["n"]]
            for ep in data["epochs"]
        ],
        numeric=[True, True, True, True],
    )
    body = join(
        [
            summary,
            link(f"/subnets/{netuid}/validators", "validators"),
            tag("h2", "Metagraph"),
            tag(
                "p",
                "pruning_rank 1 is the uid a new registration would replace; empty: never (owner).",
                class_="muted",
            ),
            table(columns, rows, id_="metagraph", numeric=numeric),
            tag("h2", "Emission by uid at the last epoch"),
            bar_chart([(f"uid {n['uid']}", n["emission"]) for n in data["neurons"]]),
            tag("h2", "Recent epochs"),
            epochs,
        ]
    )
    return f"Subnet {netuid}", body, f"/v1/explorer/subnets/{netuid}"


def validators_data(explorer: Explorer, netuid: int) -> dict[str, Any]:
    state = explorer.node.state
    neurons = get_neurons(state, netuid)
    permitted = [(uid, n) for uid, n in enumerate(neurons) if n.validator_permit]
    total_stake = sum(get_total_stake(state, n.hotkey) for _, n in permitted)
    total_dividends = sum(n.dividends_u16 for _, n in permitted)
    validators = []
    for uid, n in permitted:
        hotkey = get_hotkey(state, n.hotkey)
        stake = get_total_stake(state, n.hotkey)
        validators.append(
            {
                "uid": uid,
                "hotkey": encode_address(n.hotkey),
                "stake": stake,
                "take_u16": hotkey.take_u16,
                "delegators": len(get_stakers(state, n.hotkey)),
                "dividends_u16": n.dividends_u16,
                "stake_share_u16": stake * 65_535 // total_stake if total_stake else 0,
                "dividend_share_u16": n.dividends_u16 * 65_535 // total_dividends
                if total_dividends
                else 0,
            }
        )
    return {"netuid": netuid, "block": state.head.height, "validators": validators}


async def validators_json(request: web.Request) -> Any:
    return validators_data(request.app[EXPLORER], _netuid(request))


async def validators_page(request: web.Request) -> tuple[str, Html, str | None]:
    netuid = _netuid(request)
    data = validators_data(request.app[EXPLORER], netuid)
    body = join(
        [
            json_table(data["validators"]),
            tag("h2", "Dividend share against stake share (u16)"),
            bar_chart(
                [(f"uid {v['uid']} stake", v["stake_share_u16"]) for v in data["validators"]]
                + [
                    (f"uid {v['uid']} dividends", v["dividend_share_u16"])
                    for v in data["validators"]
                ]
            ),
        ]
    )
    return f"Subnet {netuid} validators", body, f"/v1/explorer/subnets/{netuid}/validators"


def _uid(request: web.Request, netuid: int) -> int:
    uid = parse_int(request.match_info["uid"], "uid", 65_535)
    n = get_subnet(request.app[EXPLORER].node.state, netuid).n
    if uid >= n:
        raise PageNotFound(f"uid {uid} is out of range: subnet {netuid} has {n} uids")
    return uid


def neuron_data(explorer: Explorer, netuid: int, uid: int) -> dict[str, Any]:
    current = metagraph_data(explorer, netuid)["neurons"][uid]
    return {
        "netuid": netuid,
        "uid": uid,
        "current": current,
        "series": explorer.index.neuron_series(netuid, uid),
    }


async def neuron_json(request: web.Request) -> Any:
    netuid = _netuid(request)
    return neuron_data(request.app[EXPLORER], netuid, _uid(request, netuid))


async def neuron_page(request: web.Request) -> tuple[str, Html, str | None]:
    netuid = _netuid(request)
    uid = _uid(request, netuid)
    data = neuron_data(request.app[EXPLORER], netuid, uid)
    series = data["series"]
    hotkey = data["current"]["hotkey"]
    mine = [s for s in series if s["hotkey"] == hotkey]

    def points(name: str) -> list[tuple[int, int]]:
        return [(s["epoch"], s[name]) for s in mine]

    epochs = table(
        [
            "epoch",
            "block",
            "stake",
            "incentive",
            "dividends",
            "consensus",
            "trust",
            "emission",
            "why",
        ],
        [
            [
                s["epoch"],
                link(f"/blocks/{s['height']}", s["height"]),
                s["stake"],
                s["incentive"],
                s["dividends"],
                s["consensus"],
                s["validator_trust"],
                s["emission"],
                link(f"/subnets/{netuid}/epochs/{s['epoch']}/uids/{uid}", "why this reward"),
            ]
            for s in reversed(mine)
        ],
        numeric=[True, True, True, True, True, True, True, True, False],
    )
    body = join(
        [
            json_value(data["current"]),
            tag("h2", "Incentive, dividends, consensus, trust (u16) by epoch"),
            line_chart(
                {
                    "incentive": points("incentive"),
                    "dividends": points("dividends"),
                    "consensus": points("consensus"),
                    "trust": points("validator_trust"),
                },
                id_="scores-chart",
            ),
            tag("h2", "Emission by epoch"),
            line_chart({"emission": points("emission")}, id_="emission-chart"),
            tag("h2", "Stake by epoch"),
            line_chart({"stake": points("stake")}, id_="stake-chart"),
            tag("h2", "Epochs (this hotkey at this uid)"),
            epochs,
        ]
    )
    return f"Subnet {netuid} uid {uid}", body, f"/v1/explorer/subnets/{netuid}/uids/{uid}"


def why_data(request: web.Request) -> dict[str, Any]:
    explorer = request.app[EXPLORER]
    netuid = parse_int(request.match_info["netuid"], "netuid", 65_535)
    epoch = parse_int(request.match_info["epoch"], "epoch")
    uid = parse_int(request.match_info["uid"], "uid", 65_535)
    return explain_uid(explain_epoch(explorer.index, netuid, epoch), uid)


async def why_json(request: web.Request) -> Any:
    return why_data(request)


async def why_page(request: web.Request) -> tuple[str, Html, str | None]:
    data = why_data(request)
    netuid, epoch, uid = data["netuid"], data["epoch"], data["uid"]
    mine, ledger = data["recomputed"], data["ledger"] or {}
    verdict = (
        tag(
            "p",
            "Recomputed by the protocol's reference Yuma from the epoch's inputs: "
            "equal to what the ledger paid, bit for bit.",
            class_="ok",
            id="verdict",
        )
        if data["matches"]
        else tag(
            "p", "MISMATCH between the recomputation and the ledger", class_="bad", id="verdict"
        )
    )
    names = (
        "stake_u16",
        "consensus_u16",
        "incentive_u16",
        "dividends_u16",
        "validator_trust_u16",
        "emission",
        "validator_permit",
        "active",
    )
    outputs = table(
        ["output", "recomputed", "ledger", "equal"],
        [[n, mine[n], ledger.get(n), mine[n] == ledger.get(n)] for n in names],
        id_="outputs",
    )
    weights = table(
        [
            "validator uid",
            "validator stake",
            "permit",
            "weight (u16, stored)",
            "normalized (u16)",
            "clipped at consensus (u16)",
            "bond to this uid (u16)",
        ],
        [
            [
                link(f"/subnets/{netuid}/uids/{w['validator']}", w["validator"]),
                w["stake"],
                w["permit"],
                w["weight_u16"],
                w["normalized_u16"],
                w["clipped_u16"],
                w["bond_u16"],
            ]
            for w in data["weights_received"]
        ],
        id_="weights",
        numeric=[True, True, False, True, True, True, True],
    )
    body = join(
        [
            verdict,
            definitions(
                [
                    ("block", link(f"/blocks/{data['height']}", data["height"])),
                    ("emission shared by the neurons", data["emission_to_neurons"]),
                    ("this uid's stake at the epoch", data["stake"]),
                    ("paid as miner (incentive)", mine["miner_emission"]),
                    ("paid as validator (dividends)", mine["validator_emission"]),
                    ("neuron", link(f"/subnets/{netuid}/uids/{uid}", f"subnet {netuid} uid {uid}")),
                ]
            ),
            tag("h2", "Weights this uid received"),
            weights,
            tag("h2", "Outputs"),
            outputs,
            tag("h2", "Bonds this uid holds after the epoch"),
            tag("code", orjson.dumps(mine["bonds"]).decode()),
        ]
    )
    return (
        f"Why subnet {netuid} uid {uid} earned {mine['emission']} at epoch {epoch}",
        body,
        f"/v1/explorer/subnets/{netuid}/epochs/{epoch}/uids/{uid}",
    )


# --- channels, governance, treasury, services, lineage --------------------------------------


async def channels_json(request: web.Request) -> Any:
    state = request.app[EXPLORER].node.state
    channels = [
        {
            "id": to_hex(i),
            "payer": encode_address(c.payer),
            "payee": encode_address(c.payee),
            "netuid": c.netuid,
            "deposit": c.deposit,
            "claimed": c.claimed,
            "expiry": c.expiry,
            "closed": c.closed,
        }
        for i, c in get_channels(state)
    ]
    receipts = request.app[EXPLORER].index.recent_transactions(100, CHANNEL_KINDS)
    return {"channels": channels, "receipts": [_indexed_to_json(t) for t in receipts]}


async def channels_page(request: web.Request) -> tuple[str, Html, str | None]:
    data = await channels_json(request)
    receipts = request.app[EXPLORER].index.recent_transactions(100, CHANNEL_KINDS)
    body = join(
        [
            json_table(data["channels"]),
            tag("h2", "Channel and gateway receipts"),
            _transactions_table(receipts),
        ]
    )
    return "Payment channels", body, "/v1/explorer/channels"


async def governance_page(request: web.Request) -> tuple[str, Html, str | None]:
    data = await _reuse(api.list_proposals, request)
    rows = [
        [
            link(f"/governance/{p['id']}", p["id"]),
            *(json_value(v) for k, v in p.items() if k != "id"),
        ]
        for p in data["proposals"]
    ]
    headers = ["id", *(k for k in (data["proposals"][0] if data["proposals"] else {}) if k != "id")]
    body = table(headers, rows) if rows else tag("p", "no proposals", class_="muted")
    return "Governance proposals", body, "/v1/governance/proposals"


async def proposal_page(request: web.Request) -> tuple[str, Html, str | None]:
    parse_int(request.match_info["id"], "proposal id")
    data = await _reuse(api.get_proposal_route, request)
    return (
        f"Proposal {data.get('id', '')}",
        json_value(data),
        f"/v1/governance/proposals/{request.match_info['id']}",
    )


async def treasury_page(request: web.Request) -> tuple[str, Html, str | None]:
    data = await _reuse(api.get_treasury, request)
    return "Treasury", json_value(data), "/v1/treasury"


async def services_page(request: web.Request) -> tuple[str, Html, str | None]:
    data = await _reuse(api.list_services, request)
    rows = [
        [
            link(f"/services/{s['id']}", short(s["id"])),
            s["name"],
            s["description"],
            link(f"/accounts/{s['owner']}", short(s["owner"])),
            s["netuid"],
            json_value(s["price"]),
            s["tags"],
            s["expiry"],
        ]
        for s in data["services"]
    ]
    body = (
        table(["id", "name", "description", "owner", "netuid", "price", "tags", "expiry"], rows)
        if rows
        else tag("p", "no live services", class_="muted")
    )
    return "Service registry", body, "/v1/services"


async def service_page(request: web.Request) -> tuple[str, Html, str | None]:
    parse_hash(request.match_info["id"], "service id")
    data = await _reuse(api.get_service_route, request)
    return (
        f"Service {data.get('name', '')}",
        json_value(data),
        f"/v1/services/{request.match_info['id']}",
    )


async def lineage_page(request: web.Request) -> tuple[str, Html, str | None]:
    data = await _reuse(api.get_lineage, request)
    body = join(
        [tag("h2", "Model lineage"), lineage_graph(data.get("models", [])), json_value(data)]
    )
    return "Lineage", body, "/v1/lineage"


async def model_page(request: web.Request) -> tuple[str, Html, str | None]:
    parse_hash(request.match_info["hash"], "model hash")
    data = await _reuse(api.get_federated_model, request)
    return (
        f"Model {short(request.match_info['hash'])}",
        json_value(data),
        f"/v1/models/{request.match_info['hash']}",
    )


# --- search --------------------------------------------------------------------------------


def search_data(explorer: Explorer, query: str) -> dict[str, Any]:
    """Where ``query`` (an address, a block or transaction hash, a height, ``netuid/uid``) leads."""
    q = query.strip()
    state = explorer.node.state
    found: list[dict[str, str]] = []
    if q.startswith("agr1"):
        address = parse_address(q)
        found.append({"what": "account", "href": f"/accounts/{q}"})
        for subnet in get_subnets(state):
            for uid, n in enumerate(get_neurons(state, subnet.netuid)):
                if n.hotkey == address:
                    found.append(
                        {
                            "what": f"hotkey of subnet {subnet.netuid} uid {uid}",
                            "href": f"/subnets/{subnet.netuid}/uids/{uid}",
                        }
                    )
    elif q.startswith("0x"):
        digest = parse_hash(q, "hash")
        if explorer.node.store.get_height_of(digest) is not None:
            found.append({"what": "block", "href": f"/blocks/{q}"})
        if explorer.index.transaction(digest) is not None:
            found.append({"what": "transaction", "href": f"/transactions/{q}"})
    elif re.fullmatch(r"[0-9]{1,5}/[0-9]{1,5}", q):
        netuid, uid = (int(p) for p in q.split("/"))
        found.append(
            {"what": f"subnet {netuid} uid {uid}", "href": f"/subnets/{netuid}/uids/{uid}"}
        )
    elif re.fullmatch(r"[0-9]{1,20}", q):
        found.append({"what": f"block {q}", "href": f"/blocks/{q}"})
    else:
        raise BadParameter(
            f"{q[:80]!r}: search for an address (agr1...), a hash (0x...), a height, or netuid/uid"
        )
    return {"query": q, "results": found}


async def search_json(request: web.Request) -> Any:
    return search_data(request.app[EXPLORER], request.query.get("q", ""))


async def search_page(request: web.Request) -> tuple[str, Html, str | None]:
    q = request.query.get("q", "")
    data = search_data(request.app[EXPLORER], q)
    if not data["results"]:
        raise PageNotFound(f"nothing found for {q[:80]!r}")
    items = join(tag("li", link(r["href"], r["what"])) for r in data["results"])
    return f"Search: {q}", tag("ul", items, id="results"), f"/v1/explorer/search?q={q}"


async def openapi_json(request: web.Request) -> Any:
    return OPENAPI


# --- static files and unknown pages --------------------------------------------------------

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    path = STATIC_DIRECTORY / name
    if not re.fullmatch(r"[a-z]+\.(js|css)", name) or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=path.read_bytes(),
        content_type=STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "max-age=300"},
    )


ROUTES = [
    web.get("/", html_page(overview_page)),
    web.get("/blocks", html_page(blocks_page)),
    web.get("/blocks/{id}", html_page(block_page)),
    web.get("/transactions", html_page(transactions_page)),
    web.get("/transactions/{hash}", html_page(transaction_page)),
    web.get("/accounts/{address}", html_page(account_page)),
    web.get("/subnets", html_page(subnets_page)),
    web.get("/subnets/{netuid}", html_page(subnet_page)),
    web.get("/subnets/{netuid}/validators", html_page(validators_page)),
    web.get("/subnets/{netuid}/uids/{uid}", html_page(neuron_page)),
    web.get("/subnets/{netuid}/epochs/{epoch}/uids/{uid}", html_page(why_page)),
    web.get("/channels", html_page(channels_page)),
    web.get("/governance", html_page(governance_page)),
    web.get("/governance/{id}", html_page(proposal_page)),
    web.get("/treasury", html_page(treasury_page)),
    web.get("/services", html_page(services_page)),
    web.get("/services/{id}", html_page(service_page)),
    web.get("/lineage", html_page(lineage_page)),
    web.get("/models/{hash}", html_page(model_page)),
    web.get("/search", html_page(search_page)),
    web.get("/static/{name}", static_file),
    web.get("/v1/explorer/overview", json_twin(overview_json)),
    web.get("/v1/explorer/blocks", json_twin(blocks_json)),
    web.get("/v1/explorer/transactions", json_twin(transactions_json)),
    web.get("/v1/explorer/accounts/{address}", json_twin(account_json)),
    web.get("/v1/explorer/subnets/{netuid}", json_twin(subnet_json)),
    web.get("/v1/explorer/subnets/{netuid}/validators", json_twin(validators_json)),
    web.get("/v1/explorer/subnets/{netuid}/uids/{uid}", json_twin(neuron_json)),
    web.get("/v1/explorer/subnets/{netuid}/epochs/{epoch}/uids/{uid}", json_twin(why_json)),
    web.get("/v1/explorer/channels", json_twin(channels_json)),
    web.get("/v1/explorer/search", json_twin(search_json)),
    web.get("/v1/explorer/openapi.json", json_twin(openapi_json)),
]

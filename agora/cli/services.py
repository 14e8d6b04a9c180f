"""`agora service` and `agora mcp`: sell a Python function as a paid service, find and call
services, and expose them all to MCP clients.

`serve` imports ``module:function`` (decorated with ``@agora.agents.service``), serves it,
registers it in the ledger (the hotkey locks the bond; its coldkey funds it when short),
renews it, claims its vouchers, and on Ctrl-C claims what it earned and stops. `register`
lists an endpoint served some other way (it must serve the printed proof at
``/.well-known/agora-service.json``). `call` pays from the wallet's coldkey (or ``--hotkey``).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from agora.agents.schema import canonical_json
from agora.agents.wire import proof_document
from agora.amounts import format_agr
from agora.cli.chain import NodeOption, node_url, with_client
from agora.cli.common import CliError, emit, parse_agr_option, user_errors
from agora.cli.wallet import JsonOption, WalletDirOption, load_key
from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.node.wire import from_hex, service_id_from_text, to_hex
from agora.protocol.address import Address
from agora.protocol.services import (
    MIN_SERVICE_BOND,
    NO_MODEL,
    RegisterService,
    RenewService,
    compute_service_id,
    sign_endpoint,
)

app = typer.Typer(help="Services: agents selling work to agents.", no_args_is_help=True)

WalletOption = Annotated[str, typer.Option("--wallet", help="Wallet name.")]
HotkeyOption = Annotated[str, typer.Option("--hotkey", help="Hotkey name (the owner).")]
PayerHotkeyOption = Annotated[
    str | None, typer.Option("--hotkey", help="Pay from this hotkey instead of the coldkey.")
]
NetuidOption = Annotated[int, typer.Option("--netuid", help="The subnet to list it under.")]
TtlOption = Annotated[int, typer.Option("--ttl", help="Blocks the record lives unless renewed.")]
ServiceArgument = Annotated[str, typer.Argument(help="Service id (0x-hex).")]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="service")
    app_.command("mcp")(mcp_command)


def _human_service(entry: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        price = entry["price"]
        console.print(f"{entry['name']}  {entry['id']}")
        console.print(f"  owner {entry['owner']}  subnet {entry['netuid']}")
        console.print(f"  {format_agr(price['amount'])} per {price['unit']}")
        console.print(f"  tags {', '.join(entry['tags'])}  expires at block {entry['expiry']}")
        for endpoint in entry["endpoints"]:
            console.print(f"  {endpoint['transport']}: {endpoint['url']}")
        reputation = entry.get("reputation", {})
        console.print(
            f"  settled {format_agr(reputation.get('settled', 0))} from "
            f"{reputation.get('payers', 0)} payer(s)"
        )

    return render


@app.command("list")
@user_errors
def service_list(
    tag: Annotated[str | None, typer.Option("--tag", help="Only services with this tag.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="agr1... owner hotkey.")] = None,
    max_price: Annotated[
        str | None, typer.Option("--max-price", help="AGR per unit, at most.")
    ] = None,
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Live services, cheapest first."""
    limit = None if max_price is None else parse_agr_option(max_price)
    entries = with_client(node, lambda c: c.list_services(tag=tag, owner=owner, max_price=limit))

    def render(console: Console) -> None:
        if not entries:
            console.print("no live service")
        for entry in entries:
            _human_service(entry)(console)

    emit({"services": entries}, json_mode, render)


@app.command("show")
@user_errors
def service_show(
    service_id: ServiceArgument, node: NodeOption = None, json_mode: JsonOption = False
) -> None:
    """One service: endpoints with their proofs, price, schema hashes, reputation."""
    ident = to_hex(service_id_from_text(service_id))
    entry = with_client(node, lambda c: c.get_service(ident))
    emit(entry, json_mode, _human_service(entry))


@app.command("call")
@user_errors
def service_call(
    wallet: WalletOption,
    service_id: Annotated[str | None, typer.Option("--id", help="Service id (0x-hex).")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="The cheapest with this tag.")] = None,
    arguments: Annotated[str, typer.Option("--args", help="Arguments as a JSON object.")] = "{}",
    hotkey: PayerHotkeyOption = None,
    deposit_calls: Annotated[
        int, typer.Option("--deposit-calls", help="Calls a new channel's deposit pays for.")
    ] = 100,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Call a service and pay for it: a channel is opened on the first call (402)."""
    from agora.agents.client import Client

    if (service_id is None) == (tag is None):
        raise CliError("give --id or --tag")
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError as error:
        raise CliError(f"--args is not JSON: {error}") from None
    payer = load_key(wallet_dir, wallet, hotkey)

    async def run() -> dict[str, Any]:
        async with Client(
            node_url=node_url(node), payer=payer, deposit_calls=deposit_calls
        ) as client:
            found = await client.find(tag=tag, service_id=service_id)
            result = await client.call(found, parsed)
            return {
                "service_id": to_hex(found.service_id),
                "result": result,
                "receipt": client.receipts[-1].to_json(),
            }

    answer = asyncio.run(run())
    emit(answer, json_mode, lambda c: c.print(orjson.dumps(answer["result"]).decode()))


@app.command("serve")
@user_errors
def service_serve(
    target: Annotated[str, typer.Argument(help="module:function decorated with @service.")],
    wallet: WalletOption,
    hotkey: HotkeyOption,
    netuid: NetuidOption,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 0,
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="URL to register, if not host:port.")
    ] = None,
    ttl: TtlOption = 600,
    bond: Annotated[str | None, typer.Option("--bond", help="AGR to lock.")] = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Serve a decorated function, register and renew it, claim its vouchers until Ctrl-C."""
    from agora.agents.decorator import get_definition
    from agora.agents.server import ServeConfig, fund_hotkey, serve_until_stopped

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    definition = get_definition(_import_target(target))
    key = load_key(wallet_dir, wallet, hotkey)
    config = ServeConfig(
        node_url=node_url(node),
        netuid=netuid,
        host=host,
        port=port,
        public_url=public_url,
        ttl_blocks=ttl,
        bond=MIN_SERVICE_BOND if bond is None else parse_agr_option(bond),
    )

    async def fund(client: NodeClient) -> None:
        await fund_hotkey(client, key, lambda: load_key(wallet_dir, wallet, None), config.bond)

    with_client(node, fund)

    started = _print_started(definition.name, json_mode)
    asyncio.run(serve_until_stopped(definition, key, config, started))


@app.command("search-agent")
@user_errors
def service_search_agent(
    wallet: WalletOption,
    hotkey: HotkeyOption,
    netuid: NetuidOption,
    embedding_netuid: Annotated[
        int | None,
        typer.Option("--embedding-netuid", help="Subnet to buy embeddings from (--netuid)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 0,
    ttl: TtlOption = 600,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Run the semantic-search agent: it sells search and buys embeddings from miners."""
    from agora.agents.search import run_search_agent
    from agora.agents.server import ServeConfig, fund_hotkey

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    key = load_key(wallet_dir, wallet, hotkey)
    config = ServeConfig(
        node_url=node_url(node), netuid=netuid, host=host, port=port, ttl_blocks=ttl
    )

    async def fund(client: NodeClient) -> None:
        await fund_hotkey(client, key, lambda: load_key(wallet_dir, wallet, None), 10 * config.bond)

    with_client(node, fund)
    started = _print_started("semantic-search", json_mode)
    asyncio.run(run_search_agent(key, config, embedding_netuid or netuid, started))


def _print_started(name: str, json_mode: bool) -> Callable[[str, bytes], None]:
    def started(url: str, service_id: bytes) -> None:
        """One line once registered and serving (a JSON line with --json, for scripts)."""
        data = {"service_id": to_hex(service_id), "url": url, "name": name}
        if json_mode:
            sys.stdout.write(orjson.dumps(data).decode() + "\n")
        else:
            Console().print(f"serving {name} ({data['service_id']}) at {url}")
        sys.stdout.flush()

    return started


def _import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CliError("give the function as module:function")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CliError(f"cannot import {module_name}: {error}") from None
    function = getattr(module, attribute, None)
    if function is None:
        raise CliError(f"{module_name} has no {attribute}")
    return function


@app.command("register")
@user_errors
def service_register(
    wallet: WalletOption,
    hotkey: HotkeyOption,
    netuid: NetuidOption,
    name: Annotated[str, typer.Option("--name", help="Service name.")],
    url: Annotated[str, typer.Option("--url", help="The endpoint (http or https).")],
    price: Annotated[str, typer.Option("--price", help="AGR per unit.")],
    unit: Annotated[str, typer.Option("--unit", help="call, 1k-tokens or second.")] = "call",
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat).")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    input_schema: Annotated[
        Path | None, typer.Option("--input-schema", help="JSON schema file of the input.")
    ] = None,
    output_schema: Annotated[
        Path | None, typer.Option("--output-schema", help="JSON schema file of the output.")
    ] = None,
    schema_url: Annotated[str, typer.Option("--schema-url")] = "",
    ttl: TtlOption = 600,
    bond: Annotated[str | None, typer.Option("--bond", help="AGR to lock.")] = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """List an endpoint served by other means; it must serve the printed proof document at
    /.well-known/agora-service.json."""
    key = load_key(wallet_dir, wallet, hotkey)
    owner = key.public_key

    async def run(client: NodeClient) -> dict[str, Any]:
        chain_id = (await client.get_chain())["chain_id"]
        head = await client.get_head()
        service_id = compute_service_id(Address(owner), name)
        endpoint = sign_endpoint(
            chain_id=chain_id,
            service_id=service_id,
            transport="http",
            url=url,
            block=(int(head["height"]), from_hex(head["state_root"], "state_root")),
            sign=key.sign,
        )
        body = RegisterService(
            name=name,
            description=description,
            tags=tuple(tags or ()),
            endpoints=(endpoint,),
            netuid=netuid,
            price_amount=parse_agr_option(price),
            price_unit=unit,
            input_schema_hash=_schema_hash(input_schema),
            output_schema_hash=_schema_hash(output_schema),
            schema_url=schema_url,
            model_hash=NO_MODEL,
            bond=MIN_SERVICE_BOND if bond is None else parse_agr_option(bond),
            ttl_blocks=ttl,
        )
        status = await submit_and_wait(client, key, body, "registering")
        return {
            **status,
            "service_id": to_hex(service_id),
            "proof": proof_document(chain_id, service_id, owner, (endpoint,)),
        }

    answer = with_client(node, run)
    emit(answer, json_mode, lambda c: c.print(f"registered {answer['service_id']}"))


def _schema_hash(path: Path | None) -> bytes:
    if path is None:
        return bytes(32)
    return hashlib.sha256(canonical_json(orjson.loads(path.read_bytes()))).digest()


@app.command("renew")
@user_errors
def service_renew(
    service_id: ServiceArgument,
    wallet: WalletOption,
    hotkey: HotkeyOption,
    ttl: TtlOption = 600,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Move the expiry to the head plus --ttl blocks."""
    key = load_key(wallet_dir, wallet, hotkey)
    body = RenewService(service_id=service_id_from_text(service_id), ttl_blocks=ttl)
    status = with_client(node, lambda c: submit_and_wait(c, key, body, "renewing"))
    emit(status, json_mode, lambda c: c.print(f"renewed in block {status['height']}"))


@user_errors
def mcp_command(
    wallet: WalletOption,
    hotkey: PayerHotkeyOption = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only services with this tag.")] = None,
    http_port: Annotated[
        int | None, typer.Option("--http", help="Serve streamable HTTP on this port.")
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    deposit_calls: Annotated[int, typer.Option("--deposit-calls")] = 1000,
    receipts: Annotated[
        Path | None, typer.Option("--receipts", help="Append each call's receipt (JSON lines).")
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option("--gateway", help="Also the models of this gateway (http://host:port/v1)."),
    ] = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """An MCP server (stdio, or streamable HTTP with --http) with every service as a paid
    tool."""
    from agora.agents.client import Client
    from agora.agents.mcp import McpBridge, run_http, run_stdio

    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr)
    payer = load_key(wallet_dir, wallet, hotkey)

    async def run() -> None:
        async with Client(
            node_url=node_url(node),
            payer=payer,
            deposit_calls=deposit_calls,
            receipts_path=receipts,
        ) as client:
            bridge = McpBridge(client, tag=tag, gateway_url=gateway)
            try:
                if http_port is None:
                    await run_stdio(bridge)
                else:
                    await run_http(bridge, host, http_port)
            finally:
                await bridge.close()

    asyncio.run(run())

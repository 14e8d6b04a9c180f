"""Commands that read the chain or send to it: balance, transfer, tx, block, faucet."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from agora.amounts import format_agr
from agora.cli.common import emit, fail, parse_agr_option, user_errors
from agora.cli.wallet import JsonOption, WalletDirOption, load_key
from agora.client.client import NodeClient
from agora.client.transactions import send_transaction
from agora.node.wire import from_hex
from agora.protocol.accounts import Transfer
from agora.protocol.address import decode_address

T = TypeVar("T")
DEFAULT_NODE_URL = "http://127.0.0.1:7545"

NodeOption = Annotated[
    str | None,
    typer.Option("--node", help=f"Node API URL (default: $AGORA_NODE, else {DEFAULT_NODE_URL})."),
]


def node_url(option: str | None) -> str:
    return option or os.environ.get("AGORA_NODE") or DEFAULT_NODE_URL


def with_client(url: str | None, call: Callable[[NodeClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with NodeClient(node_url(url)) as client:
            return await call(client)

    return asyncio.run(run())


def register(app: typer.Typer) -> None:
    app.command()(balance)
    app.command()(transfer)
    app.command()(tx)
    app.command()(block)
    app.command()(faucet)


@user_errors
def balance(
    address: Annotated[str, typer.Argument(help="An agr1... address.")],
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Show an account's balance and nonce."""
    decode_address(address)
    account = with_client(node, lambda client: client.get_account(address))
    emit(
        account,
        json_mode,
        lambda console: console.print(
            f"{address}\n  balance {format_agr(account['balance'])}  nonce {account['nonce']}"
        ),
    )


@user_errors
def transfer(
    to: Annotated[str, typer.Option("--to", help="Recipient agr1... address.")],
    amount: Annotated[str, typer.Option("--amount", help="Amount in AGR, e.g. 1.5.")],
    wallet: Annotated[str, typer.Option("--wallet", help="Wallet whose coldkey pays.")],
    hotkey: Annotated[str | None, typer.Option("--hotkey", help="Pay from a hotkey.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for inclusion.")] = True,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Send AGR to an address."""
    recipient = decode_address(to)
    base_units = parse_agr_option(amount)
    key = load_key(wallet_dir, wallet, hotkey)

    async def send(client: NodeClient) -> dict[str, Any]:
        tx_hash = await send_transaction(
            client,
            public_key=key.public_key,
            sign=key.sign,
            body=Transfer(recipient=recipient, amount=base_units),
        )
        if not wait:
            return {"hash": "0x" + tx_hash.hex(), "status": "pending"}
        return await client.wait_for_transaction(tx_hash)

    result = with_client(node, send)
    emit(result, json_mode, lambda console: _print_status(console, result))
    _fail_if_failed(result)


@user_errors
def tx(
    tx_hash: Annotated[str, typer.Argument(help="0x-hex transaction hash.")],
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Show a transaction's status and receipt."""
    raw_hash = from_hex(tx_hash, "hash")
    result = with_client(node, lambda client: client.get_transaction(raw_hash))
    emit(result, json_mode, lambda console: _print_status(console, result))


@user_errors
def block(
    ident: Annotated[str, typer.Argument(help="Height, 0x-hash, or 'head'.")] = "head",
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Show a block: header, transactions and receipts."""

    async def fetch(client: NodeClient) -> dict[str, Any]:
        height: int | str = ident
        if ident == "head":
            height = (await client.get_head())["height"]
        return await client.get_block(height)

    result = with_client(node, fetch)
    emit(result, json_mode, lambda console: _print_block(console, result))


@user_errors
def faucet(
    address: Annotated[str, typer.Argument(help="agr1... address to fund.")],
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Dev chains: get test AGR from the node's faucet."""
    decode_address(address)

    async def ask(client: NodeClient) -> dict[str, Any]:
        return await client.wait_for_transaction(await client.faucet(address))

    result = with_client(node, ask)
    emit(result, json_mode, lambda console: _print_status(console, result))
    _fail_if_failed(result)


def _fail_if_failed(status: dict[str, Any]) -> None:
    """A transaction sent and waited for that failed in its block exits non-zero."""
    if status["status"] in ("included", "refused") and not status["receipt"]["success"]:
        receipt = status["receipt"]
        where = "failed in" if status["status"] == "included" else "was left out of"
        fail(
            f"transaction {receipt['hash']} {where} block {status['height']}: {receipt['message']}",
            receipt["code"],
        )


def _print_status(console: Console, status: dict[str, Any]) -> None:
    if status["status"] not in ("included", "refused"):
        console.print(f"pending {status['hash']}")
        return
    receipt = status["receipt"]
    outcome = (
        "[green]ok[/green]"
        if receipt["success"]
        else (f"[red]failed[/red] error[{receipt['code']}]: {receipt['message']}")
    )
    console.print(
        f"{receipt['hash']}\n  block {status['height']}  {outcome}  "
        f"fee {format_agr(receipt['fee_paid'])}"
    )


def _print_block(console: Console, result: dict[str, Any]) -> None:
    header = result["header"]
    console.print(f"block {header['height']}  {header['hash']}")
    console.print(
        f"  parent {header['parent_hash']}\n  state root {header['state_root']}"
        f"\n  timestamp {header['timestamp']}"
    )
    table = Table("transaction", "result")
    for receipt in result.get("receipts", []):
        table.add_row(receipt["hash"], "ok" if receipt["success"] else f"error {receipt['code']}")
    console.print(table)

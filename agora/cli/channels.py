"""`agora channel`: payment channels, from opening one to a miner to closing it after expiry.

The payer's wallet opens, tops up and closes a channel and signs vouchers (`voucher`, for
trying the flow by hand: the gateway signs its own); the payee's hotkey claims the latest
voucher. Amounts are typed in AGR; a voucher's JSON carries base units, as the chain does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agora.amounts import format_agr
from agora.cli.chain import NodeOption, with_client
from agora.cli.common import CliError, emit, fail, parse_agr_option, user_errors
from agora.cli.wallet import JsonOption, WalletDirOption, load_key
from agora.client.client import NodeClient
from agora.client.transactions import make_transaction
from agora.node.wire import channel_id_from_text, to_hex
from agora.payments.vouchers import voucher_from_json, voucher_to_json
from agora.protocol.address import decode_address
from agora.protocol.channels import (
    ClaimChannel,
    CloseChannel,
    OpenChannel,
    TopUpChannel,
    Voucher,
    compute_channel_id,
    sign_voucher,
)
from agora.protocol.codec import SIGNATURE
from agora.wallet.keys import Keypair

app = typer.Typer(help="Payment channels: pay a miner per request.", no_args_is_help=True)

WalletOption = Annotated[str, typer.Option("--wallet", help="Wallet name.")]
ChannelArgument = Annotated[str, typer.Argument(help="Channel id (0x-hex).")]
ExpiryOption = Annotated[
    int | None, typer.Option("--expiry", help="Expiry block height (the payer may close from it).")
]
BlocksOption = Annotated[
    int | None, typer.Option("--blocks", help="Expiry as a number of blocks after the head.")
]


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="channel")


def _send(node: str | None, key: Keypair, body: Any) -> tuple[dict[str, Any], int]:
    """Sign with the next nonce, submit, wait for the receipt; (status, nonce used)."""

    async def run(client: NodeClient) -> tuple[dict[str, Any], int]:
        chain = await client.get_chain()
        nonce = (await client.get_account(key.address))["next_nonce"]
        raw = make_transaction(
            chain_id=chain["chain_id"],
            public_key=key.public_key,
            sign=key.sign,
            nonce=nonce,
            fee=chain["params"]["min_fee"],
            body=body,
        )
        (tx_hash,) = await client.submit([raw])
        return await client.wait_for_transaction(tx_hash), nonce

    status, nonce = with_client(node, run)
    receipt = status["receipt"]
    if not receipt["success"]:
        fail(f"block {status['height']}: {receipt['message']}", receipt["code"])
    return status, nonce


def _print_sent(status: dict[str, Any], json_mode: bool) -> None:
    receipt = status["receipt"]
    emit(status, json_mode, lambda c: c.print(f"ok: {receipt['hash']} in block {status['height']}"))


def _resolve_expiry(node: str | None, expiry: int | None, blocks: int | None) -> int | None:
    if expiry is not None and blocks is not None:
        raise CliError("give --expiry or --blocks, not both")
    if blocks is None:
        return expiry
    if blocks <= 0:
        raise CliError("--blocks must be positive")
    head = with_client(node, lambda client: client.get_head())
    return int(head["height"]) + blocks


@app.command("open")
@user_errors
def channel_open(
    payee: Annotated[str, typer.Option("--payee", help="agr1... hotkey of the miner to pay.")],
    netuid: Annotated[int, typer.Option("--netuid", help="The subnet the miner serves.")],
    deposit: Annotated[str, typer.Option("--deposit", help="AGR to lock in the channel.")],
    wallet: WalletOption,
    expiry: ExpiryOption = None,
    blocks: BlocksOption = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Open a channel to a miner hotkey, locking a deposit until the expiry block."""
    height = _resolve_expiry(node, expiry, blocks)
    if height is None:
        raise CliError("give the expiry: --expiry HEIGHT or --blocks N")
    body = OpenChannel(
        payee=decode_address(payee), netuid=netuid, deposit=parse_agr_option(deposit), expiry=height
    )
    key = load_key(wallet_dir, wallet, None)
    status, nonce = _send(node, key, body)
    channel_id = to_hex(compute_channel_id(decode_address(key.address), nonce))
    emit(
        {**status, "channel_id": channel_id},
        json_mode,
        lambda c: c.print(f"channel {channel_id} open until block {height}"),
    )


@app.command("top-up")
@user_errors
def channel_top_up(
    channel: ChannelArgument,
    wallet: WalletOption,
    amount: Annotated[str | None, typer.Option("--amount", help="AGR to add.")] = None,
    expiry: ExpiryOption = None,
    blocks: BlocksOption = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Add to a channel's deposit and/or extend its expiry (never shorten it)."""
    height = _resolve_expiry(node, expiry, blocks)
    if amount is None and height is None:
        raise CliError("give --amount, or a new expiry with --expiry or --blocks")
    body = TopUpChannel(
        channel_id=channel_id_from_text(channel, "channel"),
        amount=0 if amount is None else parse_agr_option(amount),
        expiry=height or 0,
    )
    status, _ = _send(node, load_key(wallet_dir, wallet, None), body)
    _print_sent(status, json_mode)


@app.command("voucher")
@user_errors
def channel_voucher(
    channel: ChannelArgument,
    amount: Annotated[str, typer.Option("--amount", help="Cumulative AGR paid so far.")],
    wallet: WalletOption,
    out: Annotated[Path | None, typer.Option("--out", help="Write the voucher here.")] = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Sign a voucher from the payer's wallet (JSON, for `channel claim --voucher`)."""
    channel_id = channel_id_from_text(channel, "channel")
    cumulative = parse_agr_option(amount)

    async def read(client: NodeClient) -> tuple[dict[str, Any], dict[str, Any]]:
        return await client.get_chain(), await client.get_channel(channel_id)

    chain, info = with_client(node, read)
    key = load_key(wallet_dir, wallet, None)
    if info["payer"] != key.address:
        raise CliError(f"wallet {wallet!r} is not this channel's payer ({info['payer']})")
    if cumulative > info["deposit"]:
        raise CliError(f"the deposit is {format_agr(info['deposit'])}: top the channel up first")
    voucher = sign_voucher(chain["chain_id"], channel_id, cumulative, key.sign)
    data = voucher_to_json(voucher)
    if out is not None:
        out.write_text(json.dumps(data) + "\n")
    emit(data, True)


def _read_voucher(
    path: Path | None, channel: str | None, amount: str | None, signature: str | None
) -> Voucher:
    if path is not None:
        if channel or amount or signature:
            raise CliError("give --voucher FILE, or the channel, --amount and --signature")
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CliError(f"{path} is not JSON: {error}") from None
        return voucher_from_json(value)
    if channel is None or amount is None or signature is None:
        raise CliError("give --voucher FILE, or the channel, --amount and --signature")
    return Voucher(
        channel_id=channel_id_from_text(channel, "channel"),
        cumulative=parse_agr_option(amount),
        signature=SIGNATURE.from_json(signature, "--signature"),
    )


@app.command("claim")
@user_errors
def channel_claim(
    wallet: WalletOption,
    hotkey: Annotated[str, typer.Option("--hotkey", help="The payee hotkey in the wallet.")],
    channel: Annotated[str | None, typer.Argument(help="Channel id (without --voucher).")] = None,
    voucher: Annotated[
        Path | None, typer.Option("--voucher", help="Voucher JSON file from the payer.")
    ] = None,
    amount: Annotated[
        str | None, typer.Option("--amount", help="The voucher's cumulative AGR.")
    ] = None,
    signature: Annotated[
        str | None, typer.Option("--signature", help="The voucher's 0x-hex signature.")
    ] = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Claim the payer's latest voucher (the payee hotkey signs and pays the fee)."""
    body = ClaimChannel(voucher=_read_voucher(voucher, channel, amount, signature))
    status, _ = _send(node, load_key(wallet_dir, wallet, hotkey), body)
    _print_sent(status, json_mode)


@app.command("close")
@user_errors
def channel_close(
    channel: ChannelArgument,
    wallet: WalletOption,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """After expiry: close the channel and take back what was not claimed."""
    body = CloseChannel(channel_id=channel_id_from_text(channel, "channel"))
    status, _ = _send(node, load_key(wallet_dir, wallet, None), body)
    _print_sent(status, json_mode)


def _print_channel(console: Console, channel: dict[str, Any]) -> None:
    state = "closed" if channel["closed"] else f"open, expiry block {channel['expiry']}"
    console.print(
        f"{channel['id']}  {state}\n"
        f"  payer {channel['payer']}\n  payee {channel['payee']} (subnet {channel['netuid']})\n"
        f"  deposit {format_agr(channel['deposit'])}  claimed {format_agr(channel['claimed'])}"
    )


@app.command("show")
@user_errors
def channel_show(
    channel: ChannelArgument, node: NodeOption = None, json_mode: JsonOption = False
) -> None:
    """Show a channel: payer, payee, deposit, claimed so far, expiry."""
    channel_id = channel_id_from_text(channel, "channel")
    result = with_client(node, lambda client: client.get_channel(channel_id))
    emit(result, json_mode, lambda console: _print_channel(console, result))


@app.command("list")
@user_errors
def channel_list(
    payer: Annotated[str | None, typer.Option("--payer", help="agr1... payer.")] = None,
    payee: Annotated[str | None, typer.Option("--payee", help="agr1... payee hotkey.")] = None,
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """List the channels of a payer and/or a payee."""
    if payer is None and payee is None:
        raise CliError("give --payer and/or --payee")
    for address in (payer, payee):
        if address is not None:
            decode_address(address)
    result = with_client(node, lambda client: client.list_channels(payer=payer, payee=payee))

    def show(console: Console) -> None:
        for channel in result:
            _print_channel(console, channel)

    emit({"channels": result}, json_mode, show)

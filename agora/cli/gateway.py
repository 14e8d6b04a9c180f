"""`agora gateway`: the OpenAI API on this machine, paid from a wallet; and its receipts.

    agora gateway --wallet W [--node URL] [--port 8080] [--deposit AGR] [--daily-limit AGR]
    agora gateway receipts [--limit N] [--day YYYY-MM-DD] [--request-id ID] [--json]
    agora gateway channels [--json]

Any program that uses the official ``openai`` client works by pointing ``base_url`` at the
printed URL (the API key is not checked: the gateway listens on 127.0.0.1 by default and
pays from the wallet's coldkey, whose password comes from ``AGORA_WALLET_PASSWORD`` or a
prompt). Receipts and channels live in ``--data-dir`` (default ``$AGORA_HOME/gateway``, else
``~/.agora/gateway``) and can be read while the gateway runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agora.amounts import format_agr
from agora.cli.chain import NodeOption, node_url
from agora.cli.common import CliError, emit, parse_agr_option, user_errors
from agora.cli.wallet import HOME_ENV, JsonOption, WalletDirOption, load_key
from agora.gateway.store import GatewayStore
from agora.process import run_until_signal

app = typer.Typer(
    help="The OpenAI API on this machine, served by the network's miners, paid per request.",
)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Receipts and channels (default: $AGORA_HOME/gateway, else ~/.agora/gateway).",
    ),
]


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="gateway")


def data_root(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir.expanduser()
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "gateway"
    return Path.home() / ".agora" / "gateway"


@app.callback(invoke_without_command=True)
@user_errors
def serve(
    ctx: typer.Context,
    wallet: Annotated[
        str | None, typer.Option("--wallet", help="Wallet whose coldkey pays the miners.")
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    deposit: Annotated[
        str, typer.Option("--deposit", help="AGR locked per channel open or top-up.")
    ] = "1",
    daily_limit: Annotated[
        str | None, typer.Option("--daily-limit", help="AGR the gateway may spend per UTC day.")
    ] = None,
    verification: Annotated[
        str,
        typer.Option(
            "--verification",
            help="Default level: none, spot or redundant (per request: the "
            "Agora-Verification header).",
        ),
    ] = "none",
    channel_blocks: Annotated[
        int, typer.Option("--channel-blocks", help="A channel's lifetime in blocks.")
    ] = 7_200,
    node: NodeOption = None,
    data_dir: DataDirOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Serve the OpenAI API (/v1/models, /v1/embeddings, /v1/chat/completions) on this machine."""
    if ctx.invoked_subcommand is not None:
        return
    from agora.gateway.config import LEVELS, GatewayConfig
    from agora.gateway.server import run_gateway
    from agora.payments.books import EXPIRY_MARGIN_BLOCKS

    if wallet is None:
        raise CliError("give --wallet: the wallet whose coldkey pays the miners")
    if verification not in LEVELS:
        raise CliError(f"--verification is one of {', '.join(LEVELS)}")
    if channel_blocks < 4 * EXPIRY_MARGIN_BLOCKS:
        raise CliError(f"--channel-blocks must be at least {4 * EXPIRY_MARGIN_BLOCKS}")
    config = GatewayConfig(
        node_url=node_url(node),
        data_dir=data_root(data_dir),
        host=host,
        port=port,
        deposit=parse_agr_option(deposit),
        daily_limit=None if daily_limit is None else parse_agr_option(daily_limit),
        channel_blocks=channel_blocks,
        verification=verification,
    )
    payer = load_key(wallet_dir, wallet, None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def ready(url: str) -> None:
        sys.stdout.write(
            f"Agora gateway: the OpenAI API at {url} (paying from {payer.address})\n"
            f"  try: OPENAI_BASE_URL={url} OPENAI_API_KEY=unused python your_program.py\n"
        )
        sys.stdout.flush()

    asyncio.run(run_until_signal(lambda stop: run_gateway(config, payer, stop, ready)))


@app.command("receipts")
@user_errors
def receipts(
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    day: Annotated[
        str | None, typer.Option("--day", help="Only this UTC day (YYYY-MM-DD).")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Only this request.")
    ] = None,
    data_dir: DataDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """The gateway's receipts: who answered each request, what it cost, how long it took."""
    store = _open_store(data_dir)
    try:
        found = store.list_receipts(limit=limit, day=day, request_id=request_id)
        spent = store.get_spent(day or datetime.now(UTC).strftime("%Y-%m-%d"))
    finally:
        store.close()
    data = {"receipts": [receipt.to_json() for receipt in found], "spent_today": spent}

    def show(console: Console) -> None:
        table = Table(
            "time (UTC)", "request", "model", "verification", "status", "cost", "latency", "miners"
        )
        for receipt in found:
            when = datetime.fromtimestamp(receipt.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            miners = ", ".join(
                f"{call['uid']}:{call['role']}{'' if call['status'] == 'ok' else ' failed'}"
                for call in receipt.calls
            )
            table.add_row(
                when,
                receipt.request_id,
                receipt.model,
                receipt.verification,
                receipt.status,
                format_agr(receipt.cost),
                f"{receipt.latency_ms} ms",
                miners,
            )
        console.print(table)
        console.print(f"spent on {day or 'today'}: {format_agr(spent)}")

    emit(data, json_mode, show)


@app.command("channels")
@user_errors
def channels(data_dir: DataDirOption = None, json_mode: JsonOption = False) -> None:
    """The gateway's payment channels: miner, deposit, what was paid, refunds."""
    store = _open_store(data_dir)
    try:
        records = store.list_channels()
    finally:
        store.close()
    data = {"channels": [record.to_json() for record in records]}

    def show(console: Console) -> None:
        table = Table("channel", "miner", "subnet", "deposit", "paid", "expiry", "state")
        for record in records:
            state = f"closed, {format_agr(record.refund)} back" if record.closed else "open"
            table.add_row(
                "0x" + record.channel_id.hex()[:16] + "…",
                record.payee,
                str(record.netuid),
                format_agr(record.deposit),
                format_agr(record.committed),
                str(record.expiry),
                state,
            )
        console.print(table)

    emit(data, json_mode, show)


def _open_store(data_dir: Path | None) -> GatewayStore:
    root = data_root(data_dir)
    path = root / "gateway.db"
    if not path.exists():
        raise CliError(f"no gateway data in {root}: run `agora gateway --wallet W` first")
    return GatewayStore(path)


def main() -> None:
    """``python -m agora.cli.gateway``: these commands alone, before ``agora`` wires them in."""
    root = typer.Typer(no_args_is_help=True, add_completion=False)
    register(root)
    root()


if __name__ == "__main__":
    main()

"""`agora node run` and `agora node follow`: a node process in the foreground."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from agora.cli.common import CliError, user_errors
from agora.node.devchain import FAUCET_ACCOUNT, FAUCET_GRANT, create_dev_genesis, get_dev_accounts
from agora.node.node import NodeConfig
from agora.node.runner import RunningNode, run_node
from agora.node.store import Store
from agora.sequencer.local import LocalSequencer

app = typer.Typer(help="Run a node.", no_args_is_help=True)

DataDirOption = Annotated[
    Path, typer.Option("--data-dir", help="Where the node keeps its database.")
]
HostOption = Annotated[str, typer.Option("--host", help="Address the API listens on.")]
PortOption = Annotated[int, typer.Option("--port", help="API port (0 picks a free one).")]


def read_genesis(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        genesis: dict[str, Any] = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise CliError(f"{path} is not valid JSON: {error}") from None
    return genesis


def _announce(console: Console, dev_accounts: int) -> Any:
    def ready(running: RunningNode) -> None:
        node = running.node
        console.print(
            f"[bold]Agora node[/bold] chain {node.state.chain_id!r} "
            f"at height {node.state.head.height}"
        )
        console.print(f"  API      {running.url}/v1   (OpenAPI: {running.url}/v1/openapi.json)")
        console.print(f"  metrics  {running.url}/metrics")
        if dev_accounts:
            console.print("  dev accounts (public test keys, never use them for value):")
            for account in get_dev_accounts(dev_accounts):
                console.print(f"    {account.name}  {account.address}  seed {account.seed.hex()}")
            console.print(f"  faucet   POST {running.url}/v1/faucet  or  agora faucet ADDRESS")
        console.print("Press Ctrl-C to stop.", style="dim")

    return ready


@app.command("run")
@user_errors
def run(
    data_dir: DataDirOption = Path(".agora/node"),
    genesis: Annotated[
        Path | None, typer.Option("--genesis", help="Genesis JSON (first start only).")
    ] = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="A dev chain: funded dev accounts and a faucet.")
    ] = False,
    dev_accounts: Annotated[int, typer.Option(help="Dev accounts to fund.")] = 4,
    block_time_ms: Annotated[
        int, typer.Option("--block-time-ms", help="Block interval; 0 seals at once.")
    ] = 1000,
    host: HostOption = "127.0.0.1",
    port: PortOption = 7545,
) -> None:
    """Run a node that orders transactions itself (the local sequencer)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    genesis_doc = read_genesis(genesis)
    has_chain = (data_dir / "node.db").exists() and Store(data_dir / "node.db").get_genesis()
    if genesis_doc is None and dev and not has_chain:
        genesis_doc = create_dev_genesis(dev_accounts, int(time.time()))
    if genesis_doc is None and not has_chain:
        raise CliError(f"{data_dir} holds no chain: pass --genesis FILE, or --dev")
    config = NodeConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        faucet_seed=FAUCET_ACCOUNT.seed if dev else None,
        faucet_amount=FAUCET_GRANT if dev else 0,
    )

    def make_sequencer(store: Store) -> LocalSequencer:
        return LocalSequencer(store, block_time_ms, max_batch=10_000)

    asyncio.run(
        run_node(
            config, genesis_doc, make_sequencer, _announce(Console(), dev_accounts if dev else 0)
        )
    )


@app.command("follow")
@user_errors
def follow(
    leader: Annotated[str, typer.Option("--leader", help="API URL of the node to follow.")],
    data_dir: DataDirOption = Path(".agora/follower"),
    genesis: Annotated[
        Path | None,
        typer.Option("--genesis", help="Pin the genesis (default: ask the leader)."),
    ] = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 7546,
) -> None:
    """Follow another node: re-execute its blocks and check every state root."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = NodeConfig(data_dir=data_dir, host=host, port=port, leader_url=leader)
    asyncio.run(run_node(config, read_genesis(genesis), None, _announce(Console(), 0)))

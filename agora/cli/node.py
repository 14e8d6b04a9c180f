"""`agora node run` and `agora node follow`: a node process in the foreground."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from agora.cli.common import CliError, user_errors
from agora.client.client import NodeClient
from agora.node.devchain import FAUCET_ACCOUNT, FAUCET_GRANT, create_dev_genesis, get_dev_accounts
from agora.node.mempool import DEFAULT_MAX_PER_SENDER
from agora.node.node import DEFAULT_MAX_PENDING, DEFAULT_STREAM_BACKLOG_BLOCKS, NodeConfig
from agora.node.runner import RunningNode, run_node
from agora.node.store import Store
from agora.sequencer.base import PendingPool, Sequencer
from agora.sequencer.local import LocalSequencer
from agora.web.server import install as install_explorer

app = typer.Typer(help="Run a node.", no_args_is_help=True)
inbox_app = typer.Typer(help="The Ethereum Inbox contract.", no_args_is_help=True)


class SequencerKind(StrEnum):
    local = "local"
    ethereum = "ethereum"


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
        console.print(f"  explorer {running.url}/")
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
        int,
        typer.Option("--block-time-ms", help="Local sequencer: block interval; 0 seals at once."),
    ] = 1000,
    sequencer: Annotated[
        SequencerKind, typer.Option("--sequencer", help="Who orders transactions.")
    ] = SequencerKind.local,
    rpc: Annotated[str | None, typer.Option("--rpc", help="Ethereum: EVM JSON-RPC URL.")] = None,
    inbox: Annotated[str | None, typer.Option("--inbox", help="Ethereum: Inbox address.")] = None,
    genesis_block: Annotated[
        int | None, typer.Option("--genesis-block", help="Ethereum: EVM block of Agora genesis.")
    ] = None,
    confirmations: Annotated[
        int, typer.Option("--confirmations", help="Ethereum: blocks on top before reading.")
    ] = 2,
    max_pending: Annotated[
        int, typer.Option("--max-pending", help="Transactions kept waiting, in all (429 above).")
    ] = DEFAULT_MAX_PENDING,
    max_pending_per_sender: Annotated[
        int,
        typer.Option("--max-pending-per-sender", help="Transactions kept waiting per sender."),
    ] = DEFAULT_MAX_PER_SENDER,
    stream_backlog_blocks: Annotated[
        int,
        typer.Option(
            "--stream-backlog-blocks", help="Blocks the block stream replays to a resuming reader."
        ),
    ] = DEFAULT_STREAM_BACKLOG_BLOCKS,
    host: HostOption = "127.0.0.1",
    port: PortOption = 7545,
) -> None:
    """Run a node: ordering by itself (local) or by an Inbox contract on an EVM chain.

    With --sequencer ethereum the node posts accepted transactions to the Inbox from the
    EVM account whose private key is in $AGORA_EVM_KEY (without it the node only reads).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    genesis_doc = read_genesis(genesis)
    has_chain = (data_dir / "node.db").exists() and Store(data_dir / "node.db").get_genesis()
    if genesis_doc is None and dev and not has_chain:
        # A fixed timestamp: every dev node computes the same genesis, so several of them
        # can read one Inbox and agree.
        genesis_doc = create_dev_genesis(dev_accounts, 0)
    if genesis_doc is None and not has_chain:
        raise CliError(f"{data_dir} holds no chain: pass --genesis FILE, or --dev")
    config = NodeConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        faucet_seed=FAUCET_ACCOUNT.seed if dev else None,
        faucet_amount=FAUCET_GRANT if dev else 0,
        max_pending=max_pending,
        max_pending_per_sender=max_pending_per_sender,
        stream_backlog_blocks=stream_backlog_blocks,
    )

    make_sequencer: Callable[[PendingPool], Sequencer]
    if sequencer is SequencerKind.ethereum:
        if rpc is None or inbox is None or genesis_block is None:
            raise CliError("--sequencer ethereum needs --rpc, --inbox and --genesis-block")
        from agora.sequencer.ethereum.sequencer import EthereumConfig, EthereumSequencer

        ethereum = EthereumConfig(
            rpc_url=rpc,
            inbox_address=inbox,
            genesis_block=genesis_block,
            confirmations=confirmations,
            poster_key=os.environ.get("AGORA_EVM_KEY"),
        )

        def make_sequencer(pool: PendingPool) -> Sequencer:
            return EthereumSequencer(ethereum, pool)
    else:

        def make_sequencer(pool: PendingPool) -> Sequencer:
            return LocalSequencer(pool, block_time_ms, max_batch=10_000)

    asyncio.run(
        run_node(
            config,
            genesis_doc,
            make_sequencer,
            _announce(Console(), dev_accounts if dev else 0),
            extensions=[install_explorer],
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
    config = NodeConfig(data_dir=data_dir, host=host, port=port)

    async def main() -> None:
        async with NodeClient(leader) as client:
            await run_node(
                config,
                read_genesis(genesis),
                None,
                _announce(Console(), 0),
                leader=client,
                extensions=[install_explorer],
            )

    asyncio.run(main())


@inbox_app.command("deploy")
@user_errors
def inbox_deploy(
    rpc: Annotated[str, typer.Option("--rpc", help="EVM JSON-RPC URL.")],
    key: Annotated[
        str | None, typer.Option("--key", help="Deployer private key (default: $AGORA_EVM_KEY).")
    ] = None,
    json_mode: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Deploy the Inbox; prints its address and the EVM block to use as Agora's genesis."""
    from agora.cli.common import emit
    from agora.sequencer.ethereum.inbox import deploy_inbox

    private_key = key or os.environ.get("AGORA_EVM_KEY")
    if not private_key:
        raise CliError("give the deployer's key with --key or $AGORA_EVM_KEY")
    deployment = asyncio.run(deploy_inbox(rpc, private_key))
    result = {
        "address": deployment.address,
        "genesis_block": deployment.block_number,
        "tx_hash": deployment.tx_hash,
        "chain_id": deployment.chain_id,
    }
    emit(
        result,
        json_mode,
        lambda console: console.print(
            f"Inbox {deployment.address} (EVM chain {deployment.chain_id})\n"
            f"  run nodes with --sequencer ethereum --rpc {rpc} --inbox {deployment.address} "
            f"--genesis-block {deployment.block_number}"
        ),
    )

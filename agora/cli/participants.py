"""`agora miner run`, `agora validator run` and `agora devnet`: the processes that do AI work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agora.amounts import format_agr
from agora.cli.chain import NodeOption, node_url
from agora.cli.common import CliError, parse_agr_option, user_errors
from agora.cli.wallet import WalletDirOption, load_key
from agora.process import run_until_signal
from agora.protocol.params import BASE_UNITS_PER_AGR

miner_app = typer.Typer(help="Serve a subnet's task and earn incentive.", no_args_is_help=True)
validator_app = typer.Typer(help="Score a subnet's miners and set weights.", no_args_is_help=True)

WalletOption = Annotated[str, typer.Option("--wallet", help="Wallet name (its coldkey pays).")]
HotkeyOption = Annotated[str, typer.Option("--hotkey", help="Hotkey name in the wallet.")]
NetuidOption = Annotated[int, typer.Option("--netuid", help="Subnet id.")]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Register without asking to confirm the price.")
]
CacheOption = Annotated[
    Path | None, typer.Option("--cache-dir", help="Where converted model weights are cached.")
]
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def register(app: typer.Typer) -> None:
    app.add_typer(miner_app, name="miner")
    app.add_typer(validator_app, name="validator")
    app.command("devnet")(devnet)


def _confirm(yes: bool, netuid: int) -> Callable[[int], bool]:
    def confirm(price: int) -> bool:
        if yes:
            return True
        return typer.confirm(
            f"Register on subnet {netuid} for {format_agr(price)} (burned)?", err=True
        )

    return confirm


def _status(console: Console) -> Callable[[str], None]:
    return lambda message: console.print(message, highlight=False)


@miner_app.command("run")
@user_errors
def miner_run(
    wallet: WalletOption,
    hotkey: HotkeyOption,
    netuid: NetuidOption,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="local (the task's model in this process), or openai:URL#MODEL to forward "
            "to an OpenAI-compatible engine (vLLM, llama.cpp server, Ollama).",
        ),
    ] = "local",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 0,
    advertise: Annotated[
        str | None, typer.Option("--advertise", help="URL to publish, if not host:port.")
    ] = None,
    behaviour: Annotated[
        str,
        typer.Option(
            "--behaviour", help="honest; random or copycat cheat (devnets, tests).", hidden=True
        ),
    ] = "honest",
    price: Annotated[
        str | None,
        typer.Option(
            "--price",
            help="Sell to anyone paying through a payment channel, e.g. 0.001/request; "
            "without it only staked callers (validators) are served.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="A federated subnet's contributor: your private rows (.csv or .npz, see "
            "agora.tasks.federated); they never leave this process.",
        ),
    ] = None,
    serve_model: Annotated[
        bool,
        typer.Option(
            "--serve-model",
            help="A federated subnet's server: sell predictions of the subnet's current "
            "trained model (its hash goes on chain; paid requests pay its contributors).",
        ),
    ] = False,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            help="Where the miner keeps the vouchers it earned until they are claimed.",
        ),
    ] = Path(".agora/miner"),
    claim_interval: Annotated[
        float,
        typer.Option("--claim-interval", help="Seconds between claims of earned vouchers."),
    ] = 60.0,
    credit: Annotated[
        str,
        typer.Option(
            "--credit",
            help="AGR of work one payer may leave unpaid: requests paid only if their answer "
            "is accepted (the gateway's verified calls), under way, rejected or never "
            "resolved; 0 refuses them.",
        ),
    ] = "0.1",
    yes: YesOption = False,
    cache_dir: CacheOption = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Register if needed, publish the endpoint, serve the subnet's task until Ctrl-C."""
    from agora.miner.miner import MinerConfig, run_miner

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    config = MinerConfig(
        node_url=node_url(node),
        netuid=netuid,
        hotkey=load_key(wallet_dir, wallet, hotkey),
        load_coldkey=lambda: load_key(wallet_dir, wallet, None),
        confirm=_confirm(yes, netuid),
        backend=backend,
        behaviour=behaviour,
        host=host,
        port=port,
        advertise_url=advertise,
        price=price,
        data_dir=data_dir,
        claim_interval_s=claim_interval,
        credit=_parse_credit(credit),
        cache_dir=cache_dir,
        data_file=data,
        serve_model=serve_model,
        on_status=_status(Console()),
    )
    asyncio.run(run_miner(config))


def _parse_credit(text: str) -> int:
    """``--credit``: a positive AGR amount, or 0 (no credit)."""
    with contextlib.suppress(InvalidOperation):
        if Decimal(text) == 0:
            return 0
    return parse_agr_option(text)


@validator_app.command("run")
@user_errors
def validator_run(
    wallet: WalletOption,
    hotkey: HotkeyOption,
    netuid: NetuidOption,
    stake: Annotated[
        int, typer.Option("--stake", help="AGR the coldkey keeps staked on the hotkey.")
    ] = 0,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the validator keeps its scores and commits.")
    ] = Path(".agora/validator"),
    round_interval: Annotated[
        float, typer.Option("--round-interval", help="Seconds between rounds of challenges.")
    ] = 5.0,
    yes: YesOption = False,
    cache_dir: CacheOption = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Challenge every miner each round, score, and commit and reveal weights each epoch."""
    from agora.validator.validator import ValidatorConfig, run_validator

    if stake < 0:
        raise CliError("--stake must not be negative")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    config = ValidatorConfig(
        node_url=node_url(node),
        netuid=netuid,
        hotkey=load_key(wallet_dir, wallet, hotkey),
        load_coldkey=lambda: load_key(wallet_dir, wallet, None),
        confirm=_confirm(yes, netuid),
        data_dir=data_dir,
        stake=stake * BASE_UNITS_PER_AGR,
        round_interval_s=round_interval,
        cache_dir=cache_dir,
        on_status=_status(Console()),
    )
    asyncio.run(run_validator(config))


@user_errors
def devnet(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where everything goes (wiped, but the model cache).")
    ] = Path(".agora/devnet"),
    miners: Annotated[int, typer.Option("--miners", help="Honest miners per subnet.")] = 2,
    generation_miners: Annotated[
        int, typer.Option("--generation-miners", help="Honest miners on the generation subnet.")
    ] = 1,
    validators: Annotated[int, typer.Option("--validators", help="Validators per subnet.")] = 1,
    no_cheater: Annotated[bool, typer.Option("--no-cheater", help="No cheating miner.")] = False,
    cheaters: Annotated[
        str, typer.Option("--cheaters", help="Cheating miners per subnet: random, copycat.")
    ] = "random",
    block_time_ms: Annotated[
        int, typer.Option("--block-time-ms", help="Milliseconds between blocks.")
    ] = 1000,
    tempo: Annotated[int, typer.Option("--tempo", help="Blocks between epochs.")] = 10,
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            help="Subnets to create: installed task kinds, comma-separated.",
        ),
    ] = "embedding,classification,generation",
    sequencer: Annotated[
        str, typer.Option("--sequencer", help="local, or ethereum (an Inbox on a local anvil).")
    ] = "local",
    port: Annotated[int, typer.Option("--port", help="Node API port (0 picks one).")] = 7545,
    gateway_port: Annotated[
        int, typer.Option("--gateway-port", help="The OpenAI-compatible gateway's port.")
    ] = 8080,
    no_gateway: Annotated[bool, typer.Option("--no-gateway", help="Start no gateway.")] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="The model cache (default ~/.cache/agora, shared)."),
    ] = None,
) -> None:
    """A whole network on this machine: node, subnets, miners with real models, validators."""
    from agora.devnet import DevnetConfig, run_devnet
    from agora.tasks.registry import list_task_kinds

    task_list = tuple(t for t in tasks.split(",") if t)
    cheater_list = () if no_cheater else tuple(c for c in cheaters.split(",") if c)
    installed = list_task_kinds()
    if not task_list or any(t not in installed for t in task_list):
        raise CliError(f"--tasks takes a comma-separated list of {', '.join(installed)}")
    if any(c not in ("random", "copycat") for c in cheater_list):
        raise CliError("--cheaters takes random and/or copycat")
    if sequencer not in ("local", "ethereum"):
        raise CliError("--sequencer is local or ethereum")
    if min(miners, generation_miners, validators) < 0 or validators < 1 or tempo < 2:
        raise CliError("need at least one validator, no negative counts, and a tempo of 2+")
    console = Console()
    config = DevnetConfig(
        data_dir=data_dir,
        cache_dir=cache_dir,
        miners=miners,
        generation_miners=generation_miners,
        validators=validators,
        cheaters=cheater_list,
        block_time_ms=block_time_ms,
        tempo=tempo,
        tasks=task_list,
        sequencer=sequencer,
        node_port=port,
        gateway_port=gateway_port,
        gateway=not no_gateway,
        say=lambda message: console.print(message, highlight=False, soft_wrap=True),
    )

    asyncio.run(run_until_signal(lambda stop: run_devnet(config, stop)))

"""Commands of the incentive layer: subnets, neurons, stake, weights, and the Yuma simulator."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agora.amounts import format_agr
from agora.cli.chain import NodeOption, with_client
from agora.cli.common import CliError, emit, fail, parse_agr_option, user_errors
from agora.cli.wallet import JsonOption, WalletDirOption, load_key, wallet_root
from agora.client.client import NodeClient
from agora.client.transactions import send_transaction
from agora.protocol.address import Address, decode_address
from agora.protocol.consensus.weights import compute_commit_hash
from agora.protocol.staking import AddStake, RemoveStake, SetTake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register, Serve, SetHyperparameter
from agora.protocol.weights import CommitWeights, RevealWeights, SetWeights
from agora.tasks.registry import ENTRY_POINT_GROUP, list_task_kinds
from agora.wallet.keys import Keypair

subnet_app = typer.Typer(help="Subnets: markets for one kind of AI work.", no_args_is_help=True)
neuron_app = typer.Typer(help="Join a subnet and publish an endpoint.", no_args_is_help=True)
stake_app = typer.Typer(help="Stake on hotkeys (delegation).", no_args_is_help=True)
weights_app = typer.Typer(help="Validators' weights.", no_args_is_help=True)
simulate_app = typer.Typer(
    help="Replay Yuma Consensus or governance offline.", no_args_is_help=True
)

WalletOption = Annotated[str, typer.Option("--wallet", help="Wallet name.")]
HotkeyOption = Annotated[str, typer.Option("--hotkey", help="Hotkey name in the wallet.")]
NetuidOption = Annotated[int, typer.Option("--netuid", help="Subnet id.")]


def register(app: typer.Typer) -> None:
    app.add_typer(subnet_app, name="subnet")
    app.add_typer(neuron_app, name="neuron")
    app.add_typer(stake_app, name="stake")
    app.add_typer(weights_app, name="weights")
    app.add_typer(simulate_app, name="simulate")


def _send(node: str | None, key: Keypair, body: Any, json_mode: bool) -> None:
    """Sign with ``key``, submit, wait for the receipt; a failed receipt is a user error."""

    async def run(client: NodeClient) -> dict[str, Any]:
        tx_hash = await send_transaction(
            client, public_key=key.public_key, sign=key.sign, body=body
        )
        return await client.wait_for_transaction(tx_hash)

    status = with_client(node, run)
    receipt = status["receipt"]
    if not receipt["success"]:
        fail(f"block {status['height']}: {receipt['message']}", receipt["code"])
    emit(status, json_mode, lambda c: c.print(f"ok: {receipt['hash']} in block {status['height']}"))


# --- subnet ---------------------------------------------------------------------------------


@subnet_app.command("create")
@user_errors
def subnet_create(
    task: Annotated[
        str, typer.Option("--task", help="The task kind (embedding, or any installed plug-in's).")
    ],
    wallet: WalletOption,
    config: Annotated[str, typer.Option("--config", help="Task configuration JSON.")] = "{}",
    owner_hotkey: Annotated[
        str | None, typer.Option("--owner-hotkey", help="The owner's hotkey address.")
    ] = None,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Create a subnet (locks the chain's subnet lock cost)."""
    try:
        json.loads(config)
    except json.JSONDecodeError as error:
        raise CliError(f"--config is not JSON: {error}") from None
    hotkey = decode_address(owner_hotkey) if owner_hotkey else NO_HOTKEY
    key = load_key(wallet_dir, wallet, None)
    _send(
        node, key, CreateSubnet(task_kind=task, task_config=config, owner_hotkey=hotkey), json_mode
    )


@subnet_app.command("list")
@user_errors
def subnet_list(node: NodeOption = None, json_mode: JsonOption = False) -> None:
    """List the subnets."""
    subnets = with_client(node, lambda client: client.list_subnets())
    result = {"subnets": subnets}

    def show(console: Console) -> None:
        table = Table("netuid", "task", "owner", "neurons", "tempo", "registration price")
        for s in result["subnets"]:
            table.add_row(
                str(s["netuid"]),
                s["task_kind"],
                s["owner"][:16] + "…",
                str(s["n"]),
                str(s["hyperparameters"]["tempo"]),
                format_agr(s["burn"]),
            )
        console.print(table)

    emit(result, json_mode, show)


@subnet_app.command("tasks")
@user_errors
def subnet_tasks(json_mode: JsonOption = False) -> None:
    """List the task kinds installed here (Agora's and plug-ins'): what miners can serve."""
    result = {"entry_point_group": ENTRY_POINT_GROUP, "tasks": list_task_kinds()}

    def show(console: Console) -> None:
        for kind in result["tasks"]:
            console.print(kind, highlight=False)

    emit(result, json_mode, show)


@subnet_app.command("show")
@user_errors
def subnet_show(
    netuid: Annotated[int, typer.Argument(help="Subnet id.")],
    matrices: Annotated[
        bool, typer.Option("--matrices", help="Include weights and bonds.")
    ] = False,
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Show a subnet's metagraph as a table."""
    result = with_client(node, lambda client: client.get_metagraph(netuid, matrices=matrices))

    def show(console: Console) -> None:
        subnet = result["subnet"]
        console.print(
            f"subnet {netuid}  task {subnet['task_kind']}  block {result['block']}  "
            f"pending emission {format_agr(subnet['pending_emission'])}"
        )
        table = Table(
            "uid",
            "hotkey",
            "coldkey",
            "stake",
            "permit",
            "active",
            "C",
            "I",
            "D",
            "VT",
            "emission",
            "updated",
            "registered",
            "endpoint",
        )
        for n in result["neurons"]:
            table.add_row(
                str(n["uid"]),
                n["hotkey"][:14] + "…",
                n["coldkey"][:14] + "…",
                format_agr(n["stake"]),
                "yes" if n["validator_permit"] else "",
                "yes" if n["active"] else "",
                str(n["consensus"]),
                str(n["incentive"]),
                str(n["dividends"]),
                str(n["validator_trust"]),
                format_agr(n["emission"]),
                str(n["last_update"]),
                str(n["registered_at"]),
                n["endpoint"],
            )
        console.print(table)
        if matrices:
            rows = Table("uid", "weights (uid:u16)", "bonds (uid:u16)")
            for n in result["neurons"]:
                rows.add_row(
                    str(n["uid"]),
                    " ".join(f"{uid}:{value}" for uid, value in n["weights"]),
                    " ".join(f"{uid}:{value}" for uid, value in n["bonds"]),
                )
            console.print(rows)

    emit(result, json_mode, show)


@subnet_app.command("set")
@user_errors
def subnet_set(
    netuid: NetuidOption,
    name: Annotated[str, typer.Argument(help="Hyperparameter name.")],
    value: Annotated[int, typer.Argument(help="New value (booleans: 0 or 1).")],
    wallet: WalletOption,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Change one of your subnet's hyperparameters."""
    key = load_key(wallet_dir, wallet, None)
    _send(node, key, SetHyperparameter(netuid=netuid, name=name, value=value), json_mode)


# --- neuron ---------------------------------------------------------------------------------


@neuron_app.command("register")
@user_errors
def neuron_register(
    netuid: NetuidOption,
    wallet: WalletOption,
    hotkey: HotkeyOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Register a hotkey on a subnet by burning the current price (the coldkey pays)."""
    from agora.wallet.keystore import Keystore

    hot = Keystore(wallet_root(wallet_dir)).load_hotkey(wallet, hotkey)
    subnet = with_client(node, lambda client: client.get_subnet(netuid))
    price = format_agr(subnet["burn"])
    if not yes and not typer.confirm(f"Burn {price} to register on subnet {netuid}?", err=True):
        raise CliError("registration cancelled")
    key = load_key(wallet_dir, wallet, None)
    _send(node, key, Register(netuid=netuid, hotkey=Address(hot.public_key)), json_mode)


@neuron_app.command("serve")
@user_errors
def neuron_serve(
    netuid: NetuidOption,
    endpoint: Annotated[str, typer.Option("--endpoint", help="http://host:port of your server.")],
    wallet: WalletOption,
    hotkey: HotkeyOption,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Publish the endpoint of a registered hotkey (the hotkey signs and pays the fee)."""
    key = load_key(wallet_dir, wallet, hotkey)
    _send(node, key, Serve(netuid=netuid, endpoint=endpoint), json_mode)


# --- stake ----------------------------------------------------------------------------------


@stake_app.command("add")
@user_errors
def stake_add(
    hotkey: Annotated[str, typer.Option("--hotkey-address", help="agr1... hotkey to back.")],
    amount: Annotated[str, typer.Option("--amount", help="AGR to stake.")],
    wallet: WalletOption,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Stake AGR on a hotkey (yours, or a validator you delegate to)."""
    body = AddStake(hotkey=decode_address(hotkey), amount=parse_agr_option(amount))
    _send(node, load_key(wallet_dir, wallet, None), body, json_mode)


@stake_app.command("remove")
@user_errors
def stake_remove(
    hotkey: Annotated[str, typer.Option("--hotkey-address", help="agr1... hotkey.")],
    amount: Annotated[str, typer.Option("--amount", help="AGR to unstake.")],
    wallet: WalletOption,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Take stake back from a hotkey."""
    body = RemoveStake(hotkey=decode_address(hotkey), amount=parse_agr_option(amount))
    _send(node, load_key(wallet_dir, wallet, None), body, json_mode)


@stake_app.command("show")
@user_errors
def stake_show(
    hotkey: Annotated[str, typer.Argument(help="agr1... hotkey.")],
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Show a hotkey's owner, take, total stake and stakers."""
    decode_address(hotkey)
    result = with_client(node, lambda client: client.get_hotkey(hotkey))

    def show(console: Console) -> None:
        console.print(
            f"{hotkey}\n  owner {result['owner']}  take {result['take']}/65535  "
            f"total {format_agr(result['total_stake'])}"
        )
        for staker in result["stakers"]:
            console.print(f"  {staker['coldkey']}  {format_agr(staker['stake'])}")

    emit(result, json_mode, show)


@stake_app.command("set-take")
@user_errors
def stake_set_take(
    hotkey: Annotated[str, typer.Option("--hotkey-address", help="Your validator hotkey.")],
    take: Annotated[int, typer.Option("--take", help="Commission, out of 65535.")],
    wallet: WalletOption,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Set your validator's take on its delegators' dividends."""
    body = SetTake(hotkey=decode_address(hotkey), take_u16=take)
    _send(node, load_key(wallet_dir, wallet, None), body, json_mode)


# --- weights --------------------------------------------------------------------------------


def _parse_u16_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise CliError(f"{option}: expected comma-separated integers like 0,3,7") from None
    if any(not 0 <= v <= 65_535 for v in values):
        raise CliError(f"{option}: every value must be between 0 and 65535")
    return values


def _commits_dir(wallet_dir: Path | None, wallet: str) -> Path:
    return wallet_root(wallet_dir) / wallet / "weight-commits"


@weights_app.command("set")
@user_errors
def weights_set(
    netuid: NetuidOption,
    uids: Annotated[str, typer.Option("--uids", help="Comma-separated uids.")],
    values: Annotated[str, typer.Option("--values", help="Comma-separated u16 weights.")],
    wallet: WalletOption,
    hotkey: HotkeyOption,
    version_key: Annotated[int, typer.Option("--version-key")] = 0,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Set weights directly (subnets without commit-reveal)."""
    body = SetWeights(
        netuid=netuid,
        uids=_parse_u16_list(uids, "--uids"),
        values=_parse_u16_list(values, "--values"),
        version_key=version_key,
    )
    _send(node, load_key(wallet_dir, wallet, hotkey), body, json_mode)


@weights_app.command("commit")
@user_errors
def weights_commit(
    netuid: NetuidOption,
    uids: Annotated[str, typer.Option("--uids", help="Comma-separated uids.")],
    values: Annotated[str, typer.Option("--values", help="Comma-separated u16 weights.")],
    wallet: WalletOption,
    hotkey: HotkeyOption,
    version_key: Annotated[int, typer.Option("--version-key")] = 0,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Commit a hash of your weights; the salt is kept in the wallet for `weights reveal`."""
    from agora.wallet.keystore import write_private_file

    key = load_key(wallet_dir, wallet, hotkey)
    uid_list, value_list = _parse_u16_list(uids, "--uids"), _parse_u16_list(values, "--values")
    salt = tuple(secrets.randbelow(65_536) for _ in range(8))
    commit_hash = compute_commit_hash(
        hotkey=key.public_key,
        netuid=netuid,
        uids=uid_list,
        values=value_list,
        salt=salt,
        version_key=version_key,
    )
    record = {
        "netuid": netuid,
        "hotkey": hotkey,
        "uids": uid_list,
        "values": value_list,
        "salt": salt,
        "version_key": version_key,
        "hash": "0x" + commit_hash.hex(),
    }
    path = _commits_dir(wallet_dir, wallet) / f"{netuid}-{commit_hash.hex()[:16]}.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_file(path, json.dumps(record).encode(), overwrite=False)
    try:
        _send(node, key, CommitWeights(netuid=netuid, commit_hash=commit_hash), json_mode)
    except typer.Exit:
        # The chain refused the commit: a record left behind would be revealed first, and fail.
        path.unlink(missing_ok=True)
        raise


@weights_app.command("reveal")
@user_errors
def weights_reveal(
    netuid: NetuidOption,
    wallet: WalletOption,
    hotkey: HotkeyOption,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Reveal the oldest weights committed from this wallet on the subnet."""
    directory = _commits_dir(wallet_dir, wallet)
    pending = sorted(directory.glob(f"{netuid}-*.json"), key=lambda p: p.stat().st_mtime)
    records = [json.loads(p.read_text()) for p in pending]
    records = [r for r in records if r["hotkey"] == hotkey]
    if not records:
        raise CliError(f"no commit of hotkey {hotkey!r} on subnet {netuid} to reveal")
    record = records[0]
    body = RevealWeights(
        netuid=netuid,
        uids=tuple(record["uids"]),
        values=tuple(record["values"]),
        salt=tuple(record["salt"]),
        version_key=record["version_key"],
    )
    _send(node, load_key(wallet_dir, wallet, hotkey), body, json_mode)
    (directory / f"{netuid}-{record['hash'][2:18]}.json").unlink(missing_ok=True)


# --- simulate -------------------------------------------------------------------------------


@simulate_app.command("epoch")
@user_errors
def simulate_epoch(
    scenario: Annotated[Path, typer.Argument(help="Scenario JSON (docs/yuma.md §0.1).")],
) -> None:
    """Replay a scenario through the protocol's Yuma code; print each epoch as JSON."""
    from agora.simulate import load_scenario, run_scenario

    outputs = run_scenario(load_scenario(scenario))
    emit(outputs, True)


@simulate_app.command("governance")
@user_errors
def simulate_governance(
    scenario: Annotated[
        Path, typer.Argument(help="Scenario JSON: accounts, stakes, earnings, proposals, votes.")
    ],
) -> None:
    """Replay accounts, stakes, earnings and votes through the ledger's governance; print
    every step's tally, every proposal and the final state root as JSON."""
    from agora.simulate import load_scenario, run_governance_scenario

    emit(run_governance_scenario(load_scenario(scenario)), True)

"""What the README promises of ``--json``: the commands it names take it, and the commands it
says print a log (the processes) or always JSON do not need it."""

from __future__ import annotations

from typing import Any

import typer.main

from agora.cli.main import app

# As the README lists them; a group name stands for all of its commands.
WITH_JSON_OPTION = (
    "balance",
    "transfer",
    "tx",
    "block",
    "faucet",
    "wallet",
    "subnet",
    "neuron",
    "stake",
    "weights",
    "channel open",
    "channel top-up",
    "channel claim",
    "channel close",
    "channel show",
    "channel list",
    "inbox deploy",
    "gateway receipts",
    "gateway channels",
    "gov",
    "treasury",
)
# Processes print a log for people; ``channel voucher`` and ``simulate epoch`` print JSON only.
WITHOUT_JSON_OPTION = (
    "devnet",
    "node run",
    "node follow",
    "miner run",
    "validator run",
    "gateway",
    "channel voucher",
    "simulate epoch",
    "simulate governance",
)


def list_commands(command: Any, prefix: tuple[str, ...] = ()) -> dict[str, bool]:
    """Each runnable command (``"channel open"``) and whether it takes ``--json``."""
    found = {}
    takes_json = any("--json" in getattr(p, "opts", ()) for p in command.params)
    subcommands = getattr(command, "commands", None)
    if not subcommands or getattr(command, "invoke_without_command", False):
        if prefix:
            found[" ".join(prefix)] = takes_json
    for name, sub in (subcommands or {}).items():
        found |= list_commands(sub, (*prefix, name))
    return found


def test_the_commands_the_readme_names_take_json() -> None:
    commands = list_commands(typer.main.get_command(app))
    claimed = {
        name
        for name in commands
        if any(name == group or name.startswith(group + " ") for group in WITH_JSON_OPTION)
    }
    assert len(claimed) >= len(WITH_JSON_OPTION)
    assert sorted(name for name in claimed if not commands[name]) == []


def test_the_commands_the_readme_excepts_exist_without_json() -> None:
    commands = list_commands(typer.main.get_command(app))
    assert {name: commands.get(name) for name in WITHOUT_JSON_OPTION} == dict.fromkeys(
        WITHOUT_JSON_OPTION, False
    )

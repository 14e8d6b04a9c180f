"""`agora wallet`: create, list, show, import and export keys from the command line.

A thin shell over ``agora.wallet.keystore.Keystore``: each command resolves the wallet
directory and the password, makes one keystore call and prints the result. Passwords come
from a hidden prompt, or from ``AGORA_WALLET_PASSWORD`` for scripts; prompts go to stderr
so that ``--json`` output on stdout stays parseable.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agora.cli.common import CliError, emit, user_errors
from agora.wallet.errors import InvalidPassword, KeyExists
from agora.wallet.keys import Keypair, parse_seed_hex
from agora.wallet.keystore import (
    KDF_PRESETS,
    HotkeyInfo,
    Keystore,
    WalletInfo,
    decrypt_coldkey,
    validate_name,
    write_private_file,
)

PASSWORD_ENV = "AGORA_WALLET_PASSWORD"
MIN_PASSWORD_CHARS = 8
HOME_ENV = "AGORA_HOME"

app = typer.Typer(
    help="Wallets: a coldkey that holds funds, and the hotkeys it owns.",
    no_args_is_help=True,
)


class KdfCost(StrEnum):
    sensitive = "sensitive"
    moderate = "moderate"
    interactive = "interactive"
    minimum = "minimum"


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WalletDirOption = Annotated[
    Path | None,
    typer.Option(
        "--wallet-dir",
        help="Directory holding the wallets (default: $AGORA_HOME/wallets, else ~/.agora/wallets).",
    ),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing key (it is lost for good).")
]
KdfOption = Annotated[
    KdfCost,
    typer.Option(
        "--kdf",
        help="Argon2id cost of the coldkey password; 'minimum' only for throwaway wallets.",
    ),
]


@app.command()
@user_errors
def create(
    wallet: Annotated[str, typer.Argument(help="Name of the new wallet.")],
    kdf: KdfOption = KdfCost.moderate,
    overwrite: OverwriteOption = False,
    json_mode: JsonOption = False,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Create a wallet: a new coldkey, encrypted with a password."""
    keystore = Keystore(wallet_root(wallet_dir))
    _refuse_existing_wallet(keystore, wallet, overwrite)
    keypair = keystore.create_wallet(
        wallet, _new_password(), kdf=KDF_PRESETS[kdf.value], overwrite=overwrite
    )
    data = {"wallet": wallet, "coldkey_address": keypair.address, "wallet_dir": str(keystore.root)}
    emit(data, json_mode, lambda console: _print_created(console, data))


@app.command("new-hotkey")
@user_errors
def new_hotkey(
    wallet: Annotated[str, typer.Argument(help="Wallet whose coldkey owns the hotkey.")],
    hotkey: Annotated[str, typer.Argument(help="Name of the new hotkey.")] = "default",
    overwrite: OverwriteOption = False,
    json_mode: JsonOption = False,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Create a hotkey (stored unencrypted, for unattended miners and validators)."""
    keystore = Keystore(wallet_root(wallet_dir))
    keystore.create_hotkey(wallet, hotkey, overwrite=overwrite)
    info = keystore.get_hotkey(wallet, hotkey)
    emit(_hotkey_json(info), json_mode, lambda console: _print_hotkeys(console, [info]))


@app.command("list")
@user_errors
def list_wallets(json_mode: JsonOption = False, wallet_dir: WalletDirOption = None) -> None:
    """List every wallet with its coldkey and hotkey addresses."""
    keystore = Keystore(wallet_root(wallet_dir))
    wallets = keystore.list_wallets()
    data = {"wallet_dir": str(keystore.root), "wallets": [_wallet_json(w) for w in wallets]}
    emit(data, json_mode, lambda console: _print_wallets(console, keystore.root, wallets))


@app.command()
@user_errors
def show(
    wallet: Annotated[str, typer.Argument(help="Wallet to show.")],
    json_mode: JsonOption = False,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Show a wallet's addresses (no password needed)."""
    info = Keystore(wallet_root(wallet_dir)).get_wallet(wallet)
    emit(_wallet_json(info), json_mode, lambda console: _print_wallet(console, info))


@app.command("import")
@user_errors
def import_key(
    wallet: Annotated[str, typer.Argument(help="Wallet to import into.")],
    hotkey: Annotated[
        str | None, typer.Option("--hotkey", help="Import a hotkey of this name.")
    ] = None,
    seed_file: Annotated[
        Path | None,
        typer.Option(
            "--seed-file",
            help="A file holding the 32-byte seed as hex, or - for stdin (without it the "
            "seed is prompted for, hidden).",
        ),
    ] = None,
    seed_hex: Annotated[
        str | None,
        typer.Option("--seed-hex", hidden=True, help="Refused: use --seed-file or the prompt."),
    ] = None,
    keyfile: Annotated[
        Path | None, typer.Option("--keyfile", help="A keyfile written by `export`.")
    ] = None,
    kdf: KdfOption = KdfCost.moderate,
    overwrite: OverwriteOption = False,
    json_mode: JsonOption = False,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Import a coldkey (default) or a hotkey from a seed or an exported keyfile.

    The seed never goes on the command line (other users' `ps` and the shell history would
    see it): it is read from --seed-file, from stdin (--seed-file -) or from a hidden prompt.
    """
    if seed_hex is not None:
        raise CliError(
            "--seed-hex would put the secret on the command line, where `ps` and the shell "
            "history see it: pass --seed-file FILE (or - for stdin), or type it at the prompt"
        )
    if seed_file is not None and keyfile is not None:
        raise CliError("give either --seed-file or --keyfile, not both")
    keystore = Keystore(wallet_root(wallet_dir))
    if hotkey is None:
        _import_coldkey(keystore, wallet, keyfile, seed_file, kdf, overwrite)
        info = keystore.get_wallet(wallet)
        emit(_wallet_json(info), json_mode, lambda console: _print_wallet(console, info))
        return
    _import_hotkey(keystore, wallet, hotkey, keyfile, seed_file, overwrite)
    hotkey_info = keystore.get_hotkey(wallet, hotkey)
    emit(_hotkey_json(hotkey_info), json_mode, lambda c: _print_hotkeys(c, [hotkey_info]))


@app.command()
@user_errors
def export(
    wallet: Annotated[str, typer.Argument(help="Wallet to export from.")],
    hotkey: Annotated[
        str | None, typer.Option("--hotkey", help="Export this hotkey instead of the coldkey.")
    ] = None,
    unsafe_plaintext: Annotated[
        bool,
        typer.Option(
            "--unsafe-plaintext",
            help="Print the raw seed in hex (anyone who sees it owns the key).",
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (mode 0600).")
    ] = None,
    overwrite: OverwriteOption = False,
    json_mode: JsonOption = False,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Export a key: the coldkey keyfile as is (encrypted), or the raw seed if asked."""
    keystore = Keystore(wallet_root(wallet_dir))
    if unsafe_plaintext:
        keypair = _load_key(keystore, wallet, hotkey)
        data = {"wallet": wallet, "hotkey": hotkey, "address": keypair.address}
        _export_text(
            data | {"seed_hex": keypair.seed.hex()}, "seed_hex", output, overwrite, json_mode
        )
        return
    if hotkey is None:
        keyfile = keystore.export_coldkey_file(wallet)
    else:
        keyfile = keystore.export_hotkey_file(wallet, hotkey)
    data = {"wallet": wallet, "hotkey": hotkey, "keyfile": json.loads(keyfile)}
    _export_text(data, "keyfile", output, overwrite, json_mode, raw=keyfile.decode())


def wallet_root(wallet_dir: Path | None) -> Path:
    """``--wallet-dir``, else ``$AGORA_HOME/wallets``, else ``~/.agora/wallets``."""
    if wallet_dir is not None:
        return wallet_dir.expanduser()
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "wallets"
    return Path.home() / ".agora" / "wallets"


def _refuse_existing_wallet(keystore: Keystore, wallet: str, overwrite: bool) -> None:
    """Check before asking for a password, so nobody types one only to be refused."""
    validate_name(wallet, "wallet")
    if not overwrite and keystore.has_wallet(wallet):
        raise KeyExists(
            f"wallet {wallet!r} already exists: pass --overwrite to replace its coldkey"
        )


def _import_coldkey(
    keystore: Keystore,
    wallet: str,
    keyfile: Path | None,
    seed_file: Path | None,
    kdf: KdfCost,
    overwrite: bool,
) -> Keypair:
    _refuse_existing_wallet(keystore, wallet, overwrite)
    if keyfile is not None:
        data = keyfile.read_bytes()
        return keystore.import_coldkey_file(wallet, data, _existing_password(), overwrite=overwrite)
    seed = _read_seed(seed_file)
    return keystore.import_coldkey(
        wallet, seed, _new_password(), kdf=KDF_PRESETS[kdf.value], overwrite=overwrite
    )


def _import_hotkey(
    keystore: Keystore,
    wallet: str,
    hotkey: str,
    keyfile: Path | None,
    seed_file: Path | None,
    overwrite: bool,
) -> Keypair:
    validate_name(hotkey, "hotkey")
    keystore.get_coldkey_address(wallet)  # a missing wallet is reported before the seed prompt
    if keyfile is not None:
        return keystore.import_hotkey_file(
            wallet, hotkey, keyfile.read_bytes(), overwrite=overwrite
        )
    return keystore.import_hotkey(wallet, hotkey, _read_seed(seed_file), overwrite=overwrite)


def _load_key(keystore: Keystore, wallet: str, hotkey: str | None) -> Keypair:
    if hotkey is not None:
        return keystore.load_hotkey(wallet, hotkey)
    keyfile = keystore.export_coldkey_file(wallet)
    return decrypt_coldkey(keyfile, _existing_password(), f"the coldkey of wallet {wallet!r}")


def _export_text(
    data: dict[str, Any],
    field: str,
    output: Path | None,
    overwrite: bool,
    json_mode: bool,
    raw: str | None = None,
) -> None:
    text = raw if raw is not None else f"{data[field]}\n"
    if output is None:
        if json_mode:
            emit(data, json_mode)
        else:
            sys.stdout.write(text)
        return
    write_private_file(output.expanduser(), text.encode(), overwrite=overwrite)
    summary = {key: value for key, value in data.items() if key != field} | {"path": str(output)}
    emit(summary, json_mode, lambda console: _say(console, f"Wrote {output}"))


def _new_password() -> str:
    """A password chosen now: at least MIN_PASSWORD_CHARS characters (InvalidPassword)."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = str(
            typer.prompt(
                "New coldkey password", hide_input=True, confirmation_prompt=True, err=True
            )
        )
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidPassword(
            f"a coldkey password needs at least {MIN_PASSWORD_CHARS} characters; a short one "
            "falls to guessing whatever the key derivation costs"
        )
    return password


def _existing_password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    return str(typer.prompt("Coldkey password", hide_input=True, err=True))


def _read_seed(seed_file: Path | None) -> bytes:
    """The seed from ``seed_file`` (``-``: stdin), else from a hidden prompt."""
    if seed_file is None:
        text = str(typer.prompt("Seed (64 hex characters)", hide_input=True, err=True))
    elif str(seed_file) == "-":
        text = sys.stdin.readline()
    else:
        text = seed_file.expanduser().read_text()
    return parse_seed_hex(text.strip())


def _hotkey_json(info: HotkeyInfo) -> dict[str, str]:
    return {
        "wallet": info.wallet,
        "hotkey": info.name,
        "address": info.address,
        "coldkey_address": info.coldkey_address,
    }


def _wallet_json(info: WalletInfo) -> dict[str, Any]:
    return {
        "wallet": info.name,
        "coldkey_address": info.coldkey_address,
        "has_coldkey": info.has_coldkey,
        "hotkeys": [{"hotkey": hotkey.name, "address": hotkey.address} for hotkey in info.hotkeys],
    }


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _print_created(console: Console, data: dict[str, str]) -> None:
    _say(console, f"Created wallet {data['wallet']} in {data['wallet_dir']}")
    _say(console, f"  coldkey  {data['coldkey_address']}")
    _say(console, f"Back it up: agora wallet export {data['wallet']} --output BACKUP.json")


def _print_wallet(console: Console, info: WalletInfo) -> None:
    watch_only = "" if info.has_coldkey else "  (watch-only: no coldkey secret)"
    _say(console, f"{info.name}{watch_only}")
    _say(console, f"  coldkey  {info.coldkey_address}")
    for hotkey in info.hotkeys:
        _say(console, f"  hotkey   {hotkey.address}  ({hotkey.name})")


def _print_hotkeys(console: Console, hotkeys: list[HotkeyInfo]) -> None:
    for info in hotkeys:
        _say(console, f"{info.wallet}/{info.name}")
        _say(console, f"  hotkey   {info.address}")
        _say(console, f"  owner    {info.coldkey_address}")


def _print_wallets(console: Console, root: Path, wallets: list[WalletInfo]) -> None:
    if not wallets:
        _say(console, f"No wallets in {root}: create one with `agora wallet create NAME`")
        return
    for info in wallets:
        _print_wallet(console, info)


def load_key(wallet_dir: Path | None, wallet: str, hotkey: str | None) -> Keypair:
    """The key other commands sign with: a hotkey, or the coldkey (asks its password)."""
    return _load_key(Keystore(wallet_root(wallet_dir)), wallet, hotkey)

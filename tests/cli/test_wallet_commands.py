"""`agora wallet` as a person or a script uses it: JSON that parses, one-line errors.

The commands run through a real typer root (as ``agora`` mounts them) against real files
under ``tmp_path``, with the cheapest argon2id cost (``--kdf minimum``) to stay fast.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from agora.cli.wallet import app
from agora.wallet.keys import Keypair

PASSWORD = "hunter2-but-longer"
SEED_HEX = bytes(range(32)).hex()


def make_root() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(app, name="wallet")
    return root


class Cli:
    """Runs `agora wallet ...` with a wallet directory and, by default, a password in env."""

    def __init__(self, wallet_dir: Path) -> None:
        self.root = make_root()
        self.runner = CliRunner()
        self.wallet_dir = wallet_dir

    def run(self, *args: str, password: str | None = PASSWORD, input: str | None = None) -> Result:
        env = {"AGORA_WALLET_PASSWORD": password, "AGORA_HOME": None}
        arguments = ["wallet", *args, "--wallet-dir", str(self.wallet_dir)]
        return self.runner.invoke(self.root, arguments, env=env, input=input)

    def json(self, *args: str, password: str | None = PASSWORD) -> Any:
        result = self.run(*args, "--json", password=password)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "wallets")


def assert_user_error(result: Result, code: int) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error[{code}]: ")


def test_create_show_list_new_hotkey_as_json(cli: Cli) -> None:
    created = cli.json("create", "alice", "--kdf", "minimum")
    assert created["wallet"] == "alice"
    assert created["coldkey_address"].startswith("agr1")
    hotkey = cli.json("new-hotkey", "alice", "miner1")
    assert hotkey["hotkey"] == "miner1"
    assert hotkey["coldkey_address"] == created["coldkey_address"]
    shown = cli.json("show", "alice", password=None)
    assert shown["coldkey_address"] == created["coldkey_address"]
    assert shown["hotkeys"] == [{"hotkey": "miner1", "address": hotkey["address"]}]
    listed = cli.json("list", password=None)
    assert [w["wallet"] for w in listed["wallets"]] == ["alice"]
    assert listed["wallets"][0] == shown


def test_human_output_shows_the_addresses(cli: Cli) -> None:
    created = cli.json("create", "alice", "--kdf", "minimum")
    hotkey = cli.json("new-hotkey", "alice")
    result = cli.run("list")
    assert result.exit_code == 0
    assert created["coldkey_address"] in result.stdout
    assert hotkey["address"] in result.stdout
    assert "default" in result.stdout


def test_password_prompt_with_confirmation_keeps_stdout_json(cli: Cli) -> None:
    result = cli.run(
        "create", "alice", "--kdf", "minimum", "--json", password=None, input="pw1-long\npw1-long\n"
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    exported = cli.run("export", "alice", "--unsafe-plaintext", password=None, input="pw1-long\n")
    assert exported.exit_code == 0, exported.output
    seed_hex = exported.stdout.strip()
    assert Keypair.from_seed_hex(seed_hex).address == created["coldkey_address"]


def test_export_keyfile_then_import_it_elsewhere(cli: Cli, tmp_path: Path) -> None:
    created = cli.json("create", "alice", "--kdf", "minimum")
    backup = tmp_path / "backup.json"
    cli.json("export", "alice", "--output", str(backup))
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert json.loads(backup.read_bytes())["address"] == created["coldkey_address"]
    other = Cli(tmp_path / "elsewhere")
    imported = other.json("import", "restored", "--keyfile", str(backup))
    assert imported["coldkey_address"] == created["coldkey_address"]
    assert imported["has_coldkey"] is True


def test_export_prints_the_encrypted_keyfile_as_is(cli: Cli) -> None:
    cli.json("create", "alice", "--kdf", "minimum")
    result = cli.run("export", "alice", password=None)
    assert result.exit_code == 0
    keyfile = (cli.wallet_dir / "alice" / "coldkey").read_text()
    assert result.stdout == keyfile
    as_json = cli.json("export", "alice", password=None)
    assert as_json["keyfile"] == json.loads(keyfile)


def write_seed(cli: Cli, seed_hex: str) -> str:
    path = cli.wallet_dir.parent / f"seed-{seed_hex[:8]}.txt"
    path.write_text(seed_hex + "\n")
    return str(path)


def test_import_seeds_and_export_them_back_only_when_asked(cli: Cli) -> None:
    imported = cli.json(
        "import", "alice", "--seed-file", write_seed(cli, SEED_HEX), "--kdf", "minimum"
    )
    assert imported["coldkey_address"] == Keypair.from_seed_hex(SEED_HEX).address
    hotkey_seed = "ab" * 32
    hotkey = cli.json(
        "import", "alice", "--hotkey", "miner1", "--seed-file", write_seed(cli, hotkey_seed)
    )
    assert hotkey["address"] == Keypair.from_seed_hex(hotkey_seed).address
    assert hotkey["coldkey_address"] == imported["coldkey_address"]
    exported = cli.json("export", "alice", "--unsafe-plaintext")
    assert exported["seed_hex"] == SEED_HEX
    exported = cli.json("export", "alice", "--hotkey", "miner1", "--unsafe-plaintext")
    assert exported["seed_hex"] == hotkey_seed


def test_import_seed_from_a_hidden_prompt(cli: Cli) -> None:
    cli.json("create", "alice", "--kdf", "minimum")
    result = cli.run("import", "alice", "--hotkey", "h", "--json", input=SEED_HEX + "\n")
    assert result.exit_code == 0, result.output
    assert SEED_HEX not in result.output
    assert json.loads(result.stdout)["address"] == Keypair.from_seed_hex(SEED_HEX).address


def test_import_seed_from_stdin_never_from_the_command_line(cli: Cli) -> None:
    cli.json("create", "alice", "--kdf", "minimum")
    result = cli.run("import", "alice", "--hotkey", "h", "--seed-file", "-", input=SEED_HEX)
    assert result.exit_code == 0, result.output
    assert SEED_HEX not in result.output
    hotkey = cli.json("export", "alice", "--hotkey", "h", "--unsafe-plaintext")
    assert hotkey["seed_hex"] == SEED_HEX

    refused = cli.run("import", "alice", "--hotkey", "g", "--seed-hex", SEED_HEX)
    assert_user_error(refused, 2)
    assert "--seed-file" in refused.stderr
    assert not (cli.wallet_dir / "alice" / "hotkeys" / "g.json").exists()
    bad = write_seed(cli, "abc")
    assert_user_error(cli.run("import", "alice", "--hotkey", "g", "--seed-file", bad), 3108)


def test_overwrite_needs_the_flag(cli: Cli) -> None:
    first = cli.json("create", "alice", "--kdf", "minimum")
    assert_user_error(cli.run("create", "alice", "--kdf", "minimum"), 3104)
    assert cli.json("show", "alice")["coldkey_address"] == first["coldkey_address"]
    second = cli.json("create", "alice", "--kdf", "minimum", "--overwrite")
    assert second["coldkey_address"] != first["coldkey_address"]
    cli.json("new-hotkey", "alice", "miner1")
    assert_user_error(cli.run("new-hotkey", "alice", "miner1"), 3104)
    cli.json("new-hotkey", "alice", "miner1", "--overwrite")


def test_wallet_dir_defaults_to_agora_home(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"AGORA_HOME": str(tmp_path / "home"), "AGORA_WALLET_PASSWORD": PASSWORD}
    arguments = ["wallet", "create", "alice", "--kdf", "minimum", "--json"]
    result = runner.invoke(make_root(), arguments, env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "wallets" / "alice" / "coldkey").is_file()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("create", "../evil", "--kdf", "minimum"), 3101),
        (("new-hotkey", "alice", "a/b"), 3101),
        (("show", "nobody"), 3102),
        (("new-hotkey", "nobody"), 3102),
        (("export", "alice", "--hotkey", "ghost"), 3103),
        (("import", "alice", "--hotkey", "h", "--seed-file", "-"), 3108),
        (("import", "alice", "--seed-file", "seed.txt", "--keyfile", "x.json"), 2),
        (("import", "alice", "--hotkey", "h", "--seed-hex", SEED_HEX), 2),
    ],
)
def test_user_errors_are_one_line_and_exit_non_zero(
    cli: Cli, args: tuple[str, ...], code: int
) -> None:
    cli.json("create", "alice", "--kdf", "minimum")
    assert_user_error(cli.run(*args), code)


def test_wrong_password_is_a_user_error(cli: Cli) -> None:
    cli.json("create", "alice", "--kdf", "minimum")
    result = cli.run("export", "alice", "--unsafe-plaintext", password="wrong")
    assert_user_error(result, 3105)
    assert result.stdout == ""


def test_corrupt_keyfile_is_a_user_error(cli: Cli) -> None:
    cli.json("create", "alice", "--kdf", "minimum")
    (cli.wallet_dir / "alice" / "coldkey").write_text("{not json")
    assert_user_error(cli.run("export", "alice", "--unsafe-plaintext"), 3106)
    assert_user_error(cli.run("export", "alice", "--json"), 3106)
    assert_user_error(cli.run("export", "alice"), 3106)


def test_missing_keyfile_to_import_is_a_user_error(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("import", "alice", "--keyfile", str(tmp_path / "absent.json"))
    assert_user_error(result, 2)


def test_a_short_new_password_is_refused(cli: Cli) -> None:
    for password in ("x", "1234567"):
        result = cli.run("create", "shorty", "--kdf", "minimum", password=password)
        assert_user_error(result, 3109)
        assert "at least 8 characters" in result.stderr
    assert cli.json("list", password=None)["wallets"] == []
    assert cli.json("create", "shorty", "--kdf", "minimum", password="12345678")["wallet"]


def test_an_existing_world_writable_wallets_folder_is_made_private(cli: Cli) -> None:
    cli.wallet_dir.mkdir(parents=True)
    cli.wallet_dir.chmod(0o777)
    cli.json("create", "alice", "--kdf", "minimum")
    assert cli.wallet_dir.stat().st_mode & 0o777 == 0o700
    assert (cli.wallet_dir / "alice").stat().st_mode & 0o777 == 0o700

"""`agora service serve | list | show | call | renew | register` against a real dev node.

`serve` runs as its own process on a module written to a temporary directory (the way a user
runs their own function); the other commands run through the real `agora` typer root, each
with `--json`. The served process stops on SIGTERM after claiming what it earned.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent_helpers import AGR, create_subnet, fund, make_keypair
from node_helpers import NodeProcesses
from typer.testing import CliRunner

from agora.cli.main import app
from agora.client.client import NodeClient
from agora.wallet.keystore import KDF_PRESETS, Keystore

PASSWORD = "unused"
MODULE = '''
from agora.agents import service


@service(name="cli-double", price="0.000001", tags=("cli-test",))
def double(number: int) -> int:
    """Twice a number."""
    return 2 * number
'''


def test_service_commands(tmp_path: Path) -> None:
    owner, buyer = make_keypair("cli-owner"), make_keypair("cli-buyer")
    wallet_dir = tmp_path / "wallets"
    keystore = Keystore(wallet_dir)
    keystore.create_wallet("agent", PASSWORD, kdf=KDF_PRESETS["minimum"])
    keystore.import_hotkey("agent", "owner", owner.seed)
    keystore.import_hotkey("agent", "buyer", buyer.seed)
    (tmp_path / "cli_service_module.py").write_text(MODULE)
    processes = NodeProcesses(tmp_path / "logs")
    served: subprocess.Popen[bytes] | None = None
    try:
        node = processes.run(tmp_path / "node")

        async def prepare() -> int:
            async with NodeClient(node.url) as client:
                netuid = await create_subnet(client)
                await fund(client, owner, 10 * AGR)
                await fund(client, buyer, 10 * AGR)
                return netuid

        netuid = asyncio.run(prepare())
        runner = CliRunner()
        env = {"AGORA_WALLET_PASSWORD": PASSWORD, "AGORA_HOME": None, "AGORA_NODE": None}

        def cli(*args: str) -> Any:
            arguments = [*args, "--node", node.url, "--json"]
            result = runner.invoke(app, arguments, env=env)
            assert result.exit_code == 0, (arguments, result.output)
            return json.loads(result.stdout)

        served = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agora",
                "service",
                "serve",
                "cli_service_module:double",
                "--wallet",
                "agent",
                "--hotkey",
                "owner",
                "--wallet-dir",
                str(wallet_dir),
                "--netuid",
                str(netuid),
                "--node",
                node.url,
                "--json",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )
        assert served.stdout is not None
        line = served.stdout.readline()  # one JSON line once it is registered and serving
        assert line, served.stderr.read() if served.stderr else ""
        started = json.loads(line)
        assert started["name"] == "cli-double"
        service_id = started["service_id"]

        (entry,) = cli("service", "list", "--tag", "cli-test")["services"]
        assert entry["id"] == service_id and entry["price"] == {"amount": 1000, "unit": "call"}
        shown = cli("service", "show", service_id)
        assert shown["endpoints"][0]["url"] == started["url"]
        answer = cli(
            "service",
            "call",
            "--tag",
            "cli-test",
            "--args",
            '{"number": 21}',
            "--wallet",
            "agent",
            "--hotkey",
            "buyer",
            "--wallet-dir",
            str(wallet_dir),
        )
        assert answer["result"] == 42 and answer["receipt"]["cost"] == 1000
        renewed = cli(
            "service",
            "renew",
            service_id,
            "--ttl",
            "5000",
            "--wallet",
            "agent",
            "--hotkey",
            "owner",
            "--wallet-dir",
            str(wallet_dir),
        )
        assert renewed["receipt"]["success"]
        assert cli("service", "show", service_id)["expiry"] == renewed["height"] + 5000
        listed = cli(
            "service",
            "register",
            "--name",
            "elsewhere",
            "--url",
            "https://agent.example",
            "--price",
            "0.01",
            "--tag",
            "cli-test",
            "--netuid",
            str(netuid),
            "--wallet",
            "agent",
            "--hotkey",
            "owner",
            "--wallet-dir",
            str(wallet_dir),
        )
        assert listed["proof"]["endpoints"][0]["url"] == "https://agent.example"
        assert len(cli("service", "list", "--tag", "cli-test")["services"]) == 2

        served.send_signal(signal.SIGTERM)
        assert served.wait(timeout=30) == 0
        channels = cli("channel", "list", "--payee", owner.address)
        assert [c["claimed"] for c in channels["channels"]] == [1000]
    finally:
        if served is not None and served.poll() is None:
            served.kill()
            served.wait()
        processes.stop_all()

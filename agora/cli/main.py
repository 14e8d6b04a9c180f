"""The `agora` command: one entry point, a sub-command per area."""

from __future__ import annotations

import typer

from agora.cli import (
    chain,
    channels,
    gateway,
    governance,
    incentive,
    lineage,
    node,
    participants,
    services,
    wallet,
)

app = typer.Typer(
    help="Agora: an open network for AI work.", no_args_is_help=True, add_completion=False
)
app.add_typer(wallet.app, name="wallet")
app.add_typer(node.app, name="node")
app.add_typer(node.inbox_app, name="inbox")
chain.register(app)
incentive.register(app)
channels.register(app)
participants.register(app)
gateway.register(app)
governance.register(app)
services.register(app)
lineage.register(app)


def main() -> None:
    app()

"""`agora gov` and `agora treasury`: propose, vote, and read proposals, parameters and the treasury.

A proposal is a JSON file a person writes (see ``agora.node.wire.proposal_from_json``
for every kind)::

    {"kind": "param_change", "changes": {"min_fee": 2000}, "description": "dearer spam"}
    {"kind": "treasury_spend", "recipient": "agr1...", "amount": "5", "payments": 4}

`agora gov propose` checks the file (kind, fields, hard bounds) before it asks for the
wallet's password, so a mistake costs neither a signature nor a fee.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agora.amounts import format_agr
from agora.cli.chain import NodeOption, with_client
from agora.cli.common import CliError, emit, fail, parse_agr_option, user_errors
from agora.cli.wallet import JsonOption, WalletDirOption, load_key
from agora.client.client import NodeClient
from agora.client.transactions import send_transaction
from agora.node.wire import proposal_from_json
from agora.protocol.governance import (
    CHOICES,
    MAX_CONVICTION,
    PROPOSAL_KIND_NAMES,
    STATUSES,
    TRACK_NAMES,
    Vote,
)
from agora.protocol.transactions import get_kind_of
from agora.wallet.keys import Keypair

app = typer.Typer(help="Governance: proposals, votes, parameters.", no_args_is_help=True)
treasury_app = typer.Typer(help="The treasury, spent only by vote.", no_args_is_help=True)

WalletOption = Annotated[str, typer.Option("--wallet", help="Wallet whose coldkey signs.")]


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="gov")
    app_.add_typer(treasury_app, name="treasury")


def read_proposal_file(path: Path) -> Any:
    """The proposal body in ``path``, checked; a CliError or a coded protocol error.

    A spend's ``amount`` may be written in AGR as a string (``"2.5"``); an integer is base
    units, as on the chain.
    """
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CliError(f"{path} is not JSON: {error}") from None
    if isinstance(value, dict) and isinstance(value.get("amount"), str):
        value = {**value, "amount": parse_agr_option(value["amount"])}
    return proposal_from_json(value, path.name)


def _send(node: str | None, key: Keypair, body: Any) -> dict[str, Any]:
    """Sign with the next nonce and the minimum fee, submit, and wait for the receipt."""

    async def run(client: NodeClient) -> dict[str, Any]:
        tx_hash = await send_transaction(
            client, public_key=key.public_key, sign=key.sign, body=body
        )
        return await client.wait_for_transaction(tx_hash)

    status = with_client(node, run)
    receipt = status["receipt"]
    if not receipt["success"]:
        fail(f"block {status['height']}: {receipt['message']}", receipt["code"])
    return status


@app.command("propose")
@user_errors
def gov_propose(
    file: Annotated[Path, typer.Argument(help="The proposal, a JSON file.")],
    wallet: Annotated[
        str | None, typer.Option("--wallet", help="Wallet whose coldkey signs.")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only check the file; sign and send nothing.")
    ] = False,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Submit a proposal from a JSON file; its track's deposit is taken until it closes."""
    body = read_proposal_file(file)
    kind = get_kind_of(body)
    summary = {"kind": PROPOSAL_KIND_NAMES[kind.kind], "body": kind.body.to_json(body)}
    if check:
        emit({"ok": True, **summary}, json_mode, lambda c: c.print(f"ok: {summary}"))
        return
    if wallet is None:
        raise CliError("give --wallet NAME to sign the proposal (or --check to only check it)")
    key = load_key(wallet_dir, wallet, None)
    status = _send(node, key, body)

    async def find(client: NodeClient) -> dict[str, Any]:
        for proposal in await client.list_proposals():
            if (
                proposal["proposer"] == key.address
                and proposal["timeline"]["submitted_at"] == status["height"]
            ):
                return proposal
        raise CliError("the proposal was included but is not listed; try `agora gov list`")

    proposal = with_client(node, find)
    emit(
        {**status, "proposal": proposal},
        json_mode,
        lambda c: c.print(
            f"proposal {proposal['id']} ({proposal['kind']}, {proposal['track']} track): "
            f"voting until block {proposal['timeline']['voting_ends_at']}; "
            f"deposit {format_agr(proposal['deposit'])}"
        ),
    )


@app.command("vote")
@user_errors
def gov_vote(
    proposal_id: Annotated[int, typer.Argument(help="The proposal number.")],
    choice: Annotated[str, typer.Argument(help="yes, no, abstain or veto.")],
    wallet: WalletOption,
    conviction: Annotated[
        int,
        typer.Option(
            "--conviction",
            help=f"0-{MAX_CONVICTION}: multiplies the stake's weight and locks it longer.",
        ),
    ] = 0,
    node: NodeOption = None,
    wallet_dir: WalletDirOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Vote on a proposal with the wallet's stake and verified contribution."""
    if choice not in CHOICES:
        raise CliError(f"choice: one of {', '.join(CHOICES)}, got {choice!r}")
    if not 0 <= conviction <= MAX_CONVICTION:
        raise CliError(f"--conviction: 0 to {MAX_CONVICTION}")
    if proposal_id < 0:
        raise CliError("the proposal number is not negative")
    body = Vote(proposal_id=proposal_id, choice=CHOICES.index(choice), conviction=conviction)
    key = load_key(wallet_dir, wallet, None)
    status = _send(node, key, body)
    proposal = with_client(node, lambda client: client.get_proposal(proposal_id))
    ballot = next(v for v in proposal["votes"] if v["voter"] == key.address)
    emit(
        {**status, "vote": ballot, "tally": proposal["tally"]},
        json_mode,
        lambda c: c.print(
            f"voted {choice} on proposal {proposal_id} with power {ballot['power']}; "
            f"tally yes {proposal['tally']['yes']} no {proposal['tally']['no']}"
        ),
    )


def _print_proposal(console: Console, proposal: dict[str, Any]) -> None:
    tally, timeline = proposal["tally"], proposal["timeline"]
    console.print(
        f"proposal {proposal['id']}: {proposal['kind']} on the {proposal['track']} track, "
        f"{proposal['status']}"
    )
    console.print(f"  proposer {proposal['proposer']}, deposit {format_agr(proposal['deposit'])}")
    console.print(f"  action {json.dumps(proposal['action'])}")
    console.print(
        f"  tally yes {tally['yes']} no {tally['no']} abstain {tally['abstain']} "
        f"veto {tally['veto']}; turnout {tally['turnout']} of {tally['total_power']} "
        f"(quorum {'reached' if tally['quorum_reached'] else 'not reached'})"
    )
    moments = ", ".join(f"{name} {value}" for name, value in timeline.items() if value)
    console.print(f"  timeline: {moments}")
    for vote in proposal.get("votes", []):
        console.print(f"  {vote['voter']} {vote['choice']} power {vote['power']}")


@app.command("show")
@user_errors
def gov_show(
    proposal_id: Annotated[int, typer.Argument(help="The proposal number.")],
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """A proposal: its action, tally, every vote and its timeline."""
    proposal = with_client(node, lambda client: client.get_proposal(proposal_id))
    emit(proposal, json_mode, lambda c: _print_proposal(c, proposal))


@app.command("list")
@user_errors
def gov_list(
    status: Annotated[
        str | None, typer.Option("--status", help=f"One of {', '.join(STATUSES)}.")
    ] = None,
    track: Annotated[
        str | None, typer.Option("--track", help=f"One of {', '.join(TRACK_NAMES)}.")
    ] = None,
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Proposals, newest first."""
    proposals = with_client(node, lambda client: client.list_proposals(status=status, track=track))

    def human(console: Console) -> None:
        if not proposals:
            console.print("no proposals")
        for proposal in proposals:
            tally = proposal["tally"]
            console.print(
                f"{proposal['id']:>4} {proposal['status']:<10} {proposal['track']:<12} "
                f"{proposal['kind']:<16} yes {tally['yes']} no {tally['no']} "
                f"ends {proposal['timeline']['voting_ends_at']}"
            )

    emit({"proposals": proposals}, json_mode, human)


@app.command("params")
@user_errors
def gov_params(node: NodeOption = None, json_mode: JsonOption = False) -> None:
    """Every governable number with its hard bounds, and the tracks."""
    params = with_client(node, lambda client: client.get_governance_params())

    def human(console: Console) -> None:
        for name, entry in params["params"].items():
            console.print(f"{name:<32} {entry['value']:>24}  [{entry['min']}, {entry['max']}]")
        for track, fields in params["tracks"].items():
            numbers = ", ".join(f"{field} {entry['value']}" for field, entry in fields.items())
            console.print(f"track {track}: {numbers}")
        console.print(f"proposal kinds: {', '.join(params['proposal_kinds'])}")

    emit(params, json_mode, human)


@treasury_app.command("show")
@user_errors
def treasury_show(node: NodeOption = None, json_mode: JsonOption = False) -> None:
    """The treasury's balance, its share of block emission and its running streams."""
    treasury = with_client(node, lambda client: client.get_treasury())

    def human(console: Console) -> None:
        console.print(
            f"treasury {format_agr(treasury['balance'])} at block {treasury['height']}; "
            f"{treasury['emission_share_u16']}/65535 of each block's emission"
        )
        for stream in treasury["streams"]:
            console.print(
                f"  stream {stream['proposal']} to {stream['recipient']}: "
                f"{format_agr(stream['amount'])} x {stream['payments']}, "
                f"{stream['payments_made']} paid, next at block {stream['next_payment_at']}"
            )

    emit(treasury, json_mode, human)

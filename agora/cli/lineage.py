"""`agora lineage`: walk from a model to the data that trained it, from an account to its
models, or from a gateway receipt to the model that answered it; and export the ledger's
lineage as W3C PROV-JSON and OpenLineage run events."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agora.cli.chain import NodeOption, with_client
from agora.cli.common import emit, user_errors
from agora.cli.wallet import JsonOption
from agora.client.client import NodeClient

app = typer.Typer(help="Lineage: from data to model to payout.", no_args_is_help=True)


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="lineage")


async def _fetch(
    client: NodeClient, with_times: bool
) -> tuple[dict[str, Any], str, dict[int, int]]:
    document = await client.get_lineage()
    chain_id = (await client.get_chain())["chain_id"]
    timestamps: dict[int, int] = {}
    if with_times:
        for height in sorted({r["recorded_at"] for r in document["rounds"]}):
            timestamps[height] = (await client.get_block(height))["header"]["timestamp"]
    return document, chain_id, timestamps


def _fetch_receipt(gateway: str, request_id: str) -> dict[str, Any]:
    from agora.lineage import ReceiptUnavailable

    query = urllib.parse.urlencode({"request_id": request_id})
    try:
        with urllib.request.urlopen(f"{gateway}/agora/receipts?{query}", timeout=30) as answer:
            receipts = json.loads(answer.read())["data"]
    except (OSError, ValueError, KeyError) as error:
        raise ReceiptUnavailable(
            f"cannot read receipts from the gateway {gateway}: {error}"
        ) from None
    if not receipts:
        raise ReceiptUnavailable(f"the gateway {gateway} holds no receipt {request_id}")
    receipt: dict[str, Any] = receipts[0]
    return receipt


@app.command("show")
@user_errors
def show(
    target: Annotated[
        str,
        typer.Argument(
            help="A model hash (0x-hex), an account (agr1...) or a gateway receipt (req_...)."
        ),
    ],
    gateway: Annotated[
        str,
        typer.Option("--gateway", help="The gateway that wrote a receipt (its /v1 URL)."),
    ] = "http://127.0.0.1:8080/v1",
    node: NodeOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Walk the lineage graph from a model, an account or a gateway receipt."""
    from agora.lineage import Lineage

    document, _, _ = with_client(node, lambda client: _fetch(client, with_times=False))
    lineage = Lineage(document)
    if target.startswith("req_"):
        walked = lineage.walk_receipt(_fetch_receipt(gateway.rstrip("/"), target))
        emit(walked, json_mode, lambda console: _print_receipt(console, walked))
    elif target.startswith("0x"):
        walked = lineage.walk_model(target.lower())
        emit(walked, json_mode, lambda console: _print_model(console, walked))
    else:
        walked = lineage.walk_account(target)
        emit(walked, json_mode, lambda console: _print_account(console, walked))


def _print_model(console: Console, walked: dict[str, Any]) -> None:
    console.print(f"model {walked['model_hash']} (subnet {walked['netuid']})")
    console.print(f"served by: {', '.join(walked['served_by']) or 'nobody'}")
    console.print("royalties by credit:")
    for credit in walked["credits"]:
        console.print(f"  {credit['hotkey']}  {credit['royalty_share_ppm'] / 10_000:.2f}%")
    for record in walked["rounds"]:
        console.print(
            f"round {record['round']}: {record['parent_hash'][:18]}... -> "
            f"{record['model_hash'][:18]}... (block {record['recorded_at']})"
        )
        for c in record["contributions"]:
            data = c["data"]
            rows = f"{data['rows']} rows, root {data['merkle_root'][:18]}..." if data else "no data"
            console.print(f"  {c['hotkey']}  credit {c['credit_u16']:>5}  {rows}")


def _print_receipt(console: Console, walked: dict[str, Any]) -> None:
    console.print(f"receipt {walked['request_id']}: {walked['model']}, cost {walked['cost']}")
    for call in walked["calls"]:
        console.print(f"  {call['miner']}  {call['status']}  model {call['model_hash']}")
    for model in walked["models"]:
        _print_model(console, model)


def _print_account(console: Console, walked: dict[str, Any]) -> None:
    console.print(f"account {walked['account']}")
    for c in walked["data_commitments"]:
        console.print(f"  data on subnet {c['netuid']}: {c['rows']} rows, root {c['merkle_root']}")
    for c in walked["contributions"]:
        console.print(f"  round {c['round']} on subnet {c['netuid']}: credit {c['credit_u16']}")
    for m in walked["credited_in"]:
        console.print(f"  credited in {m['model_hash']}: {m['royalty_share_ppm'] / 10_000:.2f}%")
    for s in walked["serves"]:
        console.print(f"  serves {s['model_hash']} on subnet {s['netuid']}")


@app.command("export")
@user_errors
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory for the two files.")],
    node: NodeOption = None,
) -> None:
    """Write lineage.prov.json (W3C PROV-JSON) and openlineage.json (run events)."""
    from agora.lineage import Lineage, to_openlineage_events, to_prov_json

    document, chain_id, timestamps = with_client(node, lambda c: _fetch(c, with_times=True))
    lineage = Lineage(document)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lineage.prov.json").write_text(to_prov_json(lineage))
    events = to_openlineage_events(lineage, chain_id, timestamps)
    (out / "openlineage.json").write_text(json.dumps(events, indent=2))
    print(f"wrote {out / 'lineage.prov.json'} and {out / 'openlineage.json'} ({len(events)} runs)")

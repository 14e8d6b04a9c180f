"""Conversions between protocol values and the JSON of the HTTP API, in one place.

Hashes and raw bytes are ``0x``-hex, addresses ``agr1...``, amounts JSON integers. The
protocol keeps its canonical byte encoding (and each field type's JSON form, in
``protocol/codec.py``); the JSON of whole transactions, which the node API, the CLI and the
tests share, and of governance (proposals, governable numbers, the treasury), which the node
API, the CLI and the simulator share, is here (a voucher's is in ``payments/vouchers.py``).
"""

from __future__ import annotations

from typing import Any

from agora.node.errors import MalformedRequest
from agora.protocol.address import encode_address
from agora.protocol.blocks import Block, BlockHeader, compute_block_hash
from agora.protocol.codec import ADDRESS, HASH, U64
from agora.protocol.data import get_round_updates
from agora.protocol.domains import KINDS_BY_NAME
from agora.protocol.errors import MalformedTransaction, ProtocolError, UnknownTransactionKind
from agora.protocol.federation import decode_vector
from agora.protocol.governance import (
    CHOICES,
    MAX_CONVICTION,
    PROPOSAL_KIND_NAMES,
    STATUSES,
    STREAMING,
    TRACK_BOUNDS,
    TRACK_NAMES,
    TREASURY_SPEND_KIND,
    Proposal,
    decode_action,
    get_ballots,
    get_kind,
    get_proposals,
    get_tracks,
    is_quorum_reached,
    validate_proposal,
)
from agora.protocol.kinds import CHAIN_ID_FIELD, SIGNATURE_SIZE, Transaction
from agora.protocol.params import PARAM_BOUNDS
from agora.protocol.state import State
from agora.protocol.subnets import HYPERPARAMETER_BOUNDS, get_hyperparameter_bounds, get_subnet
from agora.protocol.transactions import get_kind_of
from agora.protocol.transition import Receipt


def to_hex(data: bytes) -> str:
    return "0x" + data.hex()


def from_hex(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedRequest(f"{path}: expected a 0x-hex string")
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise MalformedRequest(f"{path}: not valid hex") from None


def header_to_json(header: BlockHeader) -> dict[str, Any]:
    return {
        "height": header.height,
        "hash": to_hex(compute_block_hash(header)),
        "parent_hash": to_hex(header.parent_hash),
        "timestamp": header.timestamp,
        "transactions_root": to_hex(header.transactions_root),
        "state_root": to_hex(header.state_root),
    }


def header_from_json(value: Any) -> BlockHeader:
    try:
        return BlockHeader(
            height=U64.from_json(value["height"], "header.height"),
            parent_hash=HASH.from_json(value["parent_hash"], "header.parent_hash"),
            timestamp=U64.from_json(value["timestamp"], "header.timestamp"),
            transactions_root=HASH.from_json(
                value["transactions_root"], "header.transactions_root"
            ),
            state_root=HASH.from_json(value["state_root"], "header.state_root"),
        )
    except (KeyError, TypeError, ProtocolError) as error:
        raise MalformedRequest(f"block header: {error}") from None


def block_to_json(block: Block, receipts: list[Receipt] | None) -> dict[str, Any]:
    from agora.protocol.transactions import compute_transaction_hash

    body: dict[str, Any] = {
        "header": header_to_json(block.header),
        "transactions": [to_hex(raw) for raw in block.transactions],
        "transaction_hashes": [to_hex(compute_transaction_hash(r)) for r in block.transactions],
    }
    if receipts is not None:
        body["receipts"] = [receipt_to_json(r) for r in receipts]
    return body


def block_from_json(value: Any) -> Block:
    if not isinstance(value, dict) or not isinstance(value.get("transactions"), list):
        raise MalformedRequest("block: expected an object with header and transactions")
    return Block(
        header=header_from_json(value.get("header")),
        transactions=tuple(
            from_hex(raw, f"transactions[{i}]") for i, raw in enumerate(value["transactions"])
        ),
    )


def receipt_to_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "hash": to_hex(receipt.tx_hash),
        "success": receipt.success,
        "code": receipt.code,
        "message": receipt.message,
        "fee_paid": receipt.fee_paid,
        "sender": None if receipt.sender is None else encode_address(receipt.sender),
    }


def subnet_to_json(subnet: Any) -> dict[str, Any]:
    from agora.protocol.subnets import NO_HOTKEY, SUBNET_RECORD

    body: dict[str, Any] = SUBNET_RECORD.to_json(subnet)
    if subnet.owner_hotkey == NO_HOTKEY:
        body["owner_hotkey"] = None
    return body


def metagraph_to_json(state: Any, netuid: int, include_matrices: bool) -> dict[str, Any]:
    """The subnet's neurons, one entry per uid, as validators and explorers read them."""
    from agora.protocol.staking import get_total_stake
    from agora.protocol.subnets import get_neurons, get_subnet

    subnet = get_subnet(state, netuid)
    neurons = []
    for uid, neuron in enumerate(get_neurons(state, netuid)):
        entry = {
            "uid": uid,
            "hotkey": encode_address(neuron.hotkey),
            "coldkey": encode_address(neuron.coldkey),
            "stake": get_total_stake(state, neuron.hotkey),
            "validator_permit": neuron.validator_permit,
            "active": neuron.active,
            "consensus": neuron.consensus_u16,
            "incentive": neuron.incentive_u16,
            "dividends": neuron.dividends_u16,
            "validator_trust": neuron.validator_trust_u16,
            "emission": neuron.emission,
            "last_update": neuron.last_update,
            "registered_at": neuron.registered_at,
            "endpoint": neuron.endpoint,
        }
        if include_matrices:
            entry["weights"] = [list(pair) for pair in neuron.weights]
            entry["bonds"] = [list(pair) for pair in neuron.bonds]
        neurons.append(entry)
    return {
        "netuid": netuid,
        "block": state.head.height,
        "subnet": subnet_to_json(subnet),
        "neurons": neurons,
    }


def channel_to_json(channel_id: bytes, channel: Any) -> dict[str, Any]:
    """A payment channel as the API shows it; ``expiry`` is a block height."""
    return {
        "id": to_hex(channel_id),
        "payer": encode_address(channel.payer),
        "payee": encode_address(channel.payee),
        "netuid": channel.netuid,
        "deposit": channel.deposit,
        "claimed": channel.claimed,
        "expiry": channel.expiry,
        "closed": channel.closed,
    }


def channel_id_from_text(value: str, path: str = "id") -> bytes:
    """A channel id from a URL or an argument: 32 bytes of hex, with or without ``0x``."""
    raw = from_hex(value, path)
    if len(raw) != 32:
        raise MalformedRequest(f"{path}: a channel id is 32 bytes of hex, got {len(raw)}")
    return raw


def service_to_json(
    service_id: bytes, service: Any, reputation: dict[str, int] | None = None
) -> dict[str, Any]:
    """A service record as the API shows it, with its measured reputation when given."""
    entry: dict[str, Any] = {
        "id": to_hex(service_id),
        "owner": encode_address(service.owner),
        "name": service.name,
        "description": service.description,
        "tags": list(service.tags),
        "endpoints": [
            {
                "transport": endpoint.transport,
                "url": endpoint.url,
                "block_height": endpoint.block_height,
                "state_root": to_hex(endpoint.state_root),
                "signature": to_hex(endpoint.signature),
            }
            for endpoint in service.endpoints
        ],
        "netuid": service.netuid,
        "price": {"amount": service.price_amount, "unit": service.price_unit},
        "input_schema_hash": to_hex(service.input_schema_hash),
        "output_schema_hash": to_hex(service.output_schema_hash),
        "schema_url": service.schema_url,
        "model_hash": None if not any(service.model_hash) else to_hex(service.model_hash),
        "bond": service.bond,
        "registered_at": service.registered_at,
        "expiry": service.expiry,
    }
    if reputation is not None:
        entry["reputation"] = reputation
    return entry


def service_id_from_text(value: str, path: str = "id") -> bytes:
    """A service id from a URL or an argument: 32 bytes of hex, with or without ``0x``."""
    raw = from_hex(value, path)
    if len(raw) != 32:
        raise MalformedRequest(f"{path}: a service id is 32 bytes of hex, got {len(raw)}")
    return raw


def lineage_to_json(state: Any) -> dict[str, Any]:
    """Every lineage record of the ledger (``protocol/data.py``): data commitments, federations,
    round records, model lineage and served models; the graph ``agora.lineage`` walks."""
    tables = state.tables
    return {
        "data_royalty_u16": state.params.data_royalty_u16,
        "data_commitments": [
            {
                "owner": encode_address(c.owner),
                "netuid": c.netuid,
                "merkle_root": to_hex(c.merkle_root),
                "rows": c.rows,
                "schema": c.schema,
                "allow_training": c.allow_training,
                "allow_inference": c.allow_inference,
                "committed_at": c.committed_at,
            }
            for _, c in sorted(tables["data_commitments"].items())
        ],
        "federations": [
            {
                "netuid": f.netuid,
                "round": f.round_number,
                "model_hash": to_hex(f.model_hash),
                "round_start": f.round_start,
                "commit_blocks": f.commit_blocks,
                "reveal_blocks": f.reveal_blocks,
            }
            for _, f in sorted(tables["federations"].items())
        ],
        "rounds": [
            {
                "netuid": r.netuid,
                "round": r.round_number,
                "parent_hash": to_hex(r.parent_hash),
                "model_hash": to_hex(r.model_hash),
                "recorded_at": r.recorded_at,
                "contributions": [
                    {"hotkey": encode_address(h), "update_hash": to_hex(u), "credit_u16": c}
                    for h, u, c in r.contributions
                ],
            }
            for _, r in sorted(tables["round_records"].items())
        ],
        "models": [
            {
                "model_hash": to_hex(model_hash),
                "netuid": m.netuid,
                "round": m.round_number,
                "parent_hash": to_hex(m.parent_hash),
                "credits": [{"hotkey": encode_address(h), "credit": c} for h, c in m.credits],
            }
            for model_hash, m in sorted(tables["model_lineage"].items())
        ],
        "served": [
            {"netuid": netuid, "hotkey": encode_address(hotkey), "model_hash": to_hex(model_hash)}
            for (netuid, hotkey), model_hash in sorted(tables["served_models"].items())
        ],
    }


def federated_model_to_json(state: Any, model_hash: bytes) -> dict[str, Any] | None:
    """The parameters of a current federated model, by its content address, or None."""
    from_state = [f for _, f in state.tables["federations"].items() if f.model_hash == model_hash]
    if not from_state:
        return None
    federation = from_state[0]
    return {
        "model_hash": to_hex(model_hash),
        "netuid": federation.netuid,
        "round": federation.round_number,
        "parameters": list(decode_vector(federation.model)),
    }


def federation_to_json(state: Any, netuid: int) -> dict[str, Any] | None:
    """A federated subnet's current round: windows, model, and every commitment and reveal."""
    federation = state.tables["federations"].get(netuid, None)
    if federation is None:
        return None
    updates = [
        {
            "hotkey": encode_address(hotkey),
            "commitment": to_hex(pending.commitment),
            "update_hash": to_hex(pending.update_hash) if pending.update else None,
            "update": list(decode_vector(pending.update)) if pending.update else None,
        }
        for hotkey, pending in get_round_updates(state, netuid)
    ]
    return {
        "netuid": netuid,
        "round": federation.round_number,
        "model_hash": to_hex(federation.model_hash),
        "round_start": federation.round_start,
        "reveal_start": federation.reveal_start,
        "reveal_end": federation.reveal_end,
        "last_epoch_block": get_subnet(state, netuid).last_epoch_block,
        "updates": updates,
    }


# --- transactions: raise protocol errors, whose codes clients match on ----------------------


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    kind = get_kind_of(tx.body)
    return {
        "chain_id": tx.chain_id,
        "sender": ADDRESS.to_json(tx.sender),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "kind": kind.name,
        "body": kind.body.to_json(tx.body),
        "signature": to_hex(tx.signature),
    }


def transaction_from_json(value: Any) -> Transaction:
    """Parse the JSON form; every error names the field at fault."""
    if not isinstance(value, dict):
        raise MalformedTransaction("a transaction is a JSON object")
    expected = {"chain_id", "sender", "nonce", "fee", "kind", "body", "signature"}
    missing = sorted(expected - set(value))
    if missing:
        raise MalformedTransaction(f"transaction.{missing[0]}: missing")
    unknown = sorted(set(value) - expected)
    if unknown:
        raise MalformedTransaction(f"transaction.{unknown[0]}: unknown field")
    kind = KINDS_BY_NAME.get(value["kind"]) if isinstance(value["kind"], str) else None
    if kind is None:
        raise UnknownTransactionKind(f"transaction.kind: {value['kind']!r} is not a known kind")
    signature = value["signature"]
    if not isinstance(signature, str):
        raise MalformedTransaction("transaction.signature: expected 0x-hex")
    try:
        signature_bytes = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        raise MalformedTransaction("transaction.signature: not valid hex") from None
    if len(signature_bytes) != SIGNATURE_SIZE:
        raise MalformedTransaction("transaction.signature: expected 64 bytes")
    return Transaction(
        chain_id=CHAIN_ID_FIELD.from_json(value["chain_id"], "transaction.chain_id"),
        sender=ADDRESS.from_json(value["sender"], "transaction.sender"),
        nonce=U64.from_json(value["nonce"], "transaction.nonce"),
        fee=U64.from_json(value["fee"], "transaction.fee"),
        body=kind.body.from_json(value["body"], "transaction.body"),
        signature=signature_bytes,
    )


# --- governance: proposals, governable numbers, the treasury (API, CLI, simulator) ---------


def proposal_to_json(state: State, proposal: Proposal, include_votes: bool) -> dict[str, Any]:
    """A proposal with its action, the rules it copied, its tally and timeline (and ballots)."""
    kind = get_kind(proposal.kind)
    tally = proposal.tally
    entry: dict[str, Any] = {
        "id": proposal.id,
        "proposer": ADDRESS.to_json(proposal.proposer),
        "kind": PROPOSAL_KIND_NAMES[proposal.kind],
        "track": TRACK_NAMES[proposal.track],
        "status": STATUSES[proposal.status],
        "action": kind.body.to_json(decode_action(proposal)),
        "deposit": proposal.deposit,
        "rules": {
            **{name: getattr(proposal.rules, name) for name in TRACK_BOUNDS},
            "veto_threshold_u16": proposal.veto_threshold_u16,
        },
        "tally": {
            "yes": tally.yes,
            "no": tally.no,
            "abstain": tally.abstain,
            "veto": tally.veto,
            "turnout": tally.turnout,
            "total_power": proposal.total_power,
            "quorum_reached": is_quorum_reached(
                tally, proposal.rules.quorum_u16, proposal.total_power
            ),
        },
        "timeline": {
            "submitted_at": proposal.submitted_at,
            "voting_ends_at": proposal.voting_ends_at,
            "extended": proposal.extended,
            "closed_at": proposal.closed_at or None,
            "enact_at": proposal.enact_at or None,
            "enacted_at": proposal.enacted_at or None,
        },
    }
    if proposal.kind == TREASURY_SPEND_KIND:
        entry["stream"] = {
            "payments_made": proposal.payments_made,
            "escrow": proposal.escrow,
            "next_payment_at": proposal.next_payment_at or None,
        }
    if include_votes:
        entry["votes"] = [
            {
                "voter": ADDRESS.to_json(voter),
                "choice": CHOICES[ballot.choice],
                "conviction": ballot.conviction,
                "stake": ballot.stake,
                "contribution": ballot.contribution,
                "power": ballot.power,
                "height": ballot.height,
            }
            for voter, ballot in get_ballots(state, proposal.id)
        ]
    return entry


def governance_params_to_json(state: State) -> dict[str, Any]:
    """Every governable number: its current value and the hard bounds no vote can cross."""
    params = state.params
    return {
        "params": {
            name: {"value": getattr(params, name), "min": low, "max": high}
            for name, (low, high) in PARAM_BOUNDS.items()
        },
        "tracks": {
            name: {
                field: {"value": getattr(rules, field), "min": low, "max": high}
                for field, (low, high) in TRACK_BOUNDS.items()
            }
            for name, rules in zip(TRACK_NAMES, get_tracks(state), strict=True)
        },
        "hyperparameter_bounds": {
            name: dict(
                zip(("min", "max"), get_hyperparameter_bounds(state, name), strict=True),
                hard_min=low,
                hard_max=high,
            )
            for name, (low, high) in HYPERPARAMETER_BOUNDS.items()
        },
        "proposal_kinds": sorted(PROPOSAL_KIND_NAMES.values()),
        "choices": list(CHOICES),
        "max_conviction": MAX_CONVICTION,
    }


def treasury_to_json(state: State) -> dict[str, Any]:
    """The treasury's balance, its share of emission, and the streams it committed to."""
    streams = []
    for proposal in get_proposals(state):
        if proposal.status != STREAMING:
            continue
        action = decode_action(proposal)
        streams.append(
            {
                "proposal": proposal.id,
                "recipient": ADDRESS.to_json(action.recipient),
                "amount": action.amount,
                "payments": action.payments,
                "payments_made": proposal.payments_made,
                "escrow": proposal.escrow,
                "next_payment_at": proposal.next_payment_at,
            }
        )
    return {
        "balance": state.get_ledger("treasury"),
        "emission_share_u16": state.params.treasury_emission_u16,
        "committed_to_streams": sum(s["escrow"] for s in streams),
        "streams": streams,
        "height": state.head.height,
    }


def proposal_from_json(value: Any, path: str = "proposal") -> Any:
    """A proposal body from the JSON a person writes, checked as ``validate_basic`` would.

    ``{"kind": "param_change", "changes": {"min_fee": 2000}, "description": "..."}``;
    ``treasury_spend`` takes ``recipient``, ``amount`` (base units), ``payments`` (default 1);
    ``emission_shares`` takes ``shares`` (``{"1": 3, "2": 1}``: netuid to share); ``cancel``
    takes ``target`` (a proposal id); ``text`` only its ``description``. Amounts are base
    units, as everywhere on the chain.
    """
    if not isinstance(value, dict):
        raise MalformedTransaction(f"{path}: expected an object")
    names = {name: kind for kind, name in PROPOSAL_KIND_NAMES.items()}
    name = value.get("kind")
    if name not in names:
        raise MalformedTransaction(f"{path}.kind: one of {', '.join(names)}, got {name!r}")
    fields_json = {key: item for key, item in value.items() if key != "kind"}
    fields_json.setdefault("description", "")
    if name == "param_change" and isinstance(fields_json.get("changes"), dict):
        fields_json["changes"] = [list(item) for item in fields_json["changes"].items()]
    if name == "treasury_spend":
        fields_json.setdefault("payments", 1)
    if name == "emission_shares" and isinstance(fields_json.get("shares"), dict):
        shares = []
        for netuid, share in fields_json["shares"].items():
            if not netuid.isdigit():
                raise MalformedTransaction(f"{path}.shares: {netuid!r} is not a netuid")
            shares.append([int(netuid), share])
        fields_json["shares"] = shares
    body = get_kind(names[name]).body.from_json(fields_json, path)
    validate_proposal(body)
    return body

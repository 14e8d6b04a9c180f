"""Why a neuron earned what it earned at one epoch: the epoch recomputed from its inputs.

``explain`` reads the epoch's inputs from the index (weights, stakes, bonds, permits, as of
the epoch block), runs the protocol's reference Yuma (``consensus.yuma.compute_epoch``, not
the ledger's fast path) and sets each output beside what the ledger stored. ``matches`` is
true when every output of every uid is equal, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agora.protocol.consensus.yuma import EpochInputs, EpochResult, compute_epoch
from agora.web.errors import PageNotFound
from agora.web.index import OUTPUT_FIELDS, Index

U16_ONE = 65_535
RECENT_EPOCHS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    netuid: int
    epoch: int
    height: int
    inputs: EpochInputs
    result: EpochResult
    ledger: list[dict[str, Any]]  # per uid, what the ledger stored (index rows)
    mismatches: list[str]  # "uid 3 incentive_u16: recomputed 10 != ledger 11"

    @property
    def matches(self) -> bool:
        return not self.mismatches


_RECENT: dict[tuple[str, int, int], tuple[int, EpochInputs, EpochResult]] = {}


def recomputed_outputs(result: EpochResult, uid: int) -> dict[str, Any]:
    return {
        "stake_u16": result.stake_u16[uid],
        "consensus_u16": result.consensus_u16[uid],
        "incentive_u16": result.incentive_u16[uid],
        "dividends_u16": result.dividends_u16[uid],
        "validator_trust_u16": result.validator_trust_u16[uid],
        "emission": result.emission[uid],
        "validator_permit": result.validator_permit[uid],
        "active": result.active[uid],
    }


def explain_epoch(index: Index, netuid: int, epoch: int) -> Explanation:
    """The epoch recomputed from its inputs and compared with the ledger's rows, read now.

    The recomputation of the last few epochs is kept (a reader steps through the uids of one
    epoch; a 256-uid epoch takes the reference Yuma a fraction of a second); the ledger's rows
    are read and compared every time.
    """
    key = (index.key, netuid, epoch)
    recomputed = _RECENT.get(key)
    if recomputed is None:
        found = index.epoch_inputs(netuid, epoch)
        if found is None:
            raise PageNotFound(f"subnet {netuid} has no indexed epoch {epoch}")
        recomputed = (found[0], found[1], compute_epoch(found[1]))
        _RECENT[key] = recomputed
        while len(_RECENT) > RECENT_EPOCHS:
            del _RECENT[next(iter(_RECENT))]
    height, inputs, result = recomputed
    ledger = index.epoch_outputs(netuid, epoch)
    mismatches: list[str] = []
    for row in ledger:
        uid = row["uid"]
        mine = recomputed_outputs(result, uid)
        for name in OUTPUT_FIELDS:
            if mine[name] != row[name]:
                mismatches.append(
                    f"uid {uid} {name}: recomputed {mine[name]} != ledger {row[name]}"
                )
        if [list(pair) for pair in result.bonds_u16[uid]] != row["bonds"]:
            mismatches.append(f"uid {uid} bonds differ")
    return Explanation(
        netuid=netuid,
        epoch=epoch,
        height=height,
        inputs=inputs,
        result=result,
        ledger=ledger,
        mismatches=mismatches,
    )


def explain_uid(explanation: Explanation, uid: int) -> dict[str, Any]:
    """The JSON of one uid's reward: who weighted it, how much, and what came out."""
    inputs, result = explanation.inputs, explanation.result
    if not 0 <= uid < len(inputs.stake):
        raise PageNotFound(
            f"uid {uid} is out of range: subnet {explanation.netuid} had "
            f"{len(inputs.stake)} uids at epoch {explanation.epoch}"
        )
    consensus = result.consensus_u16[uid]
    weights = []
    for validator, row in enumerate(inputs.weights):
        total = sum(value for _, value in row)
        given = dict(row).get(uid, 0)
        if not given:
            continue
        share = given * U16_ONE // total if total else 0
        weights.append(
            {
                "validator": validator,
                "stake": inputs.stake[validator],
                "permit": inputs.validator_permit[validator],
                "weight_u16": given,
                "normalized_u16": share,
                "clipped_u16": min(share, consensus),
                "bond_u16": dict(result.bonds_u16[validator]).get(uid, 0),
            }
        )
    ledger = explanation.ledger[uid] if uid < len(explanation.ledger) else None
    return {
        "netuid": explanation.netuid,
        "epoch": explanation.epoch,
        "height": explanation.height,
        "uid": uid,
        "emission_to_neurons": inputs.emission,
        "stake": inputs.stake[uid],
        "weights_received": weights,
        "recomputed": {
            **recomputed_outputs(result, uid),
            "miner_emission": result.miner_emission[uid],
            "validator_emission": result.validator_emission[uid],
            "bonds": [list(pair) for pair in result.bonds_u16[uid]],
        },
        "ledger": ledger,
        "matches": ledger is not None
        and all(recomputed_outputs(result, uid)[n] == ledger[n] for n in OUTPUT_FIELDS)
        and [list(p) for p in result.bonds_u16[uid]] == ledger["bonds"],
        "epoch_matches": explanation.matches,
    }

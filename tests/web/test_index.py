"""The explorer's index on real ledger blocks: every epoch's "why" equals what the ledger paid,
and rebuilding the index from genesis gives the same rows.

A chain of two subnets (tempo 3 and 4), staked validators that set seeded random weights every
few blocks, and miners, sealed block by block through the protocol (``build_block``).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from protocol_helpers import Chain, create_subnet, make_genesis, make_keys

from agora.protocol.genesis import create_genesis_state
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake
from agora.protocol.subnets import Register
from agora.protocol.weights import SetWeights
from agora.web.index import Index
from agora.web.why import explain_epoch, explain_uid

KEYS = make_keys(14, seed=1414)
OWNER = KEYS[0]
VALIDATORS = KEYS[1:5]
MINERS = KEYS[5:14]
AGR = BASE_UNITS_PER_AGR


def build_chain(seed: int, blocks: int) -> tuple[dict[str, object], Chain, list[int]]:
    rng = random.Random(seed)
    genesis = make_genesis(KEYS)
    chain = Chain(create_genesis_state(genesis))
    netuids = [
        create_subnet(chain, OWNER, tempo=3, weights_rate_limit=0),
        create_subnet(chain, OWNER, tempo=4, weights_rate_limit=0),
    ]
    for netuid in netuids:
        receipts = chain.block(
            *((key, Register(netuid=netuid, hotkey=key.address)) for key in VALIDATORS + MINERS)
        )
        assert all(r.success for r in receipts), [r.message for r in receipts]
    stakes = chain.block(
        *(
            (key, AddStake(hotkey=key.address, amount=(50 + 40 * i) * AGR))
            for i, key in enumerate(VALIDATORS)
        )
    )
    assert all(r.success for r in stakes)
    n = len(VALIDATORS) + len(MINERS)
    while chain.height < blocks:
        items = []
        for validator in VALIDATORS:
            if rng.random() < 0.5:
                netuid = rng.choice(netuids)
                uids = tuple(sorted(rng.sample(range(n), rng.randint(2, n))))
                values = tuple(rng.randint(1, 65_535) for _ in uids)
                items.append(
                    (validator, SetWeights(netuid=netuid, uids=uids, values=values, version_key=0))
                )
        chain.block(*items)
    return genesis, chain, netuids


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Index, Chain, list[int], dict[str, object]]:
    genesis, chain, netuids = build_chain(seed=7, blocks=140)
    index = Index(tmp_path_factory.mktemp("index") / "explorer.db", genesis)
    index.add_blocks(chain.blocks)
    return index, chain, netuids, genesis


def test_the_index_replays_to_the_ledger_state(
    built: tuple[Index, Chain, list[int], dict[str, object]],
) -> None:
    index, chain, _, _ = built
    assert index.height == chain.height
    assert index.state.state_root == chain.state.state_root
    assert index.head() == chain.height


def test_why_equals_the_ledger_for_100_random_epoch_uid_pairs(
    built: tuple[Index, Chain, list[int], dict[str, object]],
) -> None:
    index, _, netuids, _ = built
    epochs = [
        (netuid, epoch) for netuid in netuids for epoch, _, _, _ in index.epochs(netuid, 10_000)
    ]
    assert len(epochs) > 40
    rng = random.Random(100)
    paid_somewhere = 0
    for _ in range(100):
        netuid, epoch = rng.choice(epochs)
        explanation = explain_epoch(index, netuid, epoch)
        uid = rng.randrange(len(explanation.inputs.stake))
        answer = explain_uid(explanation, uid)
        assert explanation.matches, explanation.mismatches
        assert answer["matches"]
        ledger = answer["ledger"]
        for name in ("incentive_u16", "dividends_u16", "consensus_u16", "emission"):
            assert answer["recomputed"][name] == ledger[name]
        paid_somewhere += ledger["emission"] > 0
    assert paid_somewhere > 10  # the pairs are not all idle uids


def test_a_tampered_ledger_row_is_reported_as_a_mismatch(tmp_path: Path) -> None:
    genesis, chain, netuids = build_chain(seed=3, blocks=30)
    index = Index(tmp_path / "explorer.db", genesis)
    index.add_blocks(chain.blocks)
    epoch = index.epochs(netuids[0], 1)[0][0]
    assert explain_epoch(index, netuids[0], epoch).matches
    index.db.execute(
        "UPDATE neuron_epochs SET incentive_u16 = incentive_u16 + 1 "
        "WHERE netuid = ? AND epoch = ? AND uid = 6",
        (netuids[0], epoch),
    )
    mismatches = explain_epoch(index, netuids[0], epoch).mismatches
    assert mismatches == [mismatches[0]] and mismatches[0].startswith("uid 6 incentive_u16")
    index.close()


def test_a_rebuild_from_genesis_gives_the_same_rows(
    built: tuple[Index, Chain, list[int], dict[str, object]], tmp_path: Path
) -> None:
    index, chain, _, genesis = built
    rebuilt = Index(tmp_path / "again.db", genesis)
    # In other batches, as a live node would feed it.
    for start in range(0, len(chain.blocks), 17):
        rebuilt.add_blocks(chain.blocks[start : start + 17])
    assert rebuilt.dump_digest() == index.dump_digest()
    # Reopened on its own file, the index replays without writing and goes on.
    rebuilt.close()
    reopened = Index(tmp_path / "again.db", genesis)
    reopened.add_blocks(chain.blocks)
    assert reopened.state.state_root == chain.state.state_root
    assert reopened.dump_digest() == index.dump_digest()
    reopened.close()

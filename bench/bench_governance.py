"""Vote throughput against transfer throughput, on the same state, measured in the same run.

    .venv/bin/python -m bench.bench_governance [--stakers N] [--repeats N]

A chain where ``N`` coldkeys each staked on a hotkey of their own and one proposal is open:

(a) a block of ``N`` signed transfers, one per staker, sealed by ``build_block``;
(b) a block of ``N`` signed votes on the proposal, one per staker, sealed the same way.

Both verify one signature per transaction; a vote also reads the voter's stake and
contribution, writes a ballot, the tally and a lock. The ratio (b)/(a) says what governance
costs beyond a transfer and must not fall as ``N`` grows (a vote reads one stake total, not
every stake). All keys are seeded, so every run times the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from typing import Any

from nacl.signing import SigningKey

from agora.protocol.accounts import Transfer, get_account
from agora.protocol.address import Address, encode_address
from agora.protocol.genesis import create_genesis_state
from agora.protocol.governance import ProposeText, Vote
from agora.protocol.kinds import Transaction
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake
from agora.protocol.state import State
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register
from agora.protocol.transactions import encode_transaction, sign_transaction
from agora.protocol.transition import build_block

CHAIN_ID = "agora-bench"
AGR = BASE_UNITS_PER_AGR


def _key(index: int) -> SigningKey:
    return SigningKey(hashlib.sha256(f"agora-bench-governance:{index}".encode()).digest())


def _address(key: SigningKey) -> Address:
    return Address(bytes(key.verify_key))


def _seal(state: State, items: list[tuple[SigningKey, Any]]) -> float:
    """Sign ``items`` with each sender's next nonce, seal one block; seconds to seal it."""
    raws = []
    for key, body in items:
        sender = _address(key)
        tx = Transaction(
            chain_id=CHAIN_ID,
            sender=sender,
            nonce=get_account(state, sender).nonce,
            fee=state.params.min_fee,
            body=body,
        )
        raws.append(encode_transaction(sign_transaction(tx, _signer(key))))
    began = time.perf_counter()
    receipts = build_block(state, state.head.timestamp + 12, raws).receipts
    elapsed = time.perf_counter() - began
    failed = [r.message for r in receipts if not r.success]
    if failed:
        raise SystemExit(f"a bench transaction failed: {failed[0]}")
    return elapsed


def _signer(key: SigningKey) -> Callable[[bytes], bytes]:
    return lambda message: key.sign(message).signature


def prepare(stakers: int) -> tuple[State, list[SigningKey], SigningKey]:
    keys = [_key(i) for i in range(stakers)]
    hotkeys = [_key(stakers + i) for i in range(stakers)]
    owner = _key(2 * stakers)
    state = create_genesis_state(
        {
            "chain_id": CHAIN_ID,
            "params": {"max_block_transactions": max(stakers, 10)},
            "balances": {
                encode_address(bytes(key.verify_key)): 1_000 * AGR for key in [*keys, owner]
            },
        }
    )
    subnet = CreateSubnet(task_kind="custom", task_config="{}", owner_hotkey=NO_HOTKEY)
    _seal(state, [(owner, subnet)])
    pairs = list(zip(keys, hotkeys, strict=True))
    _seal(state, [(k, Register(netuid=1, hotkey=_address(h))) for k, h in pairs])
    _seal(state, [(k, AddStake(hotkey=_address(h), amount=AGR)) for k, h in pairs])
    _seal(state, [(owner, ProposeText(description="bench"))])
    return state, keys, owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stakers", type=int, default=4_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    transfers, votes = [], []
    for _ in range(args.repeats):
        state, keys, owner = prepare(args.stakers)
        sink = _address(owner)
        transfers.append(_seal(state, [(k, Transfer(recipient=sink, amount=1)) for k in keys]))
        votes.append(_seal(state, [(k, Vote(proposal_id=0, choice=1, conviction=1)) for k in keys]))
    n = args.stakers
    print(f"{n} stakers, one proposal open; best of {args.repeats} runs, transactions per second")
    print(f"(a) transfers, build_block            {n / min(transfers):>10,.0f}")
    print(f"(b) votes, build_block                {n / min(votes):>10,.0f}")
    print(f"ratio (b)/(a)                         {min(transfers) / min(votes):>10.2f}")


if __name__ == "__main__":
    main()

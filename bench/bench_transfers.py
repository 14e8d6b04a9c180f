"""Transfer throughput against the signature-verification limit, measured in the same run.

    .venv/bin/python -m bench.bench_transfers [--blocks N] [--senders N] [--profile]

(a) raw ed25519 verifications per second, with the very call the protocol makes
    (``nacl.bindings.crypto_sign_open``) on the same message sizes;
(b) signed transfers per second sealed by ``build_block`` (the sequencer), blocks of 1000
    transfers from distinct senders to distinct recipients;
(c) the same blocks replayed by ``apply_block`` on a fresh genesis state (a node syncing).

Every transaction verifies one signature, so (a) bounds (b) and (c). The ratios (b)/(a),
goal at least 0.6, and (c)/(b), goal at least 0.8, are what matter: they do not depend on
the machine. All inputs are seeded, so every run times the same bytes.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import time
from collections.abc import Callable

from nacl.bindings import crypto_sign_open
from nacl.signing import SigningKey

from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, encode_address
from agora.protocol.blocks import Block
from agora.protocol.genesis import create_genesis_state
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.state import State
from agora.protocol.transactions import Transaction, encode_transaction, sign_transaction
from agora.protocol.transition import apply_block, build_block

CHAIN_ID = "agora-bench"
GENESIS_TIMESTAMP = 1_763_700_000
BLOCK_SIZE = 1000
SIGNATURE_SIZE = 64


def _make_signing_keys(count: int) -> list[SigningKey]:
    return [
        SigningKey(hashlib.sha256(f"agora-bench:{index}".encode()).digest())
        for index in range(count)
    ]


def _make_genesis(keys: list[SigningKey]) -> State:
    return create_genesis_state(
        {
            "chain_id": CHAIN_ID,
            "timestamp": GENESIS_TIMESTAMP,
            "params": {"max_block_transactions": BLOCK_SIZE},
            "balances": {
                encode_address(bytes(key.verify_key)): 1_000 * BASE_UNITS_PER_AGR for key in keys
            },
        }
    )


def _make_blocks_of_transfers(keys: list[SigningKey], blocks: int) -> list[list[bytes]]:
    """``blocks`` lists of BLOCK_SIZE signed transfers; each sender appears once per block."""
    fee = Params().min_fee
    addresses = [Address(bytes(key.verify_key)) for key in keys]
    batches = []
    for height in range(blocks):
        batch = []
        for slot in range(BLOCK_SIZE):
            sender = (height * BLOCK_SIZE + slot) % len(keys)
            recipient = (sender + len(keys) // 2 + height) % len(keys)
            unsigned = Transaction(
                chain_id=CHAIN_ID,
                sender=addresses[sender],
                nonce=(height * BLOCK_SIZE + slot) // len(keys),
                fee=fee,
                body=Transfer(recipient=addresses[recipient], amount=1 + slot),
            )
            signed = sign_transaction(unsigned, lambda m, k=keys[sender]: k.sign(m).signature)
            batch.append(encode_transaction(signed))
        batches.append(batch)
    return batches


def _best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def measure_verify(raws: list[bytes]) -> float:
    """Seconds to verify every signature in ``raws``, exactly as ``validate_basic`` does."""
    # The sender's key sits after magic (4), chain id length (4) and the chain id.
    key_offset = 8 + len(CHAIN_ID.encode())
    prepared = [
        (raw[-SIGNATURE_SIZE:] + raw[:-SIGNATURE_SIZE], raw[key_offset : key_offset + 32])
        for raw in raws
    ]

    def run() -> float:
        started = time.perf_counter()
        for signed, public_key in prepared:
            crypto_sign_open(signed, public_key)
        return time.perf_counter() - started

    return _best_of(3, run)


def _seal_all(state: State, batches: list[list[bytes]]) -> tuple[float, list[Block]]:
    """Seconds spent inside ``build_block`` sealing every batch, and the sealed blocks."""
    elapsed = 0.0
    blocks = []
    for height, batch in enumerate(batches, start=1):
        started = time.perf_counter()
        applied = build_block(state, GENESIS_TIMESTAMP + 12 * height, batch)
        elapsed += time.perf_counter() - started
        if not all(receipt.success for receipt in applied.receipts):
            raise RuntimeError("a bench transfer failed: the inputs are not what they claim")
        blocks.append(applied.block)
    return elapsed, blocks


def _replay_all(state: State, blocks: list[Block]) -> float:
    started = time.perf_counter()
    for block in blocks:
        apply_block(state, block)
    return time.perf_counter() - started


def measure_build(keys: list[SigningKey], batches: list[list[bytes]]) -> tuple[float, list[Block]]:
    runs = [_seal_all(_make_genesis(keys), batches) for _ in range(2)]
    return min(seconds for seconds, _ in runs), runs[0][1]


def measure_replay(keys: list[SigningKey], blocks: list[Block]) -> float:
    return min(_replay_all(_make_genesis(keys), blocks) for _ in range(2))


def _profile(title: str, run: Callable[[], object]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    print(f"\n--- profile: {title} (top 15 by own time) ---")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5, help="blocks of 1000 transfers")
    parser.add_argument("--senders", type=int, default=5000, help="funded accounts")
    parser.add_argument("--profile", action="store_true", help="cProfile build and replay")
    arguments = parser.parse_args()
    if arguments.senders < BLOCK_SIZE + 1:
        parser.error(f"--senders must exceed {BLOCK_SIZE} so that every sender is distinct")

    keys = _make_signing_keys(arguments.senders)
    batches = _make_blocks_of_transfers(keys, arguments.blocks)
    transfers = sum(len(batch) for batch in batches)

    verify_seconds = measure_verify([raw for batch in batches for raw in batch])
    build_seconds, blocks = measure_build(keys, batches)
    replay_seconds = measure_replay(keys, blocks)

    verify_rate = transfers / verify_seconds
    build_rate = transfers / build_seconds
    replay_rate = transfers / replay_seconds
    print(f"{transfers} transfers in {len(blocks)} blocks, {arguments.senders} accounts")
    print(f"{'measure':<40}{'per second':>14}{'us each':>10}")
    for name, rate in (
        ("(a) ed25519 verify (crypto_sign_open)", verify_rate),
        ("(b) build_block (sequencer)", build_rate),
        ("(c) apply_block replay (node)", replay_rate),
    ):
        print(f"{name:<40}{rate:>14,.0f}{1e6 / rate:>10.1f}")
    for name, ratio, goal in (
        ("(b)/(a)", build_rate / verify_rate, 0.6),
        ("(c)/(b)", replay_rate / build_rate, 0.8),
    ):
        verdict = "meets" if ratio >= goal else "MISSES"
        print(f"ratio {name} = {ratio:.2f}  ({verdict} goal >= {goal})")

    if arguments.profile:
        sequencer, node = _make_genesis(keys), _make_genesis(keys)
        _profile("build_block", lambda: _seal_all(sequencer, batches))
        _profile("apply_block", lambda: _replay_all(node, blocks))


if __name__ == "__main__":
    main()

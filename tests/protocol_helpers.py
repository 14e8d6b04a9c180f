"""Helpers for protocol tests: deterministic keys, genesis states, signed transfers, scenarios.

Everything here is seeded: the same arguments give the same keys, the same bytes and the same
blocks in any process, which is what the determinism tests rely on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from agora.protocol.accounts import Transfer
from agora.protocol.address import Address, encode_address
from agora.protocol.blocks import Block
from agora.protocol.genesis import create_empty_state, create_genesis_state
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.state import State
from agora.protocol.transactions import Transaction, encode_transaction, sign_transaction
from agora.protocol.transition import build_block

CHAIN_ID = "agora-test"
GENESIS_TIMESTAMP = 1_763_700_000
MIN_FEE = Params().min_fee
GENESIS_BALANCE = 1_000 * BASE_UNITS_PER_AGR


@dataclass(frozen=True, slots=True)
class KeyPair:
    signing_key: SigningKey
    address: Address

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


def make_key(seed: int, index: int) -> KeyPair:
    material = hashlib.sha256(f"agora-test-key:{seed}:{index}".encode()).digest()
    signing_key = SigningKey(material)
    return KeyPair(signing_key=signing_key, address=Address(bytes(signing_key.verify_key)))


def make_keys(count: int, seed: int = 0) -> list[KeyPair]:
    return [make_key(seed, index) for index in range(count)]


def make_genesis(
    keys: Iterable[KeyPair],
    balance: int = GENESIS_BALANCE,
    params: dict[str, int] | None = None,
    chain_id: str = CHAIN_ID,
) -> dict[str, Any]:
    return {
        "chain_id": chain_id,
        "timestamp": GENESIS_TIMESTAMP,
        "params": dict(params or {}),
        "balances": {encode_address(key.address): balance for key in keys},
    }


def make_genesis_state(keys: Iterable[KeyPair], **kwargs: Any) -> State:
    return create_genesis_state(make_genesis(keys, **kwargs))


def make_transfer_tx(
    sender: KeyPair,
    recipient: Address,
    amount: int,
    nonce: int,
    fee: int = MIN_FEE,
    chain_id: str = CHAIN_ID,
) -> Transaction:
    unsigned = Transaction(
        chain_id=chain_id,
        sender=sender.address,
        nonce=nonce,
        fee=fee,
        body=Transfer(recipient=recipient, amount=amount),
    )
    return sign_transaction(unsigned, sender.sign)


def make_transfer(
    sender: KeyPair,
    recipient: Address,
    amount: int,
    nonce: int,
    fee: int = MIN_FEE,
    chain_id: str = CHAIN_ID,
) -> bytes:
    """The canonical signed bytes of a transfer, as a client would post them."""
    return encode_transaction(make_transfer_tx(sender, recipient, amount, nonce, fee, chain_id))


def snapshot_rows(state: State) -> dict[str, dict[Any, Any]]:
    """A copy of every table's rows, to check that a refused input changed nothing."""
    return {name: dict(table.items()) for name, table in state.tables.items()}


def rebuild_from_rows(state: State) -> State:
    """A fresh state holding the same rows, loaded one by one (as a node does at start-up)."""
    fresh = create_empty_state(state.chain_id)
    for table in state.tables.values():
        for key, value in table.items():
            fresh.load_row(table.tag, table.encode_key(key), table.encode_value(value))
    return fresh


def make_scenario_transactions(
    keys: list[KeyPair], nonces: dict[Address, int], rng: random.Random, count: int
) -> list[bytes]:
    """Ordered transaction bytes, mostly valid transfers, some replayed, garbage or bad."""
    raws: list[bytes] = []
    for _ in range(count):
        sender, recipient = rng.sample(keys, 2)
        nonce = nonces[sender.address]
        roll = rng.randrange(10)
        if roll == 0:
            raws.append(rng.randbytes(rng.randrange(1, 200)))
            continue
        if roll == 1:
            nonce = max(0, nonce - 1)
        amount = rng.randrange(1, GENESIS_BALANCE // 4)
        raws.append(make_transfer(sender, recipient.address, amount, nonce))
        if roll != 1:
            nonces[sender.address] = nonce + 1
    return raws


def make_scenario(seed: int, blocks: int, transactions_per_block: int) -> tuple[State, list[Block]]:
    """A genesis state and the blocks a sequencer sealed on top of it, all from ``seed``.

    Returns the genesis state untouched (the blocks were built on a separate copy).
    """
    keys = make_keys(12, seed)
    sealed = [applied.block for applied in seal_scenario(seed, blocks, transactions_per_block)]
    return make_genesis_state(keys), sealed


def seal_scenario(seed: int, blocks: int, transactions_per_block: int) -> list[Any]:
    """The AppliedBlocks ``make_scenario`` seals, with the outcomes of what each refused."""
    rng = random.Random(seed)
    keys = make_keys(12, seed)
    sequencer = make_genesis_state(keys)
    nonces = {key.address: 0 for key in keys}
    sealed = []
    for height in range(1, blocks + 1):
        raws = make_scenario_transactions(keys, nonces, rng, transactions_per_block)
        sealed.append(build_block(sequencer, GENESIS_TIMESTAMP + 12 * height, raws))
    return sealed


# --- driving the incentive layer: any signed body, blocks, twin states ----------------------


def make_signed(
    sender: KeyPair, body: Any, nonce: int, fee: int = MIN_FEE, chain_id: str = CHAIN_ID
) -> bytes:
    """The canonical signed bytes of a transaction of any kind (``body`` picks the kind)."""
    unsigned = Transaction(
        chain_id=chain_id, sender=sender.address, nonce=nonce, fee=fee, body=body
    )
    return encode_transaction(sign_transaction(unsigned, sender.sign))


def clone_state(state: State) -> State:
    """An independent copy of ``state`` at the same head (rows reloaded one by one)."""
    from agora.protocol.state import ChainHead

    fresh = rebuild_from_rows(state)
    fresh.head = ChainHead(state.head.height, state.head.block_hash, state.head.timestamp)
    return fresh


class Chain:
    """A state driven block by block, as a sequencer would: signs with the next nonces."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.blocks: list[Block] = []  # every block this chain sealed, in order

    @property
    def height(self) -> int:
        return self.state.head.height

    def sign(self, sender: KeyPair, body: Any, offset: int = 0, fee: int = MIN_FEE) -> bytes:
        from agora.protocol.accounts import get_account

        nonce = get_account(self.state, sender.address).nonce + offset
        return make_signed(sender, body, nonce, fee)

    def block(self, *items: tuple[KeyPair, Any]) -> list[Any]:
        """Seal one block holding ``(sender, body)`` transactions in order; its receipts."""
        raws: list[bytes] = []
        counts: dict[Address, int] = {}
        for sender, body in items:
            offset = counts.get(sender.address, 0)
            raws.append(self.sign(sender, body, offset))
            counts[sender.address] = offset + 1
        return self.seal(raws)

    def seal(self, raws: list[bytes]) -> list[Any]:
        timestamp = GENESIS_TIMESTAMP + 12 * (self.height + 1)
        applied = build_block(self.state, timestamp, raws)
        self.blocks.append(applied.block)
        # Every outcome in order, those refused before paying a fee (left out) included.
        return list(applied.outcomes)

    def send(self, sender: KeyPair, body: Any) -> Any:
        """One transaction in a block of its own; its receipt."""
        return self.block((sender, body))[0]

    def advance(self, blocks: int) -> None:
        for _ in range(blocks):
            self.seal([])

    def advance_to(self, height: int) -> None:
        """Seal empty blocks until the next block to seal is ``height``."""
        self.advance(height - 1 - self.height)


def create_subnet(
    chain: Chain, owner: KeyPair, owner_hotkey: Address | None = None, **hyperparameters: int
) -> int:
    """Create a subnet owned by ``owner``, then set ``hyperparameters`` in the next block."""
    from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, SetHyperparameter, get_subnets

    taken = {subnet.netuid for subnet in get_subnets(chain.state)}
    body = CreateSubnet(
        task_kind="embedding", task_config="{}", owner_hotkey=owner_hotkey or NO_HOTKEY
    )
    receipts = chain.block((owner, body))
    netuid = min({subnet.netuid for subnet in get_subnets(chain.state)} - taken)
    receipts += chain.block(
        *(
            (owner, SetHyperparameter(netuid=netuid, name=name, value=value))
            for name, value in hyperparameters.items()
        )
    )
    assert all(r.success for r in receipts), [r.message for r in receipts]
    return netuid


def assert_refused(
    chain: Chain, sender: KeyPair, body: Any, code: int, *, charged: bool = True
) -> Any:
    """Send ``body`` in a block of its own; it must fail with ``code`` and change nothing but
    the sender's nonce and fee (``charged``), or nothing at all (a stateless refusal).

    The comparison is with a twin of the state that sealed an empty block instead, so the
    end-of-block steps (emission, prices, epochs) are the same on both sides.
    """
    from agora.protocol.accounts import Account, get_account

    twin = clone_state(chain.state)
    before = get_account(chain.state, sender.address)
    receipt = chain.send(sender, body)
    assert (receipt.success, receipt.code) == (False, code), receipt.message
    Chain(twin).seal([])
    after, expected = snapshot_rows(chain.state), snapshot_rows(twin)
    if charged:
        assert receipt.fee_paid == MIN_FEE and receipt.sender == sender.address
        paid = Account(balance=before.balance - MIN_FEE, nonce=before.nonce + 1)
        assert after["accounts"].pop(sender.address) == paid
        expected["accounts"].pop(sender.address)
        treasury = expected["ledger"].pop("treasury", 0)
        assert after["ledger"].pop("treasury") == treasury + MIN_FEE
    else:
        assert receipt.fee_paid == 0 and receipt.sender is None
    assert after == expected
    assert (chain.state.state_root == twin.state_root) is not charged
    return receipt

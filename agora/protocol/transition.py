"""The state transition: the one entry point that decides who owns what.

``state_transition(state, block)`` reads as the protocol's checklist: validate the header,
apply each transaction, run the end-of-block steps of every domain (epochs, emission), commit
the state and check the root. ``build_block`` runs the very same steps for the sequencer that
seals a block, and fills in the roots instead of checking them.

A transaction that fails before its fee is charged (bytes that do not decode, a bad
signature, another chain, a wrong nonce, a fee the sender cannot pay) changed nothing and
paid nothing, so it takes no block space: ``build_block`` leaves it out of the block and
reports it in ``AppliedBlock.refused``, and ``apply_block`` refuses a block that holds one.
Leaving it out changes no other outcome, because it touched no state; every node that
builds from the same ordered bytes therefore seals the same block. Without this rule an
account holding one fee could fill blocks with transactions that never pay.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from agora.protocol import domains
from agora.protocol.accounts import process_fee_and_nonce
from agora.protocol.address import Address
from agora.protocol.blocks import Block, BlockHeader, compute_block_hash, compute_merkle_root
from agora.protocol.errors import InvalidBlock, ProtocolError, StateRootMismatch
from agora.protocol.state import RowChange, State, compute_lattice_root
from agora.protocol.transactions import (
    BlockContext,
    compute_transaction_hash,
    get_kind_of,
    validate_basic,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What happened to one transaction of a block. ``code`` is 0 on success."""

    tx_hash: bytes
    success: bool
    code: int
    message: str
    fee_paid: int
    sender: Address | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedBlock:
    """A sealed or applied block, a receipt per transaction in it, and the rows it changed.

    ``outcomes`` has a receipt for every transaction processed, in the order given: those
    of the block, and a failed one (``fee_paid`` 0, no sender) for each that ``build_block``
    left out because it could not pay its fee (``refused``).
    """

    block: Block
    receipts: list[Receipt]
    changes: list[RowChange]
    outcomes: tuple[Receipt, ...] = ()

    @property
    def refused(self) -> list[Receipt]:
        return [receipt for receipt in self.outcomes if is_refused(receipt)]


def is_refused(receipt: Receipt) -> bool:
    """True for a transaction that failed before paying its fee (it belongs in no block)."""
    return receipt.sender is None


def state_transition(state: State, block: Block) -> list[Receipt]:
    return apply_block(state, block).receipts


def apply_block(state: State, block: Block) -> AppliedBlock:
    """Apply a block someone else sealed; on any mismatch the state is left as it was."""
    validate_header(state, block.header)
    if compute_merkle_root([compute_transaction_hash(t) for t in block.transactions]) != (
        block.header.transactions_root
    ):
        raise InvalidBlock(f"block {block.header.height}: transactions root does not match")
    try:
        receipts = _execute(state, block.header.height, block.header.timestamp, block.transactions)
        unpaid = [i for i, receipt in enumerate(receipts) if is_refused(receipt)]
        if unpaid:
            raise InvalidBlock(
                f"block {block.header.height}: transaction {unpaid[0]} pays no fee "
                f"({receipts[unpaid[0]].message}); such a transaction belongs in no block"
            )
        lattice, changes = state.compute_commit()
        state_root = compute_lattice_root(lattice)
        if state_root != block.header.state_root:
            raise StateRootMismatch(
                f"block {block.header.height}: executing it gives state root "
                f"{state_root.hex()}, the block claims {block.header.state_root.hex()}"
            )
    except BaseException:
        state.rollback_block()
        raise
    state.finish_block(lattice)
    _advance_head(state, block.header)
    return AppliedBlock(block=block, receipts=receipts, changes=changes, outcomes=tuple(receipts))


def build_block(
    state: State,
    timestamp: int,
    transactions: list[bytes],
    verified_signatures: Container[bytes] = frozenset(),
) -> AppliedBlock:
    """Seal the next block from ordered transaction bytes (the sequencer's side).

    ``verified_signatures`` holds hashes of transactions whose signatures the caller has
    already verified, so that a sequencer does not verify its own admissions twice. At most
    ``max_block_transactions`` of ``transactions`` are processed; those that cannot pay their
    fee are left out of the block (see the module docstring).
    """
    timestamp = max(timestamp, state.head.timestamp)
    height = state.head.height + 1
    processed = tuple(transactions[: state.params.max_block_transactions])
    try:
        outcomes = _execute(state, height, timestamp, processed, verified_signatures)
        lattice, changes = state.compute_commit()
    except BaseException:
        state.rollback_block()
        raise
    state.finish_block(lattice)
    included = [(raw, r) for raw, r in zip(processed, outcomes, strict=True) if not is_refused(r)]
    receipts = [receipt for _, receipt in included]
    header = BlockHeader(
        height=height,
        parent_hash=state.head.block_hash,
        timestamp=timestamp,
        transactions_root=compute_merkle_root([r.tx_hash for r in receipts]),
        state_root=compute_lattice_root(lattice),
    )
    _advance_head(state, header)
    return AppliedBlock(
        block=Block(header=header, transactions=tuple(raw for raw, _ in included)),
        receipts=receipts,
        changes=changes,
        outcomes=tuple(outcomes),
    )


def validate_header(state: State, header: BlockHeader) -> None:
    if header.height != state.head.height + 1:
        raise InvalidBlock(f"expected block {state.head.height + 1}, got {header.height}")
    if header.parent_hash != state.head.block_hash:
        raise InvalidBlock(f"block {header.height} does not extend the current head")
    if header.timestamp < state.head.timestamp:
        raise InvalidBlock(f"block {header.height} has a timestamp before its parent's")


def _execute(
    state: State,
    height: int,
    timestamp: int,
    transactions: tuple[bytes, ...],
    verified_signatures: Container[bytes] = frozenset(),
) -> list[Receipt]:
    if len(transactions) > state.params.max_block_transactions:
        raise InvalidBlock(
            f"block {height} holds {len(transactions)} transactions; "
            f"the limit is {state.params.max_block_transactions}"
        )
    context = BlockContext(height=height, timestamp=timestamp, parent_hash=state.head.block_hash)
    receipts = [
        process_transaction(state, raw, context, verified_signatures) for raw in transactions
    ]
    for domain in domains.DOMAINS:
        end_block = getattr(domain, "process_end_block", None)
        if end_block is not None:
            end_block(state, context)
    return receipts


def process_transaction(
    state: State,
    raw: bytes,
    context: BlockContext,
    verified_signatures: Container[bytes] = frozenset(),
) -> Receipt:
    """Apply one transaction. Only a signed, correctly-nonced, fee-paying one changes state."""
    tx_hash = compute_transaction_hash(raw)
    try:
        tx = validate_basic(
            raw,
            state.chain_id,
            state.params,
            signature_verified=tx_hash in verified_signatures,
        )
        process_fee_and_nonce(state, tx)
    except ProtocolError as error:
        return Receipt(
            tx_hash=tx_hash,
            success=False,
            code=error.code,
            message=error.message,
            fee_paid=0,
            sender=None,
        )
    state.begin_transaction()
    try:
        get_kind_of(tx.body).process(state, tx, context)
    except ProtocolError as error:
        state.end_transaction(keep=False)
        return Receipt(
            tx_hash=tx_hash,
            success=False,
            code=error.code,
            message=error.message,
            fee_paid=tx.fee,
            sender=tx.sender,
        )
    state.end_transaction(keep=True)
    return Receipt(
        tx_hash=tx_hash, success=True, code=0, message="", fee_paid=tx.fee, sender=tx.sender
    )


def _advance_head(state: State, header: BlockHeader) -> None:
    state.head.height = header.height
    state.head.block_hash = compute_block_hash(header)
    state.head.timestamp = header.timestamp

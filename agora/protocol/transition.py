"""The state transition: the one entry point that decides who owns what.

``state_transition(state, block)`` is the protocol's checklist, every step named in its body,
in order. A following node reaches it through ``apply_block`` (a block someone else sealed:
every root is checked); the sequencer through ``build_block`` (the block it seals: the state
root is filled in). Both run the very same steps.

A transaction that fails before its fee is charged (bytes that do not decode, a bad
signature, another chain, a wrong nonce, a fee the sender cannot pay) changed nothing and
paid nothing, so it takes no block space: a sealed block leaves it out (its receipt is in
``AppliedBlock.outcomes``, among ``refused``), and a block that holds one is invalid.
Leaving it out changes no other outcome, because it touched no state; every node that
builds from the same ordered bytes therefore seals the same block. Without this rule an
account holding one fee could fill blocks with transactions that never pay.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from agora.protocol.accounts import process_fee_and_nonce
from agora.protocol.address import Address
from agora.protocol.blocks import (
    ZERO_HASH,
    Block,
    BlockHeader,
    compute_block_hash,
    compute_merkle_root,
)
from agora.protocol.emission import process_block_emission, process_epochs
from agora.protocol.errors import InvalidBlock, ProtocolError, StateRootMismatch
from agora.protocol.governance import process_proposals_due
from agora.protocol.kinds import BlockContext
from agora.protocol.services import process_recent_state_roots, process_service_expiries
from agora.protocol.state import RowChange, State, compute_lattice_root
from agora.protocol.subnets import process_registration_prices
from agora.protocol.transactions import (
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
    of the block, and a failed one (``fee_paid`` 0, no sender) for each that sealing left
    out because it could not pay its fee (``refused``).
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


def state_transition(
    state: State,
    block: Block,
    *,
    seal: bool = False,
    verified_signatures: Container[bytes] = frozenset(),
) -> AppliedBlock:
    """Apply the next block to ``state``. This function is the protocol, step by step:

    1. validate the header: it extends the head (height, parent hash, timestamp), its
       transactions root is that of its transactions, and it holds no more than
       ``max_block_transactions`` of them;
    2. apply each transaction, in order: the stateless checks, then the fee and nonce, then
       the kind's handler; a transaction that fails gets a failed receipt with its error
       code, and only its handler's writes are undone. One that fails before paying its fee
       makes the block invalid; a sequencer sealing (``seal=True``) leaves it out instead;
    3. remember the parent block's state root (services' endpoint proofs name a recent block);
    4. expire the services whose time to live ends at this block, bonds back to owners;
    5. decay every subnet's registration price;
    6. mint the block's emission into the subnets' pending emission;
    7. run the epochs that are due (Yuma, and the payouts);
    8. close, enact or pay the governance proposals due at this block (after the epochs, so
       an enactment sees this block's payouts);
    9. commit: fold the rows the block changed into the state's lattice;
    10. check the root: the lattice's root must be the one the header claims. A sequencer
        sealing its own block (``seal=True``, from ``build_block``) fills the root in instead.

    A new domain with work at the end of every block (expire records, close rounds) adds its
    named step between 8 and 9, or earlier where its order requires (moving a step changes
    state roots). On any error the state
    is left exactly as it was. ``verified_signatures`` holds hashes of transactions whose
    signatures the caller verified already (the sequencer, at admission).
    """
    header = block.header
    validate_header(state, header)
    validate_transactions(state, block)
    context = BlockContext(
        height=header.height, timestamp=header.timestamp, parent_state_root=state.state_root
    )
    with rollback_on_error(state):
        outcomes = [
            process_transaction(state, raw, context, verified_signatures)
            for raw in block.transactions
        ]
        if not seal:
            validate_all_paid(header, outcomes)
        included = tuple(
            raw for raw, r in zip(block.transactions, outcomes, strict=True) if not is_refused(r)
        )
        process_recent_state_roots(state, context)
        process_service_expiries(state, context)
        process_registration_prices(state, context)
        process_block_emission(state, context)
        process_epochs(state, context)
        process_proposals_due(state, context)
        # End-of-block steps of new domains go here, each named, in protocol order.
        lattice, changes = state.compute_commit()
        state_root = compute_lattice_root(lattice)
        if seal:
            hashes = [r.tx_hash for r in outcomes if not is_refused(r)]
            header = replace(
                header, transactions_root=compute_merkle_root(hashes), state_root=state_root
            )
        validate_state_root(header, state_root)
        state.finish_block(lattice)
    advance_head(state, header)
    return AppliedBlock(
        block=Block(header=header, transactions=included),
        receipts=[r for r in outcomes if not is_refused(r)],
        changes=changes,
        outcomes=tuple(outcomes),
    )


def apply_block(state: State, block: Block) -> AppliedBlock:
    """Apply a block someone else sealed (a following node): every root is checked."""
    return state_transition(state, block)


def build_block(
    state: State,
    timestamp: int,
    transactions: list[bytes],
    verified_signatures: Container[bytes] = frozenset(),
) -> AppliedBlock:
    """Seal the next block from ordered transaction bytes (the sequencer's side).

    The first ``max_block_transactions`` are taken, at a timestamp no earlier than the
    head's, and run through ``state_transition``, which fills in the state root and leaves
    out those that cannot pay their fee.
    """
    selected = tuple(transactions[: state.params.max_block_transactions])
    header = BlockHeader(
        height=state.head.height + 1,
        parent_hash=state.head.block_hash,
        timestamp=max(timestamp, state.head.timestamp),
        transactions_root=compute_merkle_root([compute_transaction_hash(t) for t in selected]),
        state_root=ZERO_HASH,  # filled in by state_transition
    )
    return state_transition(
        state,
        Block(header=header, transactions=selected),
        seal=True,
        verified_signatures=verified_signatures,
    )


@contextmanager
def rollback_on_error(state: State) -> Iterator[None]:
    """A block's writes are committed whole or not at all: any error undoes all of them."""
    try:
        yield
    except BaseException:
        state.rollback_block()
        raise


def validate_header(state: State, header: BlockHeader) -> None:
    if header.height != state.head.height + 1:
        raise InvalidBlock(f"expected block {state.head.height + 1}, got {header.height}")
    if header.parent_hash != state.head.block_hash:
        raise InvalidBlock(f"block {header.height} does not extend the current head")
    if header.timestamp < state.head.timestamp:
        raise InvalidBlock(f"block {header.height} has a timestamp before its parent's")


def validate_transactions(state: State, block: Block) -> None:
    """The header's transactions root matches, and the block is within the size limit."""
    hashes = [compute_transaction_hash(raw) for raw in block.transactions]
    if compute_merkle_root(hashes) != block.header.transactions_root:
        raise InvalidBlock(f"block {block.header.height}: transactions root does not match")
    limit = state.params.max_block_transactions
    if len(block.transactions) > limit:
        raise InvalidBlock(
            f"block {block.header.height} holds {len(block.transactions)} transactions; "
            f"the limit is {limit}"
        )


def validate_all_paid(header: BlockHeader, outcomes: list[Receipt]) -> None:
    """Every transaction of a sealed block paid its fee (see the module docstring)."""
    for position, receipt in enumerate(outcomes):
        if is_refused(receipt):
            raise InvalidBlock(
                f"block {header.height}: transaction {position} pays no fee "
                f"({receipt.message}); such a transaction belongs in no block"
            )


def validate_state_root(header: BlockHeader, state_root: bytes) -> None:
    if state_root != header.state_root:
        raise StateRootMismatch(
            f"block {header.height}: executing it gives state root "
            f"{state_root.hex()}, the block claims {header.state_root.hex()}"
        )


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


def advance_head(state: State, header: BlockHeader) -> None:
    state.head.height = header.height
    state.head.block_hash = compute_block_hash(header)
    state.head.timestamp = header.timestamp

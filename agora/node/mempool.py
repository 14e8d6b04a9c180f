"""Admission of transactions into the node: stateless checks plus cheap stateful ones.

A transaction the API accepts has passed ``validate_basic`` and carries exactly the sender's
next nonce (counting the sender's transactions already waiting), so a sender's waiting
nonces are contiguous. The sender's balance must pay its fee on top of everything its
waiting transactions may spend (their fees, and the amounts they move: transfers, stake,
channel deposits), so an account holding one fee gets one transaction in, not thousands.
At most ``max_per_sender`` transactions wait per sender (SenderPoolFull, 429) and
``max_size`` in all (PoolFull, 429). These checks give the submitter an immediate, coded
answer; the state transition still makes the final decision when the block is applied, and
leaves out of the block a transaction that cannot pay its fee by then.
"""

from __future__ import annotations

from agora.node.errors import PoolFull, SenderPoolFull
from agora.protocol.accounts import Transfer, get_account
from agora.protocol.address import Address
from agora.protocol.channels import OpenChannel, TopUpChannel
from agora.protocol.errors import BadNonce, CannotPayFee
from agora.protocol.staking import AddStake
from agora.protocol.state import State
from agora.protocol.transactions import Transaction, compute_transaction_hash, validate_basic

DEFAULT_MAX_PER_SENDER = 1_000


def compute_spend(tx: Transaction) -> int:
    """The most base units ``tx`` can take from its sender's balance: its fee, and the
    amount its body moves out (a failing body moves nothing, so this is an upper bound)."""
    body = tx.body
    if isinstance(body, Transfer | AddStake | TopUpChannel):
        return tx.fee + body.amount
    if isinstance(body, OpenChannel):
        return tx.fee + body.deposit
    return tx.fee


class Mempool:
    def __init__(self, max_size: int, max_per_sender: int = DEFAULT_MAX_PER_SENDER) -> None:
        self.max_size = max_size
        self.max_per_sender = max_per_sender
        self._senders: dict[bytes, Address] = {}
        self._next_nonce: dict[Address, int] = {}
        self._pending_count: dict[Address, int] = {}
        # What each waiting transaction may spend, and the sum per sender.
        self._spend: dict[bytes, int] = {}
        self._pending_spend: dict[Address, int] = {}
        # Hashes whose signatures admission verified, so block building need not again.
        # Transactions restored from the store after a restart are verified in the block.
        self.verified: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._senders)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._senders

    def admit(
        self, state: State, raw: bytes, checked: Transaction | None = None
    ) -> tuple[bytes, Transaction | None]:
        """Check and record ``raw``; returns its hash and the transaction (None if known).

        ``checked``: ``raw`` already passed ``validate_basic`` (on a thread) and decodes to it.
        """
        tx_hash = compute_transaction_hash(raw)
        if tx_hash in self._senders:
            return tx_hash, None
        tx = checked if checked is not None else validate_basic(raw, state.chain_id, state.params)
        account = get_account(state, tx.sender)
        expected = max(account.nonce, self._next_nonce.get(tx.sender, 0))
        if tx.nonce != expected:
            word = "already used" if tx.nonce < expected else "ahead of the account"
            raise BadNonce(f"nonce {tx.nonce} is {word}; the next usable nonce is {expected}")
        waiting = self._pending_count.get(tx.sender, 0)
        committed = self._pending_spend.get(tx.sender, 0)
        if account.balance < committed + tx.fee:
            raise CannotPayFee(
                f"balance {account.balance} cannot pay the fee {tx.fee} on top of the "
                f"{committed} base units that this sender's {waiting} waiting transactions "
                "may spend; wait for them to be included"
            )
        if waiting >= self.max_per_sender:
            raise SenderPoolFull(
                f"this sender already has {waiting} transactions waiting (the most a node "
                "keeps per sender); retry once a block has included some"
            )
        if len(self._senders) >= self.max_size:
            raise PoolFull(f"{len(self._senders)} transactions are waiting; retry shortly")
        self._record(tx_hash, tx)
        self.verified.add(tx_hash)
        return tx_hash, tx

    def restore(self, raw: bytes, tx: Transaction) -> None:
        """Re-admit a pending transaction found in the store after a restart."""
        self._record(compute_transaction_hash(raw), tx)

    def get_next_nonce(self, state: State, sender: Address) -> int:
        return max(get_account(state, sender).nonce, self._next_nonce.get(sender, 0))

    def remove_included(self, tx_hashes: list[bytes]) -> None:
        """Forget transactions a block included, whatever their outcome."""
        for tx_hash in tx_hashes:
            self.verified.discard(tx_hash)
            sender = self._senders.pop(tx_hash, None)
            if sender is None:
                continue
            self._release_spend(tx_hash, sender)
            remaining = self._pending_count[sender] - 1
            if remaining:
                self._pending_count[sender] = remaining
            else:
                # With nothing waiting, the account's own nonce is the truth again (a failed
                # predecessor may have left the expected nonce ahead of it).
                del self._pending_count[sender]
                del self._next_nonce[sender]

    def withdraw(self, admitted: list[Transaction], tx_hashes: list[bytes]) -> None:
        """Undo the admission of a refused request's transactions, as if never submitted.

        Newest first: each was admitted carrying exactly the sender's expected nonce, so
        the expectation goes back to that nonce (other transactions may still be waiting).
        One that a block already included (while a sequencer was submitting) is left alone.
        """
        for tx, tx_hash in reversed(list(zip(admitted, tx_hashes, strict=True))):
            self.verified.discard(tx_hash)
            if self._senders.pop(tx_hash, None) is None:
                continue
            self._release_spend(tx_hash, tx.sender)
            remaining = self._pending_count[tx.sender] - 1
            if remaining:
                self._pending_count[tx.sender] = remaining
                self._next_nonce[tx.sender] = tx.nonce
            else:
                del self._pending_count[tx.sender]
                del self._next_nonce[tx.sender]

    def _record(self, tx_hash: bytes, tx: Transaction) -> None:
        sender = tx.sender
        self._senders[tx_hash] = sender
        self._next_nonce[sender] = max(self._next_nonce.get(sender, 0), tx.nonce + 1)
        self._pending_count[sender] = self._pending_count.get(sender, 0) + 1
        spend = compute_spend(tx)
        self._spend[tx_hash] = spend
        self._pending_spend[sender] = self._pending_spend.get(sender, 0) + spend

    def _release_spend(self, tx_hash: bytes, sender: Address) -> None:
        remaining = self._pending_spend[sender] - self._spend.pop(tx_hash)
        if remaining:
            self._pending_spend[sender] = remaining
        else:
            del self._pending_spend[sender]

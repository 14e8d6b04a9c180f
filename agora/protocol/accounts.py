"""Accounts and fees: balances, nonces, the treasury, and the transfer transaction.

An account is keyed by its ed25519 public key and holds a balance (base units) and the
nonce its next transaction must carry. Fees go to the treasury, a ledger entry of its own,
so that supply is conserved: nothing is burned by a fee.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.protocol.address import Address
from agora.protocol.codec import ADDRESS, U64, Record
from agora.protocol.errors import (
    AmountOutOfRange,
    BadNonce,
    BalanceOverflow,
    CannotPayFee,
    InsufficientBalance,
    SelfTransfer,
)
from agora.protocol.kinds import BlockContext, Transaction, TransactionKind
from agora.protocol.state import State

MAX_AMOUNT = (1 << 64) - 1
ACCOUNTS_TAG = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    balance: int = 0
    nonce: int = 0


EMPTY_ACCOUNT = Account()
ACCOUNT_RECORD: Record[Account] = Record(Account, (("balance", U64), ("nonce", U64)))


def register_tables(state: State) -> None:
    state.add_table(
        ACCOUNTS_TAG,
        "accounts",
        (bytes, lambda b: Address(bytes(b))),
        (ACCOUNT_RECORD.encode, ACCOUNT_RECORD.decode),
    )


def get_account(state: State, address: Address) -> Account:
    account: Account = state.tables["accounts"].get(address, EMPTY_ACCOUNT)
    return account


def get_balance(state: State, address: Address) -> int:
    return get_account(state, address).balance


def _set_account(state: State, address: Address, account: Account) -> None:
    accounts = state.tables["accounts"]
    if account == EMPTY_ACCOUNT:
        accounts.delete(address)
    else:
        accounts.set(address, account)


def increase_balance(state: State, address: Address, amount: int) -> None:
    account = get_account(state, address)
    if account.balance + amount > MAX_AMOUNT:
        raise BalanceOverflow("the recipient's balance would exceed the 64-bit limit")
    _set_account(state, address, Account(balance=account.balance + amount, nonce=account.nonce))


def decrease_balance(state: State, address: Address, amount: int) -> None:
    account = get_account(state, address)
    if account.balance < amount:
        raise InsufficientBalance(
            f"balance {account.balance} is less than the {amount} base units needed"
        )
    _set_account(state, address, Account(balance=account.balance - amount, nonce=account.nonce))


def process_fee_and_nonce(state: State, tx: Transaction) -> None:
    """Consume the nonce and charge the fee, or raise and change nothing.

    Runs before the kind's handler and is never rolled back: a transaction that then fails
    has still used its nonce (so it cannot be replayed) and paid for its block space.
    """
    account = get_account(state, tx.sender)
    if tx.nonce != account.nonce:
        word = "already used" if tx.nonce < account.nonce else "ahead of the account"
        raise BadNonce(f"nonce {tx.nonce} is {word}; the account's next nonce is {account.nonce}")
    if account.balance < tx.fee:
        raise CannotPayFee(f"balance {account.balance} cannot pay the fee {tx.fee}")
    _set_account(state, tx.sender, Account(balance=account.balance - tx.fee, nonce=tx.nonce + 1))
    state.set_ledger("treasury", state.get_ledger("treasury") + tx.fee)


# --- transfer --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    recipient: Address
    amount: int


def validate_transfer(tx: Transaction) -> None:
    body: Transfer = tx.body
    if body.amount <= 0:
        raise AmountOutOfRange("transfer amount must be positive")
    if body.recipient == tx.sender:
        raise SelfTransfer("a transfer to yourself only pays a fee; check the recipient")


def process_transfer(state: State, tx: Transaction, context: BlockContext) -> None:
    body: Transfer = tx.body
    decrease_balance(state, tx.sender, body.amount)
    increase_balance(state, body.recipient, body.amount)


KINDS = (
    TransactionKind(
        kind=1,
        name="transfer",
        body=Record(Transfer, (("recipient", ADDRESS), ("amount", U64))),
        validate=validate_transfer,
        process=process_transfer,
    ),
)


def compute_supply_held(state: State) -> int:
    """Base units held in account balances (the invariant adds every domain's share)."""
    return sum(account.balance for _, account in state.tables["accounts"].items())


def check_invariants(state: State) -> None:
    """Accounts check no invariant of their own beyond the supply they hold."""

"""Invariants that must hold after every block; tests run them, a violation is a bug.

Supply conservation: genesis supply + minted - burned equals what every domain holds
(balances, stakes, channel deposits, pending emission) plus the treasury. No ledger amount is
negative. Then each domain's own ``check_invariants`` (the ``Domain`` shape in domains.py).
"""

from __future__ import annotations

from agora.protocol import domains
from agora.protocol.errors import InvariantViolated
from agora.protocol.state import State


def check_invariants(state: State) -> None:
    check_supply(state)
    check_ledger_not_negative(state)
    for domain in domains.DOMAINS:
        domain.check_invariants(state)


def check_supply(state: State) -> None:
    expected = (
        state.get_ledger("genesis_supply") + state.get_ledger("minted") - state.get_ledger("burned")
    )
    held = state.get_ledger("treasury")
    for domain in domains.DOMAINS:
        held += domain.compute_supply_held(state)
    if held != expected:
        raise InvariantViolated(f"supply is {held} base units, expected {expected}")


def check_ledger_not_negative(state: State) -> None:
    negative = [key for key, amount in state.tables["ledger"].items() if amount < 0]
    if negative:
        raise InvariantViolated(f"ledger entry {negative[0]} is negative")

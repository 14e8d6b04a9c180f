"""Invariants that must hold after every block; tests run them, a violation is a bug.

Supply conservation: genesis supply + minted - burned equals what every domain holds
(balances, stakes, channel deposits, pending emission) plus the treasury. No amount is
negative. Domains may add their own checks through ``check_domain_invariants``.
"""

from __future__ import annotations

from agora.protocol import domains
from agora.protocol.errors import InvariantViolated
from agora.protocol.state import State


def check_invariants(state: State) -> None:
    expected = (
        state.get_ledger("genesis_supply") + state.get_ledger("minted") - state.get_ledger("burned")
    )
    held = state.get_ledger("treasury")
    for domain in domains.DOMAINS:
        held += domain.compute_supply_held(state)
    if held != expected:
        raise InvariantViolated(f"supply is {held} base units, expected {expected}")
    for name, table in state.tables.items():
        if name == "ledger":
            negative = [key for key, amount in table.items() if amount < 0]
            if negative:
                raise InvariantViolated(f"ledger entry {negative[0]} is negative")
    for domain in domains.DOMAINS:
        check_domain = getattr(domain, "check_domain_invariants", None)
        if check_domain is not None:
            check_domain(state)

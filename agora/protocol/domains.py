"""The domain modules, the one shape they all have, and the index of their transaction kinds.

A domain module (accounts, subnets, staking, weights, channels, emission, ...) is one area of
the ledger. Every one has the same face, ``Domain`` below, which mypy checks against each
module listed in ``DOMAINS``: know one domain module and you know them all.

A new domain module provides, checklist:

1. ``register_tables(state) -> None``: ``state.add_table`` for each table it owns, each with
   a tag from its own range (tags and kinds are numbered by domain: subnets 10-19,
   staking 20-29, ...).
2. ``KINDS: tuple[TransactionKind, ...]``: its transaction kinds (number, name, body record,
   ``validate``, ``process``); ``()`` if it has none. For each kind ``x``, the module defines
   the body dataclass, ``validate_x(tx)`` (stateless: bounds, format; raises) and
   ``process_x(state, tx, context)`` (stateful; raises to fail, and its writes are rolled
   back). Types come from ``agora.protocol.kinds``, never from ``transactions.py``.
3. ``compute_supply_held(state) -> int``: the base units its tables hold (0 if none), which
   the supply invariant adds up.
4. ``check_invariants(state) -> None``: its own invariants; raises ``InvariantViolated``
   (a docstring and no body if it has none).
5. Its errors: classes in ``errors.py``, in the domain's code range, each with a docstring.

Then the one line to add: the module in ``DOMAINS`` below. If the domain must act at the end
of every block (enact proposals, expire records), name that step in
``transition.state_transition``, at the place the checklist there shows. If it reads the
genesis document, name that step in ``genesis.create_genesis_state``.
"""

from __future__ import annotations

from typing import Protocol

from agora.protocol import (
    accounts,
    channels,
    data,
    emission,
    governance,
    services,
    staking,
    subnets,
    voting_power,
    weights,
)
from agora.protocol.kinds import TransactionKind
from agora.protocol.state import State


class Domain(Protocol):
    """The face of every domain module (a module satisfies it by defining these names)."""

    @property
    def KINDS(self) -> tuple[TransactionKind, ...]:
        """The domain's transaction kinds."""
        ...

    def register_tables(self, state: State) -> None:
        """Add the domain's tables to a new state."""
        ...

    def compute_supply_held(self, state: State) -> int:
        """Base units held in the domain's tables, for the supply invariant."""
        ...

    def check_invariants(self, state: State) -> None:
        """Raise InvariantViolated if the domain's own invariants do not hold."""
        ...


# The order is the order of table registration and of the invariant checks; end-of-block
# steps are named, in their order, in transition.state_transition.
DOMAINS: tuple[Domain, ...] = (
    accounts,
    subnets,
    staking,
    weights,
    channels,
    services,
    data,
    emission,
    voting_power,
    governance,
)


def _index_kinds(domains: tuple[Domain, ...]) -> dict[int, TransactionKind]:
    by_number: dict[int, TransactionKind] = {}
    for domain in domains:
        for kind in domain.KINDS:
            if kind.kind in by_number:
                raise ValueError(f"transaction kind {kind.kind} registered twice")
            by_number[kind.kind] = kind
    return by_number


KINDS_BY_NUMBER: dict[int, TransactionKind] = _index_kinds(DOMAINS)
KINDS_BY_NAME: dict[str, TransactionKind] = {kind.name: kind for kind in KINDS_BY_NUMBER.values()}

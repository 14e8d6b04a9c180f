"""The list of domain modules. Adding a transaction kind is one module plus one line here.

Each domain module defines:
- ``register_tables(state)``: the tables it owns (each with a unique tag);
- ``KINDS``: its transaction kinds (number, name, body encoding, checks, handler);
- ``compute_supply_held(state)``: the base units it holds, for the supply invariant.
"""

from __future__ import annotations

from types import ModuleType

from agora.protocol import (
    accounts,
    channels,
    data,
    emission,
    services,
    staking,
    subnets,
    weights,
)

# Order matters only for end-of-block steps: emission's runs after every transaction.
DOMAINS: tuple[ModuleType, ...] = (
    accounts,
    subnets,
    staking,
    weights,
    channels,
    services,
    data,
    emission,
)

"""Shared fixtures for the protocol tests: a few seeded keys and a funded genesis state."""

from __future__ import annotations

import pytest
from protocol_helpers import KeyPair, make_genesis_state, make_keys

from agora.protocol.state import State


@pytest.fixture
def keys() -> list[KeyPair]:
    return make_keys(4)


@pytest.fixture
def genesis_state(keys: list[KeyPair]) -> State:
    return make_genesis_state(keys)

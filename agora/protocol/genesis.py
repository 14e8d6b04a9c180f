"""Genesis: the state at height 0, built from a JSON document.

::

    {
      "chain_id": "agora-dev",
      "timestamp": 1763700000,
      "params": {"min_fee": 1000},
      "balances": {"agr1...": 1000000000000}
    }

Omitted parameters take their defaults. The genesis block (height 0) has no transactions and
commits to this state; its hash is the parent of block 1, so two nodes given different genesis
files can never agree on a block. ``create_empty_state`` gives a state with every domain's
tables and no rows (a node loads its stored rows into one).
"""

from __future__ import annotations

from typing import Any

from agora.protocol import domains, governance
from agora.protocol.accounts import MAX_AMOUNT, Account
from agora.protocol.address import decode_address
from agora.protocol.blocks import ZERO_HASH, BlockHeader, compute_block_hash
from agora.protocol.errors import InvalidAddress, InvalidGenesis
from agora.protocol.params import params_from_json
from agora.protocol.state import State, register_core_tables


def create_empty_state(chain_id: str) -> State:
    """A state with every table and no rows: the core tables, then each domain's."""
    state = State(chain_id=chain_id)
    register_core_tables(state)
    for domain in domains.DOMAINS:
        domain.register_tables(state)
    return state


def create_genesis_state(genesis: Any) -> State:
    """The state after the genesis block; raises InvalidGenesis naming the field at fault."""
    if not isinstance(genesis, dict):
        raise InvalidGenesis("genesis: expected a JSON object")
    chain_id = genesis.get("chain_id")
    if not isinstance(chain_id, str) or not 0 < len(chain_id.encode()) <= 64:
        raise InvalidGenesis("chain_id: expected a string of 1 to 64 bytes")
    timestamp = genesis.get("timestamp", 0)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidGenesis("timestamp: expected a non-negative integer (unix seconds)")
    state = create_empty_state(chain_id)
    state.set_params(params_from_json(genesis.get("params", {})))
    supply = _apply_balances(state, genesis.get("balances", {}))
    state.set_ledger("genesis_supply", supply)
    governance.apply_genesis(state, genesis)
    # A domain that reads the genesis document adds its named step here.
    lattice, _ = state.compute_commit()
    state.finish_block(lattice)
    header = create_genesis_header(timestamp, state.state_root)
    state.head.height = 0
    state.head.block_hash = compute_block_hash(header)
    state.head.timestamp = timestamp
    return state


def create_genesis_header(timestamp: int, state_root: bytes) -> BlockHeader:
    return BlockHeader(
        height=0,
        parent_hash=ZERO_HASH,
        timestamp=timestamp,
        transactions_root=ZERO_HASH,
        state_root=state_root,
    )


def _apply_balances(state: State, balances: Any) -> int:
    if not isinstance(balances, dict):
        raise InvalidGenesis("balances: expected an object of address to amount")
    total = 0
    accounts = state.tables["accounts"]
    for text, amount in balances.items():
        try:
            address = decode_address(text)
        except InvalidAddress as error:
            raise InvalidGenesis(f"balances.{text}: {error.message}") from None
        if address in accounts:
            raise InvalidGenesis(f"balances.{text}: the same address is listed twice")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
            raise InvalidGenesis(f"balances.{text}: expected a positive 64-bit integer")
        accounts.set(address, Account(balance=amount, nonce=0))
        total += amount
    if total > MAX_AMOUNT:
        raise InvalidGenesis("balances: the total exceeds the 64-bit supply limit")
    return total

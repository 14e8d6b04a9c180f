"""The ledger state: named tables of typed rows, a write journal, and the state commitment.

The state is the one mutable structure of the protocol. Every write goes through a
``Table``, which records the row's value before the block first touched it. That journal
serves three purposes:

- the state root is updated from the rows a block changed only (cost proportional to the
  block, not to the state), with a lattice hash: the multiset hash of every
  (table, key, value) row, as 1024 lanes of 16 bits added modulo 2^16 (LtHash, the
  construction Solana's accounts hash uses): adding a row adds its hash, removing subtracts;
- the node stores exactly the rows that changed, in the same database transaction as the
  block;
- a failed transaction is rolled back to its checkpoint, and a block whose state root does
  not match is rolled back whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from blake3 import blake3

from agora.protocol.params import PARAMS_RECORD, Params

K = TypeVar("K")
V = TypeVar("V")

LATTICE_LANES = 1024
_LATTICE_BYTES = LATTICE_LANES * 2
_ABSENT: Any = object()


def compute_row_hash(tag: int, key: bytes, value: bytes) -> bytes:
    """The lattice element of one row: BLAKE3 in extendable-output mode, as Solana's accounts
    lattice hash uses (SHAKE-256 gives the same security at 8x the cost). Lengths are framed
    so that rows cannot collide by splicing key and value."""
    material = bytes((tag,)) + len(key).to_bytes(4, "big") + key + value
    return blake3(material).digest(length=_LATTICE_BYTES)


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row a block changed: its encoded key and its new value (None when deleted)."""

    tag: int
    key: bytes
    value: bytes | None


class Table(Generic[K, V]):
    """A map of rows; writes are journaled by the state that owns the table."""

    __slots__ = (
        "tag",
        "name",
        "rows",
        "encode_key",
        "decode_key",
        "encode_value",
        "decode_value",
        "_journal",
    )

    def __init__(
        self,
        tag: int,
        name: str,
        key_codec: tuple[Callable[[K], bytes], Callable[[bytes], K]],
        value_codec: tuple[Callable[[V], bytes], Callable[[bytes], V]],
        journal: Journal,
    ) -> None:
        self.tag = tag
        self.name = name
        self.rows: dict[K, V] = {}
        self.encode_key, self.decode_key = key_codec
        self.encode_value, self.decode_value = value_codec
        self._journal = journal

    def get(self, key: K, default: V) -> V:
        return self.rows.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self.rows[key]

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self.rows.items())

    def set(self, key: K, value: V) -> None:
        self._journal.record(self, key, self.rows.get(key, _ABSENT))
        self.rows[key] = value

    def delete(self, key: K) -> None:
        if key in self.rows:
            self._journal.record(self, key, self.rows[key])
            del self.rows[key]

    def restore(self, key: K, value: V) -> None:
        """Put back a journaled value without journaling it again (rollback only)."""
        if value is _ABSENT:
            self.rows.pop(key, None)
        else:
            self.rows[key] = value


class Journal:
    """Values of rows before the current block touched them, and per-transaction undo logs."""

    __slots__ = ("block_originals", "undo")

    def __init__(self) -> None:
        self.block_originals: dict[tuple[Table[Any, Any], Any], Any] = {}
        self.undo: list[tuple[Table[Any, Any], Any, Any]] | None = None

    def record(self, table: Table[Any, Any], key: Any, previous: Any) -> None:
        slot = (table, key)
        if slot not in self.block_originals:
            self.block_originals[slot] = previous
        if self.undo is not None:
            self.undo.append((table, key, previous))


def _u64_codec() -> tuple[Callable[[int], bytes], Callable[[bytes], int]]:
    return (lambda v: v.to_bytes(8, "big"), lambda b: int.from_bytes(b, "big"))


def _text_codec() -> tuple[Callable[[str], bytes], Callable[[bytes], str]]:
    return (lambda v: v.encode(), lambda b: b.decode())


@dataclass(slots=True)
class ChainHead:
    """Where the state stands in the chain. Not in the commitment: blocks commit to it."""

    height: int = -1
    block_hash: bytes = bytes(32)
    timestamp: int = 0


@dataclass(slots=True)
class State:
    """All tables plus the lattice; domain modules read and write it through their tables."""

    chain_id: str
    journal: Journal = field(default_factory=Journal)
    tables: dict[str, Table[Any, Any]] = field(default_factory=dict)
    lattice: np.ndarray = field(default_factory=lambda: np.zeros(LATTICE_LANES, np.uint16))
    head: ChainHead = field(default_factory=ChainHead)

    def add_table(
        self,
        tag: int,
        name: str,
        key_codec: tuple[Callable[[Any], bytes], Callable[[bytes], Any]],
        value_codec: tuple[Callable[[Any], bytes], Callable[[bytes], Any]],
    ) -> Table[Any, Any]:
        if name in self.tables or any(t.tag == tag for t in self.tables.values()):
            raise ValueError(f"table {name} (tag {tag}) is defined twice")
        table: Table[Any, Any] = Table(tag, name, key_codec, value_codec, self.journal)
        self.tables[name] = table
        return table

    # --- the two singleton rows every domain needs ---------------------------------

    @property
    def params(self) -> Params:
        params: Params = self.tables["params"]["params"]
        return params

    def set_params(self, params: Params) -> None:
        self.tables["params"].set("params", params)

    def get_ledger(self, name: str) -> int:
        value: int = self.tables["ledger"].get(name, 0)
        return value

    def set_ledger(self, name: str, amount: int) -> None:
        self.tables["ledger"].set(name, amount)

    # --- transactions: checkpoints -----------------------------------------------------

    def begin_transaction(self) -> None:
        self.journal.undo = []

    def end_transaction(self, keep: bool) -> None:
        undo = self.journal.undo or []
        self.journal.undo = None
        if not keep:
            for table, key, previous in reversed(undo):
                table.restore(key, previous)

    # --- blocks: commitment ----------------------------------------------------------

    def compute_commit(self) -> tuple[np.ndarray, list[RowChange]]:
        """The lattice after the current block and the rows it changed; changes nothing."""
        added: list[bytes] = []
        removed: list[bytes] = []
        changes: list[RowChange] = []
        for (table, key), original in self.journal.block_originals.items():
            current = table.rows.get(key, _ABSENT)
            if current is original:
                continue
            key_bytes = table.encode_key(key)
            new_value = None if current is _ABSENT else table.encode_value(current)
            old_value = None if original is _ABSENT else table.encode_value(original)
            if new_value == old_value:
                continue
            if old_value is not None:
                removed.append(compute_row_hash(table.tag, key_bytes, old_value))
            if new_value is not None:
                added.append(compute_row_hash(table.tag, key_bytes, new_value))
            changes.append(RowChange(table.tag, key_bytes, new_value))
        lattice: np.ndarray = self.lattice + _sum_lanes(added) - _sum_lanes(removed)
        return lattice, changes

    def finish_block(self, lattice: np.ndarray) -> None:
        """Make the block's writes final: its lattice becomes the state's commitment."""
        self.lattice = lattice
        self.journal.block_originals.clear()

    def rollback_block(self) -> None:
        """Undo every write of the current block (its state root did not match)."""
        for (table, key), original in self.journal.block_originals.items():
            table.restore(key, original)
        self.journal.block_originals.clear()
        self.journal.undo = None

    @property
    def state_root(self) -> bytes:
        return compute_lattice_root(self.lattice)

    def load_row(self, tag: int, key: bytes, value: bytes) -> None:
        """Restore one stored row (node start-up); rebuilds the lattice as it goes."""
        table = self._table_by_tag(tag)
        table.rows[table.decode_key(key)] = table.decode_value(value)
        self.lattice = self.lattice + _sum_lanes([compute_row_hash(tag, key, value)])

    def _table_by_tag(self, tag: int) -> Table[Any, Any]:
        for table in self.tables.values():
            if table.tag == tag:
                return table
        raise KeyError(f"no table with tag {tag}")


def compute_lattice_root(lattice: np.ndarray) -> bytes:
    return hashlib.blake2b(lattice.tobytes(), digest_size=32).digest()


def _sum_lanes(hashes: list[bytes]) -> np.ndarray:
    if not hashes:
        return np.zeros(LATTICE_LANES, np.uint16)
    lanes = np.frombuffer(b"".join(hashes), dtype="<u2").reshape(len(hashes), LATTICE_LANES)
    summed: np.ndarray = lanes.sum(axis=0, dtype=np.uint16)
    return summed


def register_core_tables(state: State) -> None:
    """The two tables every domain needs: the chain's parameters and the ledger's totals
    (genesis supply, minted, burned, treasury). Domain modules add theirs after these."""
    state.add_table(1, "params", _text_codec(), (PARAMS_RECORD.encode, PARAMS_RECORD.decode))
    state.add_table(2, "ledger", _text_codec(), _u64_codec())

"""The node's durable store: SQLite in WAL mode, one database transaction per block.

Applying a block writes, in a single SQLite transaction: the block (header and raw
transactions), its receipts, every state row it changed, and the removal of the pending
transactions it included. A node killed at any instant therefore restarts exactly at the
last block it recorded, with nothing lost and nothing applied twice. On start-up the state
is rebuilt from the stored rows and its root is checked against the head block's header.

Writes go through one connection guarded by a lock (the node makes them on its writer
thread; an Ethereum sequencer forgets its posted transactions from the loop). Pending
transactions are committed with ``synchronous=FULL``: the commit is on disk before it
returns, so an acknowledged transaction survives a power cut, not only a crash. Blocks are
committed with ``synchronous=NORMAL`` (the write-ahead log reaches the disk at the next FULL
commit or checkpoint, in order): a power cut may lose the last blocks, never an
acknowledged transaction, whose pending row then waits to be included again. Reads use a
second connection, so the API reads the last committed block while the writer records the
next.

Schema:
    meta(name, value)                      genesis document, chain id
    blocks(height, hash, header, txs)      canonical header bytes; transactions list encoding
    receipts(hash, height, position, ...)  one row per transaction of every block
    state(tag, key, value)                 the protocol's tables, row by row
    pending(hash, seq, raw)                accepted, not yet in a block
    refused(hash, height, code, message)   left out of block ``height``: could not pay its fee
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agora.errors import AgoraError
from agora.protocol.blocks import (
    TRANSACTIONS_FIELD,
    Block,
    BlockHeader,
    compute_block_hash,
    decode_header,
    encode_header,
)
from agora.protocol.codec import decode_field, encode_field
from agora.protocol.genesis import (
    create_empty_state,
    create_genesis_header,
    create_genesis_state,
)
from agora.protocol.state import State
from agora.protocol.transactions import compute_transaction_hash
from agora.protocol.transition import AppliedBlock, Receipt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, header BLOB NOT NULL,
    transactions BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    hash BLOB NOT NULL, height INTEGER NOT NULL, position INTEGER NOT NULL,
    success INTEGER NOT NULL, code INTEGER NOT NULL, message TEXT NOT NULL,
    fee_paid INTEGER NOT NULL, sender BLOB, PRIMARY KEY (height, position));
CREATE INDEX IF NOT EXISTS receipts_by_hash ON receipts (hash);
CREATE TABLE IF NOT EXISTS state (
    tag INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (tag, key))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    hash BLOB PRIMARY KEY, seq INTEGER NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS refused (
    hash BLOB PRIMARY KEY, height INTEGER NOT NULL, code INTEGER NOT NULL,
    message TEXT NOT NULL);
"""


class StoreError(AgoraError):
    """The database does not hold what the node expects (another chain, a corrupt file)."""

    code = 3030


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReceipt:
    receipt: Receipt
    height: int
    position: int


def encode_transactions(transactions: tuple[bytes, ...]) -> bytes:
    return encode_field(TRANSACTIONS_FIELD, transactions)


def decode_transactions(data: bytes) -> tuple[bytes, ...]:
    return decode_field(TRANSACTIONS_FIELD, data)


class Store:
    """One SQLite file per node: writes from any one thread at a time, reads from the loop's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._write_lock = threading.Lock()
        self._pending_seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM pending").fetchone()[
            0
        ]

    def close(self) -> None:
        self.reader.close()
        self.db.close()

    # --- genesis and start-up ------------------------------------------------------------

    def get_genesis(self) -> dict[str, Any] | None:
        row = self.reader.execute("SELECT value FROM meta WHERE name = 'genesis'").fetchone()
        return None if row is None else orjson.loads(row[0])

    def initialize(self, genesis: dict[str, Any]) -> State:
        """Record genesis (block 0 and its rows), or check that it is the one stored."""
        stored = self.get_genesis()
        if stored is not None:
            if stored != genesis:
                raise StoreError(
                    f"{self.path} holds another chain's genesis; use another data directory"
                )
            return self.load_state()
        state = create_genesis_state(genesis)
        header = create_genesis_header(state.head.timestamp, state.state_root)
        with self._transaction():
            self.db.execute("INSERT INTO meta VALUES ('genesis', ?)", (orjson.dumps(genesis),))
            self.db.execute(
                "INSERT INTO blocks VALUES (0, ?, ?, ?)",
                (compute_block_hash(header), encode_header(header), encode_transactions(())),
            )
            self.db.executemany(
                "INSERT INTO state VALUES (?, ?, ?)",
                [
                    (table.tag, table.encode_key(key), table.encode_value(value))
                    for table in state.tables.values()
                    for key, value in table.items()
                ],
            )
        return state

    def load_state(self) -> State:
        genesis = self.get_genesis()
        if genesis is None:
            raise StoreError(f"{self.path} has no chain yet")
        state = create_empty_state(genesis["chain_id"])
        for tag, key, value in self.db.execute("SELECT tag, key, value FROM state"):
            state.load_row(tag, key, value)
        head = self.get_head_header()
        if state.state_root != head.state_root:
            raise StoreError(
                f"{self.path}: stored state does not match block {head.height}'s state root"
            )
        state.head.height = head.height
        state.head.block_hash = compute_block_hash(head)
        state.head.timestamp = head.timestamp
        return state

    # --- blocks --------------------------------------------------------------------------

    def commit_block(self, applied: AppliedBlock) -> None:
        """Record a block and everything it changed, atomically."""
        header = applied.block.header
        with self._transaction():
            self.db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?)",
                (
                    header.height,
                    compute_block_hash(header),
                    encode_header(header),
                    encode_transactions(applied.block.transactions),
                ),
            )
            self.db.executemany(
                "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.tx_hash,
                        header.height,
                        i,
                        int(r.success),
                        r.code,
                        r.message,
                        r.fee_paid,
                        r.sender,
                    )
                    for i, r in enumerate(applied.receipts)
                ],
            )
            upserts = [(c.tag, c.key, c.value) for c in applied.changes if c.value is not None]
            deletes = [(c.tag, c.key) for c in applied.changes if c.value is None]
            self.db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", upserts)
            self.db.executemany("DELETE FROM state WHERE tag = ? AND key = ?", deletes)
            refused = applied.refused
            self.db.executemany(
                "INSERT OR REPLACE INTO refused VALUES (?, ?, ?, ?)",
                [(r.tx_hash, header.height, r.code, r.message) for r in refused],
            )
            self.db.executemany(
                "DELETE FROM pending WHERE hash = ?",
                [(r.tx_hash,) for r in (*applied.receipts, *refused)],
            )

    def get_head_header(self) -> BlockHeader:
        row = self.reader.execute(
            "SELECT header FROM blocks ORDER BY height DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise StoreError(f"{self.path} has no blocks")
        return decode_header(row[0])

    def get_block(self, height: int) -> Block | None:
        row = self.reader.execute(
            "SELECT header, transactions FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        if row is None:
            return None
        return Block(header=decode_header(row[0]), transactions=decode_transactions(row[1]))

    def get_height_of(self, block_hash: bytes) -> int | None:
        row = self.reader.execute(
            "SELECT height FROM blocks WHERE hash = ?", (block_hash,)
        ).fetchone()
        return None if row is None else int(row[0])

    def get_receipts(self, height: int) -> list[Receipt]:
        rows = self.reader.execute(
            "SELECT hash, success, code, message, fee_paid, sender FROM receipts "
            "WHERE height = ? ORDER BY position",
            (height,),
        )
        return [_receipt_from_row(row) for row in rows]

    def get_receipt(self, tx_hash: bytes) -> StoredReceipt | None:
        """The first inclusion of a transaction (a replayed copy only fails later)."""
        row = self.reader.execute(
            "SELECT hash, success, code, message, fee_paid, sender, height, position "
            "FROM receipts WHERE hash = ? ORDER BY height, position LIMIT 1",
            (tx_hash,),
        ).fetchone()
        if row is None:
            return None
        return StoredReceipt(receipt=_receipt_from_row(row[:6]), height=row[6], position=row[7])

    def get_refusal(self, tx_hash: bytes) -> StoredReceipt | None:
        """The last time a block left this transaction out (it could not pay its fee)."""
        row = self.reader.execute(
            "SELECT height, code, message FROM refused WHERE hash = ?", (tx_hash,)
        ).fetchone()
        if row is None:
            return None
        receipt = Receipt(
            tx_hash=tx_hash, success=False, code=row[1], message=row[2], fee_paid=0, sender=None
        )
        return StoredReceipt(receipt=receipt, height=row[0], position=-1)

    # --- pending transactions (the sequencer's PendingPool) ---------------------------------

    def add_pending(self, transactions: list[bytes]) -> None:
        rows = []
        for raw in transactions:
            self._pending_seq += 1
            rows.append((compute_transaction_hash(raw), self._pending_seq, raw))
        with self._transaction(durable=True):
            self.db.executemany("INSERT OR IGNORE INTO pending VALUES (?, ?, ?)", rows)

    def list_pending(self) -> list[bytes]:
        return [row[0] for row in self.reader.execute("SELECT raw FROM pending ORDER BY seq")]

    def remove_pending(self, transactions: list[bytes]) -> None:
        with self._transaction():
            self.db.executemany(
                "DELETE FROM pending WHERE hash = ?",
                [(compute_transaction_hash(raw),) for raw in transactions],
            )

    def is_pending(self, tx_hash: bytes) -> bool:
        row = self.reader.execute("SELECT 1 FROM pending WHERE hash = ?", (tx_hash,)).fetchone()
        return row is not None

    # --- helpers -------------------------------------------------------------------------

    def _transaction(self, durable: bool = False) -> _Transaction:
        return _Transaction(self.db, self._write_lock, durable)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception; one writer at a time.

    ``durable``: the commit returns once it is on disk (``synchronous=FULL``)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, durable: bool) -> None:
        self.db = db
        self.lock = lock
        self.durable = durable

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            if self.durable:
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._restore()
            raise

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self._restore()

    def _restore(self) -> None:
        try:
            if self.durable:
                self.db.execute("PRAGMA synchronous=NORMAL")
        finally:
            self.lock.release()


def _receipt_from_row(row: tuple[Any, ...]) -> Receipt:
    return Receipt(
        tx_hash=row[0],
        success=bool(row[1]),
        code=row[2],
        message=row[3],
        fee_paid=row[4],
        sender=row[5],
    )


def iterate_blocks(store: Store, start: int) -> Iterator[Block]:
    height = start
    while (block := store.get_block(height)) is not None:
        yield block
        height += 1

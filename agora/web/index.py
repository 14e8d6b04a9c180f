"""The explorer's index: one SQLite file beside the node's store, built from the blocks alone.

The index replays the node's blocks from genesis through the protocol's own
``state_transition`` (signatures are not checked again, the node checked them before storing
the block; each block's state root is checked, so what it records is the ledger's) and writes,
per block, its header facts, its transactions with their receipts and the addresses they name,
and, at every subnet epoch, the epoch's inputs (weights, stakes, bonds, permits, as of the
epoch block, read just before Yuma runs) and the outputs the ledger stored on each neuron. "Why
this reward" recomputes an epoch from those inputs with the protocol's reference Yuma
(``compute_epoch``) and compares it with the outputs, field by field.

Nothing in the index is derived from a clock or from the order blocks arrived in: rebuilding it
from genesis gives the same rows (``dump_digest`` compares two indexes).

The inputs are read by running the block's steps up to the epoch on the replayed state and
undoing them (``capture_epoch_inputs``), then applying the block for real; only blocks where an
epoch may fall pay for it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from agora.node.store import decode_transactions
from agora.protocol.address import encode_address
from agora.protocol.blocks import Block, compute_block_hash, decode_header
from agora.protocol.consensus.yuma import EpochInputs, YumaParams
from agora.protocol.emission import (
    compute_epoch_inputs,
    process_block_emission,
    process_epoch,
)
from agora.protocol.genesis import create_genesis_header, create_genesis_state
from agora.protocol.kinds import BlockContext
from agora.protocol.services import process_recent_state_roots, process_service_expiries
from agora.protocol.state import State
from agora.protocol.subnets import (
    get_neurons,
    get_subnet,
    get_subnets,
    is_epoch_block,
    process_registration_prices,
)
from agora.protocol.transactions import (
    compute_transaction_hash,
    decode_transaction,
    get_kind_of,
)
from agora.protocol.transition import process_transaction, state_transition
from agora.web.errors import IndexDiverged

INDEX_VERSION = 2
# An epoch's inputs (weight and bond rows of every uid) are stored compressed: a 256-uid
# epoch's JSON shrinks several times. zlib's output is the same for the same input and level.
INPUTS_COMPRESSION = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, timestamp INTEGER NOT NULL,
    transactions INTEGER NOT NULL, failed INTEGER NOT NULL,
    supply INTEGER NOT NULL, treasury INTEGER NOT NULL, minted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_hash ON blocks (hash);
CREATE TABLE IF NOT EXISTS transactions (
    height INTEGER NOT NULL, position INTEGER NOT NULL, hash BLOB NOT NULL,
    kind TEXT NOT NULL, sender TEXT NOT NULL, success INTEGER NOT NULL,
    code INTEGER NOT NULL, message TEXT NOT NULL, fee INTEGER NOT NULL,
    PRIMARY KEY (height, position)
);
CREATE INDEX IF NOT EXISTS transactions_by_hash ON transactions (hash);
CREATE INDEX IF NOT EXISTS transactions_by_kind ON transactions (kind, height);
CREATE TABLE IF NOT EXISTS involvements (
    address TEXT NOT NULL, height INTEGER NOT NULL, position INTEGER NOT NULL,
    PRIMARY KEY (address, height, position)
);
CREATE TABLE IF NOT EXISTS epochs (
    netuid INTEGER NOT NULL, epoch INTEGER NOT NULL, height INTEGER NOT NULL,
    emission INTEGER NOT NULL, n INTEGER NOT NULL, inputs BLOB NOT NULL,
    PRIMARY KEY (netuid, epoch)
);
CREATE TABLE IF NOT EXISTS neuron_epochs (
    netuid INTEGER NOT NULL, epoch INTEGER NOT NULL, uid INTEGER NOT NULL,
    height INTEGER NOT NULL, hotkey TEXT NOT NULL, coldkey TEXT NOT NULL,
    stake INTEGER NOT NULL, stake_u16 INTEGER NOT NULL, consensus_u16 INTEGER NOT NULL,
    incentive_u16 INTEGER NOT NULL, dividends_u16 INTEGER NOT NULL,
    validator_trust_u16 INTEGER NOT NULL, emission INTEGER NOT NULL,
    validator_permit INTEGER NOT NULL, active INTEGER NOT NULL, bonds BLOB NOT NULL,
    PRIMARY KEY (netuid, uid, epoch)
);
CREATE INDEX IF NOT EXISTS neuron_epochs_by_hotkey ON neuron_epochs (hotkey);
CREATE INDEX IF NOT EXISTS neuron_epochs_by_coldkey ON neuron_epochs (coldkey);
"""

# The per-neuron outputs of an epoch the ledger stores, in the index's column names.
OUTPUT_FIELDS = (
    "stake_u16",
    "consensus_u16",
    "incentive_u16",
    "dividends_u16",
    "validator_trust_u16",
    "emission",
    "validator_permit",
    "active",
)


def inputs_to_json(inputs: EpochInputs) -> dict[str, Any]:
    params = inputs.params
    return {
        "block": inputs.block,
        "tempo": inputs.tempo,
        "last_step_block": inputs.last_step_block,
        "emission": inputs.emission,
        "stake": list(inputs.stake),
        "registered_at": list(inputs.registered_at),
        "last_update": list(inputs.last_update),
        "validator_permit": list(inputs.validator_permit),
        "weights": [[list(pair) for pair in row] for row in inputs.weights],
        "bonds": [[list(pair) for pair in row] for row in inputs.bonds],
        "params": {field.name: getattr(params, field.name) for field in fields(params)},
        "owner_uid": inputs.owner_uid,
        "commit_blocks": None if inputs.commit_blocks is None else list(inputs.commit_blocks),
    }


def _rows(value: Any) -> tuple[tuple[tuple[int, int], ...], ...]:
    return tuple(tuple((int(a), int(b)) for a, b in row) for row in value)


def inputs_from_json(value: dict[str, Any]) -> EpochInputs:
    commit_blocks = value["commit_blocks"]
    return EpochInputs(
        block=value["block"],
        tempo=value["tempo"],
        last_step_block=value["last_step_block"],
        emission=value["emission"],
        stake=tuple(value["stake"]),
        registered_at=tuple(value["registered_at"]),
        last_update=tuple(value["last_update"]),
        validator_permit=tuple(bool(p) for p in value["validator_permit"]),
        weights=_rows(value["weights"]),
        bonds=_rows(value["bonds"]),
        params=YumaParams(**value["params"]),
        owner_uid=value["owner_uid"],
        commit_blocks=None if commit_blocks is None else tuple(commit_blocks),
    )


def capture_epoch_inputs(state: State, block: Block) -> dict[int, EpochInputs]:
    """The inputs of every epoch ``block`` runs, read just before Yuma runs; state unchanged.

    It runs the block's steps in ``transition.state_transition``'s order up to each epoch (an
    earlier subnet's epoch pays stakes a later one reads) and undoes every write. Signatures
    are not checked here: applying the block afterwards checks them.
    """
    header = block.header
    if not block.transactions and not any(
        is_epoch_block(s.netuid, s.hyperparameters.tempo, header.height) for s in get_subnets(state)
    ):
        return {}
    context = BlockContext(
        height=header.height, timestamp=header.timestamp, parent_state_root=state.state_root
    )
    trusted = frozenset(compute_transaction_hash(raw) for raw in block.transactions)
    captured: dict[int, EpochInputs] = {}
    try:
        for raw in block.transactions:
            process_transaction(state, raw, context, trusted)
        process_recent_state_roots(state, context)
        process_service_expiries(state, context)
        process_registration_prices(state, context)
        process_block_emission(state, context)
        due = [
            subnet.netuid
            for subnet in get_subnets(state)
            if is_epoch_block(subnet.netuid, subnet.hyperparameters.tempo, header.height)
        ]
        for position, netuid in enumerate(due):
            current = get_subnet(state, netuid)
            if current.n > 0:
                emission = current.pending_emission
                to_neurons = emission - emission * state.params.owner_cut_u16 // 65_535
                captured[netuid] = compute_epoch_inputs(state, current, to_neurons, header.height)
            if position < len(due) - 1:  # the last epoch's payouts no later input reads
                process_epoch(state, netuid, context)
    finally:
        state.rollback_block()
    return captured


def _addresses_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith("agr1"):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _addresses_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _addresses_in(item)


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexedTransaction:
    height: int
    position: int
    hash: bytes
    kind: str
    sender: str
    success: bool
    code: int
    message: str
    fee: int


class Index:
    """The explorer's SQLite index; ``add_block`` from one thread, reads from any other.

    It keeps the replayed ledger state (``state``) it indexes with. Opened on an existing file,
    it replays the blocks already indexed without writing them again (``add_block`` checks
    each one's hash against the row it wrote).
    """

    def __init__(self, path: Path | str, genesis: dict[str, Any]) -> None:
        self.path = path
        self.genesis = genesis
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._read_lock = threading.Lock()
        self.reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        identity = orjson.dumps(
            {"version": INDEX_VERSION, "genesis": genesis}, option=orjson.OPT_SORT_KEYS
        )
        # Names this index (its file and its chain) for caches of what is derived from it.
        self.key = hashlib.sha256(str(path).encode() + b"\0" + identity).hexdigest()
        stored = self.db.execute("SELECT value FROM meta WHERE name = 'identity'").fetchone()
        if stored is not None and bytes(stored[0]) != identity:
            for table in (
                "meta",
                "blocks",
                "transactions",
                "involvements",
                "epochs",
                "neuron_epochs",
            ):
                self.db.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
            stored = None
        if stored is None:
            self.db.execute("INSERT INTO meta VALUES ('identity', ?)", (identity,))
        self.state = create_genesis_state(genesis)
        self._record_genesis()

    def close(self) -> None:
        self.reader.close()
        self.db.close()

    # --- writing ---------------------------------------------------------------------------

    def _record_genesis(self) -> None:
        if self.db.execute("SELECT 1 FROM blocks WHERE height = 0").fetchone() is None:
            self.db.execute("BEGIN")
            header = create_genesis_header(self.state.head.timestamp, self.state.state_root)
            self._write_block_row(0, compute_block_hash(header), header.timestamp, 0, 0)
            self.db.execute("COMMIT")

    def _write_block_row(
        self, height: int, block_hash: bytes, timestamp: int, count: int, failed: int
    ) -> None:
        ledger = self.state.get_ledger
        supply = ledger("genesis_supply") + ledger("minted") - ledger("burned")
        self.db.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                height,
                block_hash,
                timestamp,
                count,
                failed,
                supply,
                ledger("treasury"),
                ledger("minted"),
            ),
        )

    @property
    def height(self) -> int:
        """The height of the replayed state (the last block ``add_block`` took)."""
        return self.state.head.height

    def indexed_height(self) -> int:
        row = self.db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return int(row[0])

    def add_blocks(self, blocks: Iterable[Block]) -> None:
        for block in blocks:
            self.add_block(block)

    def add_block(self, block: Block) -> None:
        """Replay the next block; index it unless it is indexed already."""
        height = block.header.height
        block_hash = compute_block_hash(block.header)
        written = self.db.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
        inputs = capture_epoch_inputs(self.state, block) if written is None else {}
        # The node checked every signature before it stored the block; the state root still
        # checks the replay.
        trusted = frozenset(compute_transaction_hash(raw) for raw in block.transactions)
        try:
            applied = state_transition(self.state, block, verified_signatures=trusted)
        except Exception as error:
            raise IndexDiverged(f"replaying block {height} failed: {error}") from error
        if written is not None:
            if bytes(written[0]) != block_hash:
                raise IndexDiverged(f"the index holds another block {height}; delete it to rebuild")
            return
        self.db.execute("BEGIN")
        try:
            failed = 0
            for position, (raw, receipt) in enumerate(
                zip(applied.block.transactions, applied.receipts, strict=True)
            ):
                tx = decode_transaction(raw)
                kind = get_kind_of(tx.body)
                sender = encode_address(tx.sender)
                failed += not receipt.success
                self.db.execute(
                    "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        height,
                        position,
                        receipt.tx_hash,
                        kind.name,
                        sender,
                        int(receipt.success),
                        receipt.code,
                        receipt.message,
                        receipt.fee_paid,
                    ),
                )
                named = {sender, *_addresses_in(kind.body.to_json(tx.body))}
                self.db.executemany(
                    "INSERT OR IGNORE INTO involvements VALUES (?, ?, ?)",
                    [(address, height, position) for address in sorted(named)],
                )
            self._write_block_row(
                height, block_hash, block.header.timestamp, len(block.transactions), failed
            )
            for netuid, epoch_inputs in sorted(inputs.items()):
                self._write_epoch(netuid, height, epoch_inputs)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _write_epoch(self, netuid: int, height: int, inputs: EpochInputs) -> None:
        subnet = get_subnet(self.state, netuid)
        epoch = subnet.epoch_index
        neurons = get_neurons(self.state, netuid)
        self.db.execute(
            "INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?)",
            (
                netuid,
                epoch,
                height,
                inputs.emission,
                len(neurons),
                zlib.compress(orjson.dumps(inputs_to_json(inputs)), INPUTS_COMPRESSION),
            ),
        )
        self.db.executemany(
            "INSERT INTO neuron_epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    netuid,
                    epoch,
                    uid,
                    height,
                    encode_address(neuron.hotkey),
                    encode_address(neuron.coldkey),
                    inputs.stake[uid],
                    neuron.stake_u16,
                    neuron.consensus_u16,
                    neuron.incentive_u16,
                    neuron.dividends_u16,
                    neuron.validator_trust_u16,
                    neuron.emission,
                    int(neuron.validator_permit),
                    int(neuron.active),
                    orjson.dumps([list(pair) for pair in neuron.bonds]),
                )
                for uid, neuron in enumerate(neurons)
            ],
        )

    # --- reading ---------------------------------------------------------------------------

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return list(self.reader.execute(sql, parameters).fetchall())

    def head(self) -> int:
        return int(self.query("SELECT MAX(height) FROM blocks")[0][0])

    def dump_digest(self) -> str:
        """A SHA-256 over every row of every table, in key order: equal indexes, equal digests."""
        digest = hashlib.sha256()
        with self._read_lock:
            for line in self.reader.iterdump():
                digest.update(line.encode())
                digest.update(b"\n")
        return digest.hexdigest()

    def transaction(self, tx_hash: bytes) -> IndexedTransaction | None:
        rows = self.query(
            "SELECT * FROM transactions WHERE hash = ? ORDER BY height, position LIMIT 1",
            (tx_hash,),
        )
        return _transaction(rows[0]) if rows else None

    def block_transactions(self, height: int) -> list[IndexedTransaction]:
        rows = self.query(
            "SELECT * FROM transactions WHERE height = ? ORDER BY position", (height,)
        )
        return [_transaction(row) for row in rows]

    def recent_transactions(
        self, limit: int, kinds: tuple[str, ...] = ()
    ) -> list[IndexedTransaction]:
        if kinds:
            marks = ",".join("?" * len(kinds))
            rows = self.query(
                f"SELECT * FROM transactions WHERE kind IN ({marks}) "  # noqa: S608
                "ORDER BY height DESC, position DESC LIMIT ?",
                (*kinds, limit),
            )
        else:
            rows = self.query(
                "SELECT * FROM transactions ORDER BY height DESC, position DESC LIMIT ?", (limit,)
            )
        return [_transaction(row) for row in rows]

    def account_history(self, address: str, limit: int) -> list[IndexedTransaction]:
        rows = self.query(
            "SELECT t.* FROM involvements i JOIN transactions t "
            "ON t.height = i.height AND t.position = i.position WHERE i.address = ? "
            "ORDER BY i.height DESC, i.position DESC LIMIT ?",
            (address, limit),
        )
        return [_transaction(row) for row in rows]

    def epoch_inputs(self, netuid: int, epoch: int) -> tuple[int, EpochInputs] | None:
        rows = self.query(
            "SELECT height, inputs FROM epochs WHERE netuid = ? AND epoch = ?", (netuid, epoch)
        )
        if not rows:
            return None
        return int(rows[0][0]), inputs_from_json(orjson.loads(zlib.decompress(rows[0][1])))

    def epoch_outputs(self, netuid: int, epoch: int) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT uid, hotkey, coldkey, stake, stake_u16, consensus_u16, incentive_u16, "
            "dividends_u16, validator_trust_u16, emission, validator_permit, active, bonds "
            "FROM neuron_epochs WHERE netuid = ? AND epoch = ? ORDER BY uid",
            (netuid, epoch),
        )
        return [_neuron_row(row) for row in rows]

    def neuron_series(self, netuid: int, uid: int, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT epoch, height, hotkey, stake, incentive_u16, dividends_u16, emission, "
            "consensus_u16, validator_trust_u16 FROM neuron_epochs WHERE netuid = ? AND uid = ? "
            "ORDER BY epoch DESC LIMIT ?",
            (netuid, uid, limit),
        )
        names = (
            "epoch",
            "height",
            "hotkey",
            "stake",
            "incentive",
            "dividends",
            "emission",
            "consensus",
            "validator_trust",
        )
        return [dict(zip(names, row, strict=True)) for row in reversed(rows)]

    def epochs(self, netuid: int, limit: int) -> list[tuple[int, int, int, int]]:
        """(epoch, height, emission, n), newest first."""
        rows = self.query(
            "SELECT epoch, height, emission, n FROM epochs WHERE netuid = ? "
            "ORDER BY epoch DESC LIMIT ?",
            (netuid, limit),
        )
        return [(int(a), int(b), int(c), int(d)) for a, b, c, d in rows]


def _transaction(row: tuple[Any, ...]) -> IndexedTransaction:
    height, position, tx_hash, kind, sender, success, code, message, fee = row
    return IndexedTransaction(
        height=height,
        position=position,
        hash=bytes(tx_hash),
        kind=kind,
        sender=sender,
        success=bool(success),
        code=code,
        message=message,
        fee=fee,
    )


def _neuron_row(row: tuple[Any, ...]) -> dict[str, Any]:
    names = ("uid", "hotkey", "coldkey", "stake", *OUTPUT_FIELDS, "bonds")
    entry = dict(zip(names, row, strict=True))
    entry["validator_permit"] = bool(entry["validator_permit"])
    entry["active"] = bool(entry["active"])
    entry["bonds"] = orjson.loads(entry["bonds"])
    return entry


class NodeBlocks:
    """The node's blocks, read from its store's file on a connection of our own."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def close(self) -> None:
        self.db.close()

    def read(self, start: int, limit: int) -> list[Block]:
        rows = self.db.execute(
            "SELECT header, transactions FROM blocks WHERE height >= ? ORDER BY height LIMIT ?",
            (start, limit),
        ).fetchall()
        return [
            Block(header=decode_header(h), transactions=decode_transactions(t)) for h, t in rows
        ]

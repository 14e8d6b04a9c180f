"""The gateway's durable records in SQLite (WAL): a receipt per request, and its channels.

A receipt says who answered a request, what it cost, how long it took, at which verification
level, and whether it succeeded; ``calls`` lists every paid or failed miner call behind it.
A channel row holds what the gateway must not forget across restarts: the channel's id and
miner, and ``committed``, the base units of successful requests on it (the sum of the
receipts' costs there), from which the next voucher is computed.

Each write is one transaction; with ``synchronous=NORMAL`` in WAL mode a committed write
survives the process being killed. Readers (``agora gateway receipts``) open the same file
while the gateway runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    request_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    verification TEXT NOT NULL,
    status TEXT NOT NULL,
    cost INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    calls TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_by_day ON receipts (day, created_at);
CREATE TABLE IF NOT EXISTS channels (
    channel_id BLOB PRIMARY KEY,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    netuid INTEGER NOT NULL,
    deposit INTEGER NOT NULL,
    expiry INTEGER NOT NULL,
    committed INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    refund INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    request_id: str
    created_at: float  # unix seconds
    day: str  # UTC, YYYY-MM-DD: what the daily limit counts
    model: str
    task: str
    verification: str
    status: str  # "ok" or "failed"
    cost: int  # base units paid, all calls together
    latency_ms: int
    calls: tuple[dict[str, Any], ...]  # {"uid", "miner", "role", "cost", "latency_ms", "status"}
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "created_at": self.created_at,
            "day": self.day,
            "model": self.model,
            "task": self.task,
            "verification": self.verification,
            "status": self.status,
            "cost": self.cost,
            "latency_ms": self.latency_ms,
            "calls": list(self.calls),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRecord:
    channel_id: bytes
    payer: str  # agr1...
    payee: str  # agr1... hotkey
    netuid: int
    deposit: int
    expiry: int
    committed: int
    closed: bool
    refund: int  # what closing it gave back (deposit - claimed)

    def to_json(self) -> dict[str, Any]:
        return {
            "channel_id": "0x" + self.channel_id.hex(),
            "payer": self.payer,
            "payee": self.payee,
            "netuid": self.netuid,
            "deposit": self.deposit,
            "expiry": self.expiry,
            "committed": self.committed,
            "closed": self.closed,
            "refund": self.refund,
        }


class GatewayStore:
    """``gateway.db``: receipts and channels."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- receipts ------------------------------------------------------------------------

    def add_receipt(self, receipt: Receipt, channels: Sequence[ChannelRecord] = ()) -> None:
        """The receipt and the channels its calls changed, in one transaction."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    receipt.request_id,
                    receipt.created_at,
                    receipt.day,
                    receipt.model,
                    receipt.task,
                    receipt.verification,
                    receipt.status,
                    receipt.cost,
                    receipt.latency_ms,
                    orjson.dumps(receipt.calls).decode(),
                    receipt.error,
                ),
            )
            for channel in channels:
                self._write_channel(channel)

    def list_receipts(
        self, *, limit: int = 50, day: str | None = None, request_id: str | None = None
    ) -> list[Receipt]:
        """Newest first."""
        query = "SELECT * FROM receipts"
        clauses, values = [], []
        if day is not None:
            clauses.append("day = ?")
            values.append(day)
        if request_id is not None:
            clauses.append("request_id = ?")
            values.append(request_id)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        rows = self._db.execute(query, (*values, limit)).fetchall()
        return [_receipt_from_row(row) for row in rows]

    def get_spent(self, day: str) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(cost), 0) FROM receipts WHERE day = ?", (day,))
        spent: int = row.fetchone()[0]
        return spent

    # --- channels ------------------------------------------------------------------------

    def save_channel(self, channel: ChannelRecord) -> None:
        with self._transaction():
            self._write_channel(channel)

    def list_channels(
        self, payer: str | None = None, *, open_only: bool = False
    ) -> list[ChannelRecord]:
        query = "SELECT * FROM channels"
        clauses, values = [], []
        if payer is not None:
            clauses.append("payer = ?")
            values.append(payer)
        if open_only:
            clauses.append("closed = 0")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        rows = self._db.execute(query + " ORDER BY rowid", values).fetchall()
        return [_channel_from_row(row) for row in rows]

    def _write_channel(self, channel: ChannelRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                channel.channel_id,
                channel.payer,
                channel.payee,
                channel.netuid,
                channel.deposit,
                channel.expiry,
                channel.committed,
                int(channel.closed),
                channel.refund,
            ),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _receipt_from_row(row: tuple[Any, ...]) -> Receipt:
    return Receipt(
        request_id=row[0],
        created_at=row[1],
        day=row[2],
        model=row[3],
        task=row[4],
        verification=row[5],
        status=row[6],
        cost=row[7],
        latency_ms=row[8],
        calls=tuple(orjson.loads(row[9])),
        error=row[10],
    )


def _channel_from_row(row: tuple[Any, ...]) -> ChannelRecord:
    return ChannelRecord(
        channel_id=bytes(row[0]),
        payer=row[1],
        payee=row[2],
        netuid=row[3],
        deposit=row[4],
        expiry=row[5],
        committed=row[6],
        closed=bool(row[7]),
        refund=row[8],
    )

"""``VoucherStore``: the seller's earned vouchers in SQLite, on disk before it answers.

A voucher settled by the books is what the seller claims on chain; held only in memory, it
is lost with the process (a kill, an out-of-memory kill), and with it the work it paid for.
So the gate writes the best voucher of each channel here before the answer leaves, and a
restarted seller reads them back and claims them.

One row per channel: the highest voucher kept (a lower one never replaces it). The commit
is ``synchronous=FULL`` in WAL mode: it returns once the write-ahead log is fsynced, so an
answered request's voucher survives a kill and a power loss. A closed channel's row is
forgotten: nothing more can be claimed on it.

Also kept: what each payer's holds wrote off (``books``: work it rejected or left without a
verdict), so that a restart does not give a payer its credit back.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from agora.protocol.channels import Voucher

SCHEMA = """
CREATE TABLE IF NOT EXISTS vouchers (
    channel_id BLOB PRIMARY KEY,
    cumulative INTEGER NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS written_off (
    payer BLOB PRIMARY KEY,
    amount INTEGER NOT NULL
);
"""


class VoucherStore:
    """``vouchers.sqlite``: the best settled voucher of each channel. Safe to call from
    worker threads (the gate writes off the event loop)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(self, voucher: Voucher) -> None:
        """Keep ``voucher`` if it is above the one kept for its channel; on disk on return."""
        with self._lock:
            self._db.execute(
                "INSERT INTO vouchers VALUES (?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
                "cumulative = excluded.cumulative, signature = excluded.signature "
                "WHERE excluded.cumulative > vouchers.cumulative",
                (voucher.channel_id, voucher.cumulative, voucher.signature),
            )

    def forget(self, channel_id: bytes) -> None:
        with self._lock:
            self._db.execute("DELETE FROM vouchers WHERE channel_id = ?", (channel_id,))

    def load(self) -> list[Voucher]:
        """Every kept voucher, by channel id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT channel_id, cumulative, signature FROM vouchers ORDER BY channel_id"
            ).fetchall()
        return [
            Voucher(channel_id=bytes(row[0]), cumulative=int(row[1]), signature=bytes(row[2]))
            for row in rows
        ]

    def save_written_off(self, payer: bytes, amount: int) -> None:
        """``amount``: the payer's total written off (it only grows)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO written_off VALUES (?, ?) ON CONFLICT (payer) DO UPDATE SET "
                "amount = excluded.amount WHERE excluded.amount > written_off.amount",
                (payer, amount),
            )

    def load_written_off(self) -> dict[bytes, int]:
        with self._lock:
            rows = self._db.execute("SELECT payer, amount FROM written_off").fetchall()
        return {bytes(row[0]): int(row[1]) for row in rows}

"""`SQLiteJobQueue`: leased jobs in the `jobs` table."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

from tether.storage.base import (
    ClaimedJob,
    Job,
)
from tether.storage.sqlite.database import SQLiteDatabase


class SQLiteJobQueue:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<SQLiteJobQueue {self._db!r}>"

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        def update(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                "UPDATE jobs SET owner = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE response_id IN (SELECT response_id FROM jobs WHERE owner IS NULL "
                "ORDER BY queued_at LIMIT ?) RETURNING response_id, attempts, queued_at, payload",
                (owner, time.time() + lease_seconds, limit),
            ).fetchall()
            return [Job(r[0], r[1], r[3]) for r in sorted(rows, key=lambda r: r[2])]

        return await self._db.write(update)

    async def renew(
        self, owner: str, response_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        ids = list(response_ids)

        def update(conn: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            until = time.time() + lease_seconds
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND response_id IN ({marks}) "
                    "RETURNING response_id",
                    (until, owner, *chunk),
                ).fetchall()
                held.update(r[0] for r in rows)
            return held

        return await self._db.write(update)

    async def claimed(self) -> list[ClaimedJob]:
        def select(conn: sqlite3.Connection) -> list[ClaimedJob]:
            rows = conn.execute(
                "SELECT response_id, owner, lease_until FROM jobs WHERE owner IS NOT NULL"
            ).fetchall()
            return [ClaimedJob(*r) for r in rows]

        return await self._db.read(select)

    async def wait_for_jobs(self, timeout: float) -> None:
        await self._db.job_signal.wait(timeout)

    async def queued_count(self) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count(*) FROM jobs WHERE owner IS NULL").fetchone()
            return int(row[0])

        return await self._db.read(count)

    async def requeue(self, response_id: str, owner: str) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            rows = conn.execute(
                "UPDATE jobs SET owner = NULL, lease_until = NULL "
                "WHERE response_id = ? AND owner = ? RETURNING response_id",
                (response_id, owner),
            ).fetchall()
            return bool(rows)

        def committed(requeued: bool) -> None:
            if requeued:
                self._db.job_signal.set()

        return await self._db.write(update, committed)

    def watch_revoked(self, callback: Callable[[str], None]) -> None:
        self._db.revoked.append(callback)

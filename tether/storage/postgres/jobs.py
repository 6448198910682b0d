"""`PostgresJobQueue`: leased jobs in the `jobs` table.

Claims take the oldest unclaimed rows with `FOR UPDATE SKIP LOCKED`, so concurrent
workers never wait for each other nor take the same job. Leases are set from the
database clock (one clock for every worker) and answered as unix seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tether.storage.base import ClaimedJob, Job
from tether.storage.postgres.database import PostgresDatabase, translated

_EPOCH_NOW = "extract(epoch FROM clock_timestamp())::double precision"


class PostgresJobQueue:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<PostgresJobQueue {self._db!r}>"

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        with translated("claim"):
            rows = await self._db.pool.fetch(
                f"UPDATE jobs j SET owner = $1, lease_until = {_EPOCH_NOW} + $3, "
                "attempts = j.attempts + 1 "
                "FROM (SELECT response_id FROM jobs WHERE owner IS NULL ORDER BY job_no "
                "LIMIT $2 FOR UPDATE SKIP LOCKED) c "
                "WHERE j.response_id = c.response_id "
                "RETURNING j.job_no, j.response_id, j.attempts, j.payload",
                owner,
                limit,
                lease_seconds,
            )
        return [Job(r[1], r[2], r[3]) for r in sorted(rows, key=lambda r: r[0])]

    async def renew(
        self, owner: str, response_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        if not response_ids:
            return set()
        with translated("renew"):
            rows = await self._db.pool.fetch(
                f"UPDATE jobs SET lease_until = {_EPOCH_NOW} + $3 "
                "WHERE owner = $1 AND response_id = ANY($2) RETURNING response_id",
                owner,
                list(response_ids),
                lease_seconds,
            )
        return {r[0] for r in rows}

    async def claimed(self) -> list[ClaimedJob]:
        with translated("read"):
            rows = await self._db.pool.fetch(
                "SELECT response_id, owner, lease_until FROM jobs WHERE owner IS NOT NULL "
                "ORDER BY job_no"
            )
        return [ClaimedJob(r[0], r[1], r[2]) for r in rows]

    async def queued_count(self) -> int:
        with translated("read"):
            count = await self._db.pool.fetchval("SELECT count(*) FROM jobs WHERE owner IS NULL")
        return int(count)

    async def requeue(self, response_id: str, owner: str) -> bool:
        db = self._db
        with translated("requeue"):
            rows = await db.pool.fetch(
                "WITH handed AS (UPDATE jobs SET owner = NULL, lease_until = NULL "
                "WHERE response_id = $1 AND owner = $2 RETURNING response_id) "
                "SELECT pg_notify($3, $4) FROM handed",
                response_id,
                owner,
                db.target.jobs_channel,
                db.job_notice("+", response_id),
            )
        if rows:
            db.job_signal.set()
        return bool(rows)

    def watch_revoked(self, callback: Callable[[str], None]) -> None:
        self._db.revoked.append(callback)

    async def wait_for_jobs(self, timeout: float) -> None:
        await self._db.job_signal.wait(timeout)

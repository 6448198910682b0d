"""`RedisJobQueue`: jobs queued in a sorted set (FIFO by a counter), claimed into a
hash of leases by one script that moves up to N at once; wake-ups by pub/sub.

Leases are unix times from this process's clock (`time.time()`), as the sweeper
compares them with its own: keep the clocks of worker hosts in sync (NTP).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from tether.storage.base import ClaimedJob, Job
from tether.storage.redis.database import RedisDatabase
from tether.storage.redis.scripts import CLAIM, RENEW, REQUEUE


class RedisJobQueue:
    def __init__(self, db: RedisDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<RedisJobQueue {self._db!r}>"

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        if limit <= 0:
            return []
        keys = self._db.keys
        until = repr(time.time() + lease_seconds)
        flat = await self._db.wire.run(
            CLAIM, [keys.queued, keys.leases], [keys.prefix, owner, limit, until]
        )
        return [
            Job(flat[i].decode(), int(flat[i + 1]), flat[i + 2]) for i in range(0, len(flat), 3)
        ]

    async def renew(
        self, owner: str, response_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        if not response_ids:
            return set()
        until = repr(time.time() + lease_seconds)
        held = await self._db.wire.run(RENEW, [self._db.keys.leases], [owner, until, *response_ids])
        return {response_id.decode() for response_id in held}

    async def claimed(self) -> list[ClaimedJob]:
        flat = await self._db.wire.call("HGETALL", self._db.keys.leases)
        jobs: list[ClaimedJob] = []
        for i in range(0, len(flat), 2):
            until, _, owner = flat[i + 1].partition(b" ")
            jobs.append(ClaimedJob(flat[i].decode(), owner.decode(), float(until)))
        return jobs

    async def queued_count(self) -> int:
        return int(await self._db.wire.call("ZCARD", self._db.keys.queued))

    async def requeue(self, response_id: str, owner: str) -> bool:
        keys = self._db.keys
        done = await self._db.wire.run(
            REQUEUE,
            [keys.leases, keys.queued, keys.job(response_id)],
            [response_id, owner, keys.prefix],
        )
        if done:
            self._db.wake.job_signal.set()
        return bool(done)

    def watch_revoked(self, callback: Callable[[str], None]) -> None:
        self._db.wake.watch_revoked(callback)

    async def wait_for_jobs(self, timeout: float) -> None:
        wake = self._db.wake
        channel = wake.jobs_channel()
        if not channel.trusted:
            # Until Redis confirms the subscription a job could be queued unheard: wait
            # for it, then look at the queue once.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            await asyncio.wait([channel.confirmed], timeout=timeout)
            if not channel.confirmed.done():
                return
            channel.trusted = True
            if await self._db.wire.call("ZCARD", self._db.keys.queued):
                return
            timeout = deadline - loop.time()
        await wake.job_signal.wait(timeout)

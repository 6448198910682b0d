"""The tailer: the one way every client reads a response's events.

`tail` replays the committed events after a cursor, then waits for new commits
(in-process wake-ups, no polling) and yields them as they come, in batches, until
it has yielded the terminal event. While nothing happens for `heartbeat` seconds
it yields `None`, so the caller can keep idle connections alive. A slow reader
only falls behind in the log; it never holds the runner back.

A store that fails to answer (a restart of PostgreSQL or Redis) is asked again,
with keepalives in between, for up to `outage_seconds`; then the tail raises
`StorageError` with a message for the client. So does a response whose runner in
this process stopped without storing its end (`abandoned`, see `Worker`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from tether.domain.events import StoredEvent
from tether.errors import EventsExpiredError, NotFoundError, StorageError
from tether.storage.base import Storage

READ_LIMIT = 1000  # events per read
OUTAGE_SECONDS = 30.0  # how long a failing store is asked again (`store_outage_seconds`)
PAUSES = (0.05, 0.1, 0.25, 0.5, 1.0)  # seconds between attempts, the last one repeated


async def tail(
    storage: Storage,
    response_id: str,
    after: int,
    *,
    heartbeat: float,
    outage_seconds: float = OUTAGE_SECONDS,
    abandoned: Callable[[str], str | None] | None = None,
) -> AsyncIterator[list[StoredEvent] | None]:
    """Batches of events with `seq > after` up to the terminal one; None = heartbeat due.

    Ends early, without a terminal event, when the response is deleted or its event
    log expired, or when it is terminal and `after` is already at or past its last
    event. Raises `StorageError` when the store fails for `outage_seconds`, or when
    `abandoned(response_id)` gives why its runner stopped without storing its end.
    """
    log = storage.events
    outage = _Outage(outage_seconds, heartbeat)
    while True:
        try:
            batch = await log.read_after(response_id, after, READ_LIMIT)
            if not batch:
                if await log.wait(response_id, after, heartbeat):
                    outage.over()
                    continue
                stored = await storage.responses.get(response_id)
        except (NotFoundError, EventsExpiredError):
            return  # deleted, or its event log expired (retention) while being read
        except StorageError as exc:
            if await outage.pause(response_id, exc):
                yield None
            continue
        outage.over()
        if batch:
            yield batch
            after = batch[-1].seq
            if batch[-1].terminal:
                return
            continue
        if stored is None or (stored.status.terminal and stored.last_seq <= after):
            return
        if abandoned is not None and (reason := abandoned(response_id)) is not None:
            raise StorageError(reason)
        yield None


class _Outage:
    """Reads failing in a row: the pause before the next attempt, keepalives meanwhile,
    and the end of patience."""

    def __init__(self, seconds: float, heartbeat: float) -> None:
        self._seconds = seconds
        self._heartbeat = heartbeat
        self._since: float | None = None
        self._beat = 0.0
        self._attempts = 0

    def over(self) -> None:
        self._since = None
        self._attempts = 0

    async def pause(self, response_id: str, error: StorageError) -> bool:
        """Wait before asking again; True when a keepalive is due. Raises `StorageError`
        once the store has failed for `seconds`."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._since is None:
            self._since = self._beat = now
        remaining = self._since + self._seconds - now
        if remaining <= 0:
            raise StorageError(
                f"Tether could not read response {response_id} from its store for "
                f"{self._seconds:g} seconds ({error}). The stream ends here; what was stored "
                "is kept: once the store is back, resume with GET "
                f"/v1/responses/{response_id}?stream=true&starting_after=<the last "
                "sequence_number you received>."
            ) from error
        # The last attempt comes as patience runs out, not a whole pause later.
        await asyncio.sleep(min(PAUSES[min(self._attempts, len(PAUSES) - 1)], remaining))
        self._attempts += 1
        if loop.time() - self._beat >= self._heartbeat:
            self._beat = loop.time()
            return True
        return False

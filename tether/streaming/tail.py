"""The tailer: the one way every client reads a response's events.

`tail` replays the committed events after a cursor, then waits for new commits
(in-process wake-ups, no polling) and yields them as they come, in batches, until
it has yielded the terminal event. While nothing happens for `heartbeat` seconds
it yields `None`, so the caller can keep idle connections alive. A slow reader
only falls behind in the log; it never holds the runner back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from tether.domain.events import StoredEvent
from tether.errors import EventsExpiredError, NotFoundError
from tether.storage.base import Storage

READ_LIMIT = 1000  # events per read


async def tail(
    storage: Storage, response_id: str, after: int, *, heartbeat: float
) -> AsyncIterator[list[StoredEvent] | None]:
    """Batches of events with `seq > after` up to the terminal one; None = heartbeat due.

    Ends early, without a terminal event, when the response is deleted or its event
    log expired, or when it is terminal and `after` is already at or past its last
    event.
    """
    log = storage.events
    while True:
        try:
            batch = await log.read_after(response_id, after, READ_LIMIT)
        except (NotFoundError, EventsExpiredError):
            return  # deleted, or its event log expired (retention) while being read
        if batch:
            yield batch
            after = batch[-1].seq
            if batch[-1].terminal:
                return
            continue
        if await log.wait(response_id, after, heartbeat):
            continue
        stored = await storage.responses.get(response_id)
        if stored is None or (stored.status.terminal and stored.last_seq <= after):
            return
        yield None

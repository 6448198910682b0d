"""Riding out an unreachable store: a runner's append that failed because the store
could not be reached (`StoreUnavailableError`: a restart, a dropped connection) is sent
again until it is stored, for up to `store_outage_seconds`.

The failed attempt may have been committed with only its answer lost, so before each
resend the log is read at the batch's place: holding exactly the batch, it was stored
(sending it again would lose the compare-and-append); holding other events, someone
else ended or continued the response meanwhile (`AppendConflictError`, as a lost
append); holding nothing there, the batch is sent again. Appends of one response are
never reordered: the runner has one in flight and waits for this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import AppendConflictError, NotFoundError, StoreUnavailableError
from tether.storage.base import EventLog

logger = logging.getLogger("tether.runner")

PAUSES = (0.05, 0.1, 0.25, 0.5, 1.0)  # seconds between attempts, the last one repeated


async def append_through_outage(
    log: EventLog,
    response_id: str,
    batch: Sequence[ev.StoredEvent],
    snapshot: bytes | None,
    status: ResponseStatus,
    error: StoreUnavailableError,
    seconds: float,
) -> None:
    """Store `batch`, whose append raised `error`, within `seconds`; raises the last
    `StoreUnavailableError` past them, `AppendConflictError` when the log moved on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    logger.warning(
        "response %s: the store is unreachable (%s); retrying its append for up to %g s",
        response_id,
        error,
        seconds,
    )
    attempt = 0
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise error
        await asyncio.sleep(min(PAUSES[min(attempt, len(PAUSES) - 1)], remaining))
        attempt += 1
        try:
            if not await _stored(log, response_id, batch):
                await log.append(response_id, batch, snapshot, status)
        except StoreUnavailableError as again:
            error = again
            continue
        logger.info("response %s: the store is back; its events are stored", response_id)
        return


async def _stored(log: EventLog, response_id: str, batch: Sequence[ev.StoredEvent]) -> bool:
    """Whether the log holds `batch` at its place (False: nothing past the event before)."""
    try:
        found = await log.read_after(response_id, batch[0].seq - 1, len(batch))
    except NotFoundError:
        raise AppendConflictError(f"response {response_id} was deleted") from None
    if not found:
        return False
    if [event.frame for event in found] == [event.frame for event in batch]:
        return True
    raise AppendConflictError(
        f"response {response_id} was ended or continued elsewhere while the store was away"
    )

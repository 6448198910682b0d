"""`RedisEventLog`: the compare-and-append script, reads by sequence number, waits.

A response's log is a Redis Stream with one entry per append, whose ID is
`<last_seq>-<count>`: XRANGE from `after + 1` finds the first batch holding an event
past `after` with no index of our own, and an append of one event is one small
entry (its SSE frame, as sent). `wait` follows the response's pub/sub channel
(`wake.py`); the notifier hears this process's commits as their replies arrive, and
reads of a followed response come from the events its messages brought.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from tether.domain import events as ev
from tether.domain.fold import advance
from tether.domain.response import ResponseStatus
from tether.errors import AppendConflictError, EventsExpiredError, response_not_found
from tether.storage.base import (
    ADDS_OUTPUT_TO_CONVERSATION,
    DEFAULT_PROJECT,
    StoredResponse,
    contiguous,
)
from tether.storage.redis import frames
from tether.storage.redis.database import RedisDatabase
from tether.storage.redis.scripts import APPEND, CURRENT, READ

FALLBACK_POLL_SECONDS = 5.0  # a waiter reads the response this often if no message came


def parse_entries(entries: list[Any], after: int, limit: int | None) -> list[ev.StoredEvent]:
    """The events with seq > `after` (at most `limit`) of XRANGE'd log entries."""
    events: list[ev.StoredEvent] = []
    for entry_id, fields in entries:
        last, _, count = entry_id.partition(b"-")
        events += frames.split(int(last) - int(count) + 1, int(count), fields[1], after)
        if limit is not None and len(events) >= limit:
            return events[:limit]
    return events


def current(db: RedisDatabase, response_id: str) -> asyncio.Future[StoredResponse | None]:
    """The response as of its last committed event: the stored snapshot, folded forward."""

    def decode(row: list[Any] | None) -> StoredResponse | None:
        if row is None:
            return None
        status, snapshot, snapshot_seq, last = row[0], row[1], int(row[2]), int(row[3])
        project = DEFAULT_PROJECT if row[4] is None else row[4].decode()
        if len(row) > 5:
            later = parse_entries(row[5], snapshot_seq, None)
            snapshot = advance(snapshot, snapshot_seq, [e.payload() for e in later])
        return StoredResponse(response_id, ResponseStatus(status.decode()), snapshot, last, project)

    keys = db.keys
    return db.wire.run(CURRENT, [keys.response(response_id), keys.events(response_id)], [], decode)


def output_pairs(snapshot: bytes) -> list[Any]:
    """The (id, JSON) pairs of a snapshot's output items, as conversations store them."""
    pairs: list[Any] = []
    for item in orjson.loads(snapshot)["output"]:
        pairs += [item["id"], orjson.dumps(item)]
    return pairs


def _failed(error: Exception) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


class RedisEventLog:
    def __init__(self, db: RedisDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<RedisEventLog {self._db!r}>"

    def append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> asyncio.Future[None]:
        first = events[0].seq
        if not contiguous(events, first):
            return _failed(AppendConflictError(f"response {response_id}: events have a gap"))
        output: list[Any] = []
        if events[-1].type in ADDS_OUTPUT_TO_CONVERSATION:
            if snapshot is None:  # rare: the runner sends a snapshot with status changes
                return asyncio.ensure_future(self._append_folded(response_id, events, status))
            output = output_pairs(snapshot)
        ending = "end" if events[-1].terminal else ""
        return self.commit(response_id, events, snapshot, status, ending, output, lambda _: None)

    async def _append_folded(
        self, response_id: str, events: Sequence[ev.StoredEvent], status: ResponseStatus
    ) -> None:
        """A terminal append without a snapshot: fold it here, so that the output added to
        the conversation is the response's as of this batch (the script checks that the
        log did not move since)."""
        stored = await current(self._db, response_id)
        snapshot: bytes | None = None
        output: list[Any] = []
        if stored is not None and stored.last_seq == events[0].seq - 1:
            snapshot = advance(stored.snapshot, stored.last_seq, [e.payload() for e in events])
            output = output_pairs(snapshot)
        await self.commit(response_id, events, snapshot, status, "end", output, lambda _: None)

    def commit(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
        ending: str,
        output: list[Any],
        result: Callable[[int], Any],
    ) -> asyncio.Future[Any]:
        """Run the append script; the future holds `result(1 if a job was removed else 0)`
        or raises `AppendConflictError`. `ending`: '' (not terminal), 'end', or 'revoke'
        (terminate: tell the workers)."""
        db = self._db
        first, last = events[0].seq, events[-1].seq
        batch = events[0].frame if len(events) == 1 else b"".join([e.frame for e in events])
        wake = db.wake

        def decode(reply: list[Any]) -> Any:
            if reply[0] == b"ok":
                wake.committed(response_id, events, finished=bool(ending))
                return result(reply[1])
            if reply[0] == b"gone":
                raise AppendConflictError(f"response {response_id} does not exist")
            if reply[0] == b"terminal":
                raise AppendConflictError(f"response {response_id} is already {reply[1].decode()}")
            raise AppendConflictError(
                f"response {response_id} is at seq {int(reply[1])}, not {first - 1}"
            )

        keys = db.keys
        args = [
            response_id,
            first,
            last,
            batch,
            status.value,
            snapshot or b"",
            ending,
            keys.prefix,
            db.retention,
            db.wake.origin,
            *output,
        ]
        return db.wire.run(
            APPEND, [keys.response(response_id), keys.events(response_id)], args, decode
        )

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        wake = self._db.wake
        recent = wake.recent_after(response_id, after, limit)
        # The recent tail can be behind by a message in flight: when the response is
        # known to be further on, read Redis rather than answer "nothing new".
        if recent is not None and (recent or not await wake.notifier.wait(response_id, after, 0)):
            return recent
        keys = self._db.keys
        entries = await self._db.wire.run(
            READ,
            [keys.events(response_id), keys.response(response_id)],
            [max(after + 1, 0), max(limit, 1)],
        )
        if entries is None:
            raise response_not_found(response_id)
        if entries == b"expired":
            raise EventsExpiredError(f"the event log of response {response_id} has expired")
        return parse_entries(entries, after, limit) if limit > 0 else []

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        wake = self._db.wake
        notifier = wake.notifier
        if await notifier.wait(response_id, after, 0.0):  # known here already
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        channel = wake.follow(response_id)
        try:
            while True:
                if not (channel.trusted and notifier.knows(response_id)):
                    # Subscribed since before this read: from now on, messages tell all.
                    confirmed = channel.confirmed
                    if not confirmed.done():
                        slice_ = min(deadline - loop.time(), FALLBACK_POLL_SECONDS)
                        await asyncio.wait([confirmed], timeout=max(slice_, 0.0))
                    last = await self._db.refresh(response_id)
                    if confirmed.done() and channel.confirmed is confirmed:
                        channel.trusted = True
                    if last is not None and last > after:
                        return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                if await notifier.wait(response_id, after, min(remaining, FALLBACK_POLL_SECONDS)):
                    return True
                if loop.time() >= deadline:
                    return False
                channel.trusted = False  # the slow fallback: read the response again
        finally:
            wake.unfollow(channel)

"""Row-level helpers shared by the SQLite store and log: the writer's heads of
active responses, reading events and the current snapshot, inserting a batch."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tether.domain import events as ev
from tether.domain.fold import advance
from tether.domain.response import ResponseStatus
from tether.storage.base import (
    StoredResponse,
)


class Head:
    """What the writer thread knows of a response it writes: its row id, last event,
    status and the row id of its conversation (None: it has none). The writer is the
    file's only writer, so this is the truth."""

    __slots__ = ("conversation", "last_seq", "rid", "status")

    def __init__(
        self, rid: int, last_seq: int, status: ResponseStatus, conversation: int | None = None
    ) -> None:
        self.rid, self.last_seq, self.status = rid, last_seq, status
        self.conversation = conversation


class Heads:
    """The writer thread's heads of active responses (terminal ones are dropped)."""

    def __init__(self) -> None:
        self._heads: dict[str, Head] = {}

    def get(self, conn: sqlite3.Connection, response_id: str) -> Head | None:
        head = self._heads.get(response_id)
        if head is None:
            row = conn.execute(
                "SELECT rid, status, conversation_cid FROM responses WHERE id = ?", (response_id,)
            ).fetchone()
            if row is None:
                return None
            head = Head(row[0], last_seq_of(conn, row[0]), ResponseStatus(row[1]), row[2])
            if not head.status.terminal:
                self._heads[response_id] = head
        return head

    def put(self, response_id: str, head: Head) -> None:
        if head.status.terminal:
            self._heads.pop(response_id, None)
        else:
            self._heads[response_id] = head

    def drop(self, response_id: str) -> None:
        self._heads.pop(response_id, None)

    def clear(self) -> None:
        """Forget everything; heads are read from the file again when next needed."""
        self._heads.clear()


def last_seq_of(conn: sqlite3.Connection, rid: int) -> int:
    row = conn.execute("SELECT max(last_seq) FROM events WHERE rid = ?", (rid,)).fetchone()
    return -1 if row is None or row[0] is None else int(row[0])


def current_response(conn: sqlite3.Connection, response_id: str) -> StoredResponse | None:
    """The response as of its last committed event (one read transaction)."""
    row = conn.execute(
        "SELECT rid, status, snapshot, snapshot_seq, project FROM responses WHERE id = ?",
        (response_id,),
    ).fetchone()
    if row is None:
        return None
    rid, status, snapshot, snapshot_seq, project = row
    later = events_after(conn, rid, snapshot_seq, limit=None)
    snapshot = advance(snapshot, snapshot_seq, [e.payload() for e in later])
    last = snapshot_seq + len(later)
    return StoredResponse(response_id, ResponseStatus(status), snapshot, last, project)


def events_after(
    conn: sqlite3.Connection, rid: int, after: int, limit: int | None
) -> list[ev.StoredEvent]:
    """The stored events of response `rid` with seq > `after` (at most `limit`)."""
    cursor = conn.execute(
        "SELECT first_seq, frames FROM events WHERE rid = ? AND last_seq > ? ORDER BY last_seq",
        (rid, after),
    )
    events: list[ev.StoredEvent] = []
    for first_seq, frames in cursor:  # rows are read lazily: stop once `limit` is reached
        # Frames end with a blank line and their JSON never holds a raw newline.
        for offset, frame in enumerate(frames.split(b"\n\n")[:-1]):
            seq = first_seq + offset
            if seq > after:
                event_type = frame[7 : frame.index(b"\n")].decode()  # after b"event: "
                events.append(ev.StoredEvent(seq, event_type, frame + b"\n\n"))
        if limit is not None and len(events) >= limit:
            cursor.close()
            return events[:limit]
    return events


def insert_events(conn: sqlite3.Connection, rid: int, events: Sequence[ev.StoredEvent]) -> None:
    """One row for the whole batch."""
    frames = events[0].frame if len(events) == 1 else b"".join([e.frame for e in events])
    conn.execute(
        "INSERT INTO events (rid, first_seq, last_seq, frames) VALUES (?, ?, ?, ?)",
        (rid, events[0].seq, events[-1].seq, frames),
    )

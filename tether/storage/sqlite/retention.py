"""Retention in SQLite: delete responses that finished long ago and drop the event
logs of those that finished a while ago (`ResponseStore.expire`). Each batch is one
write transaction on the single writer, so workers running it at once only find
less to do."""

from __future__ import annotations

import sqlite3

from tether.storage.sqlite.rows import current_response

# Finished before ?1 (`updated_at` of a terminal row); found through `created_at`
# (indexed), since a response is created before it finishes.
FINISHED = (
    "created_at < ?1 AND updated_at < ?1 "
    "AND status IN ('completed', 'incomplete', 'failed', 'cancelled')"
)


def delete_finished(conn: sqlite3.Connection, before: float, limit: int) -> list[str]:
    """Delete up to `limit` responses that finished before `before`, with their
    events, input items and claims; their ids."""
    rows = conn.execute(
        f"SELECT rid, id FROM responses WHERE {FINISHED} ORDER BY created_at LIMIT ?2",
        (before, limit),
    ).fetchall()
    for rid, response_id in rows:
        conn.execute("DELETE FROM events WHERE rid = ?", (rid,))
        conn.execute("DELETE FROM input_items WHERE response_id = ?", (response_id,))
        conn.execute("DELETE FROM idempotency_keys WHERE response_id = ?", (response_id,))
        conn.execute("DELETE FROM responses WHERE rid = ?", (rid,))
    return [response_id for _, response_id in rows]


def drop_event_logs(conn: sqlite3.Connection, before: float, limit: int) -> list[str]:
    """Drop the events of up to `limit` responses that finished before `before`,
    keeping their snapshot (folded to the last event); their ids."""
    rows = conn.execute(
        f"SELECT rid, id FROM responses WHERE {FINISHED} AND events_expired = 0 "
        "ORDER BY created_at LIMIT ?2",
        (before, limit),
    ).fetchall()
    for rid, response_id in rows:
        stored = current_response(conn, response_id)
        assert stored is not None
        conn.execute(
            "UPDATE responses SET snapshot = ?, snapshot_seq = ?, events_expired = 1 WHERE rid = ?",
            (stored.snapshot, stored.last_seq, rid),
        )
        conn.execute("DELETE FROM events WHERE rid = ?", (rid,))
    return [response_id for _, response_id in rows]
